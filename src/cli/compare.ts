/**
 * Comparing results against a reference: the largest absolute difference, scaled by the
 * reference's largest magnitude, against a tolerance that follows the dtype's precision.
 * @module
 */

import type { DType } from "../dtype.ts";

/** How one output compares with its reference. */
export interface Comparison {
  /** Which output ("out", "dq", ...). */
  name: string;
  /** max |actual - expected| over elements (equal infinities count as 0). */
  maxAbsError: number;
  /** max |expected|. */
  maxAbsReference: number;
  /** maxAbsError / max(maxAbsReference, 1e-6). */
  relativeError: number;
  /** The allowed relative error. */
  tolerance: number;
  /** relativeError <= tolerance and no NaN appeared. */
  ok: boolean;
}

/** Unit roundoff of a dtype. */
function epsilon(dtype: DType): number {
  return dtype === "bfloat16" ? 2 ** -8 : dtype === "float16" ? 2 ** -11 : 2 ** -24;
}

/**
 * Compares `actual` with `expected`; `slack` multiplies the dtype's unit roundoff into the
 * tolerance (outputs pass one rounding, gradients accumulate several).
 */
export function compare(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  dtype: DType,
  slack: number,
): Comparison {
  let maxAbsError = 0;
  let maxAbsReference = 0;
  let nan = actual.length !== expected.length;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(a) || Number.isNaN(e)) {
      nan = true;
      continue;
    }
    if (a === e) continue; // also equal infinities (lse of fully masked rows)
    maxAbsError = Math.max(maxAbsError, Math.abs(a - e));
  }
  for (let i = 0; i < expected.length; i++) {
    if (Number.isFinite(expected[i])) {
      maxAbsReference = Math.max(maxAbsReference, Math.abs(expected[i]));
    }
  }
  const relativeError = maxAbsError / Math.max(maxAbsReference, 1e-6);
  const tolerance = slack * Math.max(epsilon(dtype), 2 ** -11);
  return {
    name,
    maxAbsError,
    maxAbsReference,
    relativeError,
    tolerance,
    ok: !nan && relativeError <= tolerance,
  };
}

/** "  out    max|err| 1.95e-03  relative 4.1e-04 (tolerance 1.6e-02)  ok": one report line. */
export function formatComparison(c: Comparison): string {
  return `  ${c.name.padEnd(6)} max|err| ${c.maxAbsError.toExponential(2)}  ` +
    `relative ${c.relativeError.toExponential(2)} (tolerance ${c.tolerance.toExponential(1)})` +
    `  ${c.ok ? "ok" : "FAIL"}`;
}
