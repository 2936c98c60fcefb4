// cuda_backend.cpp: the CUDA backend entry points: operand staging, then the dispatcher
// (cuda_dispatch.cu), which runs each case on the sm90 (wgmma/TMA) or sm80 (mma.sync)
// kernels.
//
// The kernels load and store rows with 16-byte vectors: every q/k/v/out/dout/dq/dk/dv they
// see must start on a 16-byte boundary and have non-last strides that are multiples of 8
// elements. Operands that are only element-aligned take a slow path here:
//   - inputs (q, k, v; out and dout in the backward) are gathered into a contiguous,
//     aligned temporary, and the params point the kernels at it;
//   - outputs (out in the forward; dq, dk, dv) are gathered too (so elements the kernels do
//     not write, e.g. packed rows past the last sequence, keep the caller's values), the
//     kernels write the temporary, and it is scattered back into the caller's view.
// Temporaries come from the library's stream-ordered pool (common/scratch_pool.h) and go
// back to it, all on params.stream: no host synchronization. Aligned operands run directly, with no copy.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "api/strided_copy.h"
#include "common/backends.h"
#include "common/scratch_pool.h"
#include "common/status.h"
#include "api/cuda_dispatch.h"

namespace fa {
namespace {

constexpr uint64_t kAlignBytes = 16;
constexpr int64_t kAlignElements = 8;
constexpr int64_t kElementBytes = 2;  // float16 / bfloat16

// The caller's view of an operand, as 4-d [B, H, S, D] (nested: [1, total, H, D]).
StridedView view_of(const AttentionParams& p, const Operand& op, bool kv_side) {
  const int64_t heads = kv_side ? p.heads_kv : p.heads_q;
  StridedView view;
  view.ptr = op.ptr;
  if (p.nested()) {
    const int64_t total = kv_side ? p.total_k : p.total_q;
    const int64_t shape[4] = {1, total, heads, p.head_dim};
    const int64_t stride[4] = {0, op.stride_row, op.stride_head, 1};
    std::copy(shape, shape + 4, view.shape);
    std::copy(stride, stride + 4, view.stride);
  } else {
    const int64_t seqlen = kv_side ? p.seqlen_k : p.seqlen_q;
    const int64_t shape[4] = {p.batch, heads, seqlen, p.head_dim};
    const int64_t stride[4] = {op.stride_b, op.stride_head, op.stride_row, 1};
    std::copy(shape, shape + 4, view.shape);
    std::copy(stride, stride + 4, view.stride);
  }
  return view;
}

bool empty(const StridedView& view) {
  for (int d = 0; d < 4; ++d) {
    if (view.shape[d] == 0) return true;
  }
  return false;
}

// True where the kernels can address the view as it is (the rule the validation used to
// enforce): 16-byte base, non-last strides multiples of 8 elements (size-1 dims exempt).
bool kernel_addressable(const StridedView& view) {
  if (empty(view)) return true;
  if (reinterpret_cast<uintptr_t>(view.ptr) % kAlignBytes != 0) return false;
  for (int d = 0; d < 3; ++d) {
    if (view.shape[d] > 1 && view.stride[d] % kAlignElements != 0) return false;
  }
  return true;
}

bool same_view(const StridedView& a, const StridedView& b) {
  if (a.ptr != b.ptr) return false;
  for (int d = 0; d < 4; ++d) {
    if (a.shape[d] != b.shape[d] || a.stride[d] != b.stride[d]) return false;
  }
  return true;
}

// Stages the operands of one call; frees every temporary on the stream when destroyed
// (stream-ordered after everything queued before, so also on error paths).
class Staging {
 public:
  explicit Staging(const AttentionParams& params)
      : params_(params), stream_(static_cast<cudaStream_t>(params.stream)) {}
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() {
    for (const Entry& entry : entries_) (void)scratch_free(entry.temp.ptr, stream_);
  }

  // Points `op` at an aligned, contiguous copy of the caller's view when the kernels
  // cannot address the view directly; an output is also scattered back by finish().
  fa_status stage(const char* name, Operand* op, bool kv_side, bool output) {
    const StridedView caller = view_of(params_, *op, kv_side);
    if (kernel_addressable(caller)) return FA_OK;
    // An input seen before under another name (attention(q, q, q)) shares its copy.
    if (!output) {
      for (const Entry& entry : entries_) {
        if (!entry.output && same_view(entry.caller, caller)) {
          set_operand(entry.temp, op);
          return FA_OK;
        }
      }
    }
    Entry entry;
    entry.name = name;
    entry.caller = caller;
    entry.output = output;
    entry.temp = contiguous_like(caller);
    int64_t count = 1, bytes = 0;
    for (int d = 0; d < 4; ++d) {
      if (__builtin_mul_overflow(count, caller.shape[d], &count)) count = -1;
      if (count < 0) break;
    }
    if (count < 0 || __builtin_mul_overflow(count, kElementBytes, &bytes)) {
      return fail(FA_ERR_OUT_OF_MEMORY, "%s: too large for an aligned copy", name);
    }
    if (const fa_status s = check_capability()) return s;
    void* ptr = nullptr;
    const cudaError_t status = scratch_allocate(&ptr, uint64_t(bytes), params_.device, stream_);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      return fail(status == cudaErrorMemoryAllocation ? FA_ERR_OUT_OF_MEMORY : FA_ERR_CUDA,
                  "%s: cannot allocate %lld bytes of device memory for an aligned copy "
                  "(base not 16-byte aligned or a stride not a multiple of 8 elements): %s",
                  name, static_cast<long long>(bytes), cudaGetErrorString(status));
    }
    entry.temp.ptr = ptr;
    entries_.push_back(entry);
    // Outputs are gathered too: elements the kernels leave alone keep the caller's values.
    if (const fa_status s = strided_copy_2byte(name, caller, entry.temp, stream_)) return s;
    set_operand(entry.temp, op);
    return FA_OK;
  }

  // The copy kernel is built for sm_80 and newer, like the attention kernels: refuse older
  // devices with the dispatcher's message before launching anything.
  fa_status check_capability() {
    if (capability_checked_) return FA_OK;
    int major = 0, minor = 0;
    FA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                         params_.device));
    FA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                         params_.device));
    if (major < 8) {
      return fail(FA_ERR_UNSUPPORTED,
                  "q: device %d has compute capability %d.%d; the CUDA kernels need 8.0 or newer",
                  params_.device, major, minor);
    }
    capability_checked_ = true;
    return FA_OK;
  }

  // Scatters the staged outputs back into the caller's views (after the kernels, in order).
  fa_status finish() {
    for (const Entry& entry : entries_) {
      if (!entry.output) continue;
      if (const fa_status s = strided_copy_2byte(entry.name, entry.temp, entry.caller, stream_))
        return s;
    }
    return FA_OK;
  }

 private:
  struct Entry {
    const char* name = "";
    StridedView caller, temp;
    bool output = false;
  };

  // Dense [B, H, S, D] or nested [1, total, H, D], packed: row stride D (a multiple of 8).
  static StridedView contiguous_like(const StridedView& view) {
    StridedView temp;
    int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      temp.shape[d] = view.shape[d];
      temp.stride[d] = stride;
      stride *= view.shape[d];
    }
    return temp;
  }

  void set_operand(const StridedView& temp, Operand* op) const {
    op->ptr = temp.ptr;
    if (params_.nested()) {  // [1, total, H, D]
      op->stride_b = 0;
      op->stride_row = temp.stride[1];
      op->stride_head = temp.stride[2];
    } else {  // [B, H, S, D]
      op->stride_b = temp.stride[0];
      op->stride_head = temp.stride[1];
      op->stride_row = temp.stride[2];
    }
  }

  const AttentionParams& params_;
  cudaStream_t stream_;
  std::vector<Entry> entries_;
  bool capability_checked_ = false;
};

}  // namespace

fa_status cuda_forward(const AttentionParams& params) {
  AttentionParams staged = params;
  Staging staging(params);
  if (const fa_status s = staging.stage("q", &staged.q, false, false)) return s;
  if (const fa_status s = staging.stage("k", &staged.k, true, false)) return s;
  if (const fa_status s = staging.stage("v", &staged.v, true, false)) return s;
  if (const fa_status s = staging.stage("out", &staged.out, false, true)) return s;
  if (const fa_status s = dispatch_forward(staged)) return s;
  return staging.finish();
}

fa_status cuda_backward(const AttentionParams& params) {
  AttentionParams staged = params;
  Staging staging(params);
  if (const fa_status s = staging.stage("q", &staged.q, false, false)) return s;
  if (const fa_status s = staging.stage("k", &staged.k, true, false)) return s;
  if (const fa_status s = staging.stage("v", &staged.v, true, false)) return s;
  if (const fa_status s = staging.stage("out", &staged.out, false, false)) return s;
  if (const fa_status s = staging.stage("dout", &staged.dout, false, false)) return s;
  if (const fa_status s = staging.stage("dq", &staged.dq, false, true)) return s;
  if (const fa_status s = staging.stage("dk", &staged.dk, true, true)) return s;
  if (const fa_status s = staging.stage("dv", &staged.dv, true, true)) return s;
  if (const fa_status s = dispatch_backward(staged)) return s;
  return staging.finish();
}

// The workspace depends on the problem's sizes, not on where the operands live.
fa_status cuda_backward_workspace_size(const AttentionParams& params, uint64_t* bytes) {
  return dispatch_backward_workspace_size(params, bytes);
}

}  // namespace fa
