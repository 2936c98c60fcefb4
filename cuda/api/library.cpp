// library.cpp: library-wide ABI functions (version queries, CPU backend settings).
#include "common/status.h"
#include "cpu/thread_pool.h"

extern "C" {

FA_API uint32_t fa_abi_version(void) { return FA_ABI_VERSION; }

FA_API const char* fa_version(void) { return "0.1.0"; }

FA_API int32_t fa_cpu_set_threads(int32_t threads) {
  fa::clear_error();
  if (threads < 0 || threads > fa::kMaxCpuThreads) {
    return fa::fail(FA_ERR_INVALID_ARGUMENT,
                    "threads: expected 0 (hardware concurrency) to %d, got %d",
                    fa::kMaxCpuThreads, threads);
  }
  fa::cpu_set_thread_count(threads);
  return FA_OK;
}

}  // extern "C"
