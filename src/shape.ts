/**
 * Shape arithmetic shared by tensors and attention: element counts, row-major strides,
 * and numpy-style broadcasting.
 * @module
 */

import { formatShape, invalidArgument } from "./errors.ts";

/** Product of the sizes (1 for a scalar shape). */
export function countElements(shape: readonly number[]): number {
  let count = 1;
  for (const size of shape) count *= size;
  return count;
}

/** Row-major strides, in elements, of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let dim = shape.length - 1; dim >= 0; dim--) {
    strides[dim] = stride;
    stride *= shape[dim];
  }
  return strides;
}

/** Whether `strides` lay `shape` out row-major without gaps (size-1 dims may have any stride). */
export function isRowMajor(shape: readonly number[], strides: readonly number[]): boolean {
  let expected = 1;
  for (let dim = shape.length - 1; dim >= 0; dim--) {
    if (shape[dim] === 0) return true;
    if (shape[dim] !== 1 && strides[dim] !== expected) return false;
    expected *= shape[dim];
  }
  return true;
}

/**
 * Throws "invalid_argument" unless `shape` is a list of non-negative integers whose product
 * is exact in a double (at most 2^53), the element count every size computation relies on.
 */
export function checkShape(shape: readonly number[], argument = "shape"): void {
  if (!Array.isArray(shape) || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
    throw invalidArgument(argument, `expected non-negative integer sizes, got ${String(shape)}`);
  }
  if (!Number.isSafeInteger(countElements(shape))) {
    throw invalidArgument(
      argument,
      `${formatShape(shape)} has more than 2^53 elements, past the largest exact count`,
    );
  }
}

/**
 * Strides of `shape`/`strides` broadcast to `target` by numpy's right-aligned rules: missing
 * leading dims and size-1 dims get stride 0. Throws "invalid_argument" naming `argument`
 * when a dimension neither matches nor is 1.
 */
export function broadcastStrides(
  shape: readonly number[],
  strides: readonly number[],
  target: readonly number[],
  argument: string,
): number[] {
  if (shape.length > target.length) {
    throw invalidArgument(
      argument,
      `expected rank <= ${target.length} broadcastable to ${formatShape(target)}, ` +
        `got ${formatShape(shape)}`,
    );
  }
  const lead = target.length - shape.length;
  return target.map((size, dim) => {
    if (dim < lead) return 0;
    const own = shape[dim - lead];
    if (own === size) return own === 1 ? 0 : strides[dim - lead];
    if (own === 1) return 0;
    throw invalidArgument(
      argument,
      `shape ${formatShape(shape)} does not broadcast to ${formatShape(target)} ` +
        `(dim ${dim - lead}: ${own} vs ${size})`,
    );
  });
}

/**
 * Elements between the first and the last element a strided view touches, plus one
 * (0 for an empty view). Strides are non-negative here.
 */
export function coveredSpan(shape: readonly number[], strides: readonly number[]): number {
  if (shape.some((size) => size === 0)) return 0;
  let last = 0;
  for (let dim = 0; dim < shape.length; dim++) last += (shape[dim] - 1) * strides[dim];
  return last + 1;
}

/** Same sizes in the same order. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, dim) => size === b[dim]);
}
