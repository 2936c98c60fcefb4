/**
 * Runs the CLI (`cli.ts` at the repository root) as a subprocess, for the CLI tests.
 * @module
 */

import { fileURLToPath } from "node:url";

/** The repository root, where `cli.ts` is. */
export const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));

/** The permissions the CLI needs. */
export const CLI_PERMISSIONS: readonly string[] = ["--allow-ffi", "--allow-read", "--allow-env"];

/** What a CLI run gave: exit code and both streams as text. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/** Runs `deno run <permissions> cli.ts <flags>` with NO_COLOR set. */
export async function runCli(
  permissions: readonly string[],
  flags: readonly string[],
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "cli.ts", ...flags],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
