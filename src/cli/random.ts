/**
 * A small seeded generator for reproducible CLI and benchmark inputs (not cryptographic).
 * @module
 */

/** Deterministic uniform and normal draws from a 32-bit seed (mulberry32). */
export class SeededRandom {
  #state: number;

  /** A generator whose sequence depends only on `seed`. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next(); // (0, 1]: log stays finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** `count` standard normal values. */
  normals(count: number): Float32Array {
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = this.normal();
    return values;
  }
}

/**
 * The 32-bit generator seed of a 64-bit CLI seed: the low word, xor the high word times an
 * odd constant, so seeds below 2^32 keep their inputs and 2^32 differs from 0.
 */
export function inputSeed(seed: bigint): number {
  const low = Number(seed & 0xffffffffn), high = Number((seed >> 32n) & 0xffffffffn);
  return (low ^ Math.imul(high, 0x9e3779b1)) >>> 0;
}
