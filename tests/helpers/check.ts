/**
 * Assertions with tolerances, reporting the worst element.
 * @module
 */

import { AssertionError } from "node:assert/strict";
import { maxAbs } from "./random.ts";

/**
 * Asserts |got_i - ref_i| <= tol(i) for every element. Infinite references must be matched
 * exactly (same sign); NaN anywhere in `got` fails. Reports the worst element (largest
 * error / tolerance ratio) and how many elements fail.
 */
export function assertElementwise(
  name: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: (i: number) => number,
): void {
  if (got.length !== ref.length) {
    throw new AssertionError({ message: `${name}: length ${got.length}, expected ${ref.length}` });
  }
  let worstRatio = 0, worstAt = -1, failures = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], r = ref[i];
    let ratio: number;
    if (Number.isNaN(g) || Number.isNaN(r)) ratio = Infinity;
    else if (g === r) ratio = 0;
    else if (!Number.isFinite(g) || !Number.isFinite(r)) ratio = Infinity;
    else {
      const t = tol(i);
      ratio = t > 0 ? Math.abs(g - r) / t : Infinity;
    }
    if (ratio > 1) failures++;
    if (ratio > worstRatio || (worstAt < 0 && ratio > 0)) {
      worstRatio = ratio;
      worstAt = i;
    }
  }
  if (failures > 0) {
    throw new AssertionError({
      message:
        `${name}: ${failures} of ${got.length} elements out of tolerance; worst at [${worstAt}]:` +
        ` got ${got[worstAt]}, expected ${ref[worstAt]}, tolerance ${tol(worstAt)}` +
        ` (error/tolerance ${worstRatio.toPrecision(3)})`,
    });
  }
}

/** Asserts max |got - ref| <= tol (a single tolerance for the whole tensor). */
export function assertMaxAbs(
  name: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: number,
): void {
  assertElementwise(name, got, ref, () => tol);
}

/** Asserts every element of `a` is exactly `value` (NaN matches NaN). */
export function assertAllEqual(name: string, a: ArrayLike<number>, value: number): void {
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const same = Number.isNaN(value) ? Number.isNaN(x) : Object.is(x, value) || x === value;
    if (!same) {
      throw new AssertionError({ message: `${name}: [${i}] is ${x}, expected ${value}` });
    }
  }
}

/** Asserts two arrays hold identical values bit for bit (as numbers; -0 vs 0 differs). */
export function assertBitwise(name: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) {
    throw new AssertionError({ message: `${name}: length ${a.length} vs ${b.length}` });
  }
  let diffs = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) {
      if (first < 0) first = i;
      diffs++;
    }
  }
  if (diffs > 0) {
    throw new AssertionError({
      message: `${name}: ${diffs} of ${a.length} elements differ; first at [${first}]: ` +
        `${a[first]} vs ${b[first]}`,
    });
  }
}

/** Asserts no NaN and reports where the first one is. */
export function assertNoNaN(name: string, a: ArrayLike<number>): void {
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i])) throw new AssertionError({ message: `${name}: NaN at [${i}]` });
  }
}

/** Asserts the reference is not trivially zero (so that a comparison against it means something). */
export function assertNontrivial(name: string, ref: ArrayLike<number>): void {
  const m = maxAbs(ref);
  if (!(m > 1e-6)) {
    throw new AssertionError({ message: `${name}: reference is (nearly) all zero, max ${m}` });
  }
}
