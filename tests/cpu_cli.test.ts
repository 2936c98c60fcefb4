/**
 * The CLI (`cli.ts`) on the CPU device: one-line errors and exit codes (usage and missing
 * permissions 2, runtime failures 1, the problem line only once the call was accepted),
 * 64-bit and negative seeds, every option in the problem line, the nested mode's --check,
 * and progress on stderr only when stderr is a terminal.
 */

import assert from "node:assert/strict";
import { joinNegativeValues, seedOption, UsageError } from "../src/cli/args.ts";
import { Progress } from "../src/cli/progress.ts";
import { inputSeed } from "../src/cli/random.ts";
import { CLI_PERMISSIONS, type CliRun, ROOT, runCli } from "./helpers/cli.ts";

const decoder = new TextDecoder();
const PERMISSIONS = [...CLI_PERMISSIONS];
const SMALL = ["--device", "cpu", "--heads", "2", "--head-dim", "16"];

/** Runs `deno run <permissions> cli.ts <flags>`. */
function cli(permissions: string[], ...flags: string[]): Promise<CliRun> {
  return runCli(permissions, flags);
}

/** The compared outputs' names; asserts every comparison passed. */
function checked(stdout: string): string[] {
  assert.doesNotMatch(stdout, /FAIL/, stdout);
  return [...stdout.matchAll(/^\s*(\w+)\s+max\|err\|/gm)].map((m) => m[1]).sort();
}

Deno.test("cli: a missing permission is one line naming the flags, exit 2", async () => {
  for (const missing of ["--allow-ffi", "--allow-read"]) {
    const granted = PERMISSIONS.filter((flag) => flag !== missing);
    const r = await cli(granted, ...SMALL, "--seqlen-q", "8");
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${missing} is not granted.*--allow-ffi --allow-read --allow-env cli\\.ts.*\\n$`,
      ),
    );
    assert.doesNotMatch(r.stdout, /problem:/);
  }
  // --help needs no permission.
  const help = await cli([], "--help");
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /--seqlens/);
});

Deno.test("cli: --heads 1000000 is a one-line out-of-memory error, exit 1, no problem line", async () => {
  const r = await cli(PERMISSIONS, "--device", "cpu", "--heads", "1000000");
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /^error: out of host memory \(.*\): .* GB for the largest of q, k, v\n$/);
  assert.doesNotMatch(r.stdout, /problem:/);
  // A library refusal: one line, exit 1, and no problem line either.
  const refused = await cli(PERMISSIONS, ...SMALL, "--causal", "--window", "3,2");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^error: window: [^\n]*\n$/);
  assert.doesNotMatch(refused.stdout, /problem:/);
  // Usage mistakes: exit 2, before any output on stdout.
  for (const flags of [["--heads", "0"], ["--seed", "1.5"], ["--seed", String(2n ** 64n)]]) {
    const usage = await cli(PERMISSIONS, ...SMALL, ...flags);
    assert.equal(usage.code, 2, flags.join(" "));
    assert.match(usage.stderr, /^error: --\w+: .*\n\(see --help\)\n$/);
    assert.equal(usage.stdout, "");
  }
});

Deno.test("cli: --seed -1 is 2^64 - 1; negative values of other options parse", async () => {
  const r = await cli(
    PERMISSIONS,
    ...SMALL,
    ...["--seqlen-q", "24", "--dropout", "0.2", "--seed", "-1", "--check"],
    ...["--sinks", "-1", "--window", "-1,4", "--backward"],
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /seed=18446744073709551615 dropout=0\.2 window=-1,4 sinks=-1/);
  assert.deepEqual(checked(r.stdout), ["dk", "dq", "dsinks", "dv", "lse", "out"]);
  const max = await cli(PERMISSIONS, ...SMALL, "--seqlen-q", "8", "--seed", String(2n ** 64n - 1n));
  assert.equal(max.code, 0, max.stderr);
  assert.match(max.stdout, /seed=18446744073709551615 /);
});

Deno.test("cli: seeds and negative values (unit)", () => {
  assert.equal(seedOption("-1"), 2n ** 64n - 1n);
  assert.equal(seedOption(String(-(2n ** 63n))), 2n ** 63n);
  assert.equal(seedOption("7"), 7n);
  assert.throws(() => seedOption(String(-(2n ** 63n) - 1n)), UsageError);
  assert.throws(() => seedOption("0x10"), UsageError);
  // Seeds below 2^32 keep their inputs; the high word changes them.
  assert.equal(inputSeed(12345n), 12345);
  assert.notEqual(inputSeed(2n ** 32n), inputSeed(0n));
  const valued = new Set(["seed", "sinks"]);
  assert.deepEqual(
    joinNegativeValues(["--seed", "-1", "--sinks", "-0.5", "--causal", "-h"], valued),
    ["--seed=-1", "--sinks=-0.5", "--causal", "-h"],
  );
});

Deno.test("cli: the problem line shows every option", async () => {
  const r = await cli(
    PERMISSIONS,
    ...SMALL,
    ...["--seqlen-q", "8", "--backward", "--deterministic", "--seed", "5"],
    ...["--warmup", "2", "--iterations", "4", "--no-check"],
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^problem: {2}B=1 Hq=2 Hkv=2 Sq=8 Sk=8 D=16 bfloat16 bhsd seed=5 backward deterministic warmup=2 iterations=4$/m,
  );
  const decode = await cli(PERMISSIONS, ...SMALL, "--decode", "--steps", "2", "--no-check");
  assert.equal(decode.code, 0, decode.stderr);
  assert.match(decode.stdout, /steps=2 graph=off seed=0 warmup=1$/m);
});

Deno.test("cli: --seqlens runs a nested batch and --check compares every sequence", async () => {
  const r = await cli(
    PERMISSIONS,
    ...SMALL,
    ...["--kv-heads", "1", "--seqlens", "17,0,40", "--seqlens-k", "30,5,9", "--backward"],
    ...["--check", "--sinks", "--alibi", "--dropout", "0.1", "--seed", "-3"],
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(
    r.stdout,
    /problem: {2}nested B=3 Hq=2 Hkv=1 Sq=17,0,40 Sk=30,5,9 D=16 bfloat16 packed/,
  );
  assert.match(r.stdout, /against float64 reference per sequence/);
  assert.deepEqual(checked(r.stdout), ["dk", "dq", "dsinks", "dv", "lse", "out"]);
  const causal = await cli(PERMISSIONS, ...SMALL, "--seqlens", "12,50", "--causal", "--check");
  assert.equal(causal.code, 0, causal.stdout + causal.stderr);
  assert.deepEqual(checked(causal.stdout), ["lse", "out"]);
  for (
    const flags of [["--bias", "full"], ["--layout", "bshd"], ["--seqlen-q", "4"], ["--decode"]]
  ) {
    const refused = await cli(PERMISSIONS, ...SMALL, "--seqlens", "4,5", ...flags);
    assert.equal(refused.code, 2, flags.join(" "));
    assert.match(refused.stderr, /: not with --seqlens/);
  }
  assert.equal((await cli(PERMISSIONS, ...SMALL, "--seqlens-k", "4")).code, 2);
  assert.equal((await cli(PERMISSIONS, ...SMALL, "--seqlens", "4,5", "--seqlens-k", "4")).code, 2);
});

Deno.test("cli: no progress on stderr when it is not a terminal", async () => {
  const r = await cli(PERMISSIONS, ...SMALL, "--seqlen-q", "64", "--backward", "--check");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
});

Deno.test("cli: progress line: drawn, updated, erased around stdout lines", () => {
  const written: string[] = [];
  const progress = new Progress((text) => written.push(text));
  progress.start("running forward on cpu");
  assert.deepEqual(written, ["\r\x1b[Krunning forward on cpu..."]);
  progress.update("call 1/4"); // within 250 ms of the start: not redrawn
  assert.equal(written.length, 1);
  progress.end();
  assert.equal(written.at(-1), "\r\x1b[K");
  // Without a sink (stderr not a terminal) every call is a no-op.
  const off = new Progress(null);
  off.start("checking");
  off.update("sequence 1/2");
  off.end();
});

Deno.test({
  name: "cli: progress on stderr when it is a terminal (under script(1))",
  ignore: !["/usr/bin/script", "/bin/script"].some((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  }),
  fn: async () => {
    const command = [Deno.execPath(), "run", ...PERMISSIONS, "cli.ts", ...SMALL]
      .concat(["--seqlen-q", "64", "--iterations", "2", "--check", ">/dev/null"]).join(" ");
    const out = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const terminal = decoder.decode(out.stdout);
    assert.equal(out.code, 0, terminal + decoder.decode(out.stderr));
    assert.match(terminal, /running forward on cpu\.\.\./);
    assert.match(terminal, /checking against float64 reference\.\.\./);
    assert.ok(terminal.endsWith("\r\x1b[K"), JSON.stringify(terminal));
  },
});
