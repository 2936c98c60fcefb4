/**
 * One error type, always: failures that used to surface as RangeError or TypeError, or not
 * at all, are FlashAttentionErrors with a code and the argument at fault. Host allocations
 * and sizes past 2^53; tensor data and options bags of the wrong type; boolean options that
 * are not booleans; a head dim of 0; outputs that overlap each other or an input. Every
 * failing call leaves its (poisoned) outputs and the KV cache as they were.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  attentionWithKVCache,
  type BackwardOptions,
  type DType,
  KVCache,
  type KVCacheAttentionOptions,
  kvcacheWorkspaceSize,
  mergeAttention,
  NestedBatch,
  Tensor,
  timeCuda,
} from "../mod.ts";
import { assertFails } from "./helpers/errors.ts";
import { POISON, poisoned } from "./helpers/cases.ts";
import { assertAllEqual, assertBitwise } from "./helpers/check.ts";
import { Rng } from "./helpers/random.ts";

/** Asserts every tensor still holds POISON (the failed call wrote nothing). */
function assertPoisoned(what: string, tensors: Record<string, Tensor | undefined>): void {
  for (const [name, tensor] of Object.entries(tensors)) {
    if (tensor !== undefined) assertAllEqual(`${what}: ${name}`, tensor.toFloat32(), POISON);
  }
}

const rng = new Rng(1010);
const B = 2, HQ = 4, HKV = 2, SQ = 8, SK = 16, D = 8;

function rand(shape: number[], dtype: DType = "float16"): Tensor {
  return Tensor.fromArray(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
}

/** A valid forward and backward problem, with poisoned preallocated outputs. */
class Problem implements Disposable {
  readonly stack = new DisposableStack();
  readonly q = this.use(rand([B, HQ, SQ, D]));
  readonly k = this.use(rand([B, HKV, SK, D]));
  readonly v = this.use(rand([B, HKV, SK, D]));
  readonly dout = this.use(rand([B, HQ, SQ, D]));
  readonly out = this.use(poisoned([B, HQ, SQ, D], "float16"));
  readonly lse = this.use(poisoned([B, HQ, SQ], "float32"));
  readonly dq = this.use(poisoned([B, HQ, SQ, D], "float16"));
  readonly dk = this.use(poisoned([B, HKV, SK, D], "float16"));
  readonly dv = this.use(poisoned([B, HKV, SK, D], "float16"));
  // The forward's results, inputs of the backward.
  readonly fwdOut: Tensor;
  readonly fwdLse: Tensor;

  constructor() {
    const { out, lse } = attention(this.q, this.k, this.v);
    this.fwdOut = this.use(out);
    this.fwdLse = this.use(lse);
  }

  use(tensor: Tensor): Tensor {
    return this.stack.use(tensor);
  }

  forward(options: object): void {
    attention(this.q, this.k, this.v, { out: this.out, lse: this.lse, ...options });
  }

  backward(options: BackwardOptions): void {
    const { dout, q, k, v, fwdOut, fwdLse } = this;
    attentionBackward(dout, q, k, v, fwdOut, fwdLse, {
      dq: this.dq,
      dk: this.dk,
      dv: this.dv,
      ...options,
    });
  }

  [Symbol.dispose](): void {
    this.stack.dispose();
  }
}

Deno.test("errors types: host allocations that fail are out_of_memory naming the argument", () => {
  // 2^48 bytes (256 TiB): more than any host has, still an exact size.
  const huge = [2 ** 20, 2 ** 27];
  assertFails(() => Tensor.empty(huge, "float16"), "out_of_memory", "shape", "empty");
  assertFails(() => Tensor.zeros(huge, "float16"), "out_of_memory", "shape", "zeros");
  assertFails(() => Tensor.full(huge, 1, "float16"), "out_of_memory", "shape", "full");
  const cacheShape = { batch: 1, heads: 1, headDim: 8, dtype: "float16" as const };
  assertFails(
    () => KVCache.dense({ ...cacheShape, capacity: 2 ** 40 }),
    "out_of_memory",
    "capacity",
    "a dense cache too large for the host",
  );
  assertFails(
    () => KVCache.paged({ ...cacheShape, pageSize: 16, numPages: 2 ** 40 }),
    "out_of_memory",
    "numPages",
    "a paged cache whose free list cannot be made",
  );
  assertFails(
    () => KVCache.paged({ ...cacheShape, pageSize: 2 ** 30, numPages: 2 ** 10 }),
    "out_of_memory",
    "numPages",
    "a paged cache too large for the host",
  );
});

Deno.test("errors types: sizes past 2^53 are invalid_argument naming the shape", () => {
  const elements = [2 ** 30, 2 ** 30, 2 ** 30];
  assertFails(
    () => Tensor.empty(elements, "float16"),
    "invalid_argument",
    "shape",
    "2^90 elements",
  );
  assertFails(() => Tensor.full(elements, 0, "float32"), "invalid_argument", "shape", "full");
  // An exact element count whose bytes are not.
  const bytes = [2 ** 52];
  assertFails(() => Tensor.empty(bytes, "float32"), "invalid_argument", "shape", "2^54 bytes");
  using t = rand([2, 4]);
  assertFails(
    () => t.reshape([2 ** 30, 2 ** 30, 2 ** 30, 0, -1]),
    "invalid_argument",
    "shape",
    "reshape",
  );
});

Deno.test("errors types: Tensor.fromArray refuses data that is not numbers and non-object options", () => {
  const cases: [string, unknown][] = [
    ["null", null],
    ["undefined", undefined],
    ["a string", "abcd"],
    ["an array-like object", { length: 4 }],
    ["an array with a string", [1, "2", 3, 4]],
    ["an array with a hole", [1, , 3, 4]], // eslint-disable-line no-sparse-arrays
    ["a BigInt64Array", new BigInt64Array(4)],
    ["a DataView", new DataView(new ArrayBuffer(16))],
  ];
  for (const [what, data] of cases) {
    assertFails(() => Tensor.fromArray(data as number[], [4]), "invalid_argument", "data", what);
  }
  for (const options of [5, "float16", null, [1]]) {
    assertFails(
      () => Tensor.fromArray([1, 2, 3, 4], [4], options as object),
      "invalid_argument",
      "options",
      `options ${String(options)}`,
    );
  }
  // Any typed array of numbers converts like a number[] (beyond the TensorData type).
  const doubles = Float64Array.of(1, 2, 3, 4) as unknown as number[];
  using fromDoubles = Tensor.fromArray(doubles, [4]);
  assert.deepEqual([...fromDoubles.toFloat32()], [1, 2, 3, 4]);
  const bytes = Uint8Array.of(1, 2, 3, 4) as unknown as number[];
  using fromBytes = Tensor.fromArray(bytes, [4], { dtype: "float16" });
  assert.deepEqual([...fromBytes.toFloat32()], [1, 2, 3, 4]);
});

Deno.test("errors types: options that are not objects are refused (never ignored)", () => {
  using p = new Problem();
  const { q, k, v, dout, fwdOut, fwdLse } = p;
  for (const options of [null, 5, "causal", true]) {
    const what = `options ${String(options)}`;
    const bad = options as unknown as object;
    assertFails(() => attention(q, k, v, bad), "invalid_argument", "options", `attention ${what}`);
    assertFails(
      () => attentionBackward(dout, q, k, v, fwdOut, fwdLse, bad),
      "invalid_argument",
      "options",
      `backward ${what}`,
    );
    assertFails(
      () => mergeAttention([{ out: fwdOut, lse: fwdLse }], bad),
      "invalid_argument",
      "options",
      `merge ${what}`,
    );
    assertFails(
      () => NestedBatch.pack([rand([3, HQ, D])], bad),
      "invalid_argument",
      "options",
      `pack ${what}`,
    );
    assertFails(() => timeCuda(() => {}, bad), "invalid_argument", "options", `timeCuda ${what}`);
  }
});

Deno.test("errors types: boolean options of attention and attentionBackward must be booleans", () => {
  using p = new Problem();
  for (const value of ["no", "false", 0, 1, null, {}]) {
    const what = JSON.stringify(value);
    const given = value as unknown as boolean;
    assertFails(() => p.forward({ causal: given }), "invalid_argument", "causal", `causal ${what}`);
    assertPoisoned(`forward causal ${what}`, { out: p.out, lse: p.lse });
    for (const name of ["causal", "deterministic"] as const) {
      assertFails(() => p.backward({ [name]: given }), "invalid_argument", name, `${name} ${what}`);
    }
    using bias = rand([SQ, SK], "float32");
    assertFails(
      () => p.backward({ bias, computeDbias: given }),
      "invalid_argument",
      "compute_dbias",
      `computeDbias ${what}`,
    );
    assertPoisoned(`backward ${what}`, { dq: p.dq, dk: p.dk, dv: p.dv });
  }
  // false and undefined are the defaults; true still works.
  p.forward({ causal: false });
  p.backward({ causal: true, deterministic: false, computeDbias: false });
});

Deno.test("errors types: a head dim of 0 is reported as q's head dim, not as the scale", () => {
  using q = Tensor.zeros([1, 2, 4, 0], "float16");
  using lse = Tensor.zeros([1, 2, 4], "float32");
  const check = (what: string, fn: () => unknown) => {
    let message = "";
    try {
      fn();
    } catch (error) {
      message = error instanceof Error ? error.message : "";
    }
    assert.match(message, /^q: head dim /, what);
    assertFails(fn, "invalid_argument", "q", what);
  };
  check("forward", () => attention(q, q, q));
  check("backward", () => attentionBackward(q, q, q, q, q, lse));
  using packed = NestedBatch.pack([Tensor.zeros([3, 2, 0], "float16")]);
  check("nested forward", () => attention(packed, packed, packed));
  using cache = KVCache.dense({ batch: 1, heads: 2, headDim: 8, capacity: 8, dtype: "float16" });
  using q1 = Tensor.zeros([1, 2, 1, 0], "float16");
  check("kv cache", () => attentionWithKVCache(q1, cache));
});

Deno.test("errors types: forward outputs may not overlap an input or each other", () => {
  using p = new Problem();
  const { q, k, v } = p;
  // out is q itself, or a view of k's memory.
  assertFails(() => attention(q, k, v, { out: q }), "invalid_argument", "out", "out = q");
  using kv = rand([B, HQ, SQ, D]);
  using kvOut = kv.slice(2, 0, SQ);
  assertFails(
    () => attention(q, kv.slice(1, 0, HKV), v, { out: kvOut, lse: p.lse }),
    "invalid_argument",
    "out",
    "out overlaps k",
  );
  assertPoisoned("out overlaps k", { lse: p.lse });
  // lse sharing memory with the sinks (both float32).
  using flat = poisoned([B * HQ * SQ], "float32");
  using lse = flat.reshape([B, HQ, SQ]);
  using sinks = flat.slice(0, 0, HQ);
  assertFails(() => p.forward({ lse, sinks }), "invalid_argument", "lse", "lse overlaps sinks");
  assertPoisoned("lse overlaps sinks", { out: p.out });
  // Nested: out is q's data.
  using packed = NestedBatch.pack([rand([3, HQ, D]), rand([5, HQ, D])]);
  assertFails(
    () => attention(packed, packed, packed, { out: packed.data }),
    "invalid_argument",
    "out",
    "nested out = q.data",
  );
});

Deno.test("errors types: backward gradients may not overlap each other or an input", () => {
  using p = new Problem();
  const { dout, q, k, v, fwdOut, fwdLse } = p;
  const run = (options: BackwardOptions) => () =>
    attentionBackward(dout, q, k, v, fwdOut, fwdLse, { dq: p.dq, dk: p.dk, dv: p.dv, ...options });
  // The case: one tensor as dk and dv (dk would be lost).
  assertFails(run({ dv: p.dk }), "invalid_argument", "dk", "dk = dv");
  assertPoisoned("dk = dv", { dq: p.dq, dk: p.dk });
  assertFails(run({ dq: dout }), "invalid_argument", "dq", "dq = dout");
  assertFails(run({ dk: k }), "invalid_argument", "dk", "dk = k");
  assertFails(run({ dv: v }), "invalid_argument", "dv", "dv = v");
  // Two halves of one tensor are fine; shifted by one row, they share it.
  using both = poisoned([2 * B, HKV, SK, D], "float16");
  using first = both.slice(0, 0, B), second = both.slice(0, B, 2 * B);
  using shifted = both.slice(0, B - 1, 2 * B - 1);
  assertFails(run({ dk: first, dv: shifted }), "invalid_argument", "dk", "dk meets dv by a row");
  assertPoisoned("dk meets dv by a row", { dq: p.dq, both });
  attentionBackward(dout, q, k, v, fwdOut, fwdLse, { dq: p.dq, dk: first, dv: second });
  // dbias on the bias's own memory; dsinks on the sinks' (the library checks this one too).
  using bias = rand([SQ, SK], "float32");
  assertFails(run({ bias, dbias: bias }), "invalid_argument", "dbias", "dbias = bias");
  using sinks = rand([HQ], "float32");
  assertFails(run({ sinks, dsinks: sinks }), "invalid_argument", "dsinks", "dsinks = sinks");
  using dsinksOverLse = fwdLse.reshape([-1]).slice(0, 0, HQ);
  assertFails(
    run({ sinks, dsinks: dsinksOverLse }),
    "invalid_argument",
    "dsinks",
    "dsinks overlaps lse",
  );
});

Deno.test("errors types: merge and KV-cache outputs may not overlap an input", () => {
  using p = new Problem();
  const parts = [{ out: p.fwdOut, lse: p.fwdLse }, { out: p.fwdOut, lse: p.fwdLse }];
  assertFails(
    () => mergeAttention(parts, { out: p.fwdOut, lse: p.lse }),
    "invalid_argument",
    "out",
    "merged out = a part's out",
  );
  assertPoisoned("merged out = a part's out", { lse: p.lse });
  assertFails(
    () => mergeAttention(parts, { out: p.out, lse: p.fwdLse }),
    "invalid_argument",
    "lse",
    "merged lse = a part's lse",
  );
  assertPoisoned("merged lse = a part's lse", { out: p.out });

  using cache = KVCache.dense({ batch: B, heads: HKV, headDim: D, capacity: 8, dtype: "float16" });
  using q = rand([B, HQ, 1, D]);
  using kNew = rand([B, HKV, 1, D]), vNew = rand([B, HKV, 1, D]);
  using out = poisoned([B, HQ, 1, D], "float16"), lse = poisoned([B, HQ, 1], "float32");
  const before = cache.k.toFloat32();
  const fails = (
    what: string,
    argument: string,
    options: KVCacheAttentionOptions,
    query = q,
  ) => {
    const given = { kNew, vNew, out, lse, ...options };
    const calls = [attentionWithKVCache, kvcacheWorkspaceSize];
    for (const call of calls) {
      assertFails(() => call(query, cache, given), "invalid_argument", argument, what);
    }
    assert.deepEqual(cache.lengths, [0, 0], `${what}: lengths`);
    assertBitwise(`${what}: cache k`, cache.k.toFloat32(), before);
  };
  fails("out = q", "out", { out: q });
  using sinks = lse.reshape([-1]).slice(0, 0, HQ);
  fails("lse overlaps sinks", "lse", { sinks });
  assertPoisoned("kv cache", { out, lse });
  // The appended rows taken from the cache's own memory: the cache is written while read.
  using bshdQ = q.permute([0, 2, 1, 3]).contiguous();
  using bshdOut = poisoned([B, 1, HQ, D], "float16");
  using fromCache = cache.k.slice(1, 0, 1);
  fails("k_new overlaps k_cache", "k_cache", {
    layout: "bshd",
    kNew: fromCache,
    vNew: vNew.permute([0, 2, 1, 3]),
    out: bshdOut,
  }, bshdQ);
  assertPoisoned("k_new overlaps k_cache", { bshdOut });
});

Deno.test("errors types: boolean options of the KV-cache call and of timeCuda must be booleans", () => {
  using cache = KVCache.dense({ batch: B, heads: HKV, headDim: D, capacity: 8, dtype: "float16" });
  using q = rand([B, HQ, 1, D]);
  using kNew = rand([B, HKV, 1, D]), vNew = rand([B, HKV, 1, D]);
  using out = poisoned([B, HQ, 1, D], "float16"), lse = poisoned([B, HQ, 1], "float32");
  using cos = Tensor.full([8, D / 2], 1, "float32"), sin = Tensor.zeros([8, D / 2], "float32");
  const before = cache.k.toFloat32();
  for (const value of ["no", 1, null]) {
    const given = value as unknown as boolean;
    const cases: [string, KVCacheAttentionOptions][] = [
      ["causal", { causal: given }],
      ["advance_seqlens", { advanceSeqlens: given }],
      ["rotary_interleaved", { rotary: { cos, sin, interleaved: given } }],
    ];
    for (const [argument, options] of cases) {
      const what = `${argument} ${JSON.stringify(value)}`;
      assertFails(
        () => attentionWithKVCache(q, cache, { kNew, vNew, out, lse, ...options }),
        "invalid_argument",
        argument,
        what,
      );
      assert.deepEqual(cache.lengths, [0, 0], `${what}: lengths`);
      assertBitwise(`${what}: cache k`, cache.k.toFloat32(), before);
    }
    assertFails(
      () => timeCuda(() => {}, { flushL2: given }),
      "invalid_argument",
      "flushL2",
      "flushL2",
    );
  }
  assertPoisoned("kv cache", { out, lse });
  attentionWithKVCache(q, cache, { kNew, vNew, out, lse, causal: false, advanceSeqlens: true });
  assert.deepEqual(cache.lengths, [1, 1]);
});
