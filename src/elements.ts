/**
 * Element bytes: encoding float values as a dtype's bytes and back, and gathering the
 * elements of a strided view into row-major order.
 * @module
 */

import {
  bfloat16BitsToFloat32,
  type DType,
  dtypeBytes,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from "./dtype.ts";

/** Encodes float values as the bytes of `dtype`. */
export function encode(values: Float32Array, dtype: DType): Uint8Array {
  switch (dtype) {
    case "float16":
      return asBytes(float32ToFloat16Bits(values));
    case "bfloat16":
      return asBytes(float32ToBfloat16Bits(values));
    case "float32":
      return asBytes(values);
    case "int32":
      return asBytes(Int32Array.from(values));
  }
}

/** Decodes contiguous bytes of `dtype` to float32 values. */
export function decode(bytes: Uint8Array, dtype: DType): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const count = aligned.byteLength / dtypeBytes(dtype);
  switch (dtype) {
    case "float16":
      return float16BitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count));
    case "bfloat16":
      return bfloat16BitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count));
    case "float32":
      return new Float32Array(aligned.buffer, aligned.byteOffset, count).slice();
    case "int32":
      return Float32Array.from(new Int32Array(aligned.buffer, aligned.byteOffset, count));
  }
}

/** The bytes of a typed array (no copy). */
export function asBytes(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Elements of `dtype` as unsigned words of its width, for copying without decoding. */
export function asWords(bytes: Uint8Array, elementBytes: 2 | 4): Uint16Array | Uint32Array {
  const aligned = bytes.byteOffset % elementBytes === 0 ? bytes : bytes.slice();
  return elementBytes === 2
    ? new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2)
    : new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

/** Copies a strided view of `src` (starting at element `base`) into contiguous `out`. */
export function gather(
  src: Uint16Array | Uint32Array,
  base: number,
  shape: readonly number[],
  strides: readonly number[],
  out: Uint16Array | Uint32Array,
): void {
  const total = out.length;
  if (total === 0) return;
  const rank = shape.length;
  if (rank === 0) {
    out[0] = src[base];
    return;
  }
  const inner = shape[rank - 1];
  const innerStride = strides[rank - 1];
  const index = new Array<number>(rank).fill(0);
  let position = base;
  for (let written = 0; written < total; written += inner) {
    if (innerStride === 1) out.set(src.subarray(position, position + inner), written);
    else for (let i = 0; i < inner; i++) out[written + i] = src[position + i * innerStride];
    // Advance the multi-index over the outer dims, odometer style.
    for (let dim = rank - 2; dim >= 0; dim--) {
      position += strides[dim];
      if (++index[dim] < shape[dim]) break;
      position -= strides[dim] * shape[dim];
      index[dim] = 0;
    }
  }
}
