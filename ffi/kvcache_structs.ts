/**
 * Packing of the ABI 3 structs `fa_kvcache_args` and `fa_merge_args` (and the host array of
 * `fa_tensor` parts a merge reads), at the offsets of the one field table of structs.ts.
 * @module
 */

import {
  ABI_LAYOUT,
  ABI_VERSION,
  KVCACHE_ARGS_BYTES,
  MERGE_ARGS_BYTES,
  packStruct,
  TENSOR_BYTES,
  type TensorDescriptor,
  writeTensor,
} from "./structs.ts";

/** The fields of `fa_kvcache_args`; absent optional tensors are `undefined` (data 0). */
export interface KvCacheArgs {
  /** New query rows, [B, Hq, Snew, D]. */
  readonly q: TensorDescriptor;
  /** Keys of the cache: dense [B, capacity, Hkv, D] or paged [num_pages, page_size, Hkv, D]. */
  readonly kCache: TensorDescriptor;
  /** Values of the cache, like kCache. */
  readonly vCache: TensorDescriptor;
  /** int32 [B]: rows of each sequence already in the cache. */
  readonly cacheSeqlens: TensorDescriptor;
  /** Paged caches: int32 [B, max_pages_per_seq] page indices. */
  readonly blockTable?: TensorDescriptor;
  /** Rows appended to the cache in the call, [B, Hkv, Snew, D]. */
  readonly kNew?: TensorDescriptor;
  /** Values appended with kNew, like it. */
  readonly vNew?: TensorDescriptor;
  /** Rotary cosines, float32 [rotary_rows, rotary_dim / 2]. */
  readonly rotaryCos?: TensorDescriptor;
  /** Rotary sines, like rotaryCos. */
  readonly rotarySin?: TensorDescriptor;
  /** Output, like q. */
  readonly out: TensorDescriptor;
  /** Log-sum-exp, float32 [B, Hq, Snew]. */
  readonly lse?: TensorDescriptor;
  /** Attention sinks: float32 [Hq]. */
  readonly sinks?: TensorDescriptor;
  /** ALiBi slopes: float32 [Hq] or [B, Hq]. */
  readonly alibiSlopes?: TensorDescriptor;
  /** Multiplier of q·k. */
  readonly scale: number;
  /** Logit softcap, > 0; 0 = off. */
  readonly softcap: number;
  /** Keys before the diagonal a row sees; -1 = unbounded. */
  readonly windowLeft: number;
  /** Keys after the diagonal a row sees; -1 = unbounded, causal: 0. */
  readonly windowRight: number;
  /** `FLAG_CAUSAL`, `FLAG_ROTARY_INTERLEAVED`, `FLAG_ADVANCE_SEQLENS` bits. */
  readonly flags: number;
  /** 0 = heuristic, 1 = no split, n > 1 = n parts. */
  readonly numSplits: number;
  /** 0 = the library reads and checks the lengths; > 0 = a trusted bound (CUDA). */
  readonly maxSeqlenK: number;
  /** `cudaStream_t` (0 = legacy default stream). */
  readonly stream: bigint;
  /** Device scratch for the split parts (0 = the library's pool). */
  readonly workspace: bigint;
  /** Size of `workspace` in bytes. */
  readonly workspaceBytes: bigint;
}

/** Packs `fa_kvcache_args`. */
export function packKvcacheArgs(args: KvCacheArgs): Uint8Array<ArrayBuffer> {
  return packStruct(ABI_LAYOUT.fa_kvcache_args, {
    abi_version: ABI_VERSION,
    struct_size: KVCACHE_ARGS_BYTES,
    q: args.q,
    k_cache: args.kCache,
    v_cache: args.vCache,
    cache_seqlens: args.cacheSeqlens,
    block_table: args.blockTable,
    k_new: args.kNew,
    v_new: args.vNew,
    rotary_cos: args.rotaryCos,
    rotary_sin: args.rotarySin,
    out: args.out,
    lse: args.lse,
    sinks: args.sinks,
    alibi_slopes: args.alibiSlopes,
    scale: args.scale,
    softcap: args.softcap,
    window_left: args.windowLeft,
    window_right: args.windowRight,
    flags: args.flags,
    num_splits: args.numSplits,
    max_seqlen_k: args.maxSeqlenK,
    stream: args.stream,
    workspace: args.workspace,
    workspace_bytes: args.workspaceBytes,
  });
}

/** One partial result of a merge: out and its float32 log-sum-exp. */
export interface MergePart {
  /** [B, H, S, D] or nested [T, H, D]; float16, bfloat16 or float32. */
  readonly out: TensorDescriptor;
  /** [B, H, S] or nested [T, H], float32. */
  readonly lse: TensorDescriptor;
}

/** The host array `fa_merge_args.parts` points to: out_0, lse_0, out_1, lse_1, ... */
export function packMergeParts(parts: readonly MergePart[]): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(Math.max(1, 2 * parts.length) * TENSOR_BYTES);
  const view = new DataView(bytes.buffer);
  parts.forEach((part, i) => {
    writeTensor(view, 2 * i * TENSOR_BYTES, part.out);
    writeTensor(view, (2 * i + 1) * TENSOR_BYTES, part.lse);
  });
  return bytes;
}

/** The fields of `fa_merge_args`. */
export interface MergeArgs {
  /** Host address of the packed parts ({@link packMergeParts}). */
  readonly parts: bigint;
  /** How many (out, lse) pairs `parts` holds. */
  readonly numParts: number;
  /** The merged output, like a part (any of the three dtypes). */
  readonly out: TensorDescriptor;
  /** The merged log-sum-exp, like a part's. */
  readonly lse?: TensorDescriptor;
  /** `cudaStream_t` (0 = legacy default stream). */
  readonly stream: bigint;
}

/** Packs `fa_merge_args`. */
export function packMergeArgs(args: MergeArgs): Uint8Array<ArrayBuffer> {
  return packStruct(ABI_LAYOUT.fa_merge_args, {
    abi_version: ABI_VERSION,
    struct_size: MERGE_ARGS_BYTES,
    parts: args.parts,
    num_parts: args.numParts,
    out: args.out,
    lse: args.lse,
    stream: args.stream,
  });
}
