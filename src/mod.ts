/**
 * The public surface of flashattn, re-exported by the package's mod.ts.
 * @module
 */

export { ABI_VERSION } from "../ffi/structs.ts";
export {
  type EnvSource,
  findLibrary,
  type LibraryLocation,
  type LibraryLookup,
  type LibrarySource,
} from "../ffi/library.ts";
export { type ErrorCode, FlashAttentionError, type FlashAttentionErrorOptions } from "./errors.ts";
export {
  bfloat16BitsToFloat32,
  type DType,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  roundToDtype,
} from "./dtype.ts";
export { Device } from "./device.ts";
export { Tensor, type TensorData, type TensorOptions } from "./tensor.ts";
export { NestedBatch, type PackOptions } from "./nested.ts";
export { CudaEvent, Stream } from "./stream.ts";
export { timeCuda, type TimingOptions, type TimingResult } from "./timing.ts";
export {
  attention,
  attentionBackward,
  type AttentionOptions,
  type AttentionResult,
  type BackwardOptions,
  type BackwardResult,
  type DropoutOptions,
  type NestedAttentionResult,
  type NestedBackwardResult,
} from "./attention.ts";
export {
  type CacheDType,
  type CacheShapeOptions,
  type DenseCacheOptions,
  KVCache,
  type PagedCacheOptions,
} from "./kvcache.ts";
export {
  attentionWithKVCache,
  type KVCacheAttentionOptions,
  type KVCacheTensors,
  kvcacheWorkspaceSize,
  type RotaryOptions,
} from "./kvcache_attention.ts";
export { mergeAttention, type MergeOptions } from "./merge.ts";
export { CudaGraph } from "./graph.ts";
