// thread_pool.cpp: a fixed set of workers that sleep between parallel_for calls.
#include "cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace fa {
namespace {

std::atomic<int> requested_threads{0};

int resolve_thread_count(int requested) {
  if (requested > 0) return requested;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : int(std::min<unsigned>(hardware, kMaxCpuThreads));
}

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : size_(threads) {
    // The calling thread works too; the pool adds the others. If a thread cannot start
    // (std::system_error) or memory runs out, the workers already running are stopped and
    // joined before the exception leaves: a joinable std::thread destroyed during
    // unwinding would call std::terminate.
    try {
      workers_.reserve(size_t(threads > 1 ? threads - 1 : 0));
      for (int worker = 1; worker < threads; ++worker) {
        workers_.emplace_back([this] { worker_loop(); });
      }
    } catch (...) {
      stop_and_join();
      throw;
    }
  }

  ~ThreadPool() { stop_and_join(); }

  int size() const { return size_; }

  void run(int64_t count, const std::function<void(int64_t)>& body) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      count_ = count;
      next_item_.store(0);
      error_ = nullptr;
      busy_workers_ = int(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_workers_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void stop_and_join() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& thread : workers_) thread.join();
  }

  void worker_loop() {
    uint64_t seen_generation = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
        if (stopping_) return;
        seen_generation = generation_;
      }
      work();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_workers_ == 0) done_.notify_one();
    }
  }

  void work() {
    for (;;) {
      const int64_t item = next_item_.fetch_add(1);
      if (item >= count_) return;
      try {
        (*body_)(item);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_item_.store(count_);  // skip what is left
      }
    }
  }

  const int size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  int busy_workers_ = 0;
  const std::function<void(int64_t)>* body_ = nullptr;
  int64_t count_ = 0;
  std::atomic<int64_t> next_item_{0};
  std::exception_ptr error_;
};

// Serializes callers and guards (re)creation of the pool when the thread count changes.
std::mutex pool_mutex;
std::unique_ptr<ThreadPool> pool;

}  // namespace

void cpu_set_thread_count(int threads) { requested_threads.store(threads); }

int cpu_thread_count() { return resolve_thread_count(requested_threads.load()); }

void parallel_for(int64_t count, const std::function<void(int64_t)>& body) {
  if (count <= 0) return;
  std::lock_guard<std::mutex> lock(pool_mutex);
  const int threads = cpu_thread_count();
  if (threads == 1 || count == 1) {
    for (int64_t item = 0; item < count; ++item) body(item);
    return;
  }
  if (!pool || pool->size() != threads) {
    pool.reset();
    pool = std::make_unique<ThreadPool>(threads);
  }
  pool->run(count, body);
}

}  // namespace fa
