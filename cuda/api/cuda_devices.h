// cuda_devices.h: the CUDA runtime queries validation and the runtime ABI share.
// Nothing here is called for CPU tensors, so the CPU path never touches the driver.
#pragma once

#include <cstdint>

#include "flashattn.h"

namespace fa {

// Number of CUDA devices; 0 with FA_OK where there is no driver or no GPU.
fa_status cuda_device_count(int32_t* count);

// `device` is an existing CUDA ordinal, else FA_ERR_NO_DEVICE "<name>: ...".
fa_status check_cuda_ordinal(const char* name, int32_t device);

// `address` is device memory of `device` (or managed memory), else FA_ERR_INVALID_ARGUMENT.
fa_status check_device_pointer(const char* name, uint64_t address, int32_t device);

// Copies `count` int32 values from device memory to `host`, ordered after the work already
// queued on `stream` (so cu_seqlens written by earlier kernels are seen). Blocks until done.
fa_status copy_int32_to_host(int32_t device, void* stream, uint64_t source, int64_t count,
                             int32_t* host);

}  // namespace fa
