/**
 * Element types and the conversions between float32 and the 16-bit formats
 * (round to nearest, ties to even; NaN and infinities preserved).
 * @module
 */

/** Element type of a tensor. */
export type DType = "float16" | "bfloat16" | "float32" | "int32";

/** Every dtype, in `fa_dtype` order. */
export const DTYPES: readonly DType[] = ["float16", "bfloat16", "float32", "int32"];

/** The `fa_dtype` value of a dtype (its index in {@link DTYPES}). */
export function dtypeCode(dtype: DType): number {
  return DTYPES.indexOf(dtype);
}

/** Bytes per element. */
export function dtypeBytes(dtype: DType): 2 | 4 {
  return dtype === "float16" || dtype === "bfloat16" ? 2 : 4;
}

/** Whether `value` names a dtype. */
export function isDType(value: unknown): value is DType {
  return typeof value === "string" && (DTYPES as readonly string[]).includes(value);
}

/**
 * Converts float32 values to IEEE binary16 bits: Float16Array stores round to nearest even
 * (an exact float32 widened to a double is rounded once); NaN stays NaN.
 */
export function float32ToFloat16Bits(src: Float32Array): Uint16Array {
  return new Uint16Array(new Float16Array(src).buffer);
}

/** Converts IEEE binary16 bits to float32 values (exact). */
export function float16BitsToFloat32(src: Uint16Array): Float32Array {
  return new Float32Array(new Float16Array(src.buffer, src.byteOffset, src.length));
}

/** The bfloat16 bits of one float32 value's bits, rounded to nearest even. */
function bfloat16BitsOfFloat32Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + roundingBias) >>> 16) & 0xffff;
}

/** Converts float32 values to bfloat16 bits. */
export function float32ToBfloat16Bits(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < out.length; i++) out[i] = bfloat16BitsOfFloat32Bits(bits[i]);
  return out;
}

/** Converts bfloat16 bits to float32 values (exact). */
export function bfloat16BitsToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < out.length; i++) bits[i] = src[i] << 16;
  return out;
}

/**
 * Each value rounded to the nearest value of `dtype` and back to float32: what a tensor of
 * that dtype would hold. int32 truncates toward zero like an `Int32Array` store.
 */
export function roundToDtype(src: Float32Array, dtype: DType): Float32Array {
  switch (dtype) {
    case "float16":
      return float16BitsToFloat32(float32ToFloat16Bits(src));
    case "bfloat16":
      return bfloat16BitsToFloat32(float32ToBfloat16Bits(src));
    case "float32":
      return Float32Array.from(src);
    case "int32":
      return Float32Array.from(Int32Array.from(src));
  }
}
