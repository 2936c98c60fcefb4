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

// Reinterpreting float32 bits without allocating per element.
const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

function float32BitsOf(value: number): number {
  scratchFloat[0] = value;
  return scratchBits[0];
}

/** The binary16 bits of one float32 value, rounded to nearest even. */
function float16BitsOfFloat32Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    // Infinity keeps a zero mantissa; NaN keeps its top payload bits and stays quiet.
    return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mantissa >>> 13);
  }
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 31) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal or zero: the value in units of 2^-24 is (1.mantissa) * 2^(halfExponent - 14).
    if (halfExponent < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let half = significand >>> shift;
    const remainder = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to infinity: both are correct.
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** Converts float32 values to IEEE binary16 bits. */
export function float32ToFloat16Bits(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < out.length; i++) out[i] = float16BitsOfFloat32Bits(bits[i]);
  return out;
}

let float16Table: Float32Array | undefined;

/** All 65536 binary16 values as float32, built on first use. */
function float16Values(): Float32Array {
  if (float16Table !== undefined) return float16Table;
  const table = new Float32Array(65536);
  for (let half = 0; half < 65536; half++) {
    const sign = half & 0x8000 ? -1 : 1;
    const exponent = (half >>> 10) & 0x1f;
    const mantissa = half & 0x3ff;
    if (exponent === 0) table[half] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[half] = mantissa === 0 ? sign * Infinity : NaN;
    else table[half] = sign * (1024 + mantissa) * 2 ** (exponent - 25);
  }
  float16Table = table;
  return table;
}

/** Converts IEEE binary16 bits to float32 values (exact). */
export function float16BitsToFloat32(src: Uint16Array): Float32Array {
  const table = float16Values();
  const out = new Float32Array(src.length);
  for (let i = 0; i < out.length; i++) out[i] = table[src[i]];
  return out;
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

/** The float32 value nearest to `value` after rounding to `dtype` (a scalar helper). */
export function roundScalarToDtype(value: number, dtype: DType): number {
  switch (dtype) {
    case "float16":
      return float16Values()[float16BitsOfFloat32Bits(float32BitsOf(value))];
    case "bfloat16":
      scratchBits[0] = bfloat16BitsOfFloat32Bits(float32BitsOf(value)) << 16;
      return scratchFloat[0];
    case "float32":
      return Math.fround(value);
    case "int32":
      return value | 0;
  }
}
