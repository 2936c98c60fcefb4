/**
 * The score features' options (sliding window, softcap, attention sinks, ALiBi slopes) as
 * the ABI's fields: the checks the TypeScript side can make (types, integers, devices);
 * values, shapes and dtypes are checked by the library. Not public.
 * @module
 */

import type { ForwardArgs } from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import { invalidArgument } from "./errors.ts";
import { checkDevice } from "./operands.ts";
import { describeValue } from "./options.ts";
import { checkUsable, describeTensor, type Tensor } from "./tensor.ts";

/** The options that shape each score (a subset of `AttentionOptions`). */
export interface ScoreOptions {
  /** `[left, right]` keys around the diagonal, -1 = unbounded. */
  readonly window?: readonly [number, number];
  /** Logit softcap, > 0 (0 = off). */
  readonly softcap?: number;
  /** float32 [Hq] sink logits. */
  readonly sinks?: Tensor;
  /** float32 [Hq] or [B, Hq] ALiBi slopes. */
  readonly alibiSlopes?: Tensor;
}

/** The ABI fields of the score features. */
export type ScoreArgs =
  & Required<
    Pick<ForwardArgs, "windowLeft" | "windowRight" | "softcap">
  >
  & Pick<ForwardArgs, "sinks" | "alibiSlopes">;

const INT32_MIN = -(2 ** 31), INT32_MAX = 2 ** 31 - 1;

/** `options.window` as (left, right); no window is (-1, -1). */
export function parseWindow(window: unknown): [number, number] {
  if (window === undefined) return [-1, -1];
  const edges: unknown[] = Array.isArray(window) ? window : [];
  const integer = (edge: unknown): edge is number =>
    typeof edge === "number" && Number.isInteger(edge) && edge >= INT32_MIN && edge <= INT32_MAX;
  const [left, right] = edges;
  if (edges.length !== 2 || !integer(left) || !integer(right)) {
    throw invalidArgument(
      "window",
      `expected a pair of integers [left, right] (-1 = unbounded), got ${describeValue(window)}`,
    );
  }
  return [left, right];
}

/** `options.softcap` (0 = off); the library refuses negative and non-finite values. */
export function parseSoftcap(softcap: unknown): number {
  if (softcap === undefined) return 0;
  if (typeof softcap !== "number") {
    throw invalidArgument("softcap", `expected a number, got ${describeValue(softcap)}`);
  }
  return softcap;
}

function tensorOption(tensor: Tensor | undefined, argument: string, device: Device) {
  if (tensor === undefined) return undefined;
  checkUsable(tensor, argument);
  checkDevice(tensor, argument, device);
  return describeTensor(tensor, argument);
}

/** Every score feature of `options` as ABI fields, after the TypeScript-side checks. */
export function scoreArgs(options: ScoreOptions, device: Device): ScoreArgs {
  const [windowLeft, windowRight] = parseWindow(options.window);
  return {
    windowLeft,
    windowRight,
    softcap: parseSoftcap(options.softcap),
    sinks: tensorOption(options.sinks, "sinks", device),
    alibiSlopes: tensorOption(options.alibiSlopes, "alibi_slopes", device),
  };
}
