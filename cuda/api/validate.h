// validate.h: turns the ABI argument structs into fa::AttentionParams, after checking
// everything a backend relies on. Nothing is written and no kernel runs before these pass.
//
// Messages read "<argument>: <what was expected>, <what was given>", e.g.
//   "k: expected 4 dimensions [B, Hkv, Sk, D], got 3 (shape [2, 16, 64])".
//
// Nested batches on CUDA: when both max_seqlen_q and max_seqlen_k are > 0 they are trusted
// (the caller checked its host copy of cu_seqlens). Otherwise cu_seqlens are copied back to
// the host on args->stream, which waits for the work queued on that stream, then checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "api/request.h"
#include "common/params.h"
#include "flashattn.h"

namespace fa {

fa_status validate_forward(const fa_forward_args* args, AttentionParams* params);
fa_status validate_backward(const fa_backward_args* args, AttentionParams* params);

// Shared with kvcache_validate.cpp:
// abi_version == FA_ABI_VERSION and struct_size == expected_size, else FA_ERR_ABI_MISMATCH.
fa_status check_struct_header(uint32_t abi_version, uint32_t struct_size, size_t expected_size,
                              const char* type);
// Every tensor of `all` on the first one's device; on CUDA an existing ordinal and device
// memory of it (and a 16-byte aligned workspace of it when not 0); on the CPU no CUDA device
// memory (checked only where a CUDA device exists).
fa_status check_one_device(const std::vector<NamedTensor>& all, uint64_t workspace);

}  // namespace fa
