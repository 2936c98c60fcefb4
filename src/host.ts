/**
 * Facts about the host, read only where Deno already grants it, so nothing prompts.
 * @module
 */

/** Whether a permission is granted, without prompting. */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Host memory in bytes: total and available (what allocations can still get). Both are 0
 * unless `--allow-sys` (systemMemoryInfo) is granted.
 */
export function hostMemory(): { total: number; available: number } {
  if (!granted({ name: "sys", kind: "systemMemoryInfo" })) return { total: 0, available: 0 };
  const info = Deno.systemMemoryInfo();
  return { total: info.total, available: info.available };
}

/** Hardware threads of the host (at least 1). */
export function hardwareThreads(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}
