// shape_checks.cpp: ranks, dtypes and shapes of the attention tensors.
#include "api/shape_checks.h"

#include <cinttypes>

#include "api/tensor_checks.h"
#include "common/status.h"

namespace fa {
namespace {

constexpr int64_t kMaxHeadDim = 256;

const char* const kDenseDimNames[] = {"batch size", "heads", "sequence length", "head dim"};
const char* const kNestedDimNames[] = {"packed length", "heads", "head dim"};

// Same dims as `reference`, dim by dim, with messages naming the dim.
fa_status check_dims_like(const char* name, const fa_tensor& tensor, const char* reference_name,
                          const fa_tensor& reference, const char* const* dim_names) {
  for (int32_t d = 0; d < tensor.ndim; ++d) {
    if (tensor.shape[d] != reference.shape[d]) {
      return fail(FA_ERR_INVALID_ARGUMENT, "%s: %s %" PRId64 " differs from %s's %" PRId64, name,
                  dim_names[d], tensor.shape[d], reference_name, reference.shape[d]);
    }
  }
  return FA_OK;
}

fa_status check_same_dtype(const char* name, const fa_tensor& tensor, const fa_tensor& q) {
  if (tensor.dtype != q.dtype) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: dtype %s differs from q's %s", name,
                dtype_name(tensor.dtype), dtype_name(q.dtype));
  }
  return FA_OK;
}

fa_status check_float_dtype(const char* name, const fa_tensor& tensor) {
  if (tensor.dtype != FA_FLOAT16 && tensor.dtype != FA_BFLOAT16 && tensor.dtype != FA_FLOAT32) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected float16, bfloat16 or float32, got %s", name,
                dtype_name(tensor.dtype));
  }
  return FA_OK;
}

fa_status check_size_at_least_one(const char* name, const char* dim_name, int64_t size) {
  if (size < 1) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: %s must be >= 1, got %" PRId64, name, dim_name, size);
  }
  return FA_OK;
}

}  // namespace

// q, k, v: ranks, dtypes and the problem's sizes.
fa_status check_qkv(const Request& request, Problem* problem) {
  const fa_tensor &q = *request.q, &k = *request.k, &v = *request.v;
  const bool nested = problem->nested;
  const char* const* names = nested ? kNestedDimNames : kDenseDimNames;
  const int32_t ndim = nested ? 3 : 4;
  if (const fa_status s = check_ndim("q", q, ndim, nested ? "[totalQ, Hq, D]" : "[B, Hq, Sq, D]"))
    return s;
  if (q.dtype != FA_FLOAT16 && q.dtype != FA_BFLOAT16) {
    return fail(FA_ERR_INVALID_ARGUMENT, "q: expected float16 or bfloat16, got %s",
                dtype_name(q.dtype));
  }
  const int32_t head_axis = 1, dim_axis = ndim - 1;
  problem->dtype = q.dtype;
  problem->device = q.device;
  problem->heads_q = q.shape[head_axis];
  problem->head_dim = q.shape[dim_axis];
  if (nested) {
    problem->rows_q = q.shape[0];
  } else {
    problem->batch = q.shape[0];
    problem->seqlen_q = q.shape[2];
    if (const fa_status s = check_size_at_least_one("q", names[0], problem->batch)) return s;
    if (const fa_status s = check_size_at_least_one("q", names[2], problem->seqlen_q)) return s;
  }
  if (const fa_status s = check_size_at_least_one("q", "heads", problem->heads_q)) return s;
  if (problem->head_dim < 8 || problem->head_dim > kMaxHeadDim || problem->head_dim % 8 != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "q: head dim must be a multiple of 8 from 8 to %" PRId64 ", got %" PRId64,
                kMaxHeadDim, problem->head_dim);
  }

  if (const fa_status s = check_ndim("k", k, ndim, nested ? "[totalK, Hkv, D]" : "[B, Hkv, Sk, D]"))
    return s;
  if (const fa_status s = check_same_dtype("k", k, q)) return s;
  if (!nested && k.shape[0] != q.shape[0]) {
    return fail(FA_ERR_INVALID_ARGUMENT, "k: batch size %" PRId64 " differs from q's %" PRId64,
                k.shape[0], q.shape[0]);
  }
  if (k.shape[dim_axis] != problem->head_dim) {
    return fail(FA_ERR_INVALID_ARGUMENT, "k: head dim %" PRId64 " differs from q's %" PRId64,
                k.shape[dim_axis], problem->head_dim);
  }
  problem->heads_kv = k.shape[head_axis];
  if (const fa_status s = check_size_at_least_one("k", "heads", problem->heads_kv)) return s;
  if (problem->heads_q % problem->heads_kv != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "k: %" PRId64 " heads do not divide q's %" PRId64
                " (grouped-query attention needs Hq %% Hkv == 0)",
                problem->heads_kv, problem->heads_q);
  }
  if (nested) {
    problem->rows_k = k.shape[0];
  } else {
    problem->seqlen_k = k.shape[2];
    if (const fa_status s = check_size_at_least_one("k", names[2], problem->seqlen_k)) return s;
  }

  if (const fa_status s = check_ndim("v", v, ndim, nested ? "[totalK, Hkv, D]" : "[B, Hkv, Sk, D]"))
    return s;
  if (const fa_status s = check_same_dtype("v", v, q)) return s;
  if (v.shape[dim_axis] != problem->head_dim) {
    return fail(FA_ERR_INVALID_ARGUMENT, "v: head dim %" PRId64 " differs from q's %" PRId64,
                v.shape[dim_axis], problem->head_dim);
  }
  return check_dims_like("v", v, "k", k, names);
}

// A tensor shaped and typed like q (out, dout, dq) or like k (dk, dv).
fa_status check_like(const char* name, const fa_tensor& tensor, const char* reference_name,
                     const fa_tensor& reference, const fa_tensor& q, bool nested) {
  const int32_t ndim = nested ? 3 : 4;
  const char* layout = reference_name[0] == 'q' ? (nested ? "[totalQ, Hq, D]" : "[B, Hq, Sq, D]")
                                                : (nested ? "[totalK, Hkv, D]" : "[B, Hkv, Sk, D]");
  if (const fa_status s = check_ndim(name, tensor, ndim, layout)) return s;
  if (const fa_status s = check_same_dtype(name, tensor, q)) return s;
  return check_dims_like(name, tensor, reference_name, reference,
                         nested ? kNestedDimNames : kDenseDimNames);
}

fa_status check_lse(const fa_tensor& lse, const Problem& problem) {
  const bool nested = problem.nested;
  if (const fa_status s = check_ndim("lse", lse, nested ? 2 : 3, nested ? "[totalQ, Hq]" : "[B, Hq, Sq]"))
    return s;
  if (const fa_status s = check_dtype_is("lse", lse, FA_FLOAT32, "log-sum-exp is float32")) return s;
  const int64_t dense[] = {problem.batch, problem.heads_q, problem.seqlen_q};
  const int64_t packed[] = {problem.rows_q, problem.heads_q};
  return check_shape("lse", lse, nested ? packed : dense,
                     nested ? "[totalQ, Hq] from q" : "[B, Hq, Sq] from q");
}

// bias and dbias: rank and dtype now; the exact shape once the max lengths are known.
fa_status check_bias_kind(const char* name, const fa_tensor& bias) {
  if (const fa_status s = check_ndim(name, bias, 4, "[B, Hq, Sq, Sk]")) return s;
  return check_float_dtype(name, bias);
}

fa_status check_bias_shape(const char* name, const fa_tensor& bias, const Problem& problem) {
  const int64_t shape[] = {problem.batch, problem.heads_q, problem.seqlen_q, problem.seqlen_k};
  return check_shape(name, bias, shape,
                     problem.nested ? "[B, Hq, maxSq, maxSk]; broadcast dims take stride 0"
                                    : "[B, Hq, Sq, Sk]; broadcast dims take stride 0");
}

fa_status check_cu_seqlens_tensor(const char* name, const fa_tensor& tensor) {
  if (const fa_status s = check_ndim(name, tensor, 1, "[B + 1]")) return s;
  if (const fa_status s = check_dtype_is(name, tensor, FA_INT32, "prefix sums")) return s;
  if (tensor.shape[0] < 2) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected length B + 1 >= 2, got %" PRId64, name,
                tensor.shape[0]);
  }
  if (tensor.stride[0] != 1) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: must be contiguous (stride 1), got stride %" PRId64,
                name, tensor.stride[0]);
  }
  return FA_OK;
}


}  // namespace fa
