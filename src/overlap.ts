/**
 * Outputs may share no byte with another tensor of the call: a kernel writing one would
 * corrupt an input it still reads, and two outputs in the same memory keep only one of the
 * results (dk passed as dv loses dk). The library refuses this only for some outputs
 * (dsinks, mergeAttention's, the KV cache's), so every entry point checks here, with the
 * library's rule (byte ranges of the views on one device), before anything is written.
 * Not public.
 * @module
 */

import { dtypeBytes } from "./dtype.ts";
import { invalidArgument } from "./errors.ts";
import { describeTensor, type Tensor } from "./tensor.ts";

/** A tensor of a call and the argument name it has there; undefined = not given. */
export type NamedTensor = readonly [name: string, tensor: Tensor | undefined];

interface Extent {
  readonly name: string;
  readonly tensor: Tensor;
  /** Address of the first and the last byte the view touches. */
  readonly first: bigint;
  readonly last: bigint;
}

// Strides are never negative here, so the view spans from its first element to the sum of
// (size - 1) * stride; an empty view touches nothing.
function extentOf(name: string, tensor: Tensor): Extent | undefined {
  const { data } = describeTensor(tensor, name);
  if (tensor.numel === 0) return undefined;
  let reach = 0;
  for (let dim = 0; dim < tensor.shape.length; dim++) {
    reach += (tensor.shape[dim] - 1) * tensor.strides[dim];
  }
  const last = data + BigInt((reach + 1) * dtypeBytes(tensor.dtype)) - 1n;
  return { name, tensor, first: data, last };
}

/**
 * Throws "invalid_argument" naming the first output (in the order given) whose bytes meet
 * those of another output or of an input: "dk: its memory overlaps dv's; ...". Outputs the
 * call allocated itself may be listed too (they meet nothing).
 */
export function checkDisjoint(
  outputs: readonly NamedTensor[],
  inputs: readonly NamedTensor[],
): void {
  const present = (named: readonly NamedTensor[]) =>
    named.flatMap(([name, tensor]) => {
      const extent = tensor && extentOf(name, tensor);
      return extent === undefined ? [] : [extent];
    });
  const written = present(outputs);
  const all = [...written, ...present(inputs)];
  for (const output of written) {
    for (const other of all) {
      if (other === output || !other.tensor.device.equals(output.tensor.device)) continue;
      if (output.first <= other.last && other.first <= output.last) {
        throw invalidArgument(
          output.name,
          `its memory overlaps ${other.name}'s; an output may not share memory with another ` +
            "tensor of the call",
        );
      }
    }
  }
}
