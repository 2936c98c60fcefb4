/**
 * The bias and its gradient as the ABI wants them: viewed at [B, Hq, Sq, Sk] with stride 0
 * on the dims the bias broadcasts over (size-1 or missing leading dims, right-aligned). Only
 * B, Hq and Sq may broadcast: the key dimension is always full, since broadcasting over it
 * would take an Sq x Sk pass the fused kernels never make (and a per-row constant cannot
 * change the softmax anyway).
 * @module
 */

import type { TensorDescriptor } from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import { formatShape, invalidArgument } from "./errors.ts";
import { checkDevice, type Outputs } from "./operands.ts";
import { broadcastStrides, countElements } from "./shape.ts";
import { checkUsable, describeTensor, fillZeros, type Tensor } from "./tensor.ts";

/** The ABI view of a bias (or dbias) for `target` = [B, Hq, Sq, Sk]: stride 0 where it broadcasts. */
function broadcastOperand(
  bias: Tensor,
  argument: string,
  target: readonly number[],
): TensorDescriptor {
  const strides = broadcastStrides(bias.shape, bias.strides, target, argument);
  const keys = bias.shape.length === 0 ? 1 : bias.shape[bias.shape.length - 1];
  if (keys === 1 && target[3] > 1) {
    throw invalidArgument(
      argument,
      `the key dimension must be full: expected ${target[3]} keys, got shape ` +
        `${formatShape(bias.shape)}; a bias broadcasts over batch, heads and query rows ` +
        `(size-1 dims), not over the keys (a per-row constant would not change the softmax)`,
    );
  }
  if (target[3] === 1) strides[3] = 1; // one key column: "contiguous" for the ABI
  return { ...describeTensor(bias, argument), shape: target, strides };
}

/** The bias operand for `target` = [B, Hq, Sq, Sk] (nested: [B, Hq, maxSq, maxSk]). */
export function biasOperand(
  bias: Tensor,
  argument: string,
  target: readonly number[],
  device: Device,
): TensorDescriptor {
  checkUsable(bias, argument);
  checkDevice(bias, argument, device);
  return broadcastOperand(bias, argument, target);
}

/** Where the library writes dbias, and what is left to do after the call. */
export interface DbiasPlan {
  /** The result, shaped and typed like the bias. */
  readonly tensor: Tensor;
  /** What the library writes into: the tensor viewed at [B, Hq, Sq, Sk]. */
  readonly operand: TensorDescriptor;
  /**
   * The view has no elements (a nested batch whose query or key sequences are all empty),
   * so the library writes nothing, but the caller's dbias has elements (a size-1 dim
   * broadcast to 0): their gradient, a sum over nothing, is zeroed after the call.
   */
  readonly zeroAfter: boolean;
}

/** Allocates (zeroed) or checks the given dbias for `bias` and plans the library's view of it. */
export function planDbias(
  bias: Tensor,
  given: Tensor | undefined,
  target: readonly number[],
  device: Device,
  outputs: Outputs,
): DbiasPlan {
  const tensor = outputs.take(given, "dbias", bias.shape, bias.dtype, device, true);
  const operand = broadcastOperand(tensor, "dbias", target);
  const zeroAfter = tensor === given && countElements(target) === 0 && tensor.numel > 0;
  return { tensor, operand, zeroAfter };
}

/** After a successful call: zeroes a caller's dbias that the library had nothing to write to. */
export function finishDbias(plan: DbiasPlan): void {
  if (plan.zeroAfter) fillZeros(plan.tensor, "dbias");
}
