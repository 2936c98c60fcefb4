/**
 * Turning tensors, nested batches and options into the ABI's descriptors: the checks the
 * TypeScript side can make before any FFI call (disposed, rank, device, output shapes),
 * the "bshd" permutation and dropout parameters. Not public.
 * @module
 */

import type { TensorDescriptor } from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import type { DType } from "./dtype.ts";
import { formatShape, invalidArgument } from "./errors.ts";
import { checkNestedUsable, type NestedBatch } from "./nested.ts";
import { sameShape } from "./shape.ts";
import { allocateTensor, checkUsable, describeTensor, type Tensor } from "./tensor.ts";

/** How dense q/k/v/out (and their gradients) are shaped. */
export type Layout = "bhsd" | "bshd";

/** Checks `options.layout`, defaulting to "bhsd". */
export function parseLayout(layout: unknown): Layout {
  if (layout === undefined || layout === "bhsd" || layout === "bshd") return layout ?? "bhsd";
  throw invalidArgument("layout", `expected "bhsd" or "bshd", got ${String(layout)}`);
}

/** The ABI descriptor of a 4-d tensor, permuted from `layout` to [B, H, S, D]. */
export function denseOperand(
  tensor: Tensor,
  argument: string,
  layout: Layout,
  device: Device,
): TensorDescriptor {
  checkUsable(tensor, argument);
  if (tensor.shape.length !== 4) {
    const expected = layout === "bshd" ? "[B, S, H, D]" : "[B, H, S, D]";
    throw invalidArgument(
      argument,
      `expected a 4-d tensor ${expected}, got ${formatShape(tensor.shape)}`,
    );
  }
  checkDevice(tensor, argument, device);
  const descriptor = describeTensor(tensor, argument);
  if (layout === "bhsd") return descriptor;
  const [b, s, h, d] = [0, 1, 2, 3];
  return {
    ...descriptor,
    shape: [b, h, s, d].map((dim) => descriptor.shape[dim]),
    strides: [b, h, s, d].map((dim) => descriptor.strides[dim]),
  };
}

/** The ABI descriptor of a nested batch's data `[total, H, D]`. */
export function nestedOperand(
  batch: NestedBatch,
  argument: string,
  device: Device,
): TensorDescriptor {
  checkNestedUsable(batch, argument);
  checkDevice(batch.data, argument, device);
  return describeTensor(batch.data, argument);
}

/** Throws "invalid_argument" unless `tensor` is on `device`. */
export function checkDevice(tensor: Tensor, argument: string, device: Device): void {
  if (!tensor.device.equals(device)) {
    throw invalidArgument(argument, `expected a tensor on ${device}, got one on ${tensor.device}`);
  }
}

/** The outputs made for one call, released if the call fails. */
export class Outputs {
  readonly #made: Tensor[] = [];

  /**
   * `given` after checking its shape, dtype and device, or a new contiguous tensor of
   * that description.
   */
  take(
    given: Tensor | undefined,
    argument: string,
    shape: readonly number[],
    dtype: DType,
    device: Device,
    zeroed = false,
  ): Tensor {
    if (given === undefined) {
      const made = allocateTensor(shape, dtype, device, argument, zeroed);
      this.#made.push(made);
      return made;
    }
    checkUsable(given, argument);
    if (!sameShape(given.shape, shape) || given.dtype !== dtype) {
      throw invalidArgument(
        argument,
        `expected ${dtype} ${formatShape(shape)}, got ${given.dtype} ${formatShape(given.shape)}`,
      );
    }
    checkDevice(given, argument, device);
    return given;
  }

  /** Disposes every output made here (after a failed call). */
  release(): void {
    for (const tensor of this.#made) tensor.dispose();
  }
}

/** Dropout parameters for the ABI. */
export interface DropoutParameters {
  /** Probability of dropping an element. */
  p: number;
  /** Philox key. */
  seed: bigint;
  /** Philox counter word 3. */
  offset: bigint;
}

const U64_LIMIT = 1n << 64n;

function unsignedInteger(value: bigint | number, argument: string): bigint {
  if (typeof value === "bigint") {
    if (value >= 0n && value < U64_LIMIT) return value;
  } else if (Number.isSafeInteger(value) && value >= 0) {
    return BigInt(value);
  }
  throw invalidArgument(argument, `expected an integer in [0, 2^64), got ${String(value)}`);
}

/** `options.dropout` as p, seed and offset (defaults: no dropout, seed 0, offset 0). */
export function parseDropout(
  dropout: number | { p: number; seed?: bigint | number; offset?: number } | undefined,
): DropoutParameters {
  if (dropout === undefined) return { p: 0, seed: 0n, offset: 0n };
  if (typeof dropout === "number") return { p: dropout, seed: 0n, offset: 0n };
  if (typeof dropout !== "object" || dropout === null || typeof dropout.p !== "number") {
    throw invalidArgument("dropout", "expected a probability or { p, seed?, offset? }");
  }
  return {
    p: dropout.p,
    seed: unsignedInteger(dropout.seed ?? 0, "seed"),
    offset: unsignedInteger(dropout.offset ?? 0, "offset"),
  };
}

/**
 * `options.scale`, defaulting to 1/sqrt(headDim). A head dim of 0 has no default: 1/sqrt(0)
 * would be refused as a bad scale, so a finite placeholder goes to the library instead,
 * which then refuses what is wrong, q's head dim.
 */
export function parseScale(scale: number | undefined, headDim: number): number {
  if (scale === undefined) return headDim > 0 ? 1 / Math.sqrt(headDim) : 1;
  if (typeof scale !== "number") throw invalidArgument("scale", "expected a number");
  return scale;
}
