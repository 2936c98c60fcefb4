/**
 * The bias and its gradient as the ABI wants them: viewed at [B, Hq, Sq, Sk] with stride 0
 * on the dims the bias broadcasts over (numpy rules, right-aligned). The ABI needs the key
 * dimension contiguous, so a bias of size 1 there is widened to Sk columns first (through
 * the host: a rare case), and its gradient is summed back over the keys afterwards.
 * @module
 */

import type { TensorDescriptor } from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import { invalidArgument } from "./errors.ts";
import { checkDevice, type Outputs } from "./operands.ts";
import { broadcastStrides } from "./shape.ts";
import { checkUsable, copyInto, describeTensor, Tensor } from "./tensor.ts";

/** Whether a bias of `shape` broadcasts over `keys` > 1 key columns. */
function broadcastsOverKeys(shape: readonly number[], keys: number): boolean {
  const last = shape.length === 0 ? 1 : shape[shape.length - 1];
  return last === 1 && keys !== 1;
}

/** `shape` with its key dimension widened to `keys`. */
function widenedShape(shape: readonly number[], keys: number): number[] {
  return shape.length === 0 ? [keys] : [...shape.slice(0, -1), keys];
}

/** The ABI view of a bias whose key dimension is already right: stride 0 where it broadcasts. */
function broadcastOperand(
  bias: Tensor,
  argument: string,
  target: readonly number[],
): TensorDescriptor {
  const strides = broadcastStrides(bias.shape, bias.strides, target, argument);
  if (target[3] === 1) strides[3] = 1; // one key column: "contiguous" for the ABI
  return { ...describeTensor(bias, argument), shape: target, strides };
}

/** The bias operand for `target` = [B, Hq, Sq, Sk]; a widened copy goes to `outputs.scratch`. */
export function biasOperand(
  bias: Tensor,
  argument: string,
  target: readonly number[],
  device: Device,
  outputs: Outputs,
): TensorDescriptor {
  checkUsable(bias, argument);
  checkDevice(bias, argument, device);
  broadcastStrides(bias.shape, bias.strides, target, argument); // shape check first
  const keys = target[3];
  if (!broadcastsOverKeys(bias.shape, keys)) return broadcastOperand(bias, argument, target);
  const values = bias.toFloat32();
  const wide = new Float32Array(values.length * keys);
  values.forEach((value, i) => wide.fill(value, i * keys, (i + 1) * keys));
  const widened = outputs.scratch(
    Tensor.fromArray(wide, widenedShape(bias.shape, keys), { dtype: bias.dtype, device }),
  );
  return broadcastOperand(widened, argument, target);
}

/** Where the library writes dbias, and how it becomes the bias-shaped result. */
export interface DbiasPlan {
  /** The result, shaped and typed like the bias. */
  readonly tensor: Tensor;
  /** What the library writes into. */
  readonly operand: TensorDescriptor;
  /** The per-key gradient to sum over the keys, when the bias broadcasts over them. */
  readonly perKey?: Tensor;
}

/** Allocates (or checks the given) dbias for `bias` and plans the library's view of it. */
export function planDbias(
  bias: Tensor,
  given: Tensor | undefined,
  target: readonly number[],
  device: Device,
  outputs: Outputs,
): DbiasPlan {
  const tensor = outputs.take(given, "dbias", bias.shape, bias.dtype, device, true);
  if (!broadcastsOverKeys(bias.shape, target[3])) {
    return { tensor, operand: broadcastOperand(tensor, "dbias", target) };
  }
  if (!tensor.isContiguous) {
    throw invalidArgument("dbias", "must be contiguous when the bias broadcasts over the keys");
  }
  const perKey = outputs.scratch(
    Tensor.zeros(widenedShape(bias.shape, target[3]), bias.dtype, device),
  );
  return { tensor, operand: broadcastOperand(perKey, "dbias", target), perKey };
}

/** After the call: sums the per-key gradient over the keys (float64, one rounding). */
export function finishDbias(plan: DbiasPlan): void {
  if (plan.perKey === undefined || plan.tensor.numel === 0) return;
  const perKey = plan.perKey.toFloat32();
  const keys = perKey.length / plan.tensor.numel;
  const sums = new Float32Array(plan.tensor.numel);
  for (let i = 0; i < sums.length; i++) {
    let sum = 0;
    for (let j = 0; j < keys; j++) sum += perKey[i * keys + j];
    sums[i] = sum;
  }
  using reduced = Tensor.fromArray(sums, plan.tensor.shape, {
    dtype: plan.tensor.dtype,
    device: plan.tensor.device,
  });
  copyInto(plan.tensor, 0, reduced);
}
