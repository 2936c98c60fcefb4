/**
 * Floating-point operation counts of attention, for TFLOP/s figures.
 * @module
 */

/**
 * Score elements a window `[left, right]` (-1 = unbounded side; causal is `[-1, 0]`) leaves
 * visible, out of Sq * Sk: row i sees keys `i + Sk - Sq - left .. i + Sk - Sq + right`
 * (cuda/common/mask.h).
 */
export function visibleScores(
  seqlenQ: number,
  seqlenK: number,
  [left, right]: readonly [number, number],
): number {
  if (left < 0 && right < 0) return seqlenQ * seqlenK;
  let visible = 0;
  for (let i = 0; i < seqlenQ; i++) {
    const diagonal = i + seqlenK - seqlenQ;
    const first = left < 0 ? 0 : Math.max(0, diagonal - left);
    const last = right < 0 ? seqlenK - 1 : Math.min(seqlenK - 1, diagonal + right);
    visible += Math.max(0, last - first + 1);
  }
  return visible;
}

/** Problem sizes that determine the work. */
export interface FlopShape {
  /** B. */
  batch: number;
  /** Hq. */
  headsQ: number;
  /** Sq. */
  seqlenQ: number;
  /** Sk. */
  seqlenK: number;
  /** D. */
  headDim: number;
  /** The visible window `[left, right]`: `[-1, -1]` for none, `[-1, 0]` causal. */
  window: readonly [number, number];
}

/** Forward flops: two matrix products of 2 * Sq * Sk * D each, over visible scores only. */
export function forwardFlops(shape: FlopShape): number {
  const visible = visibleScores(shape.seqlenQ, shape.seqlenK, shape.window);
  return 4 * shape.batch * shape.headsQ * visible * shape.headDim;
}

/** Backward flops: five products against the forward's two, so 2.5 times the forward. */
export function backwardFlops(shape: FlopShape): number {
  return 2.5 * forwardFlops(shape);
}
