/**
 * Device-resident random inputs for the benchmarks: bf16/fp16 bits made by repeating one
 * random block (the values only need to be non-trivial, and generating gigabytes of normals
 * in JavaScript would dominate the run).
 * @module
 */

import {
  type Device,
  type DType,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  Tensor,
} from "../mod.ts";
import { SeededRandom } from "../src/cli/random.ts";

const BLOCK = 1 << 20;

/** A tensor of `shape` on `device` filled with normal values (repeating every 2^20). */
export function randomTensor(
  shape: readonly number[],
  dtype: "float16" | "bfloat16",
  device: Device,
  seed: number,
): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const block = new SeededRandom(seed).normals(Math.min(count, BLOCK));
  const blockBits = dtype === "bfloat16"
    ? float32ToBfloat16Bits(block)
    : float32ToFloat16Bits(block);
  const bits = new Uint16Array(count);
  bits.set(blockBits);
  for (let filled = blockBits.length; filled < count; filled *= 2) {
    bits.copyWithin(filled, 0, Math.min(filled, count - filled));
  }
  return Tensor.fromArray(bits, shape, { dtype: dtype as DType, device });
}
