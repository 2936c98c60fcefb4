/**
 * Tensor: a strided view of host or device storage. Views share refcounted storage;
 * device memory is freed when the last view is disposed (`using` does it at scope end).
 * @module
 */

import type { TensorDescriptor } from "../ffi/structs.ts";
import { Device } from "./device.ts";
import { type DType, dtypeBytes, dtypeCode, isDType } from "./dtype.ts";
import { asBytes, asWords, decode, encode, gather } from "./elements.ts";
import { disposedError, FlashAttentionError, formatShape, invalidArgument } from "./errors.ts";
import { checkShape, contiguousStrides, countElements, coveredSpan, isRowMajor } from "./shape.ts";
import { describeValue, optionsObject } from "./options.ts";
import { hostBytes, Storage } from "./storage.ts";

/** Host data accepted by {@link Tensor.fromArray}. */
export type TensorData = Float32Array | Float16Array | Uint16Array | Int32Array | number[];

/** Options of {@link Tensor.fromArray}. */
export interface TensorOptions {
  /** Element type; the default depends on the data (see {@link Tensor.fromArray}). */
  dtype?: DType;
  /** Where the tensor is created; default the host. */
  device?: Device;
}

function checkDevice(device: Device | undefined): Device {
  if (device === undefined) return Device.cpu();
  if (!(device instanceof Device)) throw invalidArgument("device", "expected a Device");
  return device;
}

// Engines convert anything array-like (even a string) to numbers, NaN where it is not one.
function checkData(data: unknown): void {
  if (Array.isArray(data)) {
    const bad = data.findIndex((value) => typeof value !== "number");
    if (bad < 0) return;
    throw invalidArgument(
      "data",
      `expected an array of numbers, element ${bad} is ${describeValue(data[bad])}`,
    );
  }
  // Any typed array of numbers converts exactly like a number[] (BigInt ones do not).
  const numeric = ArrayBuffer.isView(data) && !(data instanceof DataView) &&
    !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array);
  if (!numeric) {
    throw invalidArgument(
      "data",
      `expected a typed array or an array of numbers, got ${describeValue(data)}`,
    );
  }
}

function checkDtype(dtype: unknown): DType {
  if (!isDType(dtype)) {
    throw invalidArgument("dtype", `expected float16, bfloat16, float32 or int32, got ${dtype}`);
  }
  return dtype;
}

// Module-private access to a tensor's storage, bound inside the class body.
let storageOf: (tensor: Tensor, argument: string) => { storage: Storage; offset: number };
let allocate: (
  shape: readonly number[],
  dtype: DType,
  device: Device,
  zeroed: boolean,
  argument: string,
) => Tensor;
let makeView: (
  storage: Storage,
  offset: number,
  shape: readonly number[],
  strides: readonly number[],
  dtype: DType,
) => Tensor;

/**
 * An n-dimensional array on the host or a CUDA device. Strides are in elements; views
 * (permute, reshape, slice) share storage, which is released when the last tensor viewing
 * it is disposed.
 *
 * @example
 * ```ts
 * using q = Tensor.fromArray(new Float32Array(2 * 4 * 64 * 32), [2, 4, 64, 32], {
 *   dtype: "bfloat16",
 * });
 * using onGpu = q.to(Device.default());
 * console.log(onGpu.shape, onGpu.device.toString());
 * ```
 */
export class Tensor implements Disposable {
  /** Size of each dimension. */
  readonly shape: readonly number[];
  /** Distance between neighbours along each dimension, in elements. */
  readonly strides: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Where the data lives. */
  readonly device: Device;
  /** Number of elements (product of the shape). */
  readonly numel: number;
  readonly #storage: Storage;
  readonly #offset: number;
  #disposed = false;

  static {
    storageOf = (tensor, argument) => {
      if (tensor.#disposed) throw disposedError(argument);
      return { storage: tensor.#storage, offset: tensor.#offset };
    };
    allocate = (shape, dtype, device, zeroed, argument) =>
      Tensor.#allocate(shape, dtype, device, zeroed, argument);
    makeView = (storage, offset, shape, strides, dtype) => {
      storage.retain();
      return new Tensor(storage, offset, shape, strides, dtype);
    };
  }

  private constructor(
    storage: Storage,
    offset: number,
    shape: readonly number[],
    strides: readonly number[],
    dtype: DType,
  ) {
    this.#storage = storage;
    this.#offset = offset;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze([...strides]);
    this.dtype = dtype;
    this.device = storage.device;
    this.numel = countElements(shape);
  }

  /** Whether {@link Tensor.dispose} was called on this tensor. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Whether the elements are laid out row-major without gaps. */
  get isContiguous(): boolean {
    return isRowMajor(this.shape, this.strides);
  }

  /**
   * A tensor holding a copy of `data`, laid out row-major in `shape`.
   * - Float32Array or number[]: converted to `options.dtype` (default "float32").
   * - Float16Array: default "float16"; other dtypes convert the values.
   * - Uint16Array: raw 16-bit patterns; `options.dtype` must be "float16" or "bfloat16".
   * - Int32Array: default "int32"; other dtypes convert the values.
   */
  static fromArray(
    data: TensorData,
    shape: readonly number[],
    options: TensorOptions = {},
  ): Tensor {
    checkData(data);
    checkShape(shape);
    const { dtype: wanted, device: where } = optionsObject<TensorOptions>(options);
    const device = checkDevice(where);
    const count = countElements(shape);
    if (data.length !== count) {
      throw invalidArgument(
        "data",
        `expected ${count} values for shape ${formatShape(shape)}, got ${data.length}`,
      );
    }
    let dtype: DType;
    let bytes: Uint8Array;
    if (data instanceof Uint16Array) {
      if (wanted !== "float16" && wanted !== "bfloat16") {
        throw invalidArgument(
          "dtype",
          `raw Uint16Array data needs dtype float16 or bfloat16, got ${wanted}`,
        );
      }
      dtype = wanted;
      bytes = asBytes(data);
    } else if (data instanceof Float16Array && (wanted ?? "float16") === "float16") {
      dtype = "float16";
      bytes = asBytes(data);
    } else if (data instanceof Int32Array && (wanted ?? "int32") === "int32") {
      dtype = "int32";
      bytes = asBytes(data);
    } else {
      dtype = checkDtype(wanted ?? "float32");
      bytes = encode(data instanceof Float32Array ? data : Float32Array.from(data), dtype);
    }
    return Tensor.#fromBytes(bytes, shape, dtype, device, "shape");
  }

  // A contiguous tensor holding a copy of `bytes` (already encoded as `dtype`).
  static #fromBytes(
    bytes: Uint8Array,
    shape: readonly number[],
    dtype: DType,
    device: Device,
    argument: string,
  ): Tensor {
    const storage = Storage.allocate(device, bytes.byteLength, argument);
    try {
      storage.write(0, bytes);
    } catch (error) {
      storage.release();
      throw error;
    }
    return new Tensor(storage, 0, shape, contiguousStrides(shape), dtype);
  }

  /** A contiguous tensor with unspecified contents (host memory happens to be zeroed). */
  static empty(shape: readonly number[], dtype: DType, device?: Device): Tensor {
    return Tensor.#allocate(shape, dtype, device, false, "shape");
  }

  /** A contiguous tensor of zeros. */
  static zeros(shape: readonly number[], dtype: DType, device?: Device): Tensor {
    return Tensor.#allocate(shape, dtype, device, true, "shape");
  }

  // Failures to allocate name `argument`: what the caller was making the tensor for.
  static #allocate(
    shape: readonly number[],
    dtype: DType,
    device: Device | undefined,
    zeroed: boolean,
    argument: string,
  ): Tensor {
    checkShape(shape, argument);
    checkDtype(dtype);
    const bytes = countElements(shape) * dtypeBytes(dtype);
    const storage = Storage.allocate(checkDevice(device), bytes, argument);
    const tensor = new Tensor(storage, 0, shape, contiguousStrides(shape), dtype);
    if (zeroed && tensor.device.kind === "cuda") {
      try {
        storage.fillZero();
      } catch (error) {
        tensor.dispose();
        throw error;
      }
    }
    return tensor;
  }

  /** A contiguous tensor with every element `value` rounded to `dtype` (NaN allowed). */
  static full(shape: readonly number[], value: number, dtype: DType, device?: Device): Tensor {
    checkShape(shape);
    checkDtype(dtype);
    const elementBytes = dtypeBytes(dtype);
    const host = hostBytes(countElements(shape) * elementBytes, "shape");
    const pattern = asWords(encode(Float32Array.of(value), dtype), elementBytes)[0];
    asWords(host, elementBytes).fill(pattern);
    return Tensor.#fromBytes(host, shape, dtype, checkDevice(device), "shape");
  }

  /** A new contiguous copy on `device` (also when already there). */
  to(device: Device): Tensor {
    const { storage, offset } = storageOf(this, "tensor");
    const target = Tensor.#allocate(this.shape, this.dtype, checkDevice(device), false, "tensor");
    try {
      copyRegion(target.#storage, 0, this, storage, offset);
    } catch (error) {
      target.dispose();
      throw error;
    }
    return target;
  }

  /** The values as float32, in logical (row-major of `shape`) order, from any device. */
  toFloat32(): Float32Array {
    return decode(logicalBytes(this, "tensor"), this.dtype);
  }

  /** The raw 16-bit patterns in logical order (float16 and bfloat16 tensors only). */
  toBits(): Uint16Array {
    if (dtypeBytes(this.dtype) !== 2) {
      throw invalidArgument("tensor", `toBits needs a 16-bit dtype, got ${this.dtype}`);
    }
    const bytes = logicalBytes(this, "tensor");
    return new Uint16Array(bytes.slice().buffer);
  }

  /** A view with the dimensions reordered: dimension i of the view is `dims[i]` of this. */
  permute(dims: readonly number[]): Tensor {
    const { storage, offset } = storageOf(this, "tensor");
    const rank = this.shape.length;
    const sorted = [...dims].sort((a, b) => a - b);
    if (dims.length !== rank || !sorted.every((dim, i) => dim === i)) {
      throw invalidArgument(
        "dims",
        `expected a permutation of 0..${rank - 1}, got ${formatShape(dims)}`,
      );
    }
    return makeView(
      storage,
      offset,
      dims.map((dim) => this.shape[dim]),
      dims.map((dim) => this.strides[dim]),
      this.dtype,
    );
  }

  /** A view with another shape of the same size (one size may be -1); contiguous only. */
  reshape(shape: readonly number[]): Tensor {
    const { storage, offset } = storageOf(this, "tensor");
    const inferred = shape.indexOf(-1);
    const known = countElements(shape.filter((_, dim) => dim !== inferred));
    const resolved = inferred < 0
      ? [...shape]
      : shape.map((size, dim) => dim === inferred && known > 0 ? this.numel / known : size);
    checkShape(resolved);
    if (countElements(resolved) !== this.numel) {
      throw invalidArgument(
        "shape",
        `cannot reshape ${formatShape(this.shape)} to ${formatShape(shape)}`,
      );
    }
    if (!this.isContiguous) {
      throw invalidArgument("tensor", "reshape needs a contiguous tensor; call contiguous()");
    }
    return makeView(storage, offset, resolved, contiguousStrides(resolved), this.dtype);
  }

  /** A view of indices [start, end) along `dim` (negative `dim` counts from the end). */
  slice(dim: number, start: number, end: number): Tensor {
    const { storage, offset } = storageOf(this, "tensor");
    const rank = this.shape.length;
    const axis = dim < 0 ? dim + rank : dim;
    if (!Number.isInteger(axis) || axis < 0 || axis >= rank) {
      throw invalidArgument("dim", `expected a dimension of a rank-${rank} tensor, got ${dim}`);
    }
    const size = this.shape[axis];
    if (
      !Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start ||
      end > size
    ) {
      throw invalidArgument("slice", `expected 0 <= start <= end <= ${size}, got ${start}..${end}`);
    }
    const shape = [...this.shape];
    shape[axis] = end - start;
    return makeView(storage, offset + start * this.strides[axis], shape, this.strides, this.dtype);
  }

  /** This data laid out row-major: a view when it already is, else a copy. */
  contiguous(): Tensor {
    const { storage, offset } = storageOf(this, "tensor");
    if (!this.isContiguous) return this.to(this.device);
    return makeView(storage, offset, this.shape, contiguousStrides(this.shape), this.dtype);
  }

  /** Drops this tensor's reference to its storage (idempotent); later use throws "disposed". */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#storage.release();
  }

  /** Same as {@link Tensor.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** "Tensor(bfloat16 [2, 4, 128, 64] on cpu)". */
  toString(): string {
    const state = this.#disposed ? ", disposed" : "";
    return `Tensor(${this.dtype} ${formatShape(this.shape)} on ${this.device}${state})`;
  }
}

/** The bytes of `tensor` in logical order, on the host (a view where no copy is needed). */
function logicalBytes(tensor: Tensor, argument: string): Uint8Array {
  const { storage, offset } = storageOf(tensor, argument);
  const elementBytes = dtypeBytes(tensor.dtype);
  const byteLength = tensor.numel * elementBytes;
  if (tensor.isContiguous) {
    const start = offset * elementBytes;
    if (storage.device.kind === "cpu") {
      return storage.hostBytes().subarray(start, start + byteLength);
    }
    const bytes = hostBytes(byteLength, argument);
    storage.read(start, bytes);
    return bytes;
  }
  // Strided: read the span the view covers (one download on a GPU), then gather.
  const span = coveredSpan(tensor.shape, tensor.strides);
  let covered: Uint8Array;
  if (storage.device.kind === "cpu") {
    covered = storage.hostBytes().subarray(offset * elementBytes, (offset + span) * elementBytes);
  } else {
    covered = hostBytes(span * elementBytes, argument);
    storage.read(offset * elementBytes, covered);
  }
  const out = hostBytes(byteLength, argument);
  gather(
    asWords(covered, elementBytes),
    0,
    tensor.shape,
    tensor.strides,
    asWords(out, elementBytes),
  );
  return out;
}

/** Copies all of `src` (any layout, any device) to byte `byteOffset` of `target`. */
function copyRegion(
  target: Storage,
  byteOffset: number,
  src: Tensor,
  srcStorage: Storage,
  srcOffset: number,
): void {
  const elementBytes = dtypeBytes(src.dtype);
  if (src.isContiguous) {
    target.copyFrom(byteOffset, srcStorage, srcOffset * elementBytes, src.numel * elementBytes);
  } else {
    target.write(byteOffset, logicalBytes(src, "tensor"));
  }
}

/**
 * Copies `src` (any layout, any device, same dtype) into the contiguous `target` starting at
 * element `elementOffset`; used to pack sequences. Not part of the public API.
 */
export function copyInto(target: Tensor, elementOffset: number, src: Tensor): void {
  const into = storageOf(target, "target");
  const from = storageOf(src, "tensor");
  if (src.dtype !== target.dtype) {
    throw invalidArgument("tensor", `expected dtype ${target.dtype}, got ${src.dtype}`);
  }
  if (!target.isContiguous || elementOffset + src.numel > target.numel) {
    throw new FlashAttentionError("internal", "copyInto: target too small or not contiguous");
  }
  const elementBytes = dtypeBytes(target.dtype);
  copyRegion(
    into.storage,
    (into.offset + elementOffset) * elementBytes,
    src,
    from.storage,
    from.offset,
  );
}

/**
 * Sets every element of `tensor` (any layout, any device) to zero, touching only the bytes
 * of its elements. Throws "disposed" naming `argument`. Not part of the public API.
 */
export function fillZeros(tensor: Tensor, argument: string): void {
  const { storage, offset } = storageOf(tensor, argument);
  if (tensor.numel === 0) return;
  const elementBytes = dtypeBytes(tensor.dtype);
  if (tensor.isContiguous) {
    storage.write(offset * elementBytes, new Uint8Array(tensor.numel * elementBytes));
    return;
  }
  // One write per innermost row (per element where the last dim is strided).
  const { shape, strides } = tensor;
  const rank = shape.length;
  const inner = shape[rank - 1], innerStride = strides[rank - 1];
  const run = innerStride === 1 ? inner : 1;
  const zeros = new Uint8Array(run * elementBytes);
  const index = new Array<number>(rank - 1).fill(0);
  let position = offset;
  for (let rows = tensor.numel / inner; rows > 0; rows--) {
    for (let i = 0; i < inner; i += run) {
      storage.write((position + i * innerStride) * elementBytes, zeros);
    }
    for (let dim = rank - 2; dim >= 0; dim--) {
      position += strides[dim];
      if (++index[dim] < shape[dim]) break;
      position -= strides[dim] * shape[dim];
      index[dim] = 0;
    }
  }
}

/**
 * The ABI view of a tensor: address of its first element, dtype, device, shape and strides.
 * Throws "disposed" naming `argument`. Not part of the public API.
 */
export function describeTensor(tensor: Tensor, argument: string): TensorDescriptor {
  const { storage, offset } = storageOf(tensor, argument);
  return {
    data: storage.address() + BigInt(offset * dtypeBytes(tensor.dtype)),
    dtype: dtypeCode(tensor.dtype),
    device: tensor.device.index,
    shape: tensor.shape,
    strides: tensor.strides,
  };
}

/** Throws "disposed" naming `argument` if the tensor was disposed. Not public. */
export function checkUsable(tensor: Tensor, argument: string): void {
  if (!(tensor instanceof Tensor)) throw invalidArgument(argument, "expected a Tensor");
  storageOf(tensor, argument);
}

/**
 * A new contiguous tensor for an output or a cache, zeroed when asked; a failed allocation
 * names `argument` ("out", "capacity", ...). Not public.
 */
export function allocateTensor(
  shape: readonly number[],
  dtype: DType,
  device: Device,
  argument: string,
  zeroed = false,
): Tensor {
  return allocate(shape, dtype, device, zeroed, argument);
}

/** Another reference to the same view (dispose each separately). Not public. */
export function shareTensor(tensor: Tensor, argument = "tensor"): Tensor {
  const { storage, offset } = storageOf(tensor, argument);
  return makeView(storage, offset, tensor.shape, tensor.strides, tensor.dtype);
}
