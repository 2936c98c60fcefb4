// abi_layout.cpp: compile-time proof that the structs match the offsets documented in
// flashattn.h, which ffi/structs.ts packs by hand.
#include <cstddef>

#include "flashattn.h"

#define FA_EXPECT_OFFSET(type, field, offset) \
  static_assert(offsetof(type, field) == (offset), #type "." #field " moved")

static_assert(sizeof(fa_tensor) == 88, "fa_tensor size");
FA_EXPECT_OFFSET(fa_tensor, data, 0);
FA_EXPECT_OFFSET(fa_tensor, dtype, 8);
FA_EXPECT_OFFSET(fa_tensor, device, 12);
FA_EXPECT_OFFSET(fa_tensor, ndim, 16);
FA_EXPECT_OFFSET(fa_tensor, reserved, 20);
FA_EXPECT_OFFSET(fa_tensor, shape, 24);
FA_EXPECT_OFFSET(fa_tensor, stride, 56);

static_assert(sizeof(fa_forward_args) == 760, "fa_forward_args size");
FA_EXPECT_OFFSET(fa_forward_args, abi_version, 0);
FA_EXPECT_OFFSET(fa_forward_args, struct_size, 4);
FA_EXPECT_OFFSET(fa_forward_args, q, 8);
FA_EXPECT_OFFSET(fa_forward_args, k, 96);
FA_EXPECT_OFFSET(fa_forward_args, v, 184);
FA_EXPECT_OFFSET(fa_forward_args, out, 272);
FA_EXPECT_OFFSET(fa_forward_args, lse, 360);
FA_EXPECT_OFFSET(fa_forward_args, bias, 448);
FA_EXPECT_OFFSET(fa_forward_args, cu_seqlens_q, 536);
FA_EXPECT_OFFSET(fa_forward_args, cu_seqlens_k, 624);
FA_EXPECT_OFFSET(fa_forward_args, scale, 712);
FA_EXPECT_OFFSET(fa_forward_args, dropout_p, 716);
FA_EXPECT_OFFSET(fa_forward_args, seed, 720);
FA_EXPECT_OFFSET(fa_forward_args, offset, 728);
FA_EXPECT_OFFSET(fa_forward_args, flags, 736);
FA_EXPECT_OFFSET(fa_forward_args, max_seqlen_q, 740);
FA_EXPECT_OFFSET(fa_forward_args, max_seqlen_k, 744);
FA_EXPECT_OFFSET(fa_forward_args, reserved, 748);
FA_EXPECT_OFFSET(fa_forward_args, stream, 752);

static_assert(sizeof(fa_backward_args) == 1216, "fa_backward_args size");
FA_EXPECT_OFFSET(fa_backward_args, abi_version, 0);
FA_EXPECT_OFFSET(fa_backward_args, struct_size, 4);
FA_EXPECT_OFFSET(fa_backward_args, q, 8);
FA_EXPECT_OFFSET(fa_backward_args, k, 96);
FA_EXPECT_OFFSET(fa_backward_args, v, 184);
FA_EXPECT_OFFSET(fa_backward_args, out, 272);
FA_EXPECT_OFFSET(fa_backward_args, dout, 360);
FA_EXPECT_OFFSET(fa_backward_args, lse, 448);
FA_EXPECT_OFFSET(fa_backward_args, dq, 536);
FA_EXPECT_OFFSET(fa_backward_args, dk, 624);
FA_EXPECT_OFFSET(fa_backward_args, dv, 712);
FA_EXPECT_OFFSET(fa_backward_args, bias, 800);
FA_EXPECT_OFFSET(fa_backward_args, dbias, 888);
FA_EXPECT_OFFSET(fa_backward_args, cu_seqlens_q, 976);
FA_EXPECT_OFFSET(fa_backward_args, cu_seqlens_k, 1064);
FA_EXPECT_OFFSET(fa_backward_args, scale, 1152);
FA_EXPECT_OFFSET(fa_backward_args, dropout_p, 1156);
FA_EXPECT_OFFSET(fa_backward_args, seed, 1160);
FA_EXPECT_OFFSET(fa_backward_args, offset, 1168);
FA_EXPECT_OFFSET(fa_backward_args, flags, 1176);
FA_EXPECT_OFFSET(fa_backward_args, max_seqlen_q, 1180);
FA_EXPECT_OFFSET(fa_backward_args, max_seqlen_k, 1184);
FA_EXPECT_OFFSET(fa_backward_args, reserved, 1188);
FA_EXPECT_OFFSET(fa_backward_args, stream, 1192);
FA_EXPECT_OFFSET(fa_backward_args, workspace, 1200);
FA_EXPECT_OFFSET(fa_backward_args, workspace_bytes, 1208);

static_assert(sizeof(fa_device_info) == 304, "fa_device_info size");
FA_EXPECT_OFFSET(fa_device_info, name, 0);
FA_EXPECT_OFFSET(fa_device_info, major, 256);
FA_EXPECT_OFFSET(fa_device_info, minor, 260);
FA_EXPECT_OFFSET(fa_device_info, multiprocessors, 264);
FA_EXPECT_OFFSET(fa_device_info, reserved, 268);
FA_EXPECT_OFFSET(fa_device_info, total_memory, 272);
FA_EXPECT_OFFSET(fa_device_info, free_memory, 280);
FA_EXPECT_OFFSET(fa_device_info, l2_cache_bytes, 288);
FA_EXPECT_OFFSET(fa_device_info, max_shared_per_block, 296);
FA_EXPECT_OFFSET(fa_device_info, clock_khz, 300);
