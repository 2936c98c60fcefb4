/**
 * Packing of the ABI structs of cuda/include/flashattn.h into bytes, at the offsets of one
 * field table ({@link ABI_LAYOUT}) that a test checks against the library's own
 * `fa_abi_layout()`. Little-endian, like every platform the library builds for.
 * @module
 */

/** The ABI version this package was written for (`FA_ABI_VERSION`). */
export const ABI_VERSION: number = 3;

/** Maximum tensor rank crossing the ABI (`FA_MAX_DIMS`). */
export const MAX_DIMS: number = 4;

/** Device ordinal meaning host memory and the CPU backend (`FA_DEVICE_CPU`). */
export const DEVICE_CPU: number = -1;

/** `FA_FLAG_CAUSAL`: bottom-right aligned causal mask. */
export const FLAG_CAUSAL: number = 1;
/** `FA_FLAG_DETERMINISTIC`: backward without floating-point atomics. */
export const FLAG_DETERMINISTIC: number = 2;
/** `FA_FLAG_ROTARY_INTERLEAVED`: rotary pairs (2m, 2m + 1) instead of (m, m + dim / 2). */
export const FLAG_ROTARY_INTERLEAVED: number = 4;
/** `FA_FLAG_ADVANCE_SEQLENS`: the KV-cache call ends by adding Snew to each cache length. */
export const FLAG_ADVANCE_SEQLENS: number = 8;

/** How a field of an ABI struct is stored; each kind has C's natural size and alignment. */
export type FieldKind = "u32" | "i32" | "f32" | "u64" | "i64x4" | "tensor" | "char256";

// Sizes of the kinds; a tensor's is the size of fa_tensor's own layout (below).
const KIND_SIZE: Readonly<Record<Exclude<FieldKind, "tensor">, number>> = {
  u32: 4,
  i32: 4,
  f32: 4,
  u64: 8,
  i64x4: 8 * MAX_DIMS,
  char256: 256,
};
const KIND_ALIGN: Readonly<Record<FieldKind, number>> = {
  u32: 4,
  i32: 4,
  f32: 4,
  u64: 8,
  i64x4: 8,
  tensor: 8, // its widest field, data (u64)
  char256: 1,
};

/** One field of an ABI struct: where it lives and how it is stored. */
export interface FieldLayout {
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Bytes the field occupies. */
  readonly size: number;
  /** How it is stored. */
  readonly kind: FieldKind;
}

/** One ABI struct: its size and its fields by their C names, in declaration order. */
export interface StructLayout {
  /** `sizeof` the struct. */
  readonly size: number;
  /** Fields by C name. */
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

/**
 * Lays out C fields in declaration order with natural alignment, as the C compiler does for
 * flashattn.h's structs (which have no implicit padding but at their ends, to 8 bytes).
 */
function layOut(
  fields: readonly (readonly [string, FieldKind])[],
  tensorBytes = 0,
): StructLayout {
  const out: Record<string, FieldLayout> = {};
  let offset = 0, align = 1;
  for (const [name, kind] of fields) {
    const fieldAlign = KIND_ALIGN[kind];
    const size = kind === "tensor" ? tensorBytes : KIND_SIZE[kind];
    if (size === 0) throw new Error(`ABI layout: ${name} needs the size of fa_tensor`);
    offset = Math.ceil(offset / fieldAlign) * fieldAlign;
    out[name] = { offset, size, kind };
    offset += size;
    align = Math.max(align, fieldAlign);
  }
  return { size: Math.ceil(offset / align) * align, fields: out };
}

const TENSORS = (names: string): [string, FieldKind][] =>
  names.split(" ").map((name) => [name, "tensor"]);

// The scalars after the tensors, shared by both argument structs.
const SCALARS: [string, FieldKind][] = [
  ["scale", "f32"],
  ["dropout_p", "f32"],
  ["seed", "u64"],
  ["offset", "u64"],
  ["flags", "u32"],
  ["max_seqlen_q", "i32"],
  ["max_seqlen_k", "i32"],
  ["reserved", "i32"],
  ["stream", "u64"],
];
// ABI 2: the score features, appended to both argument structs.
const SCORE_FEATURES: [string, FieldKind][] = [
  ["sinks", "tensor"],
  ["alibi_slopes", "tensor"],
  ["window_left", "i32"],
  ["window_right", "i32"],
  ["softcap", "f32"],
  ["reserved2", "i32"],
];

// fa_tensor first: the argument structs embed it.
const TENSOR_LAYOUT: StructLayout = layOut([
  ["data", "u64"],
  ["dtype", "i32"],
  ["device", "i32"],
  ["ndim", "i32"],
  ["reserved", "i32"],
  ["shape", "i64x4"],
  ["stride", "i64x4"],
]);

/**
 * The one field table of the ABI structs of cuda/include/flashattn.h, by C struct name. The
 * packing below reads every offset from here, and a test checks it field by field against
 * `fa_abi_layout()`, the table the library generates from offsetof/sizeof.
 */
export const ABI_LAYOUT: Readonly<Record<string, StructLayout>> = {
  fa_tensor: TENSOR_LAYOUT,
  fa_forward_args: layOut([
    ["abi_version", "u32"],
    ["struct_size", "u32"],
    ...TENSORS("q k v out lse bias cu_seqlens_q cu_seqlens_k"),
    ...SCALARS,
    ...SCORE_FEATURES,
  ], TENSOR_LAYOUT.size),
  fa_backward_args: layOut([
    ["abi_version", "u32"],
    ["struct_size", "u32"],
    ...TENSORS("q k v out dout lse dq dk dv bias dbias cu_seqlens_q cu_seqlens_k"),
    ...SCALARS,
    ["workspace", "u64"],
    ["workspace_bytes", "u64"],
    ...SCORE_FEATURES,
    ["dsinks", "tensor"],
  ], TENSOR_LAYOUT.size),
  // ABI 3: attention over a KV cache, and the merge of partial results.
  fa_kvcache_args: layOut([
    ["abi_version", "u32"],
    ["struct_size", "u32"],
    ...TENSORS("q k_cache v_cache cache_seqlens block_table k_new v_new"),
    ...TENSORS("rotary_cos rotary_sin out lse sinks alibi_slopes"),
    ["scale", "f32"],
    ["softcap", "f32"],
    ["window_left", "i32"],
    ["window_right", "i32"],
    ["flags", "u32"],
    ["num_splits", "i32"],
    ["max_seqlen_k", "i32"],
    ["reserved", "i32"],
    ["stream", "u64"],
    ["workspace", "u64"],
    ["workspace_bytes", "u64"],
  ], TENSOR_LAYOUT.size),
  fa_merge_args: layOut([
    ["abi_version", "u32"],
    ["struct_size", "u32"],
    ["parts", "u64"],
    ["num_parts", "i32"],
    ["reserved", "i32"],
    ...TENSORS("out lse"),
    ["stream", "u64"],
  ], TENSOR_LAYOUT.size),
  fa_device_info: layOut([
    ["name", "char256"],
    ["major", "i32"],
    ["minor", "i32"],
    ["multiprocessors", "i32"],
    ["reserved", "i32"],
    ["total_memory", "u64"],
    ["free_memory", "u64"],
    ["l2_cache_bytes", "u64"],
    ["max_shared_per_block", "i32"],
    ["clock_khz", "i32"],
  ]),
};

/**
 * {@link ABI_LAYOUT} in the text form of `fa_abi_layout()` ("struct NAME SIZE", then
 * "field NAME OFFSET SIZE" per field, one per line), so the loader can compare the two.
 */
export function formatAbiLayout(
  layout: Readonly<Record<string, StructLayout>> = ABI_LAYOUT,
): string {
  return Object.entries(layout).map(([name, struct]) =>
    `struct ${name} ${struct.size}\n` +
    Object.entries(struct.fields).map(([field, f]) => `field ${field} ${f.offset} ${f.size}\n`)
      .join("")
  ).join("");
}

/** `sizeof(fa_tensor)`. */
export const TENSOR_BYTES: number = ABI_LAYOUT.fa_tensor.size;
/** `sizeof(fa_forward_args)`. */
export const FORWARD_ARGS_BYTES: number = ABI_LAYOUT.fa_forward_args.size;
/** `sizeof(fa_backward_args)`. */
export const BACKWARD_ARGS_BYTES: number = ABI_LAYOUT.fa_backward_args.size;
/** `sizeof(fa_kvcache_args)`. */
export const KVCACHE_ARGS_BYTES: number = ABI_LAYOUT.fa_kvcache_args.size;
/** `sizeof(fa_merge_args)`. */
export const MERGE_ARGS_BYTES: number = ABI_LAYOUT.fa_merge_args.size;
/** `sizeof(fa_device_info)`. */
export const DEVICE_INFO_BYTES: number = ABI_LAYOUT.fa_device_info.size;

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
  /** Attention sinks: float32 [Hq], one logit per query head. */
  readonly sinks?: TensorDescriptor;
  /** ALiBi slopes: float32 [Hq] or [B, Hq]. */
  readonly alibiSlopes?: TensorDescriptor;
  /** Keys before the diagonal a row sees; -1 (the default) = unbounded. */
  readonly windowLeft?: number;
  /** Keys after the diagonal a row sees; -1 (the default) = unbounded, causal: 0. */
  readonly windowRight?: number;
  /** Logit softcap, > 0; 0 (the default) = off. */
  readonly softcap?: number;
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
  /** Gradient of the sinks, float32 [Hq]; required when `sinks` is given. */
  readonly dsinks?: TensorDescriptor;
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

/** A field's value for {@link packStruct}: a number, a 64-bit integer or a tensor. */
export type FieldValue = number | bigint | TensorDescriptor | undefined;

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
  const field = ABI_LAYOUT.fa_tensor.fields;
  view.setBigUint64(offset + field.data.offset, tensor.data, true);
  view.setInt32(offset + field.dtype.offset, tensor.dtype, true);
  view.setInt32(offset + field.device.offset, tensor.device, true);
  view.setInt32(offset + field.ndim.offset, rank, true);
  view.setInt32(offset + field.reserved.offset, 0, true);
  for (let dim = 0; dim < rank; dim++) {
    view.setBigInt64(offset + field.shape.offset + 8 * dim, BigInt(tensor.shape[dim]), true);
    view.setBigInt64(offset + field.stride.offset + 8 * dim, BigInt(tensor.strides[dim]), true);
  }
}

function writeField(view: DataView, field: FieldLayout, name: string, value: FieldValue): void {
  if (value === undefined) return; // zero: an absent tensor, a reserved word
  const kind = field.kind;
  if (kind === "tensor") {
    if (typeof value !== "object") throw new TypeError(`${name}: expected a tensor`);
    writeTensor(view, field.offset, value);
  } else if (kind === "u64") {
    view.setBigUint64(field.offset, BigInt(value as number | bigint), true);
  } else if (kind === "u32" || kind === "i32" || kind === "f32") {
    if (typeof value !== "number") throw new TypeError(`${name}: expected a number`);
    if (kind === "u32") view.setUint32(field.offset, value, true);
    else if (kind === "i32") view.setInt32(field.offset, value, true);
    else view.setFloat32(field.offset, value, true);
  } else {
    throw new TypeError(`${name}: ${kind} fields are not packed`);
  }
}

/**
 * Packs a struct of {@link ABI_LAYOUT} from values by C field name; fields left out are 0.
 * Throws on a name the struct does not have, so a renamed field cannot be dropped silently.
 */
export function packStruct(
  struct: StructLayout,
  values: Readonly<Record<string, FieldValue>>,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(struct.size);
  const view = new DataView(bytes.buffer);
  for (const [name, value] of Object.entries(values)) {
    const field = struct.fields[name];
    if (field === undefined) throw new RangeError(`ABI struct has no field ${name}`);
    writeField(view, field, name, value);
  }
  return bytes;
}

// The fields both argument structs share, by C name.
function sharedValues(args: ForwardArgs, structBytes: number): Record<string, FieldValue> {
  return {
    abi_version: ABI_VERSION,
    struct_size: structBytes,
    q: args.q,
    k: args.k,
    v: args.v,
    out: args.out,
    lse: args.lse,
    bias: args.bias,
    cu_seqlens_q: args.cuSeqlensQ,
    cu_seqlens_k: args.cuSeqlensK,
    scale: args.scale,
    dropout_p: args.dropoutP,
    seed: args.seed,
    offset: args.offset,
    flags: args.flags,
    max_seqlen_q: args.maxSeqlenQ,
    max_seqlen_k: args.maxSeqlenK,
    stream: args.stream,
    sinks: args.sinks,
    alibi_slopes: args.alibiSlopes,
    window_left: args.windowLeft ?? -1,
    window_right: args.windowRight ?? -1,
    softcap: args.softcap ?? 0,
  };
}

/** Packs `fa_forward_args`. */
export function packForwardArgs(args: ForwardArgs): Uint8Array<ArrayBuffer> {
  return packStruct(ABI_LAYOUT.fa_forward_args, sharedValues(args, FORWARD_ARGS_BYTES));
}

/** Packs `fa_backward_args`. */
export function packBackwardArgs(args: BackwardArgs): Uint8Array<ArrayBuffer> {
  return packStruct(ABI_LAYOUT.fa_backward_args, {
    ...sharedValues(args, BACKWARD_ARGS_BYTES),
    dout: args.dout,
    dq: args.dq,
    dk: args.dk,
    dv: args.dv,
    dbias: args.dbias,
    workspace: args.workspace,
    workspace_bytes: args.workspaceBytes,
    dsinks: args.dsinks,
  });
}

/** Decodes `fa_device_info` as filled by `fa_device_info_get`. */
export function unpackDeviceInfo(bytes: Uint8Array): DeviceInfo {
  if (bytes.byteLength < DEVICE_INFO_BYTES) {
    throw new RangeError(`fa_device_info: need ${DEVICE_INFO_BYTES} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, DEVICE_INFO_BYTES);
  const field = ABI_LAYOUT.fa_device_info.fields;
  const nameBytes = bytes.subarray(field.name.offset, field.name.offset + field.name.size);
  const nul = nameBytes.indexOf(0);
  const i32 = (name: string) => view.getInt32(field[name].offset, true);
  const u64 = (name: string) => Number(view.getBigUint64(field[name].offset, true));
  return {
    name: new TextDecoder().decode(nameBytes.subarray(0, nul < 0 ? nameBytes.length : nul)),
    major: i32("major"),
    minor: i32("minor"),
    multiprocessors: i32("multiprocessors"),
    totalMemory: u64("total_memory"),
    freeMemory: u64("free_memory"),
    l2CacheBytes: u64("l2_cache_bytes"),
    maxSharedPerBlock: i32("max_shared_per_block"),
    clockKhz: i32("clock_khz"),
  };
}
