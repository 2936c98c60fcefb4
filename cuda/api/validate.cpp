// validate.cpp: every check of fa_forward_args / fa_backward_args, then the params.
// Order: struct header, scalars (the score features' too), each tensor's header, dtypes and
// shapes (sinks, alibi_slopes, dsinks included), devices, pointers and alignment, strides and
// overlaps, cu_seqlens values, bias shapes (which need the max lengths).
#include "api/validate.h"

#include <cinttypes>
#include <cmath>
#include <vector>

#include "api/cuda_devices.h"
#include "api/params_builder.h"
#include "api/request.h"
#include "api/score_checks.h"
#include "api/seqlens.h"
#include "api/shape_checks.h"
#include "api/tensor_checks.h"
#include "common/status.h"

namespace fa {
namespace {

constexpr uint32_t kKnownFlags = FA_FLAG_CAUSAL | FA_FLAG_DETERMINISTIC;
// The caller's workspace must be 16-byte aligned. (q/k/v/out/dout/dq/dk/dv need only element
// alignment: the CUDA backend copies views that are not 16-byte aligned, or whose non-last
// strides are not multiples of 8 elements, through aligned temporaries; see cuda_backend.cpp.)
constexpr int64_t kCudaBaseAlignment = 16;

fa_status check_scalars(const Request& request) {
  if (request.reserved != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "reserved: must be 0, got %d", request.reserved);
  }
  if (request.flags & ~kKnownFlags) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "flags: unknown bits 0x%x (known: 0x1 causal, 0x2 deterministic)",
                request.flags & ~kKnownFlags);
  }
  if (!std::isfinite(request.scale) || request.scale <= 0.0f) {
    return fail(FA_ERR_INVALID_ARGUMENT, "scale: expected a finite value > 0, got %g",
                double(request.scale));
  }
  if (!std::isfinite(request.dropout_p) || request.dropout_p < 0.0f ||
      request.dropout_p >= 1.0f) {
    return fail(FA_ERR_INVALID_ARGUMENT, "dropout_p: expected a value in [0, 1), got %g",
                double(request.dropout_p));
  }
  if (const fa_status s = check_score_scalars(request)) return s;
  if (request.workspace == 0 && request.workspace_bytes != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "workspace: is 0 but workspace_bytes is %" PRIu64 " (0 = library allocates)",
                request.workspace_bytes);
  }
  return FA_OK;
}

// cu_seqlens values and the max lengths (CPU: read directly; CUDA: trusted or copied back).
fa_status resolve_nested_lengths(const Request& request, Problem* problem) {
  const int64_t batch = problem->batch;
  const bool on_cuda = problem->device != FA_DEVICE_CPU;
  if (on_cuda && request.max_seqlen_q > 0 && request.max_seqlen_k > 0) {
    problem->seqlen_q = request.max_seqlen_q;
    problem->seqlen_k = request.max_seqlen_k;
    return FA_OK;
  }
  std::vector<int32_t> host_q, host_k;
  const int32_t* values_q = reinterpret_cast<const int32_t*>(request.cu_seqlens_q->data);
  const int32_t* values_k = reinterpret_cast<const int32_t*>(request.cu_seqlens_k->data);
  if (on_cuda) {
    host_q.resize(batch + 1);
    host_k.resize(batch + 1);
    void* stream = reinterpret_cast<void*>(request.stream);
    if (const fa_status s = copy_int32_to_host(problem->device, stream, request.cu_seqlens_q->data,
                                               batch + 1, host_q.data()))
      return s;
    if (const fa_status s = copy_int32_to_host(problem->device, stream, request.cu_seqlens_k->data,
                                               batch + 1, host_k.data()))
      return s;
    values_q = host_q.data();
    values_k = host_k.data();
  }
  int64_t longest_q = 0, longest_k = 0;
  if (const fa_status s = check_cu_seqlens_values("cu_seqlens_q", values_q, batch,
                                                  problem->rows_q, "q", &longest_q))
    return s;
  if (const fa_status s = check_cu_seqlens_values("cu_seqlens_k", values_k, batch,
                                                  problem->rows_k, "k", &longest_k))
    return s;
  if (const fa_status s =
          resolve_max_seqlen("max_seqlen_q", request.max_seqlen_q, longest_q, &problem->seqlen_q))
    return s;
  return resolve_max_seqlen("max_seqlen_k", request.max_seqlen_k, longest_k, &problem->seqlen_k);
}

// Every tensor taking part, each with a sound header; required ones may not be absent.
fa_status gather_tensors(const Request& request, std::vector<NamedTensor>* all) {
  std::vector<NamedTensor> required = {{"q", request.q}, {"k", request.k}, {"v", request.v},
                                       {"out", request.out}};
  std::vector<NamedTensor> optional = {{"bias", request.bias},
                                       {"cu_seqlens_q", request.cu_seqlens_q},
                                       {"cu_seqlens_k", request.cu_seqlens_k},
                                       {"sinks", request.sinks},
                                       {"alibi_slopes", request.alibi_slopes}};
  if (request.backward) {
    required.insert(required.end(), {{"dout", request.dout}, {"lse", request.lse},
                                     {"dq", request.dq}, {"dk", request.dk}, {"dv", request.dv}});
    optional.push_back({"dbias", request.dbias});
    optional.push_back({"dsinks", request.dsinks});
  } else {
    optional.push_back({"lse", request.lse});  // the forward's lse is optional
  }
  for (const NamedTensor& named : required) {
    if (const fa_status s = check_required(named.name, *named.tensor)) return s;
    all->push_back(named);
  }
  for (const NamedTensor& named : optional) {
    if (!present(named.tensor)) continue;
    if (const fa_status s = check_tensor_header(named.name, *named.tensor)) return s;
    all->push_back(named);
  }
  return FA_OK;
}

// Ranks, dtypes and shapes, except the bias shapes of nested batches (need max lengths).
fa_status check_shapes(const Request& request, Problem* problem) {
  problem->nested = present(request.cu_seqlens_q);
  if (present(request.cu_seqlens_q) != present(request.cu_seqlens_k)) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: missing while %s is given (nested batches need both)",
                problem->nested ? "cu_seqlens_k" : "cu_seqlens_q",
                problem->nested ? "cu_seqlens_q" : "cu_seqlens_k");
  }
  const bool nested = problem->nested;
  if (nested) {
    const fa_tensor &cu_q = *request.cu_seqlens_q, &cu_k = *request.cu_seqlens_k;
    if (const fa_status s = check_cu_seqlens_tensor("cu_seqlens_q", cu_q)) return s;
    if (const fa_status s = check_cu_seqlens_tensor("cu_seqlens_k", cu_k)) return s;
    if (cu_k.shape[0] != cu_q.shape[0]) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "cu_seqlens_k: length %" PRId64 " differs from cu_seqlens_q's %" PRId64,
                  cu_k.shape[0], cu_q.shape[0]);
    }
    problem->batch = cu_q.shape[0] - 1;
  }
  if (const fa_status s = check_qkv(request, problem)) return s;
  const fa_tensor &q = *request.q, &k = *request.k;
  if (const fa_status s = check_like("out", *request.out, "q", q, q, nested)) return s;
  if (request.backward) {
    if (const fa_status s = check_like("dout", *request.dout, "q", q, q, nested)) return s;
    if (const fa_status s = check_like("dq", *request.dq, "q", q, q, nested)) return s;
    if (const fa_status s = check_like("dk", *request.dk, "k", k, q, nested)) return s;
    if (const fa_status s = check_like("dv", *request.dv, "k", k, q, nested)) return s;
  }
  if (present(request.lse)) {
    if (const fa_status s = check_lse(*request.lse, *problem)) return s;
  }
  if (present(request.bias)) {
    if (const fa_status s = check_bias_kind("bias", *request.bias)) return s;
  }
  if (present(request.dbias)) {
    if (!present(request.bias)) {
      return fail(FA_ERR_INVALID_ARGUMENT, "dbias: given without bias (dbias is bias's gradient)");
    }
    if (const fa_status s = check_bias_kind("dbias", *request.dbias)) return s;
  }
  return check_score_tensors(request, *problem);
}

// One device for all (q's), real memory of it, and the workspace (see check_one_device).
fa_status check_devices(const Request& request, const std::vector<NamedTensor>& all) {
  return check_one_device(all, request.workspace);
}

// Element alignment, contiguous last dims, and outputs with one address per element.
fa_status check_layouts(const Request& request, const std::vector<NamedTensor>& all) {
  for (const NamedTensor& named : all) {
    const fa_tensor& tensor = *named.tensor;
    if (const fa_status s = check_alignment(named.name, tensor, dtype_size(tensor.dtype), 1))
      return s;
    // lse is addressed through all its strides; cu_seqlens were checked as contiguous.
    if (named.tensor == request.lse || named.tensor == request.cu_seqlens_q ||
        named.tensor == request.cu_seqlens_k) {
      continue;
    }
    if (const fa_status s = check_last_contiguous(named.name, tensor)) return s;
    // No 16-byte rule on CUDA: the backend stages views the kernels cannot load directly.
  }
  std::vector<NamedTensor> outputs;
  if (request.backward) {
    outputs = {{"dq", request.dq}, {"dk", request.dk}, {"dv", request.dv}};
    if (present(request.dsinks)) outputs.push_back({"dsinks", request.dsinks});
  } else {
    outputs = {{"out", request.out}};
    if (present(request.lse)) outputs.push_back({"lse", request.lse});
  }
  // An output shares no byte with itself (beyond reduced dims) or any other tensor.
  for (const NamedTensor& named : outputs) {
    if (const fa_status s = check_no_overlap(named.name, *named.tensor, 0)) return s;
    if (const fa_status s = check_disjoint(named.name, *named.tensor, all)) return s;
  }
  if (present(request.dbias)) {
    // Stride 0 on B, Hq or Sq means "sum over that dim"; the key dim is never reduced.
    if (const fa_status s = check_no_overlap("dbias", *request.dbias, 0x7u)) return s;
    if (const fa_status s = check_disjoint("dbias", *request.dbias, all)) return s;
  }
  return check_dsinks_disjoint(request, all);
}

fa_status validate_request(const Request& request, AttentionParams* params) {
  if (const fa_status s = check_scalars(request)) return s;
  std::vector<NamedTensor> all;
  if (const fa_status s = gather_tensors(request, &all)) return s;
  Problem problem;
  if (const fa_status s = check_shapes(request, &problem)) return s;
  if (const fa_status s = check_devices(request, all)) return s;
  if (const fa_status s = check_layouts(request, all)) return s;
  if (problem.nested) {
    if (const fa_status s = resolve_nested_lengths(request, &problem)) return s;
  }
  if (present(request.bias)) {
    if (const fa_status s = check_bias_shape("bias", *request.bias, problem)) return s;
  }
  if (present(request.dbias)) {
    if (const fa_status s = check_bias_shape("dbias", *request.dbias, problem)) return s;
  }
  build_params(request, problem, params);
  return FA_OK;
}

// The fields fa_forward_args and fa_backward_args have in common, by name.
template <typename Args>
Request shared_fields(const Args& args) {
  Request request;
  request.q = &args.q;
  request.k = &args.k;
  request.v = &args.v;
  request.out = &args.out;
  request.cu_seqlens_q = &args.cu_seqlens_q;
  request.cu_seqlens_k = &args.cu_seqlens_k;
  request.scale = args.scale;
  request.dropout_p = args.dropout_p;
  request.seed = args.seed;
  request.offset = args.offset;
  request.flags = args.flags;
  request.max_seqlen_q = args.max_seqlen_q;
  request.max_seqlen_k = args.max_seqlen_k;
  request.reserved = args.reserved;
  request.stream = args.stream;
  request.sinks = &args.sinks;
  request.alibi_slopes = &args.alibi_slopes;
  request.window_left = args.window_left;
  request.window_right = args.window_right;
  request.softcap = args.softcap;
  request.reserved2 = args.reserved2;
  return request;
}

}  // namespace

fa_status check_struct_header(uint32_t abi_version, uint32_t struct_size, size_t expected_size,
                              const char* type) {
  if (abi_version != FA_ABI_VERSION) {
    return fail(FA_ERR_ABI_MISMATCH, "args: abi_version %u, library expects %u", abi_version,
                FA_ABI_VERSION);
  }
  if (struct_size != expected_size) {
    return fail(FA_ERR_ABI_MISMATCH, "args: struct_size %u, library expects %zu (sizeof %s)",
                struct_size, expected_size, type);
  }
  return FA_OK;
}

fa_status check_one_device(const std::vector<NamedTensor>& all, uint64_t workspace) {
  if (all.empty()) return FA_OK;
  const char* reference = all.front().name;
  const int32_t device = all.front().tensor->device;
  for (const NamedTensor& named : all) {
    if (named.tensor->device != device) {
      return fail(FA_ERR_INVALID_ARGUMENT, "%s: on %s, %s is on %s", named.name,
                  device_name(named.tensor->device).c_str(), reference,
                  device_name(device).c_str());
    }
  }
  if (device == FA_DEVICE_CPU) {
    if (cached_cuda_device_count() == 0) return FA_OK;
    for (const NamedTensor& named : all) {
      if (named.tensor->data == 0) continue;  // an empty required tensor
      if (const fa_status s = check_host_pointer(named.name, named.tensor->data)) return s;
    }
    return FA_OK;
  }
  if (const fa_status s = check_cuda_ordinal(reference, device)) return s;
  for (const NamedTensor& named : all) {
    if (named.tensor->data == 0) continue;  // an empty required tensor
    if (const fa_status s = check_device_pointer(named.name, named.tensor->data, device)) return s;
  }
  if (workspace != 0) {
    if (const fa_status s = check_device_pointer("workspace", workspace, device)) return s;
    if (workspace % kCudaBaseAlignment != 0) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "workspace: address 0x%" PRIx64 " is not %" PRId64 "-byte aligned",
                  workspace, kCudaBaseAlignment);
    }
  }
  return FA_OK;
}

fa_status validate_forward(const fa_forward_args* args, AttentionParams* params) {
  if (args == nullptr) return fail(FA_ERR_INVALID_ARGUMENT, "args: null pointer");
  if (const fa_status s = check_struct_header(args->abi_version, args->struct_size,
                                              sizeof(fa_forward_args), "fa_forward_args"))
    return s;
  Request request = shared_fields(*args);
  request.lse = &args->lse;
  request.bias = &args->bias;
  return validate_request(request, params);
}

fa_status validate_backward(const fa_backward_args* args, AttentionParams* params) {
  if (args == nullptr) return fail(FA_ERR_INVALID_ARGUMENT, "args: null pointer");
  if (const fa_status s = check_struct_header(args->abi_version, args->struct_size,
                                              sizeof(fa_backward_args), "fa_backward_args"))
    return s;
  Request request = shared_fields(*args);
  request.backward = true;
  request.dout = &args->dout;
  request.lse = &args->lse;
  request.dq = &args->dq;
  request.dk = &args->dk;
  request.dv = &args->dv;
  request.bias = &args->bias;
  request.dbias = &args->dbias;
  request.dsinks = &args->dsinks;
  request.workspace = args->workspace;
  request.workspace_bytes = args->workspace_bytes;
  return validate_request(request, params);
}

}  // namespace fa
