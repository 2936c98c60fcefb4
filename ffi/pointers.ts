/**
 * Raw host addresses for the ABI, and keeping the memory behind them alive while the
 * library uses them (src/ reaches Deno.UnsafePointer only through here).
 * @module
 */

/** The address of a host buffer's first byte, as the ABI's u64. Needs `--allow-ffi`. */
export function hostAddress(bytes: Uint8Array): bigint {
  return Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes));
}

// The owners of the memory whose raw addresses the FFI call in progress was given. A module
// variable is a GC root, so whatever it holds stays reachable.
let pinned: readonly unknown[] = [];

/**
 * Runs `call` (typically one FFI call given raw addresses packed into a struct) with every
 * object of `owners` held by a module variable until it returns or throws. A raw address
 * keeps nothing alive by itself, and an engine may drop a local it no longer reads; this
 * store happens before the call and the release after it, both observable by the call, so
 * no optimizer can drop either: host buffers behind the addresses outlive the call.
 */
export function keepAliveDuring<T>(owners: readonly unknown[], call: () => T): T {
  const outer = pinned; // read again below, so a nesting caller's owners stay held too
  pinned = owners;
  try {
    return call();
  } finally {
    pinned = outer;
  }
}
