/**
 * The library as a file and a process: exported symbols against the FFI table and the
 * header, the lookup order, the build's source list, devices without a GPU, and the CLI.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  defaultCacheDir,
  ffi,
  fileExists,
  findLibrary,
  lastError,
  LIBRARY_ENV,
  loadLibrary,
} from "../ffi/library.ts";
import { symbols } from "../ffi/symbols.ts";
import {
  ABI_VERSION,
  attention,
  attentionBackward,
  Device,
  FlashAttentionError,
  Tensor,
} from "../mod.ts";
import { libraryCacheDir, SOURCE_FILES } from "../src/build.ts";
import { disposeTensors } from "./helpers/cases.ts";
import { assertBitwise, assertNontrivial } from "./helpers/check.ts";
import { Rng } from "./helpers/random.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
// The library under test: FLASHATTN_LIB where set (as the lookup does), else build/.
const LIB = Deno.env.get(LIBRARY_ENV) || join(ROOT, "build", "libflashattn.so");
const decoder = new TextDecoder();

async function run(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
  timeoutMs?: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs),
  })
    .output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function sorted(items: Iterable<string>): string[] {
  return [...items].sort();
}

Deno.test("library: exported fa_* symbols == ffi/symbols.ts table == FA_API functions of flashattn.h", async () => {
  const nm = await run("nm", ["-D", "--defined-only", LIB]);
  assert.equal(nm.code, 0, nm.stderr);
  const exported = new Set<string>();
  for (const line of nm.stdout.split("\n")) {
    const parts = line.trim().split(/\s+/);
    const name = parts[parts.length - 1];
    if (parts.length >= 3 && /^[TtWw]$/.test(parts[1]) && name.startsWith("fa_")) {
      exported.add(name);
    }
  }
  const table = new Set(Object.keys(symbols));
  const header = await Deno.readTextFile(join(ROOT, "cuda/include/flashattn.h"));
  const declared = new Set(
    [...header.matchAll(/^FA_API\s+[^(]*?\b(fa_[a-z0-9_]+)\s*\(/gm)].map((m) => m[1]),
  );
  assert.ok(declared.size >= 20, `parsed only ${declared.size} declarations from the header`);
  assert.deepEqual(sorted(table), sorted(exported), "symbol table vs exported symbols");
  assert.deepEqual(sorted(table), sorted(declared), "symbol table vs header declarations");
  // Nothing but the ABI leaks out of the library (C++ internals stay hidden).
  const other: string[] = [];
  for (const line of nm.stdout.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length >= 3 && parts[1] === "T" && !parts[2].startsWith("fa_")) other.push(parts[2]);
  }
  assert.deepEqual(other.filter((n) => n.includes("fa")), [], "internal symbols exported");
});

Deno.test("library: ABI and package versions agree", async () => {
  assert.equal(ABI_VERSION, 3);
  assert.equal(ffi().fa_abi_version(), ABI_VERSION);
  const pkg = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))) as { version: string };
  assert.equal(loadLibrary().version, pkg.version);
  // FLASHATTN_LIB (e.g. a build folder outside the checkout) wins over build/ beside the module.
  const fromEnv = Deno.env.get(LIBRARY_ENV);
  assert.equal(loadLibrary().location.source, fromEnv ? "env" : "module");
  if (fromEnv) assert.equal(loadLibrary().location.path, fromEnv);
});

Deno.test("library: lookup order env -> beside the module -> cache -> error (temporary folders)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "flashattn-lookup-" });
  try {
    const envLib = join(tmp, "env", "libcustom.so");
    const moduleDir = join(tmp, "pkg");
    const cacheDir = join(tmp, "cache", "flashattn", "0.1.0");
    await Deno.mkdir(join(tmp, "env"), { recursive: true });
    await Deno.mkdir(join(moduleDir, "build"), { recursive: true });
    await Deno.mkdir(cacheDir, { recursive: true });
    const touch = (p: string): Promise<void> => Deno.writeTextFile(p, "not really a library");
    const env = (vars: Record<string, string>) => (name: string): string | undefined => vars[name];
    const lookup = (vars: Record<string, string>) =>
      findLibrary({ env: env(vars), moduleDir, cacheDir, exists: fileExists });

    const thrown = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    // Nothing anywhere: library_not_found, saying how to build.
    let error = thrown(() => lookup({}));
    assert.ok(error instanceof FlashAttentionError);
    assert.equal(error.code, "library_not_found");
    assert.match(error.message, /make lib/);
    assert.match(error.message, /jsr:@flashattn\/flashattn\/build/);

    // Cache only.
    await touch(join(cacheDir, "libflashattn.so"));
    assert.deepEqual(lookup({}), { path: join(cacheDir, "libflashattn.so"), source: "cache" });
    // Beside the module wins over the cache.
    await touch(join(moduleDir, "build", "libflashattn.so"));
    assert.deepEqual(lookup({}), {
      path: join(moduleDir, "build", "libflashattn.so"),
      source: "module",
    });
    // FLASHATTN_LIB wins over both.
    await touch(envLib);
    assert.deepEqual(lookup({ [LIBRARY_ENV]: envLib }), { path: envLib, source: "env" });
    // FLASHATTN_LIB set but missing: an error naming it, no silent fallback.
    const missing = join(tmp, "env", "missing.so");
    error = thrown(() => lookup({ [LIBRARY_ENV]: missing }));
    assert.ok(error instanceof FlashAttentionError, "set-but-missing FLASHATTN_LIB must throw");
    assert.equal(error.code, "library_not_found");
    assert.ok(error.message.includes(missing), error.message);
    // A remote import (no module dir) goes straight to the cache.
    assert.equal(
      findLibrary({ env: env({}), moduleDir: undefined, cacheDir, exists: fileExists }).source,
      "cache",
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("library: per-user cache folder from XDG_CACHE_HOME, else HOME/.cache", async () => {
  const pkg = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))) as { version: string };
  const vars = (v: Record<string, string>) => (name: string): string | undefined => v[name];
  assert.equal(
    libraryCacheDir(vars({ XDG_CACHE_HOME: "/x/cache", HOME: "/home/u" })),
    join("/x/cache", "flashattn", pkg.version),
  );
  assert.equal(
    libraryCacheDir(vars({ HOME: "/home/u" })),
    join("/home/u/.cache/flashattn", pkg.version),
  );
  assert.equal(
    defaultCacheDir(vars({ HOME: "/home/u" })),
    join("/home/u/.cache/flashattn", pkg.version),
  );
});

Deno.test("library: the process honours FLASHATTN_LIB (copy works; missing or bogus file -> library_not_found)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "flashattn-env-" });
  try {
    const copy = join(tmp, "libcopy.so");
    await Deno.copyFile(LIB, copy);
    const bogus = join(tmp, "bogus.so");
    await Deno.writeTextFile(bogus, "this is not an ELF file");
    const script = `
      import { loadLibrary } from "./ffi/library.ts";
      import { Device, FlashAttentionError } from "./mod.ts";
      try {
        const n = Device.cudaCount();
        console.log(JSON.stringify({ ok: true, n, source: loadLibrary().location.source, path: loadLibrary().location.path }));
      } catch (e) {
        console.log(JSON.stringify({ ok: false, isError: e instanceof FlashAttentionError, code: e.code, message: e.message, hasCause: e.cause !== undefined }));
      }`;
    const probe = async (lib: string) => {
      const r = await run(Deno.execPath(), ["eval", "--ext=ts", script], {
        [LIBRARY_ENV]: lib,
        NO_COLOR: "1",
      });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split("\n").pop() as string) as Record<string, unknown>;
    };
    const good = await probe(copy);
    assert.deepEqual(good, { ok: true, n: 0, source: "env", path: copy });
    const missing = await probe(join(tmp, "nope.so"));
    assert.equal(missing.ok, false);
    assert.equal(missing.isError, true);
    assert.equal(missing.code, "library_not_found");
    assert.ok(String(missing.message).includes("nope.so"));
    const broken = await probe(bogus);
    assert.equal(broken.code, "library_not_found", String(broken.message));
    assert.equal(broken.hasCause, true, "a failed dlopen is wrapped with its cause");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** The kernels' debug harnesses: in the tree, but not needed by `make lib`. */
const NOT_SHIPPED = ["cuda/sm90/debug/"];

/** Makefile + the files under cuda/: git-tracked ones in a checkout, else every file there. */
async function buildSources(): Promise<string[]> {
  const checkout = await Deno.stat(join(ROOT, ".git")).then(() => true, () => false);
  if (checkout) {
    // Tracked files only, so untracked work in progress does not count. A copy of the tree
    // whose .git is not a usable repository (no git, no index) falls back to the walk.
    const git = await run("git", ["ls-files", "Makefile", "cuda"]).catch(() => undefined);
    const tracked = git?.code === 0 ? git.stdout.split("\n").filter((line) => line !== "") : [];
    if (tracked.length > 0) return tracked;
  }
  const files: string[] = ["Makefile"];
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(rel);
      else if (entry.isFile) files.push(rel);
    }
  };
  await walk("cuda");
  return files;
}

Deno.test("library: SOURCE_FILES of src/build.ts lists exactly Makefile + the (git-tracked) files under cuda/", async () => {
  const files = (await buildSources()).filter((file) =>
    !NOT_SHIPPED.some((dir) => file.startsWith(dir))
  );
  assert.ok(files.includes("Makefile") && files.includes("cuda/include/flashattn.h"));
  assert.deepEqual(sorted(SOURCE_FILES), sorted(files));
  assert.equal(new Set(SOURCE_FILES).size, SOURCE_FILES.length, "duplicates in SOURCE_FILES");
});

Deno.test("devices: no GPU here -> cudaCount 0 without throwing; list()[0] and default() are the cpu", () => {
  const count = Device.cudaCount();
  assert.equal(typeof count, "number");
  const list = Device.list();
  assert.equal(list.length, 1 + count);
  const cpu = list[0];
  assert.equal(cpu.kind, "cpu");
  assert.equal(cpu.index, -1);
  assert.equal(cpu.name, "cpu");
  assert.equal(cpu.computeCapability, null);
  assert.ok(cpu.multiprocessors >= 1);
  // Host memory needs --allow-sys (not among the test permissions): 0 is allowed then.
  const sys = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state;
  assert.ok(sys === "granted" ? cpu.totalMemory > 0 : cpu.totalMemory >= 0);
  assert.equal(cpu.toString(), "cpu");
  assert.ok(cpu.equals(Device.cpu()));
  if (count === 0) {
    assert.ok(Device.default().equals(Device.cpu()));
  } else {
    assert.ok(Device.default().equals(Device.cuda(0)));
    assert.ok(!Device.cpu().equals(Device.cuda(0)));
  }
  Device.cpu().synchronize();
  assert.ok(Device.cpu().freeMemory() >= 0);
});

Deno.test("cpu backend: results do not depend on the thread count (1, 2, 5; forward and backward)", () => {
  const rng = new Rng(1234);
  // GQA, Sq > 64 (three row blocks), a [B,1,1,Sk] bias whose dbias is summed over heads and
  // every row block, causal and dropout.
  const shape = [2, 4, 150, 40], kvShape = [2, 2, 91, 40], biasShape = [2, 1, 1, 91];
  const q = Tensor.fromArray(rng.normalArray(2 * 4 * 150 * 40), shape, { dtype: "bfloat16" });
  const k = Tensor.fromArray(rng.normalArray(2 * 2 * 91 * 40), kvShape, { dtype: "bfloat16" });
  const v = Tensor.fromArray(rng.normalArray(2 * 2 * 91 * 40), kvShape, { dtype: "bfloat16" });
  const dout = Tensor.fromArray(rng.normalArray(2 * 4 * 150 * 40), shape, { dtype: "bfloat16" });
  const bias = Tensor.fromArray(rng.normalArray(2 * 91), biasShape, { dtype: "float32" });
  const options = { causal: true, dropout: { p: 0.1, seed: 3n }, bias };
  const results: Record<string, Float32Array>[] = [];
  try {
    for (const threads of [1, 2, 5]) {
      assert.equal(ffi().fa_cpu_set_threads(threads), 0, lastError());
      const fwd = attention(q, k, v, options);
      const grads = attentionBackward(dout, q, k, v, fwd.out, fwd.lse, {
        ...options,
        computeDbias: true,
      });
      assert.ok(grads.dbias !== undefined);
      results.push({
        out: fwd.out.toFloat32(),
        lse: fwd.lse.toFloat32(),
        dq: grads.dq.toFloat32(),
        dk: grads.dk.toFloat32(),
        dv: grads.dv.toFloat32(),
        dbias: grads.dbias.toFloat32(),
      });
      disposeTensors(fwd, grads);
    }
    assertNontrivial("dbias", results[0].dbias);
    for (const result of results.slice(1)) {
      for (const name of Object.keys(result)) {
        assertBitwise(name, results[0][name], result[name]);
      }
    }
    assert.notEqual(ffi().fa_cpu_set_threads(-1), 0, "negative thread count must be refused");
    assert.match(lastError(), /^threads: /);
  } finally {
    ffi().fa_cpu_set_threads(0);
    disposeTensors({ q, k, v, dout, bias });
  }
});

Deno.test("cpu backend: a worker thread that cannot start is an out_of_memory error, not a crash", async () => {
  // 1024 workers with 1 GiB stacks cannot fit in 200 GB of address space (Deno itself
  // reserves about 50 GB at its peak, so much less is flaky): std::thread fails part-way
  // through starting the pool. The started workers must be stopped and joined (a joinable
  // std::thread destroyed during unwinding calls std::terminate), and the status must say
  // why. A later call with fewer threads works.
  const script = `
    import { ffi } from "./ffi/library.ts";
    import { attention, Tensor } from "./mod.ts";
    const q = Tensor.zeros([4, 8, 64, 16], "float16");
    const result = {};
    ffi().fa_cpu_set_threads(1024);
    try {
      attention(q, q, q);
      result.first = "ok";
    } catch (e) {
      result.first = { code: e.code, message: e.message };
    }
    ffi().fa_cpu_set_threads(2);
    attention(q, q, q);
    result.second = "ok";
    console.log(JSON.stringify(result));`;
  const limited = 'ulimit -s 1048576 && ulimit -v 200000000 && exec "$0" eval --ext=ts "$1"';
  // A crash can also hang (the abort handler among a thousand threads): 60 s at most.
  const r = await run("sh", ["-c", limited, Deno.execPath(), script], { NO_COLOR: "1" }, 60_000);
  assert.equal(r.code, 0, `exit ${r.code} (killed after 60 s if 143): ${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  assert.deepEqual(result, {
    first: {
      code: "out_of_memory",
      message: "fa_forward: out of host resources: Resource temporarily unavailable",
    },
    second: "ok",
  });
});

Deno.test("cli: --device cpu --check on a tiny problem prints results and small errors", async () => {
  const r = await run(Deno.execPath(), [
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-env",
    "cli.ts",
    "--device",
    "cpu",
    "--check",
    "--backward",
    "--causal",
    "--batch",
    "1",
    "--heads",
    "2",
    "--kv-heads",
    "1",
    "--seqlen-q",
    "33",
    "--seqlen-k",
    "47",
    "--head-dim",
    "32",
    "--dtype",
    "fp16",
  ], { NO_COLOR: "1" });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /forward/);
  assert.match(r.stdout, /backward/);
  const errors = [...r.stdout.matchAll(/^\s*(out|lse|dq|dk|dv)\s+max\|err\|\s+([0-9.e+-]+)/gm)];
  assert.deepEqual(errors.map((m) => m[1]).sort(), ["dk", "dq", "dv", "lse", "out"], r.stdout);
  for (const [, name, value] of errors) {
    // fp16 outputs of unit-scale data: errors are ~1e-3 at most; 2e-2 flags a wrong result.
    assert.ok(Number(value) < 2e-2, `${name} max error ${value}`);
  }
  assert.doesNotMatch(r.stdout, /FAIL|fail/);
});

Deno.test("cli: --help succeeds; an unknown option fails", async () => {
  const help = await run(Deno.execPath(), [
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-env",
    "cli.ts",
    "--help",
  ]);
  assert.equal(help.code, 0);
  assert.match(help.stdout + help.stderr, /--device/);
  const bad = await run(Deno.execPath(), [
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-env",
    "cli.ts",
    "--no-such-option",
  ]);
  assert.notEqual(bad.code, 0);
});

Deno.test("cli: --window, --softcap, --sinks and --alibi show in the problem line and pass --check", async () => {
  const cli = (...flags: string[]) =>
    run(Deno.execPath(), [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-env",
      "cli.ts",
      ...["--device", "cpu", "--heads", "2", "--seqlen-q", "40", "--seqlen-k", "70"],
      ...["--head-dim", "16", "--backward", "--check"],
      ...flags,
    ], { NO_COLOR: "1" });
  const r = await cli(
    "--window",
    "9,3",
    "--softcap",
    "4",
    "--sinks",
    "--alibi",
    "--dropout",
    "0.1",
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /problem:.* window=9,3 softcap=4 sinks=random alibi/);
  const names = [...r.stdout.matchAll(/^\s*(\w+)\s+max\|err\|/gm)].map((m) => m[1]).sort();
  assert.deepEqual(names, ["dk", "dq", "dsinks", "dv", "lse", "out"], r.stdout);
  assert.doesNotMatch(r.stdout, /FAIL/);
  const value = await cli("--causal", "--window", "5,0", "--sinks=-0.5");
  assert.equal(value.code, 0, value.stdout + value.stderr);
  assert.match(value.stdout, /causal window=5,0 sinks=-0\.5/);
  assert.doesNotMatch(value.stdout, /FAIL/);
  // Refused: a malformed window (usage, 2); causal with a right edge (the library, 1).
  assert.equal((await cli("--window", "3")).code, 2);
  assert.equal((await cli("--softcap", "-1")).code, 2);
  const causal = await cli("--causal", "--window", "3,2");
  assert.equal(causal.code, 1);
  assert.match(causal.stderr, /^error: window: /m);
});
