/**
 * Errors: the FlashAttentionError class (defined beside the FFI, which reports the C
 * library's failures) and the helpers the TypeScript-side checks throw with.
 * @module
 */

import { type ErrorCode, FlashAttentionError } from "../ffi/errors.ts";

export { type ErrorCode, FlashAttentionError };
export type { FlashAttentionErrorOptions } from "../ffi/errors.ts";

/** An "invalid_argument" error about `argument`, in the C library's message style. */
export function invalidArgument(argument: string, text: string): FlashAttentionError {
  return new FlashAttentionError("invalid_argument", `${argument}: ${text}`, { argument });
}

/** A "disposed" error for a tensor (or batch) used after `dispose()`. */
export function disposedError(argument: string, what = "tensor"): FlashAttentionError {
  const message = argument === what
    ? `${argument}: was disposed`
    : `${argument}: ${what} was disposed`;
  return new FlashAttentionError("disposed", message, { argument });
}

/** Formats a shape as "[2, 4, 128, 64]" for messages. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
