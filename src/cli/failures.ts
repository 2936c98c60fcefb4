/**
 * How the CLI reports what stops a run, as one line (usage mistakes add a pointer to
 * --help) and an exit code: usage mistakes and missing permissions 2 (nothing ran), the
 * library's refusals and failures and running out of host memory 1.
 * @module
 */

import { FlashAttentionError } from "../errors.ts";
import { UsageError } from "./args.ts";

/** The permission flags of the CLI, as its usage line gives them. */
export const PERMISSION_FLAGS = "--allow-ffi --allow-read --allow-env";

const RUN_AGAIN = `run as: deno run ${PERMISSION_FLAGS} cli.ts [options]`;

/**
 * The one-line error when `--allow-ffi` is not granted, else undefined. Checked before the
 * library is opened: without it the first call into the library fails after output began.
 * A grant scoped to paths reads as not granted, which the CLI does not support.
 */
export function missingFfi(): string | undefined {
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") return undefined;
  return `error: --allow-ffi is not granted (the library is called over FFI); ${RUN_AGAIN}`;
}

function isParseArgsError(error: unknown): boolean {
  return error instanceof Error && "code" in error &&
    String((error as { code: unknown }).code).startsWith("ERR_PARSE_ARGS");
}

function readGranted(): boolean {
  return Deno.permissions.querySync({ name: "read" }).state === "granted";
}

/** A host allocation that failed: a RangeError from an ArrayBuffer or a typed array. */
function isAllocationFailure(error: unknown): error is RangeError {
  return error instanceof RangeError &&
    /allocation failed|Invalid (typed )?array (buffer )?length|Array buffer/i.test(error.message);
}

/**
 * Prints `error` as one line on stderr and returns the exit code; undefined for an error
 * the CLI does not expect (a bug: rethrown with its stack). `hostBytes` describes the
 * run's largest host array, for an allocation that failed.
 */
export function reportFailure(error: unknown, hostBytes?: () => string): number | undefined {
  if (error instanceof UsageError || isParseArgsError(error)) {
    // parseArgs messages run over several lines; the first says what is wrong.
    const first = (error as Error).message.split("\n")[0];
    console.error(`error: ${first}\n(see --help)`);
    return 2;
  }
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    console.error(`error: ${error.message.split("\n")[0]}; ${RUN_AGAIN}`);
    return 2;
  }
  if (error instanceof FlashAttentionError) {
    if (error.code === "library_not_found" && !readGranted()) {
      // Without read permission every path looks absent: the flag, not a build, is missing.
      console.error(
        `error: --allow-read is not granted, so the library was not found; ${RUN_AGAIN}`,
      );
      return 2;
    }
    console.error(`error: ${error.message}`);
    return 1;
  }
  if (isAllocationFailure(error)) {
    const size = hostBytes ? `: ${hostBytes()}` : "";
    console.error(`error: out of host memory (${error.message})${size}`);
    return 1;
  }
  return undefined;
}
