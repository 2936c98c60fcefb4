// abi_layout.cpp: the layout of the ABI structs of flashattn.h, as this library was compiled,
// for fa_abi_layout(). Generated from offsetof/sizeof, one macro per field, so no offset is
// written by hand anywhere in C; ffi/structs.ts packs from its own field table and a test
// checks that table against this one field by field.
#include <cstddef>
#include <string>

#include "flashattn.h"

namespace {

#define FA_LAYOUT_STRUCT(type) text += "struct " #type " " + std::to_string(sizeof(type)) + "\n"
#define FA_LAYOUT_FIELD(type, field)                                                   \
  text += "field " #field " " + std::to_string(offsetof(type, field)) + " " +          \
          std::to_string(sizeof(static_cast<type*>(nullptr)->field)) + "\n"

std::string build_layout() {
  std::string text;

  FA_LAYOUT_STRUCT(fa_tensor);
  FA_LAYOUT_FIELD(fa_tensor, data);
  FA_LAYOUT_FIELD(fa_tensor, dtype);
  FA_LAYOUT_FIELD(fa_tensor, device);
  FA_LAYOUT_FIELD(fa_tensor, ndim);
  FA_LAYOUT_FIELD(fa_tensor, reserved);
  FA_LAYOUT_FIELD(fa_tensor, shape);
  FA_LAYOUT_FIELD(fa_tensor, stride);

  FA_LAYOUT_STRUCT(fa_forward_args);
  FA_LAYOUT_FIELD(fa_forward_args, abi_version);
  FA_LAYOUT_FIELD(fa_forward_args, struct_size);
  FA_LAYOUT_FIELD(fa_forward_args, q);
  FA_LAYOUT_FIELD(fa_forward_args, k);
  FA_LAYOUT_FIELD(fa_forward_args, v);
  FA_LAYOUT_FIELD(fa_forward_args, out);
  FA_LAYOUT_FIELD(fa_forward_args, lse);
  FA_LAYOUT_FIELD(fa_forward_args, bias);
  FA_LAYOUT_FIELD(fa_forward_args, cu_seqlens_q);
  FA_LAYOUT_FIELD(fa_forward_args, cu_seqlens_k);
  FA_LAYOUT_FIELD(fa_forward_args, scale);
  FA_LAYOUT_FIELD(fa_forward_args, dropout_p);
  FA_LAYOUT_FIELD(fa_forward_args, seed);
  FA_LAYOUT_FIELD(fa_forward_args, offset);
  FA_LAYOUT_FIELD(fa_forward_args, flags);
  FA_LAYOUT_FIELD(fa_forward_args, max_seqlen_q);
  FA_LAYOUT_FIELD(fa_forward_args, max_seqlen_k);
  FA_LAYOUT_FIELD(fa_forward_args, reserved);
  FA_LAYOUT_FIELD(fa_forward_args, stream);
  FA_LAYOUT_FIELD(fa_forward_args, sinks);
  FA_LAYOUT_FIELD(fa_forward_args, alibi_slopes);
  FA_LAYOUT_FIELD(fa_forward_args, window_left);
  FA_LAYOUT_FIELD(fa_forward_args, window_right);
  FA_LAYOUT_FIELD(fa_forward_args, softcap);
  FA_LAYOUT_FIELD(fa_forward_args, reserved2);

  FA_LAYOUT_STRUCT(fa_backward_args);
  FA_LAYOUT_FIELD(fa_backward_args, abi_version);
  FA_LAYOUT_FIELD(fa_backward_args, struct_size);
  FA_LAYOUT_FIELD(fa_backward_args, q);
  FA_LAYOUT_FIELD(fa_backward_args, k);
  FA_LAYOUT_FIELD(fa_backward_args, v);
  FA_LAYOUT_FIELD(fa_backward_args, out);
  FA_LAYOUT_FIELD(fa_backward_args, dout);
  FA_LAYOUT_FIELD(fa_backward_args, lse);
  FA_LAYOUT_FIELD(fa_backward_args, dq);
  FA_LAYOUT_FIELD(fa_backward_args, dk);
  FA_LAYOUT_FIELD(fa_backward_args, dv);
  FA_LAYOUT_FIELD(fa_backward_args, bias);
  FA_LAYOUT_FIELD(fa_backward_args, dbias);
  FA_LAYOUT_FIELD(fa_backward_args, cu_seqlens_q);
  FA_LAYOUT_FIELD(fa_backward_args, cu_seqlens_k);
  FA_LAYOUT_FIELD(fa_backward_args, scale);
  FA_LAYOUT_FIELD(fa_backward_args, dropout_p);
  FA_LAYOUT_FIELD(fa_backward_args, seed);
  FA_LAYOUT_FIELD(fa_backward_args, offset);
  FA_LAYOUT_FIELD(fa_backward_args, flags);
  FA_LAYOUT_FIELD(fa_backward_args, max_seqlen_q);
  FA_LAYOUT_FIELD(fa_backward_args, max_seqlen_k);
  FA_LAYOUT_FIELD(fa_backward_args, reserved);
  FA_LAYOUT_FIELD(fa_backward_args, stream);
  FA_LAYOUT_FIELD(fa_backward_args, workspace);
  FA_LAYOUT_FIELD(fa_backward_args, workspace_bytes);
  FA_LAYOUT_FIELD(fa_backward_args, sinks);
  FA_LAYOUT_FIELD(fa_backward_args, alibi_slopes);
  FA_LAYOUT_FIELD(fa_backward_args, window_left);
  FA_LAYOUT_FIELD(fa_backward_args, window_right);
  FA_LAYOUT_FIELD(fa_backward_args, softcap);
  FA_LAYOUT_FIELD(fa_backward_args, reserved2);
  FA_LAYOUT_FIELD(fa_backward_args, dsinks);

  FA_LAYOUT_STRUCT(fa_kvcache_args);
  FA_LAYOUT_FIELD(fa_kvcache_args, abi_version);
  FA_LAYOUT_FIELD(fa_kvcache_args, struct_size);
  FA_LAYOUT_FIELD(fa_kvcache_args, q);
  FA_LAYOUT_FIELD(fa_kvcache_args, k_cache);
  FA_LAYOUT_FIELD(fa_kvcache_args, v_cache);
  FA_LAYOUT_FIELD(fa_kvcache_args, cache_seqlens);
  FA_LAYOUT_FIELD(fa_kvcache_args, block_table);
  FA_LAYOUT_FIELD(fa_kvcache_args, k_new);
  FA_LAYOUT_FIELD(fa_kvcache_args, v_new);
  FA_LAYOUT_FIELD(fa_kvcache_args, rotary_cos);
  FA_LAYOUT_FIELD(fa_kvcache_args, rotary_sin);
  FA_LAYOUT_FIELD(fa_kvcache_args, out);
  FA_LAYOUT_FIELD(fa_kvcache_args, lse);
  FA_LAYOUT_FIELD(fa_kvcache_args, sinks);
  FA_LAYOUT_FIELD(fa_kvcache_args, alibi_slopes);
  FA_LAYOUT_FIELD(fa_kvcache_args, scale);
  FA_LAYOUT_FIELD(fa_kvcache_args, softcap);
  FA_LAYOUT_FIELD(fa_kvcache_args, window_left);
  FA_LAYOUT_FIELD(fa_kvcache_args, window_right);
  FA_LAYOUT_FIELD(fa_kvcache_args, flags);
  FA_LAYOUT_FIELD(fa_kvcache_args, num_splits);
  FA_LAYOUT_FIELD(fa_kvcache_args, max_seqlen_k);
  FA_LAYOUT_FIELD(fa_kvcache_args, reserved);
  FA_LAYOUT_FIELD(fa_kvcache_args, stream);
  FA_LAYOUT_FIELD(fa_kvcache_args, workspace);
  FA_LAYOUT_FIELD(fa_kvcache_args, workspace_bytes);

  FA_LAYOUT_STRUCT(fa_merge_args);
  FA_LAYOUT_FIELD(fa_merge_args, abi_version);
  FA_LAYOUT_FIELD(fa_merge_args, struct_size);
  FA_LAYOUT_FIELD(fa_merge_args, parts);
  FA_LAYOUT_FIELD(fa_merge_args, num_parts);
  FA_LAYOUT_FIELD(fa_merge_args, reserved);
  FA_LAYOUT_FIELD(fa_merge_args, out);
  FA_LAYOUT_FIELD(fa_merge_args, lse);
  FA_LAYOUT_FIELD(fa_merge_args, stream);

  FA_LAYOUT_STRUCT(fa_device_info);
  FA_LAYOUT_FIELD(fa_device_info, name);
  FA_LAYOUT_FIELD(fa_device_info, major);
  FA_LAYOUT_FIELD(fa_device_info, minor);
  FA_LAYOUT_FIELD(fa_device_info, multiprocessors);
  FA_LAYOUT_FIELD(fa_device_info, reserved);
  FA_LAYOUT_FIELD(fa_device_info, total_memory);
  FA_LAYOUT_FIELD(fa_device_info, free_memory);
  FA_LAYOUT_FIELD(fa_device_info, l2_cache_bytes);
  FA_LAYOUT_FIELD(fa_device_info, max_shared_per_block);
  FA_LAYOUT_FIELD(fa_device_info, clock_khz);
  return text;
}

#undef FA_LAYOUT_STRUCT
#undef FA_LAYOUT_FIELD

}  // namespace

extern "C" {

FA_API const char* fa_abi_layout(void) {
  // Built once (thread-safe static initialization) and kept for the library's lifetime.
  static const std::string layout = build_layout();
  return layout.c_str();
}

}  // extern "C"
