// params_builder.cpp: ABI tensors to the backends' operands (strides per layout).
#include "api/params_builder.h"

#include "api/tensor_checks.h"

namespace fa {
namespace {

Operand make_operand(const fa_tensor& tensor, bool nested) {
  Operand operand;
  operand.ptr = reinterpret_cast<void*>(tensor.data);
  if (nested) {  // [total, H, D]
    operand.stride_row = tensor.stride[0];
    operand.stride_head = tensor.stride[1];
  } else {  // [B, H, S, D]
    operand.stride_b = tensor.stride[0];
    operand.stride_head = tensor.stride[1];
    operand.stride_row = tensor.stride[2];
  }
  return operand;
}

LseOperand make_lse_operand(const fa_tensor* tensor, bool nested) {
  LseOperand lse;
  if (!present(tensor)) return lse;
  lse.ptr = reinterpret_cast<float*>(tensor->data);
  if (nested) {  // [totalQ, Hq]
    lse.stride_row = tensor->stride[0];
    lse.stride_head = tensor->stride[1];
  } else {  // [B, Hq, Sq]
    lse.stride_b = tensor->stride[0];
    lse.stride_head = tensor->stride[1];
    lse.stride_row = tensor->stride[2];
  }
  return lse;
}

BiasOperand make_bias_operand(const fa_tensor* tensor) {
  BiasOperand bias;
  if (!present(tensor)) return bias;
  bias.ptr = reinterpret_cast<void*>(tensor->data);
  bias.dtype = tensor->dtype;
  bias.stride_b = tensor->stride[0];
  bias.stride_head = tensor->stride[1];
  bias.stride_row = tensor->stride[2];
  return bias;
}

}  // namespace

void build_params(const Request& request, const Problem& problem, AttentionParams* params) {
  const bool nested = problem.nested;
  AttentionParams& p = *params;
  p = AttentionParams{};
  p.device = problem.device;
  p.dtype = problem.dtype;
  p.batch = problem.batch;
  p.heads_q = problem.heads_q;
  p.heads_kv = problem.heads_kv;
  p.head_dim = problem.head_dim;
  p.seqlen_q = problem.seqlen_q;
  p.seqlen_k = problem.seqlen_k;
  if (nested) {
    p.cu_seqlens_q = reinterpret_cast<const int32_t*>(request.cu_seqlens_q->data);
    p.cu_seqlens_k = reinterpret_cast<const int32_t*>(request.cu_seqlens_k->data);
    p.total_q = problem.rows_q;
    p.total_k = problem.rows_k;
  }
  p.q = make_operand(*request.q, nested);
  p.k = make_operand(*request.k, nested);
  p.v = make_operand(*request.v, nested);
  p.out = make_operand(*request.out, nested);
  p.lse = make_lse_operand(request.lse, nested);
  p.bias = make_bias_operand(request.bias);
  p.scale = request.scale;
  p.dropout_p = request.dropout_p;
  p.seed = request.seed;
  p.offset = uint32_t(request.offset);  // Philox counter word 3: the low 32 bits
  p.window.left = request.window_left;
  p.window.right = request.window_right;
  // Causal is the window's right edge at the diagonal (validation refused a right > 0).
  if ((request.flags & FA_FLAG_CAUSAL) != 0) p.window.right = 0;
  p.softcap = request.softcap;
  if (present(request.alibi_slopes)) {
    p.alibi_slopes = reinterpret_cast<const float*>(request.alibi_slopes->data);
    // [Hq] slopes are shared by every sequence; [B, Hq] ones step by their batch stride.
    p.alibi_stride_b = request.alibi_slopes->ndim == 2 ? request.alibi_slopes->stride[0] : 0;
  }
  if (present(request.sinks)) p.sinks = reinterpret_cast<const float*>(request.sinks->data);
  p.deterministic = (request.flags & FA_FLAG_DETERMINISTIC) != 0;
  if (request.backward) {
    p.dout = make_operand(*request.dout, nested);
    p.dq = make_operand(*request.dq, nested);
    p.dk = make_operand(*request.dk, nested);
    p.dv = make_operand(*request.dv, nested);
    // A dbias view with no elements (a nested batch whose query or key sequences are all
    // empty: shape [B, Hq, 0, Sk] or [B, Hq, Sq, 0]) receives nothing. Backends see "not
    // wanted", so none of them writes through it (a stride-0 row dim would otherwise be
    // "summed" into a row that does not exist).
    if (present(request.dbias) && element_count(*request.dbias) > 0) {
      p.dbias = make_bias_operand(request.dbias);
    }
    if (present(request.dsinks)) p.dsinks = reinterpret_cast<float*>(request.dsinks->data);
  }
  p.stream = reinterpret_cast<void*>(request.stream);
  p.workspace = reinterpret_cast<void*>(request.workspace);
  p.workspace_bytes = request.workspace_bytes;
}

}  // namespace fa
