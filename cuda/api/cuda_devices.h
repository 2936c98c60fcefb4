// cuda_devices.h: the CUDA runtime queries validation and the runtime ABI share.
// For CPU tensors the only queries are one cached device count per process and, where it
// is > 0, one pointer query per tensor (check_host_pointer). cuda_devices.cpp implements
// them on the CUDA runtime; the CPU-only build (`make lib-cpu`) links no_cuda.cpp instead,
// where the count is 0 and everything that needs a device returns FA_ERR_NO_DEVICE.
#pragma once

#include <cstdint>

#include "flashattn.h"

namespace fa {

// Number of CUDA devices; 0 with FA_OK where there is no driver or no GPU.
fa_status cuda_device_count(int32_t* count);

// cuda_device_count, asked once per process (later calls return the first answer); 0 where
// the query failed. For cheap checks on the CPU path, which never fails because of it.
int32_t cached_cuda_device_count();

// A tensor labelled cpu: `address` must not be CUDA device memory (the CPU backend would
// fault on it), else FA_ERR_INVALID_ARGUMENT "<name>: pointer is CUDA device memory on
// cuda:N, tensor says cpu". Host memory (pinned or not) and managed memory pass. Callers
// ask only where cached_cuda_device_count() > 0.
fa_status check_host_pointer(const char* name, uint64_t address);

// `device` is an existing CUDA ordinal, else FA_ERR_NO_DEVICE "<name>: ...".
fa_status check_cuda_ordinal(const char* name, int32_t device);

// `address` is device memory of `device` (or managed memory), else FA_ERR_INVALID_ARGUMENT.
fa_status check_device_pointer(const char* name, uint64_t address, int32_t device);

// Makes `device` current on this thread before a CUDA backend launches anything.
fa_status use_cuda_device(int32_t device);

// Copies `count` int32 values from device memory to `host`, ordered after the work already
// queued on `stream` (so cu_seqlens written by earlier kernels are seen). Blocks until done.
fa_status copy_int32_to_host(int32_t device, void* stream, uint64_t source, int64_t count,
                             int32_t* host);

}  // namespace fa
