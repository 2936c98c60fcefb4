// merge_validate.cpp: every check of fa_merge_args, then MergeParams.
#include <cinttypes>
#include <string>
#include <vector>

#include "api/kvcache_validate.h"
#include "api/request.h"
#include "api/tensor_checks.h"
#include "api/validate.h"
#include "common/status.h"

namespace fa {
namespace {

fa_status check_out_kind(const char* name, const fa_tensor& tensor) {
  if (tensor.ndim != 3 && tensor.ndim != 4) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "%s: expected 4 dimensions [B, H, S, D] or 3 [T, H, D], got %d (shape %s)", name,
                tensor.ndim, shape_string(tensor).c_str());
  }
  if (tensor.dtype != FA_FLOAT16 && tensor.dtype != FA_BFLOAT16 && tensor.dtype != FA_FLOAT32) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected float16, bfloat16 or float32, got %s", name,
                dtype_name(tensor.dtype));
  }
  return FA_OK;
}

// lse of an out of shape `out_shape` (ndim out_ndim): float32, out's shape without D.
fa_status check_lse_of(const char* name, const fa_tensor& lse, const fa_tensor& out,
                       const char* out_name) {
  const std::string layout = out.ndim == 4 ? "[B, H, S]" : "[T, H]";
  if (const fa_status s = check_ndim(name, lse, out.ndim - 1, layout.c_str())) return s;
  if (const fa_status s = check_dtype_is(name, lse, FA_FLOAT32, "log-sum-exp")) return s;
  const std::string what = std::string(layout) + " from " + out_name;
  return check_shape(name, lse, out.shape, what.c_str());
}

MergeOperand make_operand(const fa_tensor& out, const fa_tensor* lse) {
  MergeOperand m;
  m.out_dtype = out.dtype;
  m.out.ptr = reinterpret_cast<void*>(out.data);
  const bool nested = out.ndim == 3;  // [T, H, D]: batch 1, rows T
  m.out.stride_b = nested ? 0 : out.stride[0];
  m.out.stride_head = out.stride[1];
  m.out.stride_row = nested ? out.stride[0] : out.stride[2];
  if (present(lse)) {
    m.lse.ptr = reinterpret_cast<float*>(lse->data);
    m.lse.stride_b = nested ? 0 : lse->stride[0];
    m.lse.stride_head = lse->stride[1];
    m.lse.stride_row = nested ? lse->stride[0] : lse->stride[2];
  }
  return m;
}

}  // namespace

fa_status validate_merge(const fa_merge_args* args, MergeParams* params) {
  if (args == nullptr) return fail(FA_ERR_INVALID_ARGUMENT, "args: null pointer");
  if (const fa_status s = check_struct_header(args->abi_version, args->struct_size,
                                              sizeof(fa_merge_args), "fa_merge_args"))
    return s;
  if (args->reserved != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "reserved: must be 0, got %d", args->reserved);
  }
  if (args->parts == 0) return fail(FA_ERR_INVALID_ARGUMENT, "parts: null pointer");
  const int32_t count = args->num_parts;
  if (count < 1 || count > kMaxMergeParts) {
    return fail(FA_ERR_INVALID_ARGUMENT, "num_parts: expected 1 to %d, got %d", kMaxMergeParts,
                count);
  }
  const fa_tensor* parts = reinterpret_cast<const fa_tensor*>(args->parts);
  std::vector<std::string> names;  // "out_0", "lse_0", ...: storage for the NamedTensors
  names.reserve(size_t(2 * count));
  for (int32_t i = 0; i < count; ++i) {
    names.push_back("out_" + std::to_string(i));
    names.push_back("lse_" + std::to_string(i));
  }

  // out first: every part is checked against it, and the device is out's.
  const fa_tensor& out = args->out;
  if (const fa_status s = check_required("out", out)) return s;
  if (const fa_status s = check_out_kind("out", out)) return s;
  std::vector<NamedTensor> all = {{"out", &out}};
  if (present(&args->lse)) {
    if (const fa_status s = check_tensor_header("lse", args->lse)) return s;
    if (const fa_status s = check_lse_of("lse", args->lse, out, "out")) return s;
    all.push_back({"lse", &args->lse});
  }
  for (int32_t i = 0; i < count; ++i) {
    const char* out_name = names[2 * i].c_str();
    const char* lse_name = names[2 * i + 1].c_str();
    const fa_tensor &part_out = parts[2 * i], &part_lse = parts[2 * i + 1];
    if (const fa_status s = check_required(out_name, part_out)) return s;
    if (const fa_status s = check_out_kind(out_name, part_out)) return s;
    if (part_out.ndim != out.ndim) {
      return fail(FA_ERR_INVALID_ARGUMENT, "%s: expected %d dimensions like out, got %d (shape %s)",
                  out_name, out.ndim, part_out.ndim, shape_string(part_out).c_str());
    }
    if (const fa_status s = check_shape(out_name, part_out, out.shape, "like out")) return s;
    if (const fa_status s = check_required(lse_name, part_lse)) return s;
    if (const fa_status s = check_lse_of(lse_name, part_lse, out, "out")) return s;
    all.push_back({out_name, &part_out});
    all.push_back({lse_name, &part_lse});
  }
  if (const fa_status s = check_one_device(all, 0)) return s;
  for (const NamedTensor& named : all) {
    const fa_tensor& tensor = *named.tensor;
    if (const fa_status s = check_alignment(named.name, tensor, dtype_size(tensor.dtype), 1))
      return s;
    const bool is_lse = named.name[0] == 'l';  // lse is addressed through all its strides
    if (is_lse) continue;
    if (const fa_status s = check_last_contiguous(named.name, tensor)) return s;
  }
  // The outputs: one address per element, no byte shared with a part (or each other).
  if (const fa_status s = check_no_overlap("out", out, 0)) return s;
  if (const fa_status s = check_disjoint("out", out, all)) return s;
  if (present(&args->lse)) {
    if (const fa_status s = check_no_overlap("lse", args->lse, 0)) return s;
    if (const fa_status s = check_disjoint("lse", args->lse, all)) return s;
  }

  MergeParams& p = *params;
  p.device = out.device;
  const bool nested = out.ndim == 3;
  p.batch = nested ? 1 : out.shape[0];
  p.heads = out.shape[1];
  p.rows = nested ? out.shape[0] : out.shape[2];
  p.head_dim = out.shape[out.ndim - 1];
  p.num_parts = count;
  for (int32_t i = 0; i < count; ++i) p.parts[i] = make_operand(parts[2 * i], &parts[2 * i + 1]);
  p.result = make_operand(out, &args->lse);
  p.stream = reinterpret_cast<void*>(args->stream);
  return FA_OK;
}

}  // namespace fa
