/**
 * The dropout mask in TypeScript, bit for bit as cuda/common/philox.h defines it:
 * Philox4x32-10 keyed by the seed, counter (j / 8, i, b * Hq + h, offset), eight 16-bit
 * draws per call, element kept iff draw >= round(p * 65536). Used by the float64 reference.
 * @module
 */

const MUL0 = 0xd2511f53;
const MUL1 = 0xcd9e8d57;
const WEYL0 = 0x9e3779b9;
const WEYL1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 values. */
function mulHi(a: number, b: number): number {
  const aLo = a & 0xffff, aHi = a >>> 16, bLo = b & 0xffff, bHi = b >>> 16;
  const lolo = aLo * bLo;
  const mid1 = aHi * bLo;
  const mid2 = aLo * bHi;
  const carry = ((lolo >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return (aHi * bHi + (mid1 >>> 16) + (mid2 >>> 16) + carry) >>> 0;
}

/** Philox4x32-10 of `counter` (4 words, overwritten with the result) under key (k0, k1). */
export function philox4x32(counter: Uint32Array, key0: number, key1: number): void {
  let [x, y, z, w] = counter;
  let k0 = key0 >>> 0, k1 = key1 >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulHi(MUL0, x), lo0 = Math.imul(MUL0, x) >>> 0;
    const hi1 = mulHi(MUL1, z), lo1 = Math.imul(MUL1, z) >>> 0;
    [x, y, z, w] = [(hi1 ^ y ^ k0) >>> 0, lo1, (hi0 ^ w ^ k1) >>> 0, lo0];
    k0 = (k0 + WEYL0) >>> 0;
    k1 = (k1 + WEYL1) >>> 0;
  }
  counter[0] = x;
  counter[1] = y;
  counter[2] = z;
  counter[3] = w;
}

/**
 * round(p * 65536): draws at or above it are kept. The ABI carries p as a float32 and the
 * library rounds that float32 (widened to double), so p is rounded to float32 first: for a
 * p whose double and float32 values straddle a rounding boundary the thresholds would differ.
 */
export function dropoutThreshold(p: number): number {
  return Math.floor(Math.fround(p) * 65536 + 0.5);
}

/** The keep mask of one row: `keep[j]` for columns 0..columns-1 of row `row`. */
export function dropoutRow(
  seed: bigint,
  offset: number,
  batchHead: number,
  row: number,
  columns: number,
  threshold: number,
): Uint8Array {
  const key0 = Number(seed & 0xffffffffn), key1 = Number((seed >> 32n) & 0xffffffffn);
  const keep = new Uint8Array(columns);
  const words = new Uint32Array(4);
  for (let group = 0; group * 8 < columns; group++) {
    words[0] = group;
    words[1] = row;
    words[2] = batchHead;
    words[3] = offset;
    philox4x32(words, key0, key1);
    for (let t = 0; t < 8 && group * 8 + t < columns; t++) {
      const word = words[t >> 1];
      const draw = t & 1 ? word >>> 16 : word & 0xffff;
      keep[group * 8 + t] = draw >= threshold ? 1 : 0;
    }
  }
  return keep;
}
