/**
 * mergeAttention(): partial attention results of the same query rows over disjoint key
 * sets combined exactly into the attention over all of them (`fa_merge`).
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import { type MergePart, packMergeArgs, packMergeParts } from "../ffi/kvcache_structs.ts";
import { hostAddress, keepAliveDuring } from "../ffi/pointers.ts";
import type { TensorDescriptor } from "../ffi/structs.ts";
import type { AttentionResult } from "./attention.ts";
import type { Device } from "./device.ts";
import { formatShape, invalidArgument } from "./errors.ts";
import { checkDevice, denseOperand, type Layout, Outputs, parseLayout } from "./operands.ts";
import { optionsObject } from "./options.ts";
import { checkDisjoint, type NamedTensor } from "./overlap.ts";
import { streamFor } from "./stream.ts";
import type { Stream } from "./stream.ts";
import { checkUsable, describeTensor, type Tensor } from "./tensor.ts";

/** Options of {@link mergeAttention}. */
export interface MergeOptions {
  /** dtype of the merged out: float16, bfloat16 or float32; default the first part's. */
  dtype?: "float16" | "bfloat16" | "float32";
  /** How 4-d outs are shaped: "bhsd" (default) or "bshd"; 3-d outs are nested [T, H, D]. */
  layout?: "bhsd" | "bshd";
  /** Preallocated merged output, shaped like a part's out. */
  out?: Tensor;
  /** Preallocated merged log-sum-exp, float32, shaped like a part's lse. */
  lse?: Tensor;
  /** Stream to queue the work on (CUDA); default the legacy default stream. */
  stream?: Stream;
}

/** An out of a part or of the result: [B, H, S, D] in `layout`, or nested [T, H, D]. */
function outOperand(
  tensor: Tensor,
  argument: string,
  layout: Layout,
  device: Device,
): TensorDescriptor {
  checkUsable(tensor, argument);
  if (tensor.shape.length === 4) return denseOperand(tensor, argument, layout, device);
  if (tensor.shape.length !== 3) {
    throw invalidArgument(
      argument,
      `expected [B, H, S, D] or nested [T, H, D], got ${formatShape(tensor.shape)}`,
    );
  }
  checkDevice(tensor, argument, device);
  return describeTensor(tensor, argument);
}

function lseOperand(tensor: Tensor, argument: string, device: Device): TensorDescriptor {
  checkUsable(tensor, argument);
  checkDevice(tensor, argument, device);
  return describeTensor(tensor, argument);
}

/**
 * Merges partial attention results `(out_i, lse_i)` of the same query rows over disjoint
 * key sets into the attention over their union, exactly:
 * `lse = log(sum_i exp(lse_i))`, `out = sum_i exp(lse_i - lse) * out_i`. A part whose row
 * saw no key (lse -Infinity) contributes nothing; a row where every part is empty gets
 * out 0 and lse -Infinity; NaN propagates.
 *
 * This is the split-KV combine step, and the building block of attention over several
 * GPUs (ring or context parallelism): each GPU attends its own keys with
 * {@link attention}, the parts are copied to one device and meet in one call. Parts are
 * `[B, H, S, D]` (or `"bshd"`, or nested `[T, H, D]`) outs of float16, bfloat16 or float32
 * with float32 lse `[B, H, S]` (nested `[T, H]`), all on one device; 1 to 256 parts.
 *
 * @example
 * ```ts
 * const first = attention(q, kFirstHalf, vFirstHalf);
 * const second = attention(q, kSecondHalf, vSecondHalf);
 * const { out, lse } = mergeAttention([first, second]); // = attention(q, k, v)
 * ```
 */
export function mergeAttention(
  parts: readonly AttentionResult[],
  givenOptions?: MergeOptions,
): AttentionResult {
  const options = optionsObject(givenOptions);
  if (!Array.isArray(parts) || parts.length === 0) {
    throw invalidArgument("parts", "expected a non-empty list of { out, lse } parts");
  }
  const layout = parseLayout(options.layout);
  const first = parts[0];
  if (typeof first !== "object" || first === null) {
    throw invalidArgument("out_0", "expected { out, lse }");
  }
  checkUsable(first.out, "out_0");
  const device = first.out.device;
  const described: MergePart[] = parts.map((part, i) => {
    if (typeof part !== "object" || part === null) {
      throw invalidArgument(`out_${i}`, "expected { out, lse }");
    }
    return {
      out: outOperand(part.out, `out_${i}`, layout, device),
      lse: lseOperand(part.lse, `lse_${i}`, device),
    };
  });
  const stream = streamFor(options.stream, device);
  const outputs = new Outputs();
  try {
    const out = outputs.take(
      options.out,
      "out",
      first.out.shape,
      options.dtype ?? first.out.dtype,
      device,
    );
    const lse = outputs.take(options.lse, "lse", first.lse.shape, "float32", device);
    const inputs = parts.flatMap((part, i): NamedTensor[] => [
      [`out_${i}`, part.out],
      [`lse_${i}`, part.lse],
    ]);
    checkDisjoint([["out", out], ["lse", lse]], inputs);
    const packedParts = packMergeParts(described);
    const args = packMergeArgs({
      parts: hostAddress(packedParts),
      numParts: parts.length,
      out: outOperand(out, "out", layout, device),
      lse: describeTensor(lse, "lse"),
      stream,
    });
    const owners = [packedParts, parts, out, lse, options.stream];
    check(keepAliveDuring(owners, () => ffi().fa_merge(args)), "merge");
    return { out, lse };
  } catch (error) {
    outputs.release();
    throw error;
  }
}
