/**
 * Bad input to the KV-cache calls, the cache's own methods and the merge: each gives a
 * FlashAttentionError with the right code and argument, and leaves everything as it was:
 * the cache's keys and values (bit for bit), its host and device lengths, its block table
 * and pages, and preallocated outputs (poisoned, still poisoned). Checks made in
 * TypeScript (KVCache bookkeeping) and in the library (raw cache tensors) are both covered.
 */

import assert from "node:assert/strict";
import {
  attentionWithKVCache,
  CudaGraph,
  Device,
  type ErrorCode,
  KVCache,
  type KVCacheAttentionOptions,
  type KVCacheTensors,
  mergeAttention,
  type Stream,
  Tensor,
} from "../mod.ts";
import { assertFails } from "./helpers/errors.ts";
import { POISON, poisoned } from "./helpers/cases.ts";
import { assertAllEqual, assertBitwise } from "./helpers/check.ts";
import { quantize, Rng } from "./helpers/random.ts";

const cpu = Device.cpu();
const B = 2, Hq = 4, Hkv = 2, D = 16, PAGE = 4, PAGES = 12, COLUMNS = 4;
const CAPACITY = PAGE * COLUMNS;

/** Everything a failed call must leave alone. */
interface CacheState {
  k: Float32Array;
  v: Float32Array;
  lengths: number[];
  seqlens: number[];
  table: number[];
  pages: (readonly number[])[];
  free: number;
}

function stateOf(cache: KVCache): CacheState {
  return {
    k: cache.k.toFloat32(),
    v: cache.v.toFloat32(),
    lengths: [...cache.lengths],
    seqlens: [...cache.seqlens.toFloat32()],
    table: cache.blockTable ? [...cache.blockTable.toFloat32()] : [],
    pages: Array.from({ length: cache.batch }, (_, b) => cache.pagesOf(b)),
    free: cache.freePages,
  };
}

function assertUnchanged(cache: KVCache, before: CacheState, what: string): void {
  const after = stateOf(cache);
  assertBitwise(`${what}: cache k`, after.k, before.k);
  assertBitwise(`${what}: cache v`, after.v, before.v);
  assert.deepEqual(after.lengths, before.lengths, `${what}: host lengths`);
  assert.deepEqual(after.seqlens, before.seqlens, `${what}: device lengths`);
  assert.deepEqual(after.table, before.table, `${what}: block table`);
  assert.deepEqual(after.pages, before.pages, `${what}: pages`);
  assert.equal(after.free, before.free, `${what}: free pages`);
}

/** A paged cache with random rows, lengths [5, 9]; q, kNew, vNew for Snew rows. */
class Setup implements Disposable {
  readonly rng = new Rng(7);
  readonly cache: KVCache;
  readonly q: Tensor;
  readonly kNew: Tensor;
  readonly vNew: Tensor;
  readonly out: Tensor;
  readonly lse: Tensor;

  constructor(readonly snew = 2, paged = true) {
    const shape = { batch: B, heads: Hkv, headDim: D, dtype: "float16" as const };
    this.cache = paged
      ? KVCache.paged({
        ...shape,
        pageSize: PAGE,
        numPages: PAGES,
        maxPagesPerSeq: COLUMNS,
        shufflePages: 1,
      })
      : KVCache.dense({ ...shape, capacity: CAPACITY });
    for (const [b, rows] of [[0, 5], [1, 9]]) {
      using k = this.tensor([rows, Hkv, D]);
      using v = this.tensor([rows, Hkv, D]);
      this.cache.fill(b, k, v);
    }
    this.q = this.tensor([B, Hq, snew, D]);
    this.kNew = this.tensor([B, Hkv, snew, D]);
    this.vNew = this.tensor([B, Hkv, snew, D]);
    this.out = poisoned([B, Hq, snew, D], "float16", cpu);
    this.lse = poisoned([B, Hq, snew], "float32", cpu);
  }

  tensor(shape: number[], dtype: "float16" | "bfloat16" | "float32" = "float16"): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = dtype === "float32"
      ? this.rng.normalArray(n)
      : quantize(this.rng.normalArray(n), dtype);
    return Tensor.fromArray(values, shape, { dtype });
  }

  options(more: KVCacheAttentionOptions = {}): KVCacheAttentionOptions {
    return { kNew: this.kNew, vNew: this.vNew, out: this.out, lse: this.lse, ...more };
  }

  /** The call fails as expected and changes nothing. */
  fails(
    what: string,
    code: ErrorCode,
    argument: string,
    call: (s: Setup) => unknown,
  ): void {
    const before = stateOf(this.cache);
    assertFails(() => call(this), code, argument, what);
    assertUnchanged(this.cache, before, what);
    assertAllEqual(`${what}: out`, this.out.toFloat32(), POISON);
    assertAllEqual(`${what}: lse`, this.lse.toFloat32(), POISON);
  }

  [Symbol.dispose](): void {
    for (const t of [this.q, this.kNew, this.vNew, this.out, this.lse]) t.dispose();
    this.cache.dispose();
  }
}

/** Raw cache tensors: a copy of a Setup's cache with the block table / lengths replaced. */
function rawCache(s: Setup, table?: Tensor, seqlens?: Tensor): KVCacheTensors {
  return {
    k: s.cache.k,
    v: s.cache.v,
    seqlens: seqlens ?? s.cache.seqlens,
    blockTable: table ?? s.cache.blockTable,
  };
}

Deno.test("kvcache errors: page indices out of range (setBlockTable and a raw block table)", () => {
  using s = new Setup();
  s.fails(
    "setBlockTable 99",
    "invalid_argument",
    "block_table",
    () => s.cache.setBlockTable(0, [3, 99]),
  );
  s.fails(
    "setBlockTable -1",
    "invalid_argument",
    "block_table",
    () => s.cache.setBlockTable(0, [-1, 2]),
  );
  s.fails(
    "setBlockTable twice",
    "invalid_argument",
    "block_table",
    () => s.cache.setBlockTable(0, [2, 2]),
  );
  s.fails(
    "setBlockTable too few",
    "invalid_argument",
    "block_table",
    () => s.cache.setBlockTable(1, [2, 3]),
  );
  s.fails(
    "setBlockTable too many",
    "invalid_argument",
    "block_table",
    () => s.cache.setBlockTable(1, [0, 1, 2, 3, 4]),
  );
  s.fails("dense setBlockTable", "invalid_argument", "block_table", () => {
    using dense = KVCache.dense({ batch: 1, heads: 1, headDim: 8, capacity: 4, dtype: "float16" });
    dense.setBlockTable(0, [0]);
  });
  const table = [...s.cache.blockTable!.toFloat32()];
  for (const bad of [PAGES, -1]) {
    const edited = Int32Array.from(table);
    edited[COLUMNS + 1] = bad; // sequence 1's second page (rows 4..7, in use)
    using raw = Tensor.fromArray(edited, [B, COLUMNS]);
    s.fails(
      `raw page ${bad}`,
      "invalid_argument",
      "block_table",
      () => attentionWithKVCache(s.q, rawCache(s, raw), s.options()),
    );
  }
});

Deno.test("kvcache errors: lengths past the capacity (host checks and the library's)", () => {
  using s = new Setup();
  s.fails(
    "setLengths past capacity",
    "invalid_argument",
    "cache_seqlens",
    () => s.cache.setLengths([CAPACITY + 1, 0]),
  );
  s.fails(
    "setLengths negative",
    "invalid_argument",
    "cache_seqlens",
    () => s.cache.setLengths([-1, 0]),
  );
  s.fails("setLengths count", "invalid_argument", "cache_seqlens", () => s.cache.setLengths([1]));
  s.fails("write past capacity", "invalid_argument", "start", () => {
    using k = s.tensor([3, Hkv, D]);
    s.cache.write(0, CAPACITY - 2, k, k);
  });
  // Sequence 1 holds 9 of 16 rows: 8 new rows do not fit.
  using s8 = new Setup(8);
  s8.fails(
    "append past capacity",
    "invalid_argument",
    "cache_seqlens",
    () => attentionWithKVCache(s8.q, s8.cache, s8.options()),
  );
  s8.fails(
    "no append, L + Snew past capacity",
    "invalid_argument",
    "cache_seqlens",
    () => attentionWithKVCache(s8.q, s8.cache, { out: s8.out, lse: s8.lse }),
  );
  for (const lengths of [[5, CAPACITY - 1], [-3, 9]]) {
    using seqlens = Tensor.fromArray(Int32Array.from(lengths), [B]);
    s.fails(
      `raw lengths ${lengths}`,
      "invalid_argument",
      "cache_seqlens",
      () => attentionWithKVCache(s.q, rawCache(s, undefined, seqlens), s.options()),
    );
  }
  s.fails(
    "maxSeqlenK below a length",
    "invalid_argument",
    "max_seqlen_k",
    () => attentionWithKVCache(s.q, s.cache, s.options({ maxSeqlenK: 10 })),
  );
  s.fails(
    "raw maxSeqlenK below a length",
    "invalid_argument",
    "max_seqlen_k",
    () => attentionWithKVCache(s.q, rawCache(s), s.options({ maxSeqlenK: 10 })),
  );
});

Deno.test("kvcache errors: block tables of the wrong shape or dtype", () => {
  using s = new Setup();
  using wide = Tensor.fromArray(new Int32Array((B + 1) * COLUMNS), [B + 1, COLUMNS]);
  using flat = Tensor.fromArray(new Int32Array(B * COLUMNS), [B * COLUMNS]);
  using floats = Tensor.zeros([B, COLUMNS], "float32");
  for (const [what, table] of [["[B+1, P]", wide], ["1-d", flat], ["float32", floats]] as const) {
    s.fails(
      `block table ${what}`,
      "invalid_argument",
      "block_table",
      () => attentionWithKVCache(s.q, rawCache(s, table), s.options()),
    );
  }
  using seqlens = Tensor.zeros([B + 1], "int32");
  s.fails(
    "seqlens [B+1]",
    "invalid_argument",
    "cache_seqlens",
    () => attentionWithKVCache(s.q, rawCache(s, undefined, seqlens), s.options()),
  );
});

Deno.test("kvcache errors: mismatched heads, dtypes and head dims", () => {
  using s = new Setup();
  using q3 = s.tensor([B, 3, 2, D]);
  s.fails(
    "Hq % Hkv",
    "invalid_argument",
    "k_cache",
    () => attentionWithKVCache(q3, s.cache, { kNew: s.kNew, vNew: s.vNew }),
  );
  using qBf = s.tensor([B, Hq, 2, D], "bfloat16");
  s.fails(
    "q dtype",
    "invalid_argument",
    "k_cache",
    () => attentionWithKVCache(qBf, s.cache, { kNew: s.kNew, vNew: s.vNew }),
  );
  using qD = s.tensor([B, Hq, 2, 2 * D]);
  s.fails(
    "head dim",
    "invalid_argument",
    "k_cache",
    () => attentionWithKVCache(qD, s.cache, { kNew: s.kNew, vNew: s.vNew }),
  );
  using kHeads = s.tensor([B, 1, 2, D]);
  s.fails(
    "k_new heads",
    "invalid_argument",
    "k_new",
    () => attentionWithKVCache(s.q, s.cache, s.options({ kNew: kHeads, vNew: kHeads })),
  );
  using kBf = s.tensor([B, Hkv, 2, D], "bfloat16");
  s.fails(
    "k_new dtype",
    "invalid_argument",
    "k_new",
    () => attentionWithKVCache(s.q, s.cache, s.options({ kNew: kBf, vNew: kBf })),
  );
  using qB = s.tensor([B + 1, Hq, 2, D]);
  s.fails("batch", "invalid_argument", "block_table", () => attentionWithKVCache(qB, s.cache, {}));
  using q3d = s.tensor([B, Hq, D]);
  s.fails("q rank", "invalid_argument", "q", () => attentionWithKVCache(q3d, s.cache, s.options()));
  s.fails(
    "out shape",
    "invalid_argument",
    "out",
    () => attentionWithKVCache(s.q, s.cache, s.options({ out: s.lse })),
  );
});

Deno.test("kvcache errors: k_new without v_new (and v_new without k_new)", () => {
  using s = new Setup();
  s.fails(
    "k_new alone",
    "invalid_argument",
    "v_new",
    () => attentionWithKVCache(s.q, s.cache, { kNew: s.kNew, out: s.out, lse: s.lse }),
  );
  s.fails(
    "v_new alone",
    "invalid_argument",
    "k_new",
    () => attentionWithKVCache(s.q, s.cache, { vNew: s.vNew, out: s.out, lse: s.lse }),
  );
});

Deno.test("kvcache errors: outputs overlapping inputs or the cache", () => {
  using s = new Setup();
  s.fails(
    "out = q",
    "invalid_argument",
    "out",
    () => attentionWithKVCache(s.q, s.cache, s.options({ out: s.q })),
  );
  // k_new read from the cache it is appended to: pages 0 and 1, rows 0..1, as [B, Hkv, 2, D].
  using pages = s.cache.k.slice(0, 0, B);
  using rows = pages.slice(1, 0, 2);
  using inCache = rows.permute([0, 2, 1, 3]);
  s.fails(
    "k_new inside k_cache",
    "invalid_argument",
    "k_cache",
    () => attentionWithKVCache(s.q, s.cache, s.options({ kNew: inCache })),
  );
  // out inside the cache's keys.
  using flat = s.cache.k.reshape([-1, Hq, 2, D]);
  using outInCache = flat.slice(0, 0, B);
  s.fails(
    "out inside k_cache",
    "invalid_argument",
    "out",
    () => attentionWithKVCache(s.q, s.cache, { kNew: s.kNew, vNew: s.vNew, out: outInCache }),
  );
});

Deno.test("kvcache errors: rotary tables of bad shapes or dtypes", () => {
  using s = new Setup();
  const table = (rows: number, half: number, dtype: "float32" | "float16" = "float32") =>
    s.tensor([rows, half], dtype);
  using cos = table(CAPACITY, D / 2);
  using wide = table(CAPACITY, D), short = table(CAPACITY - 1, D / 2);
  using half16 = table(CAPACITY, D / 2, "float16"), other = table(CAPACITY, D / 4);
  const cases: [string, Tensor, Tensor, string][] = [
    ["rotary_dim > D", wide, wide, "rotary_cos"],
    ["rows < capacity", short, short, "rotary_cos"],
    ["float16 tables", half16, half16, "rotary_cos"],
    ["sin unlike cos", cos, other, "rotary_sin"],
  ];
  for (const [what, c, sn, argument] of cases) {
    s.fails(
      what,
      "invalid_argument",
      argument,
      () => attentionWithKVCache(s.q, s.cache, s.options({ rotary: { cos: c, sin: sn } })),
    );
  }
  s.fails("sin missing", "invalid_argument", "rotary_sin", () =>
    attentionWithKVCache(
      s.q,
      s.cache,
      s.options({ rotary: { cos } as unknown as { cos: Tensor; sin: Tensor } }),
    ));
});

Deno.test("kvcache errors: numSplits and maxSeqlenK out of range; scalars", () => {
  using s = new Setup();
  for (const numSplits of [257, -1, 1.5]) {
    s.fails(
      `numSplits ${numSplits}`,
      "invalid_argument",
      "num_splits",
      () => attentionWithKVCache(s.q, s.cache, s.options({ numSplits })),
    );
  }
  s.fails(
    "maxSeqlenK -1",
    "invalid_argument",
    "max_seqlen_k",
    () => attentionWithKVCache(s.q, s.cache, s.options({ maxSeqlenK: -1 })),
  );
  s.fails(
    "scale 0",
    "invalid_argument",
    "scale",
    () => attentionWithKVCache(s.q, s.cache, s.options({ scale: 0 })),
  );
  s.fails(
    "softcap -1",
    "invalid_argument",
    "softcap",
    () => attentionWithKVCache(s.q, s.cache, s.options({ softcap: -1 })),
  );
  s.fails(
    "window",
    "invalid_argument",
    "window",
    () => attentionWithKVCache(s.q, s.cache, s.options({ window: [1, 2], causal: true })),
  );
  using sinks = s.tensor([Hq + 1], "float32");
  s.fails(
    "sinks shape",
    "invalid_argument",
    "sinks",
    () => attentionWithKVCache(s.q, s.cache, s.options({ sinks })),
  );
  s.fails(
    "layout",
    "invalid_argument",
    "layout",
    () => attentionWithKVCache(s.q, s.cache, s.options({ layout: "sbhd" as "bshd" })),
  );
});

Deno.test("kvcache errors: out of pages; appends into a shared row; a disposed cache", () => {
  using s = new Setup(4);
  // Take every free page for sequence 0's future rows: then sequence 1 cannot grow.
  using big = KVCache.paged({
    batch: 2,
    heads: Hkv,
    headDim: D,
    pageSize: PAGE,
    numPages: 3,
    dtype: "float16",
  });
  using k = s.tensor([8, Hkv, D]);
  big.fill(0, k, k);
  big.setLengths([8, 3]); // sequence 1 needs page 3 of 3
  using q = s.tensor([2, Hq, 4, D]);
  using kNew = s.tensor([2, Hkv, 4, D]);
  const before = stateOf(big);
  assertFails(
    () => attentionWithKVCache(q, big, { kNew, vNew: kNew }),
    "out_of_memory",
    "cache",
    "out of pages",
  );
  assertUnchanged(big, before, "out of pages");
  // Two sequences sharing the page they both append into.
  using shared = KVCache.paged({
    batch: 2,
    heads: Hkv,
    headDim: D,
    pageSize: PAGE,
    numPages: 4,
    dtype: "float16",
  });
  shared.setBlockTable(0, [2]);
  shared.setBlockTable(1, [2]);
  shared.setLengths([1, 1]);
  using q1 = s.tensor([2, Hq, 1, D]);
  using kNew1 = s.tensor([2, Hkv, 1, D]);
  const sharedBefore = stateOf(shared);
  assertFails(
    () => attentionWithKVCache(q1, shared, { kNew: kNew1, vNew: kNew1 }),
    "invalid_argument",
    "block_table",
    "shared append",
  );
  assertUnchanged(shared, sharedBefore, "shared append");
  // Disposed.
  const gone = KVCache.dense({ batch: 1, heads: 1, headDim: 8, capacity: 4, dtype: "float16" });
  gone.dispose();
  using q8 = s.tensor([1, 1, 1, 8]);
  assertFails(() => attentionWithKVCache(q8, gone), "disposed", "cache", "disposed cache");
  assertFails(() => gone.lengths, "disposed", "cache", "disposed lengths");
});

Deno.test("kvcache errors: bad cache options", () => {
  const shape = { batch: 1, heads: 1, headDim: 8, dtype: "float16" as const };
  assertFails(
    () => KVCache.dense({ ...shape, capacity: 0 }),
    "invalid_argument",
    "capacity",
    "capacity 0",
  );
  assertFails(
    () => KVCache.dense({ ...shape, batch: 1.5, capacity: 4 }),
    "invalid_argument",
    "batch",
    "batch",
  );
  assertFails(
    () => KVCache.dense({ ...shape, dtype: "float32" as "float16", capacity: 4 }),
    "invalid_argument",
    "dtype",
    "dtype",
  );
  assertFails(
    () => KVCache.paged({ ...shape, pageSize: 0, numPages: 1 }),
    "invalid_argument",
    "pageSize",
    "pageSize",
  );
  using cache = KVCache.dense({ ...shape, capacity: 4 });
  using k = Tensor.zeros([2, 1, 16], "float16");
  assertFails(() => cache.write(0, 0, k, k), "invalid_argument", "k", "write shape");
  using kBf = Tensor.zeros([2, 1, 8], "bfloat16");
  assertFails(() => cache.write(0, 0, kBf, kBf), "invalid_argument", "k", "write dtype");
  assertFails(() => cache.read(3), "invalid_argument", "b", "read index");
});

Deno.test("merge errors: no parts, shapes, dtypes and overlapping outputs", () => {
  const rng = new Rng(9);
  const part = (shape: number[]) => ({
    out: Tensor.fromArray(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape, {
      dtype: "float16",
    }),
    lse: Tensor.fromArray(
      rng.normalArray(shape.slice(0, -1).reduce((a, b) => a * b, 1)),
      shape.slice(0, -1),
      {
        dtype: "float32",
      },
    ),
  });
  const a = part([1, 2, 3, 8]), b = part([1, 2, 3, 8]), c = part([1, 2, 4, 8]);
  assertFails(() => mergeAttention([]), "invalid_argument", "parts", "no parts");
  assertFails(() => mergeAttention([a, c]), "invalid_argument", "out_1", "shapes");
  using lse16 = Tensor.zeros([1, 2, 3], "float16");
  assertFails(
    () => mergeAttention([a, { out: b.out, lse: lse16 }]),
    "invalid_argument",
    "lse_1",
    "lse dtype",
  );
  using out = poisoned([1, 2, 3, 8], "float16", cpu);
  assertFails(
    () => mergeAttention([a, b], { out: a.out }),
    "invalid_argument",
    "out",
    "out = a part",
  );
  assertFails(
    () => mergeAttention([a, b], { out, lse: b.lse }),
    "invalid_argument",
    "lse",
    "lse = a part",
  );
  assertAllEqual("out untouched", out.toFloat32(), POISON);
  using wrong = Tensor.zeros([1, 2, 3, 8], "int32");
  assertFails(() => mergeAttention([a, b], { out: wrong }), "invalid_argument", "out", "out dtype");
  for (const p of [a, b, c]) {
    p.out.dispose();
    p.lse.dispose();
  }
});

Deno.test("graph errors: capture needs a Stream", () => {
  assertFails(
    () => CudaGraph.capture(undefined as unknown as Stream, () => {}),
    "invalid_argument",
    "stream",
    "no stream",
  );
});
