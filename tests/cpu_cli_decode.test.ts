/**
 * The CLI's decode mode (`cli.ts --decode`) on the CPU device: tiny dense and paged caches
 * with appended rows pass --check (the CPU backend's attentionWithKVCache against dense
 * attention() over the gathered rows), one call repeated and decode steps; usage mistakes
 * and library refusals give one error line and their exit codes.
 */

import assert from "node:assert/strict";
import { visibleKeys } from "../src/cli/decode.ts";
import { CLI_PERMISSIONS, type CliRun, runCli } from "./helpers/cli.ts";

/** Runs `cli.ts --device cpu --decode` with `flags`. */
function decodeCli(...flags: string[]): Promise<CliRun> {
  const small = [
    "--device",
    "cpu",
    "--decode",
    "--heads",
    "4",
    "--kv-heads",
    "2",
    "--head-dim",
    "32",
  ];
  return runCli(CLI_PERMISSIONS, [...small, ...flags]);
}

/** The names of the compared outputs, and that every comparison and the lengths passed. */
function assertChecked(stdout: string, names: string[]): void {
  const found = [...stdout.matchAll(/^\s*(\w+)\s+max\|err\|\s+([0-9.e+-]+)/gm)];
  assert.deepEqual(found.map((m) => m[1]).sort(), [...names].sort(), stdout);
  for (const [, name, value] of found) {
    // Unit-scale data: errors are ~1e-2 at most; 5e-2 flags a wrong result.
    assert.ok(Number(value) < 5e-2, `${name} max error ${value}`);
  }
  assert.match(stdout, /^\s*length .* ok$/m, stdout);
  assert.doesNotMatch(stdout, /FAIL/);
}

Deno.test("cli decode: --check passes on tiny dense and paged caches with --append", async () => {
  const dense = await decodeCli(
    ...["--cache-len", "0,9,40", "--new-rows", "3", "--append", "--check"],
    ...["--causal", "--rotary", "16", "--sinks", "--dtype", "fp16"],
  );
  assert.equal(dense.code, 0, dense.stdout + dense.stderr);
  assert.match(
    dense.stdout,
    /problem: {2}decode B=3 Hq=4 Hkv=2 D=32 L=0,9,40 Snew=3 float16 bhsd cache=dense append rotary=16 splits=auto steps=off graph=off seed=0 causal sinks=random/,
  );
  assert.match(dense.stdout, /^decode .* ms\/call \(median of 3\), .* GB\/s KV read/m);
  assert.match(dense.stdout, /against dense attention\(\) over the gathered rows/);
  assertChecked(dense.stdout, ["out", "lse", "kcache", "vcache"]);
  // Lengths unchanged: every repeated call writes the same rows.
  assert.match(dense.stdout, /length host 0,9,40 device 0,9,40/);

  const paged = await decodeCli(
    ...["--cache-len", "17", "--batch", "2", "--page-size", "5", "--append", "--check"],
    ...["--new-rows", "2", "--splits", "3", "--window", "6,0", "--alibi", "--softcap", "4"],
    ...["--layout", "bshd", "--rotary", "32", "--seed", "7"],
  );
  assert.equal(paged.code, 0, paged.stdout + paged.stderr);
  assert.match(paged.stdout, /L=17 Snew=2 bfloat16 bshd cache=paged:5 append rotary=32 splits=3/);
  assertChecked(paged.stdout, ["out", "lse", "kcache", "vcache"]);
});

Deno.test("cli decode: --steps appends and advances the lengths and passes --check", async () => {
  // 1 warm-up step and 4 timed ones, 2 rows each: the lengths grow by 10.
  const steps = await decodeCli(
    ...["--cache-len", "3,30", "--page-size", "4", "--append", "--new-rows", "2"],
    ...["--steps", "4", "--warmup", "1", "--rotary", "32", "--check"],
  );
  assert.equal(steps.code, 0, steps.stdout + steps.stderr);
  assert.match(steps.stdout, /steps=4 graph=off/);
  assert.match(steps.stdout, /^decode .* ms\/step \(median of 4\)/m);
  assertChecked(steps.stdout, ["out", "lse", "kcache", "vcache"]);
  assert.match(steps.stdout, /length host 13,40 device 13,40 \(expected 13,40\)/);
});

Deno.test("cli decode: mistakes are one error line (usage 2, library 1)", async () => {
  const usage = [
    ["--backward"],
    ["--seqlen-q", "8"],
    ["--graph"],
    ["--rotary", "5"],
    ["--cache-len", "1,2", "--batch", "3"],
    ["--steps", "2", "--iterations", "3"],
  ];
  for (const flags of usage) {
    const r = await decodeCli(...flags);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^error: --[a-z-]+: .*\n\(see --help\)\n$/, flags.join(" "));
  }
  for (const flags of [["--kv-heads", "3"], ["--splits", "300"], ["--steps", "1", "--graph"]]) {
    const r = await decodeCli(...flags);
    assert.equal(r.code, 1, `${flags.join(" ")}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^error: \w+: [^\n]*\n$/, flags.join(" "));
  }
  const plain = await runCli(CLI_PERMISSIONS, ["--append"]);
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /^error: --append: only with --decode/);
});

Deno.test("cli decode: KV rows read follow the window (visibleKeys)", () => {
  assert.equal(visibleKeys(1, 100, [-1, -1]), 100);
  assert.equal(visibleKeys(1, 100, [-1, 0]), 100);
  assert.equal(visibleKeys(1, 100, [9, 0]), 10);
  assert.equal(visibleKeys(4, 100, [9, 0]), 13);
  assert.equal(visibleKeys(4, 3, [9, 0]), 3);
  assert.equal(visibleKeys(2, 0, [-1, -1]), 0);
});
