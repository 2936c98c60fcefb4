// status.h: how every layer of the library reports failure.
// fail() stores a thread-local message for fa_last_error() and returns the status, so a
// check reads `if (bad) return fail(FA_ERR_INVALID_ARGUMENT, "q: expected ...", ...);`.
// Messages start with the argument they are about, then a colon.
#pragma once

#include "flashattn.h"

namespace fa {

fa_status fail(fa_status status, const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// Clears the thread-local message (called at the start of every ABI function).
void clear_error();

}  // namespace fa

// Checks a CUDA runtime call; on failure returns fa_status from the enclosing function.
// cudaErrorMemoryAllocation maps to FA_ERR_OUT_OF_MEMORY, everything else to FA_ERR_CUDA.
#define FA_CUDA_CHECK(call)                                                             \
  do {                                                                                  \
    const cudaError_t fa_cuda_status_ = (call);                                         \
    if (fa_cuda_status_ != cudaSuccess) {                                               \
      (void)cudaGetLastError();                                                         \
      return ::fa::fail(fa_cuda_status_ == cudaErrorMemoryAllocation                    \
                            ? FA_ERR_OUT_OF_MEMORY : FA_ERR_CUDA,                       \
                        "cuda: %s (%s) at %s:%d", cudaGetErrorString(fa_cuda_status_), \
                        #call, __FILE__, __LINE__);                                     \
    }                                                                                   \
  } while (0)
