/**
 * Test helpers: a seeded PRNG, error measures and an independent dtype quantizer.
 *
 * Nothing here imports the library: these are the yardsticks the library is measured with.
 * @module
 */

/** The 16-bit storage dtypes the attention operands use. */
export type HalfDType = "float16" | "bfloat16";

/** A small, fast, seeded generator (mulberry32) with uniform and normal draws. */
export class Rng {
  #state: number;
  #spare: number | null = null;

  /** @param seed any 32-bit integer; equal seeds give equal sequences. */
  constructor(seed: number) {
    this.#state = (seed ^ 0x9e3779b9) >>> 0;
    // Warm up so that nearby seeds diverge at once.
    for (let i = 0; i < 4; i++) this.nextU32();
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  /** One of the given items. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.#spare !== null) {
      const s = this.#spare;
      this.#spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** n normal draws times `std`, as float32. */
  normalArray(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }

  /** n uniform draws in [lo, hi), as float32. */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }
}

/** Largest absolute value (NaN propagates as NaN; -inf/inf give Infinity). */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i]);
    if (Number.isNaN(x)) return NaN;
    if (x > m) m = x;
  }
  return m;
}

/**
 * Largest |a - b| over elements. Equal infinities count as 0; a NaN on either side, or an
 * infinity against a different value, gives Infinity so that it always fails a tolerance.
 */
export function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) return Infinity;
    if (x === y) continue;
    const d = Math.abs(x - y);
    if (!Number.isFinite(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

/** ||a - b||_2 / ||b||_2 over finite entries of b (b is the reference). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) {
      if (Number.isFinite(b[i])) den += b[i] * b[i];
      continue;
    }
    const d = a[i] - b[i];
    if (!Number.isFinite(d)) return Infinity;
    num += d * d;
    den += b[i] * b[i];
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** Index and values of the worst element, for assertion messages. */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>): string {
  let at = -1, m = -1;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    let d: number;
    if (x === y) d = 0;
    else if (Number.isNaN(x) || Number.isNaN(y)) d = Infinity;
    else d = Math.abs(x - y);
    if (!(d <= m)) {
      m = d;
      at = i;
    }
  }
  return at < 0 ? "(empty)" : `[${at}] got ${a[at]} want ${b[at]}`;
}

/** Does any entry hold NaN? */
export function hasNaN(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (Number.isNaN(a[i])) return true;
  return false;
}

/** Unit roundoff (half an ulp at 1) of a storage dtype: 2^-11 for float16, 2^-8 for bfloat16. */
export function unitRoundoff(dtype: HalfDType | "float32"): number {
  return dtype === "float16" ? 2 ** -11 : dtype === "bfloat16" ? 2 ** -8 : 2 ** -24;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bits of a float32. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** Float32 from bits. */
export function bitsF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/**
 * Independent bfloat16 rounding of one float32 value: round to nearest even on the bit
 * pattern, NaN kept quiet NaN. Returns the 16-bit pattern.
 */
export function bf16BitsOf(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x007fffff) !== 0) {
    return ((u >>> 16) | 0x0040) & 0xffff; // quiet NaN, sign kept
  }
  const rounded = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  return (rounded >>> 16) & 0xffff;
}

/**
 * Quantize float32 values to a dtype and back (round to nearest even), independently of the
 * library: float16 through the engine's Math.f16round, bfloat16 through bf16BitsOf.
 */
export function quantize(src: Float32Array, dtype: HalfDType | "float32"): Float32Array {
  const out = new Float32Array(src.length);
  if (dtype === "float32") {
    out.set(src);
  } else if (dtype === "float16") {
    for (let i = 0; i < src.length; i++) out[i] = Math.f16round(src[i]);
  } else {
    for (let i = 0; i < src.length; i++) out[i] = bitsF32(bf16BitsOf(src[i]) << 16);
  }
  return out;
}

/** Float64 copy of an array. */
export function toF64(a: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i];
  return out;
}

/** Normal draws already representable in `dtype` (so the library converts them exactly). */
export function randomQuantized(
  rng: Rng,
  n: number,
  dtype: HalfDType | "float32",
  std = 1,
): Float32Array {
  return quantize(rng.normalArray(n, std), dtype);
}
