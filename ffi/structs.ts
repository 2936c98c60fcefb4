/**
 * Packing of the ABI structs of cuda/include/flashattn.h into bytes, at the offsets the
 * header documents (and the library checks with static_assert). Little-endian, like every
 * platform the library builds for.
 * @module
 */

/** The ABI version this package was written for (`FA_ABI_VERSION`). */
export const ABI_VERSION: number = 1;

/** Maximum tensor rank crossing the ABI (`FA_MAX_DIMS`). */
export const MAX_DIMS: number = 4;

/** Device ordinal meaning host memory and the CPU backend (`FA_DEVICE_CPU`). */
export const DEVICE_CPU: number = -1;

/** `FA_FLAG_CAUSAL`: bottom-right aligned causal mask. */
export const FLAG_CAUSAL: number = 1;
/** `FA_FLAG_DETERMINISTIC`: backward without floating-point atomics. */
export const FLAG_DETERMINISTIC: number = 2;

/** `sizeof(fa_tensor)`. */
export const TENSOR_BYTES: number = 88;
/** `sizeof(fa_forward_args)`. */
export const FORWARD_ARGS_BYTES: number = 760;
/** `sizeof(fa_backward_args)`. */
export const BACKWARD_ARGS_BYTES: number = 1216;
/** `sizeof(fa_device_info)`. */
export const DEVICE_INFO_BYTES: number = 304;

/** A strided view as the ABI sees it (`fa_tensor`); strides in elements. */
export interface TensorDescriptor {
  /** Address of element [0, 0, ...], host or device. */
  readonly data: bigint;
  /** `fa_dtype` value. */
  readonly dtype: number;
  /** CUDA ordinal or {@link DEVICE_CPU}. */
  readonly device: number;
  /** Size of each dimension (rank 1..4). */
  readonly shape: readonly number[];
  /** Distance between neighbours of each dimension, in elements (0 = broadcast). */
  readonly strides: readonly number[];
}

/** The fields of `fa_forward_args`; absent optional tensors are `undefined` (data 0). */
export interface ForwardArgs {
  /** Queries, [B, Hq, Sq, D] or nested [totalQ, Hq, D]. */
  readonly q: TensorDescriptor;
  /** Keys, [B, Hkv, Sk, D] or nested [totalK, Hkv, D]. */
  readonly k: TensorDescriptor;
  /** Values, like k. */
  readonly v: TensorDescriptor;
  /** Output, like q. */
  readonly out: TensorDescriptor;
  /** Log-sum-exp, float32 [B, Hq, Sq] or nested [totalQ, Hq]. */
  readonly lse?: TensorDescriptor;
  /** Additive bias viewed at [B, Hq, Sq, Sk], stride 0 on broadcast dims. */
  readonly bias?: TensorDescriptor;
  /** Nested batches: int32 prefix sums of the query lengths. */
  readonly cuSeqlensQ?: TensorDescriptor;
  /** Nested batches: int32 prefix sums of the key lengths. */
  readonly cuSeqlensK?: TensorDescriptor;
  /** Multiplier of q·k. */
  readonly scale: number;
  /** Dropout probability in [0, 1). */
  readonly dropoutP: number;
  /** Philox key. */
  readonly seed: bigint;
  /** Philox counter word 3. */
  readonly offset: bigint;
  /** `FLAG_*` bits. */
  readonly flags: number;
  /** Nested batches: longest query sequence (0 = library computes it). */
  readonly maxSeqlenQ: number;
  /** Nested batches: longest key sequence (0 = library computes it). */
  readonly maxSeqlenK: number;
  /** `cudaStream_t` (0 = legacy default stream). */
  readonly stream: bigint;
}

/** The fields of `fa_backward_args`. */
export interface BackwardArgs extends ForwardArgs {
  /** Gradient of the output, like q. */
  readonly dout: TensorDescriptor;
  /** The forward's log-sum-exp (required here). */
  readonly lse: TensorDescriptor;
  /** Gradient of q, like q. */
  readonly dq: TensorDescriptor;
  /** Gradient of k, like k. */
  readonly dk: TensorDescriptor;
  /** Gradient of v, like v. */
  readonly dv: TensorDescriptor;
  /** Gradient of the bias at [B, Hq, Sq, Sk]; stride-0 dims are summed over. */
  readonly dbias?: TensorDescriptor;
  /** Device scratch (0 = library allocates). */
  readonly workspace: bigint;
  /** Size of `workspace` in bytes. */
  readonly workspaceBytes: bigint;
}

/** `fa_device_info`, decoded. */
export interface DeviceInfo {
  /** GPU name. */
  readonly name: string;
  /** Compute capability, major. */
  readonly major: number;
  /** Compute capability, minor. */
  readonly minor: number;
  /** Streaming multiprocessors. */
  readonly multiprocessors: number;
  /** Device memory in bytes. */
  readonly totalMemory: number;
  /** Free device memory in bytes at the time of the call. */
  readonly freeMemory: number;
  /** L2 cache size in bytes. */
  readonly l2CacheBytes: number;
  /** Opt-in maximum shared memory per block, bytes. */
  readonly maxSharedPerBlock: number;
  /** Core clock in kHz. */
  readonly clockKhz: number;
}

/** Writes one `fa_tensor` at `offset`; `undefined` leaves the all-zero "absent" tensor. */
export function writeTensor(
  view: DataView,
  offset: number,
  tensor: TensorDescriptor | undefined,
): void {
  if (tensor === undefined) return;
  const rank = tensor.shape.length;
  if (rank < 1 || rank > MAX_DIMS || tensor.strides.length !== rank) {
    throw new RangeError(`fa_tensor: rank must be 1..${MAX_DIMS}, got shape [${tensor.shape}]`);
  }
  view.setBigUint64(offset + 0, tensor.data, true);
  view.setInt32(offset + 8, tensor.dtype, true);
  view.setInt32(offset + 12, tensor.device, true);
  view.setInt32(offset + 16, rank, true);
  view.setInt32(offset + 20, 0, true);
  for (let dim = 0; dim < rank; dim++) {
    view.setBigInt64(offset + 24 + 8 * dim, BigInt(tensor.shape[dim]), true);
    view.setBigInt64(offset + 56 + 8 * dim, BigInt(tensor.strides[dim]), true);
  }
}

// Offsets of the scalar tail, shared by the forward and backward structs: the backward
// struct has the same fields after its tensors, shifted by `base`.
function writeScalars(view: DataView, base: number, args: ForwardArgs): void {
  view.setFloat32(base + 0, args.scale, true);
  view.setFloat32(base + 4, args.dropoutP, true);
  view.setBigUint64(base + 8, args.seed, true);
  view.setBigUint64(base + 16, args.offset, true);
  view.setUint32(base + 24, args.flags, true);
  view.setInt32(base + 28, args.maxSeqlenQ, true);
  view.setInt32(base + 32, args.maxSeqlenK, true);
  view.setInt32(base + 36, 0, true);
  view.setBigUint64(base + 40, args.stream, true);
}

/** Packs `fa_forward_args` (760 bytes). */
export function packForwardArgs(args: ForwardArgs): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(FORWARD_ARGS_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, ABI_VERSION, true);
  view.setUint32(4, FORWARD_ARGS_BYTES, true);
  writeTensor(view, 8, args.q);
  writeTensor(view, 96, args.k);
  writeTensor(view, 184, args.v);
  writeTensor(view, 272, args.out);
  writeTensor(view, 360, args.lse);
  writeTensor(view, 448, args.bias);
  writeTensor(view, 536, args.cuSeqlensQ);
  writeTensor(view, 624, args.cuSeqlensK);
  writeScalars(view, 712, args);
  return bytes;
}

/** Packs `fa_backward_args` (1216 bytes). */
export function packBackwardArgs(args: BackwardArgs): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(BACKWARD_ARGS_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, ABI_VERSION, true);
  view.setUint32(4, BACKWARD_ARGS_BYTES, true);
  writeTensor(view, 8, args.q);
  writeTensor(view, 96, args.k);
  writeTensor(view, 184, args.v);
  writeTensor(view, 272, args.out);
  writeTensor(view, 360, args.dout);
  writeTensor(view, 448, args.lse);
  writeTensor(view, 536, args.dq);
  writeTensor(view, 624, args.dk);
  writeTensor(view, 712, args.dv);
  writeTensor(view, 800, args.bias);
  writeTensor(view, 888, args.dbias);
  writeTensor(view, 976, args.cuSeqlensQ);
  writeTensor(view, 1064, args.cuSeqlensK);
  writeScalars(view, 1152, args);
  view.setBigUint64(1200, args.workspace, true);
  view.setBigUint64(1208, args.workspaceBytes, true);
  return bytes;
}

/** Decodes `fa_device_info` (304 bytes) as filled by `fa_device_info_get`. */
export function unpackDeviceInfo(bytes: Uint8Array): DeviceInfo {
  if (bytes.byteLength < DEVICE_INFO_BYTES) {
    throw new RangeError(`fa_device_info: need ${DEVICE_INFO_BYTES} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, DEVICE_INFO_BYTES);
  const nameBytes = bytes.subarray(0, 256);
  const nul = nameBytes.indexOf(0);
  return {
    name: new TextDecoder().decode(nameBytes.subarray(0, nul < 0 ? 256 : nul)),
    major: view.getInt32(256, true),
    minor: view.getInt32(260, true),
    multiprocessors: view.getInt32(264, true),
    totalMemory: Number(view.getBigUint64(272, true)),
    freeMemory: Number(view.getBigUint64(280, true)),
    l2CacheBytes: Number(view.getBigUint64(288, true)),
    maxSharedPerBlock: view.getInt32(296, true),
    clockKhz: view.getInt32(300, true),
  };
}
