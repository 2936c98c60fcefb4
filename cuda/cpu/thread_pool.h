// thread_pool.h: the CPU backend's worker threads.
// parallel_for() hands out items 0..count-1 dynamically; callers make each item write a
// disjoint part of the output (and sum in a fixed order inside an item), so results do
// not depend on which thread ran which item or on the thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace fa {

constexpr int kMaxCpuThreads = 1024;

// 0 = std::thread::hardware_concurrency(). Takes effect at the next parallel_for.
void cpu_set_thread_count(int threads);

// Threads parallel_for will use (>= 1).
int cpu_thread_count();

// Runs body(item) for every item in [0, count) and returns when all are done. The first exception thrown by a body is rethrown here
// (remaining items are skipped). Concurrent callers are served one after the other.
void parallel_for(int64_t count, const std::function<void(int64_t item)>& body);

}  // namespace fa
