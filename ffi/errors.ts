/**
 * The error type of every layer, and the mapping from the C library's `fa_status` codes.
 * It lives in ffi/ because ffi/ reports the library's failures; src/errors.ts re-exports it.
 * @module
 */

/** What went wrong, one word per `fa_status` of flashattn.h plus the TypeScript-side cases. */
export type ErrorCode =
  | "invalid_argument"
  | "unsupported"
  | "no_device"
  | "cuda"
  | "out_of_memory"
  | "abi_mismatch"
  | "internal"
  | "disposed"
  | "library_not_found";

/** Error codes indexed by the C `fa_status` value (FA_OK = 0 has none). */
const CODE_BY_STATUS: readonly ErrorCode[] = [
  "internal",
  "invalid_argument",
  "unsupported",
  "no_device",
  "cuda",
  "out_of_memory",
  "abi_mismatch",
  "internal",
];

/** The `ErrorCode` of a non-zero C status; unknown statuses count as "internal". */
export function errorCodeFromStatus(status: number): ErrorCode {
  return CODE_BY_STATUS[status] ?? "internal";
}

/** Options of the {@link FlashAttentionError} constructor. */
export interface FlashAttentionErrorOptions {
  /** The C status the error came from; 0 for errors raised in TypeScript. */
  status?: number;
  /** The argument at fault; parsed from a "<argument>: " message prefix when left out. */
  argument?: string;
  /** The underlying error, for wrapped failures such as a failed `dlopen`. */
  cause?: unknown;
}

// Messages name their argument first: "q: expected ...", "cu_seqlens_k: ...".
const ARGUMENT_PREFIX = /^([A-Za-z_][A-Za-z0-9_]*): /;

/**
 * The one error type thrown by flashattn. `code` says what kind of failure it is, `message`
 * reads "<argument>: <what was expected, what was given>" and `argument` holds that name.
 *
 * @example
 * ```ts
 * try {
 *   attention(q, k, v);
 * } catch (error) {
 *   if (error instanceof FlashAttentionError && error.code === "unsupported") {
 *     console.log("not available here:", error.message);
 *   }
 * }
 * ```
 */
export class FlashAttentionError extends Error {
  /** The kind of failure. */
  readonly code: ErrorCode;
  /** The C status (`fa_status`), or 0 for errors raised in TypeScript (such as "disposed"). */
  readonly status: number;
  /** The argument the message is about ("q", "cu_seqlens_k", "bias", ...), when it names one. */
  readonly argument?: string;

  /** Creates an error; `argument` defaults to the "<argument>: " prefix of `message`. */
  constructor(code: ErrorCode, message: string, options: FlashAttentionErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FlashAttentionError";
    this.code = code;
    this.status = options.status ?? 0;
    const argument = options.argument ?? ARGUMENT_PREFIX.exec(message)?.[1];
    if (argument !== undefined) this.argument = argument;
  }
}
