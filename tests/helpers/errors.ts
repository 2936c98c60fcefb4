/**
 * The one assertion of the error tests: a call fails with a FlashAttentionError of the
 * expected code that names the expected argument.
 * @module
 */

import assert from "node:assert/strict";
import { type ErrorCode, FlashAttentionError } from "../../mod.ts";

/**
 * Asserts `fn` throws FlashAttentionError with `code` and (when given) `argument`, whose
 * message starts with that argument's name; returns the error for further checks.
 */
export function assertFails(
  fn: () => unknown,
  code: ErrorCode,
  argument?: string,
  what = "",
): FlashAttentionError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, `${what}: expected a FlashAttentionError (${code}), none thrown`);
  assert.ok(
    caught instanceof FlashAttentionError,
    `${what}: expected FlashAttentionError, got ${String(caught)}`,
  );
  assert.equal(caught.code, code, `${what}: code of "${caught.message}"`);
  if (argument !== undefined) {
    assert.equal(caught.argument, argument, `${what}: argument of "${caught.message}"`);
    assert.ok(caught.message.startsWith(`${argument}: `), `${what}: message "${caught.message}"`);
  }
  assert.ok(caught.message.length > 0, `${what}: empty message`);
  return caught;
}
