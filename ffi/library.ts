/**
 * Finding and opening libflashattn.so. The library is opened on first use, so importing
 * the package (for `deno doc`, `--help`, or CPU-only type checks) never needs it.
 *
 * Lookup order:
 * 1. the environment variable `FLASHATTN_LIB` (a file path; set but missing is an error),
 * 2. `build/libflashattn.so` in the package root, when the package is a local checkout,
 * 3. the per-user cache `${XDG_CACHE_HOME ?? HOME/.cache}/flashattn/<version>/libflashattn.so`
 *    (where `deno run -A jsr:@flashattn/flashattn/build` installs it).
 * @module
 */

import { join as joinPath } from "node:path";
import { fileURLToPath } from "node:url";
import { errorCodeFromStatus, FlashAttentionError } from "./errors.ts";
import { ABI_VERSION, formatAbiLayout } from "./structs.ts";
import { type FlashAttentionSymbols, symbols } from "./symbols.ts";

/** The package version; names the cache folder so versions never share a library. */
export const PACKAGE_VERSION = "0.1.0";

/** The library's file name. */
export const LIBRARY_FILE = "libflashattn.so";

/** Environment variable that overrides the library path. */
export const LIBRARY_ENV = "FLASHATTN_LIB";

/** Where {@link findLibrary} found the library. */
export type LibrarySource = "env" | "module" | "cache";

/** A located library file. */
export interface LibraryLocation {
  /** Absolute file path of the shared library. */
  readonly path: string;
  /** Which rule of the lookup order matched. */
  readonly source: LibrarySource;
}

/** Environment variables: a getter such as `Deno.env.get`, or a record of values. */
export type EnvSource =
  | ((name: string) => string | undefined)
  | Readonly<Record<string, string | undefined>>;

/** A getter over either form of {@link EnvSource}. */
export function envGetter(env: EnvSource): (name: string) => string | undefined {
  return typeof env === "function" ? env : (name) => env[name];
}

/** The inputs of {@link findLibrary}; injectable so the order can be tested with temp dirs. */
export interface LibraryLookup {
  /** The environment (only `FLASHATTN_LIB` is read); a getter or a record. */
  readonly env: EnvSource;
  /** The package root (the folder that holds `build/`), or undefined for a remote import. */
  readonly moduleDir: string | undefined;
  /** The versioned cache folder holding the library, or undefined when there is none. */
  readonly cacheDir: string | undefined;
  /** Whether a regular file exists at the path. */
  readonly exists: (path: string) => boolean;
}

const BUILD_HINT = "build it with `make lib` in a checkout of flashattn, " +
  "or `deno run -A jsr:@flashattn/flashattn/build`, or set FLASHATTN_LIB to its path";

/**
 * Picks the library file by the lookup order of this module. Pure: everything it reads
 * comes through `lookup`. Throws FlashAttentionError "library_not_found" listing the
 * places it tried and how to build the library.
 */
export function findLibrary(lookup: LibraryLookup): LibraryLocation {
  const fromEnv = envGetter(lookup.env)(LIBRARY_ENV);
  if (fromEnv !== undefined && fromEnv !== "") {
    if (lookup.exists(fromEnv)) return { path: fromEnv, source: "env" };
    throw new FlashAttentionError(
      "library_not_found",
      `${LIBRARY_ENV}: no library file at ${fromEnv}`,
    );
  }
  const tried: string[] = [];
  if (lookup.moduleDir !== undefined) {
    const path = joinPath(lookup.moduleDir, "build", LIBRARY_FILE);
    if (lookup.exists(path)) return { path, source: "module" };
    tried.push(path);
  }
  if (lookup.cacheDir !== undefined) {
    const path = joinPath(lookup.cacheDir, LIBRARY_FILE);
    if (lookup.exists(path)) return { path, source: "cache" };
    tried.push(path);
  }
  throw new FlashAttentionError(
    "library_not_found",
    `library: ${LIBRARY_FILE} not found (tried ${tried.join(", ") || "nothing"}); ${BUILD_HINT}`,
    { argument: "library" },
  );
}

/**
 * The versioned per-user cache folder: `${XDG_CACHE_HOME ?? HOME/.cache}/flashattn/<version>`,
 * or undefined when neither variable is set.
 */
export function defaultCacheDir(
  environment: EnvSource = readEnv,
  version: string = PACKAGE_VERSION,
): string | undefined {
  const env = envGetter(environment);
  const xdg = env("XDG_CACHE_HOME");
  const home = env("HOME") ?? env("USERPROFILE");
  const base = xdg !== undefined && xdg !== "" ? xdg : home ? joinPath(home, ".cache") : undefined;
  return base === undefined ? undefined : joinPath(base, "flashattn", version);
}

/** The package root as a file path when this module was loaded from disk, else undefined. */
export function localPackageRoot(): string | undefined {
  const root = new URL("..", import.meta.url);
  return root.protocol === "file:" ? fileURLToPath(root) : undefined;
}

/** Reads an environment variable; no permission or an unset variable both give undefined. */
export function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Whether a regular file exists at `path` (false where it cannot be read). */
export function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** An opened library together with where it came from. */
export interface LoadedLibrary {
  /** The library's functions. */
  readonly symbols: FlashAttentionSymbols;
  /** The file and the lookup rule that found it. */
  readonly location: LibraryLocation;
  /** `fa_version()` of the library, e.g. "0.1.0". */
  readonly version: string;
}

let loaded: LoadedLibrary | undefined;

/**
 * Opens the library on first call (later calls return the same one). Checks
 * `fa_abi_version()` against {@link ABI_VERSION}: a mismatch throws "abi_mismatch".
 */
export function loadLibrary(): LoadedLibrary {
  if (loaded !== undefined) return loaded;
  const location = findLibrary({
    env: readEnv,
    moduleDir: localPackageRoot(),
    cacheDir: defaultCacheDir(),
    exists: fileExists,
  });
  let library: Deno.DynamicLibrary<typeof symbols>;
  try {
    library = Deno.dlopen(location.path, symbols);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new FlashAttentionError(
      "library_not_found",
      `library: cannot load ${location.path}: ${reason}`,
      { cause },
    );
  }
  const abi = library.symbols.fa_abi_version();
  const layout = library.symbols.fa_abi_layout?.() ?? null;
  if (abi === ABI_VERSION && readCString(layout) !== formatAbiLayout()) {
    // Same version number, other struct layout: a build from a diverged source tree.
    library.close();
    throw new FlashAttentionError(
      "abi_mismatch",
      `library: ${location.path} reports ABI version ${abi} but a different struct layout ` +
        `(fa_abi_layout) than this package packs; ` + BUILD_HINT,
      { status: 6 },
    );
  }
  if (abi !== ABI_VERSION) {
    library.close();
    throw new FlashAttentionError(
      "abi_mismatch",
      `library: ${location.path} has ABI version ${abi}, this package needs ${ABI_VERSION}; ` +
        BUILD_HINT,
      { status: 6 },
    );
  }
  loaded = {
    // The version matched, so the symbols optional for older libraries are all there.
    symbols: library.symbols as FlashAttentionSymbols,
    location,
    version: readCString(library.symbols.fa_version()),
  };
  return loaded;
}

/** The library's functions, opening it if needed. */
export function ffi(): FlashAttentionSymbols {
  return loadLibrary().symbols;
}

function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/** The library's thread-local message for the last failed call. */
export function lastError(): string {
  return readCString(ffi().fa_last_error());
}

/**
 * Throws FlashAttentionError for a non-zero status of an ABI call, with the code of the
 * status and the library's message; `fallbackArgument` names the argument when the message
 * is empty.
 */
export function check(status: number, fallbackArgument = "library"): void {
  if (status === 0) return;
  const message = lastError() || `${fallbackArgument}: failed with status ${status}`;
  throw new FlashAttentionError(errorCodeFromStatus(status), message, { status });
}
