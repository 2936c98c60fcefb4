/**
 * Floating-point operation counts of attention, for TFLOP/s figures.
 * @module
 */

/** Score elements a causal (bottom-right aligned) mask leaves visible, out of Sq * Sk. */
export function visibleScores(seqlenQ: number, seqlenK: number, causal: boolean): number {
  if (!causal) return seqlenQ * seqlenK;
  let visible = 0;
  for (let i = 0; i < seqlenQ; i++) {
    visible += Math.min(Math.max(i + seqlenK - seqlenQ + 1, 0), seqlenK);
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
  /** Whether the causal mask hides part of the scores. */
  causal: boolean;
}

/** Forward flops: two matrix products of 2 * Sq * Sk * D each, over visible scores only. */
export function forwardFlops(shape: FlopShape): number {
  const visible = visibleScores(shape.seqlenQ, shape.seqlenK, shape.causal);
  return 4 * shape.batch * shape.headsQ * visible * shape.headDim;
}

/** Backward flops: five products against the forward's two, so 2.5 times the forward. */
export function backwardFlops(shape: FlopShape): number {
  return 2.5 * forwardFlops(shape);
}
