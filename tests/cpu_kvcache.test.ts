/**
 * Attention over a KV cache, the merge of partial results and CUDA graphs on the CPU
 * backend, against the float64 oracle: a KV-cache call must equal dense attention over each
 * sequence's rows gathered densely, bottom-right aligned (helpers/kvcache.ts gathers them
 * and rotates q and the appended keys independently). Dense and paged caches (page sizes 1,
 * 3, 16, 64, pages in random order), appends of 1..16 rows with and without rotary in both
 * layouts, lengths 0..N in one batch, GQA and MHA, every score feature, split-KV, both
 * dtypes; the cache's contents and lengths after each call.
 *
 * Tolerances: out per element and lse are helpers/cases.ts's forwardTolerance and
 * lseTolerance (the same algorithm as dense attention once the rows are gathered). Split
 * parts are merged in float32 from unrounded partial outputs, so num_splits n differs from
 * the unsplit result by float32 rounding only: within the same bound of each other. A merge
 * of attention() parts rounds each part's out to the dtype first, which adds u * mag to
 * the bound (mag = sum_j P_ij |v_j|): u_out |ref| + (3u + 2e-5) mag + 1e-5 max(mag), u_out
 * the unit roundoff of the merged dtype. Appended
 * rows must be in the cache bit for bit (rotated in float32, rounded once).
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionWithKVCache,
  CudaGraph,
  Device,
  FlashAttentionError,
  KVCache,
  kvcacheWorkspaceSize,
  mergeAttention,
  Stream,
  Tensor,
} from "../mod.ts";
import { forwardTolerance, lseTolerance, POISON, poisoned } from "./helpers/cases.ts";
import {
  assertAllEqual,
  assertBitwise,
  assertElementwise,
  assertNontrivial,
} from "./helpers/check.ts";
import {
  bhsdValues,
  checkNaNRow,
  describeKv,
  disposeKv,
  expectedRows,
  type KvConfig,
  kvOracle,
  kvTensors,
  layoutShape,
  makeKvData,
} from "./helpers/kvcache.ts";
import { oracleForward } from "./helpers/oracle.ts";
import { maxAbs, quantize, Rng, toF64, unitRoundoff } from "./helpers/random.ts";

const cpu = Device.cpu();

/** Runs a case on the CPU into poisoned outputs; checks out, lse, the cache and lengths. */
function checkKvCase(c: KvConfig): void {
  const data = makeKvData(c);
  const t = kvTensors(data, cpu);
  const layout = c.layout ?? "bhsd";
  const qShape = [c.B, c.Hq, c.Snew, c.D];
  try {
    using out = poisoned(layoutShape(qShape, layout), c.dtype, cpu);
    using lse = poisoned([c.B, c.Hq, c.Snew], "float32", cpu);
    attentionWithKVCache(t.q, t.cache, { ...t.options, out, lse });
    const ref = kvOracle(data);
    const got = bhsdValues(out, layout), gotLse = lse.toFloat32();
    if (c.lengths.some((length) => length > 0) || c.append) {
      assertNontrivial("oracle out", ref.out);
    }
    assertElementwise("out", got, ref.out, forwardTolerance(c.dtype, ref.out, ref.outMag));
    assertElementwise("lse", gotLse, ref.lse, (i) => lseTolerance(ref.lse[i]));
    const advanced = c.lengths.map((length) => length + (c.append ? c.Snew : 0));
    assert.deepEqual([...t.cache.lengths], advanced, "host lengths");
    assert.deepEqual([...t.cache.seqlens.toFloat32()], advanced, "device lengths");
    for (let b = 0; b < c.B; b++) {
      const expected = expectedRows(data, b);
      const rows = t.cache.read(b);
      try {
        assertBitwise(`cache k of sequence ${b}`, rows.k.toFloat32(), expected.k);
        assertBitwise(`cache v of sequence ${b}`, rows.v.toFloat32(), expected.v);
      } finally {
        rows.k.dispose();
        rows.v.dispose();
      }
    }
  } finally {
    disposeKv(t);
  }
}

const base: Omit<KvConfig, "seed"> = {
  dtype: "float16",
  B: 3,
  Hq: 4,
  Hkv: 2,
  D: 32,
  lengths: [0, 7, 40],
  Snew: 1,
  append: true,
  capacity: 64,
};

const handPicked: KvConfig[] = [
  { ...base, seed: 1 },
  { ...base, dtype: "bfloat16", Hkv: 4, Snew: 5, causal: true, seed: 2 },
  { ...base, pageSize: 1, Snew: 3, causal: true, seed: 3 },
  { ...base, pageSize: 3, Snew: 16, causal: true, capacity: 70, seed: 4 },
  { ...base, pageSize: 16, Snew: 7, layout: "bshd", seed: 5 },
  { ...base, pageSize: 64, capacity: 128, lengths: [100, 0, 64], Snew: 2, seed: 6 },
  { ...base, pageSize: 16, Snew: 4, rotary: { dim: 32, interleaved: false }, seed: 7 },
  {
    ...base,
    dtype: "bfloat16",
    pageSize: 3,
    Snew: 9,
    causal: true,
    rotary: { dim: 16, interleaved: true },
    layout: "bshd",
    seed: 8,
  },
  { ...base, rotary: { dim: 8, interleaved: false }, layout: "bshd", Snew: 2, seed: 9 },
  { ...base, append: false, lengths: [0, 5, 33], Snew: 3, causal: true, seed: 10 },
  { ...base, append: false, lengths: [0, 5, 33], Snew: 2, sinks: 0, seed: 11 },
  { ...base, pageSize: 16, Snew: 6, causal: true, window: [9, 0], seed: 12 },
  { ...base, Snew: 4, window: [5, 2], softcap: 2, seed: 13 },
  { ...base, pageSize: 3, Snew: 3, causal: true, sinks: 1, alibi: "batch", seed: 14 },
  { ...base, dtype: "bfloat16", Hq: 6, Hkv: 1, Snew: 2, alibi: "heads", scale: 0.3, seed: 15 },
  { ...base, D: 128, Hq: 2, Hkv: 2, B: 2, lengths: [17, 50], Snew: 3, seed: 16 },
  { ...base, D: 40, Hq: 3, Hkv: 1, Snew: 5, causal: true, pageSize: 16, seed: 17 },
  {
    ...base,
    pageSize: 16,
    Snew: 3,
    causal: true,
    softcap: 5,
    sinks: -1,
    alibi: "heads",
    window: [12, -1],
    rotary: { dim: 32, interleaved: true },
    seed: 18,
  },
];

for (const c of handPicked) {
  Deno.test(`kvcache cpu: ${describeKv(c)}`, () => checkKvCase(c));
}

/** Seeded random cases over the whole space, kept small for the float64 oracle. */
function randomKvConfigs(count: number, seed: number): KvConfig[] {
  const rng = new Rng(seed);
  const configs: KvConfig[] = [];
  while (configs.length < count) {
    const [Hq, Hkv] = rng.pick([[1, 1], [2, 2], [4, 2], [4, 1], [6, 3]] as const);
    const B = rng.int(1, 4);
    const D = rng.pick([8, 16, 64]);
    const Snew = rng.pick([1, 1, 2, 5, 16]);
    const capacity = rng.pick([20, 48, 100]);
    const append = rng.uniform() < 0.7;
    // L_b + Snew <= capacity with or without the append (the library's rule).
    const room = capacity - Snew;
    if (room < 0) continue;
    const lengths = Array.from({ length: B }, () => rng.pick([0, rng.int(0, room), room]));
    const c: KvConfig = {
      dtype: rng.pick(["float16", "bfloat16"] as const),
      ...{ B, Hq, Hkv, D, lengths, Snew, append, capacity },
      seed: rng.int(1, 1_000_000),
    };
    if (rng.uniform() < 0.6) c.pageSize = rng.pick([1, 3, 16, 64]);
    if (rng.uniform() < 0.4) {
      c.rotary = { dim: rng.pick([D / 2, D]), interleaved: rng.uniform() < 0.5 };
    }
    if (rng.uniform() < 0.5) c.layout = "bshd";
    if (rng.uniform() < 0.5) c.causal = true;
    if (rng.uniform() < 0.3) {
      c.window = [rng.pick([-1, 0, 4, 11]), c.causal ? 0 : rng.pick([-1, 3])];
    }
    if (rng.uniform() < 0.3) c.softcap = rng.pick([1, 20]);
    if (rng.uniform() < 0.3) c.sinks = rng.pick([-2, 1]);
    if (rng.uniform() < 0.3) c.alibi = rng.pick(["heads", "batch"] as const);
    if (rng.uniform() < 0.3) c.numSplits = rng.pick([2, 3, 7]);
    configs.push(c);
  }
  return configs;
}

for (const c of randomKvConfigs(16, 2024)) {
  Deno.test(`kvcache cpu random: ${describeKv(c)}`, () => checkKvCase(c));
}

Deno.test("kvcache cpu: num_splits 1, 3, 7 equal the unsplit result within rounding (and the oracle)", () => {
  for (const dtype of ["float16", "bfloat16"] as const) {
    const c: KvConfig = {
      ...base,
      dtype,
      lengths: [0, 3, 61],
      Snew: 3,
      causal: true,
      pageSize: 16,
      sinks: 0.5,
      seed: 40,
    };
    const results: Float32Array[] = [], lses: Float32Array[] = [];
    for (const numSplits of [0, 1, 3, 7]) {
      const cc = { ...c, numSplits };
      checkKvCase(cc);
      const data = makeKvData(cc);
      const t = kvTensors(data, cpu);
      try {
        const { out, lse } = attentionWithKVCache(t.q, t.cache, t.options);
        results.push(out.toFloat32());
        lses.push(lse.toFloat32());
        out.dispose();
        lse.dispose();
      } finally {
        disposeKv(t);
      }
    }
    const ref = kvOracle(makeKvData(c));
    const tolerance = forwardTolerance(dtype, ref.out, ref.outMag);
    for (let i = 1; i < results.length; i++) {
      assertElementwise(`${dtype} split ${i} vs unsplit`, results[i], results[0], tolerance);
      assertElementwise(`${dtype} lse`, lses[i], lses[0], (j) => 2 * lseTolerance(lses[0][j]));
    }
  }
});

Deno.test("kvcache cpu: empty sequences without append see nothing (out 0, lse -inf; with a sink lse = sink)", () => {
  for (const sinks of [undefined, 0.75]) {
    const c: KvConfig = {
      ...base,
      lengths: [0, 4, 0],
      append: false,
      Snew: 2,
      sinks,
      seed: 50,
    };
    checkKvCase(c);
    const data = makeKvData(c);
    const t = kvTensors(data, cpu);
    try {
      const { out, lse } = attentionWithKVCache(t.q, t.cache, t.options);
      const values = out.toFloat32(), lses = lse.toFloat32();
      const rowsQ = c.Hq * c.Snew;
      for (const b of [0, 2]) {
        assertAllEqual(
          `out of empty sequence ${b}`,
          values.subarray(b * rowsQ * c.D, (b + 1) * rowsQ * c.D),
          0,
        );
        for (let h = 0; h < c.Hq; h++) {
          const expected = sinks === undefined ? -Infinity : data.sinks![h];
          for (let i = 0; i < c.Snew; i++) {
            assert.equal(lses[(b * c.Hq + h) * c.Snew + i], expected, `lse of sequence ${b}`);
          }
        }
      }
      out.dispose();
      lse.dispose();
    } finally {
      disposeKv(t);
    }
  }
});

Deno.test("kvcache cpu: a prefill then one-token steps equal dense causal attention over everything", () => {
  const rng = new Rng(60);
  const B = 2, Hq = 4, Hkv = 2, D = 16, prompt = 9, steps = 5;
  const total = prompt + steps;
  const dtype = "float16";
  const all = (n: number) => quantize(rng.normalArray(n), dtype);
  const q = all(B * Hq * total * D), k = all(B * Hkv * total * D), v = all(B * Hkv * total * D);
  using qAll = Tensor.fromArray(q, [B, Hq, total, D], { dtype });
  using kAll = Tensor.fromArray(k, [B, Hkv, total, D], { dtype });
  using vAll = Tensor.fromArray(v, [B, Hkv, total, D], { dtype });
  const dense = attention(qAll, kAll, vAll, { causal: true });
  using denseOut = dense.out;
  using denseLse = dense.lse;
  // Each run is within forwardTolerance of the exact result, so within twice that of the other.
  using vAbs = Tensor.fromArray(v.map(Math.abs), [B, Hkv, total, D], { dtype });
  const magnitude = attention(qAll, kAll, vAbs, { causal: true });
  const mag = magnitude.out.toFloat32();
  magnitude.out.dispose();
  magnitude.lse.dispose();
  using cache = KVCache.paged({
    batch: B,
    heads: Hkv,
    headDim: D,
    pageSize: 4,
    numPages: 16,
    dtype,
    shufflePages: 3,
  });
  const rows = (t: Tensor, start: number, end: number) => t.slice(2, start, end);
  const got = new Float32Array(B * Hq * total * D), gotLse = new Float32Array(B * Hq * total);
  const keep = (out: Tensor, lse: Tensor, start: number, count: number) => {
    const o = out.toFloat32(), l = lse.toFloat32();
    for (let bh = 0; bh < B * Hq; bh++) {
      for (let i = 0; i < count; i++) {
        got.set(
          o.subarray((bh * count + i) * D, (bh * count + i + 1) * D),
          (bh * total + start + i) * D,
        );
        gotLse[bh * total + start + i] = l[bh * count + i];
      }
    }
    out.dispose();
    lse.dispose();
  };
  {
    using qp = rows(qAll, 0, prompt), kp = rows(kAll, 0, prompt), vp = rows(vAll, 0, prompt);
    const result = attentionWithKVCache(qp, cache, { kNew: kp, vNew: vp, causal: true });
    keep(result.out, result.lse, 0, prompt);
  }
  assert.deepEqual([...cache.lengths], [prompt, prompt]);
  for (let s = prompt; s < total; s++) {
    using qs = rows(qAll, s, s + 1), ks = rows(kAll, s, s + 1), vs = rows(vAll, s, s + 1);
    const result = attentionWithKVCache(qs, cache, { kNew: ks, vNew: vs, numSplits: s % 3 });
    keep(result.out, result.lse, s, 1);
  }
  assert.deepEqual([...cache.lengths], [total, total]);
  assert.equal(cache.freePages, 16 - 2 * Math.ceil(total / 4));
  const ref = denseOut.toFloat32(), refLse = denseLse.toFloat32();
  const u = unitRoundoff(dtype);
  const pair = (i: number) => 2 * (u * Math.abs(ref[i]) + (u + 1e-5) * mag[i]) + 2e-5 * maxAbs(mag);
  assertElementwise("decode loop out", got, ref, pair);
  assertElementwise("decode loop lse", gotLse, refLse, (i) => 2 * lseTolerance(refLse[i]));
  cache.release(0);
  assert.deepEqual([...cache.lengths], [0, total]);
  assert.deepEqual(cache.pagesOf(0), []);
  assert.equal(cache.freePages, 16 - Math.ceil(total / 4));
});

Deno.test("kvcache cpu: advanceSeqlens moves the lengths without an append; false with an append only writes", () => {
  const c: KvConfig = {
    ...base,
    lengths: [2, 9, 20],
    append: false,
    Snew: 3,
    pageSize: 3,
    seed: 70,
  };
  const data = makeKvData(c);
  const t = kvTensors(data, cpu);
  try {
    // The rows the advance counts were written beforehand (as a caller's own kernel would).
    for (let b = 0; b < c.B; b++) t.cache.reserve(b, c.lengths[b] + c.Snew);
    const r1 = attentionWithKVCache(t.q, t.cache, { ...t.options, advanceSeqlens: true });
    r1.out.dispose();
    r1.lse.dispose();
    const advanced = c.lengths.map((length) => length + c.Snew);
    assert.deepEqual([...t.cache.lengths], advanced);
    assert.deepEqual([...t.cache.seqlens.toFloat32()], advanced);
    // Appending without advancing: the rows land after the (advanced) lengths, uncounted.
    using kNew = Tensor.fromArray(data.kNew, [c.B, c.Hkv, c.Snew, c.D], { dtype: c.dtype });
    using vNew = Tensor.fromArray(data.vNew, [c.B, c.Hkv, c.Snew, c.D], { dtype: c.dtype });
    const r2 = attentionWithKVCache(t.q, t.cache, { kNew, vNew, advanceSeqlens: false });
    r2.out.dispose();
    r2.lse.dispose();
    assert.deepEqual([...t.cache.lengths], advanced);
    assert.deepEqual([...t.cache.seqlens.toFloat32()], advanced);
    for (let b = 0; b < c.B; b++) {
      const rows = t.cache.read(b, advanced[b], advanced[b] + c.Snew);
      const head0 = rows.v.toFloat32().filter((_, i) => Math.floor(i / c.D) % c.Hkv === 0);
      const from = (b * c.Hkv) * c.Snew * c.D;
      assertBitwise(`appended v of ${b}`, head0, data.vNew.subarray(from, from + c.Snew * c.D));
      rows.k.dispose();
      rows.v.dispose();
    }
    // Accepting them later is a host call.
    t.cache.setLengths(advanced.map((length) => length + c.Snew));
    assert.deepEqual([...t.cache.seqlens.toFloat32()], advanced.map((length) => length + c.Snew));
  } finally {
    disposeKv(t);
  }
});

Deno.test("kvcache cpu: setBlockTable places a sequence's rows in the given pages; shared read-only prefix", () => {
  const dtype = "bfloat16", Hkv = 1, D = 8;
  using cache = KVCache.paged({
    batch: 2,
    heads: Hkv,
    headDim: D,
    pageSize: 2,
    numPages: 8,
    dtype,
  });
  const rng = new Rng(80);
  const prefix = quantize(rng.normalArray(4 * D), dtype);
  using k = Tensor.fromArray(prefix, [4, Hkv, D], { dtype });
  cache.setBlockTable(0, [6, 1]);
  cache.fill(0, k, k);
  assert.deepEqual([...cache.blockTable!.toFloat32()].slice(0, 2), [6, 1]);
  // Sequence 1 shares the prefix pages and appends into its own third page.
  cache.setBlockTable(1, [6, 1, 3]);
  cache.setLengths([4, 4]);
  assert.equal(cache.freePages, 5);
  using q = Tensor.fromArray(quantize(rng.normalArray(2 * D), dtype), [2, 1, 1, D], { dtype });
  using kNew = Tensor.fromArray(quantize(rng.normalArray(2 * D), dtype), [2, 1, 1, D], { dtype });
  // Both appending at row 4 is fine: sequence 0 gets a free page, sequence 1 uses page 3.
  const { out, lse } = attentionWithKVCache(q, cache, { kNew, vNew: kNew });
  out.dispose();
  lse.dispose();
  assert.equal(cache.pagesOf(0).length, 3);
  assert.equal(cache.pagesOf(1)[2], 3);
  const rows = cache.read(1);
  assertBitwise("shared prefix", rows.k.toFloat32().subarray(0, 4 * D), prefix);
  rows.k.dispose();
  rows.v.dispose();
  cache.release(0);
  cache.release(1);
  assert.equal(cache.freePages, 8);
});

// ---------------------------------------------------------------------------------------------
// mergeAttention.

/** The merge tolerance of the file's header; the final rounding is to the merged dtype. */
function mergeTolerance(
  dtype: "float16" | "bfloat16",
  outDtype: "float16" | "bfloat16" | "float32",
  ref: Float64Array,
  mag: Float64Array,
) {
  const u = unitRoundoff(dtype), uOut = unitRoundoff(outDtype), floor = 1e-5 * maxAbs(mag);
  return (i: number) => uOut * Math.abs(ref[i]) + (3 * u + 2e-5) * mag[i] + floor;
}

Deno.test("merge cpu: attention() over 2-4 disjoint key sets, merged, equals attention over all keys", () => {
  const rng = new Rng(90);
  for (
    const [dtype, parts, outDtype] of [
      ["float16", 2, undefined],
      ["bfloat16", 3, "float32"],
      ["float16", 4, "bfloat16"],
    ] as const
  ) {
    const B = 2, Hq = 4, Hkv = 2, Sq = 5, Sk = 37, D = 16;
    const q = quantize(rng.normalArray(B * Hq * Sq * D), dtype);
    const k = quantize(rng.normalArray(B * Hkv * Sk * D), dtype);
    const v = quantize(rng.normalArray(B * Hkv * Sk * D), dtype);
    // Keys to parts at random (not contiguous), every part non-empty.
    const owner = Array.from({ length: Sk }, (_, j) => j < parts ? j : rng.int(0, parts - 1));
    using qT = Tensor.fromArray(q, [B, Hq, Sq, D], { dtype });
    const results = [];
    for (let p = 0; p < parts; p++) {
      const keys = owner.flatMap((o, j) => o === p ? [j] : []);
      const pick = (values: Float32Array) => {
        const out = new Float32Array(B * Hkv * keys.length * D);
        for (let bh = 0; bh < B * Hkv; bh++) {
          keys.forEach((j, n) =>
            out.set(
              values.subarray((bh * Sk + j) * D, (bh * Sk + j + 1) * D),
              (bh * keys.length + n) * D,
            )
          );
        }
        return out;
      };
      using kp = Tensor.fromArray(pick(k), [B, Hkv, keys.length, D], { dtype });
      using vp = Tensor.fromArray(pick(v), [B, Hkv, keys.length, D], { dtype });
      results.push(attention(qT, kp, vp));
    }
    using out = poisoned([B, Hq, Sq, D], outDtype ?? dtype, cpu);
    using lse = poisoned([B, Hq, Sq], "float32", cpu);
    const merged = mergeAttention(results, { dtype: outDtype, out, lse });
    assert.equal(merged.out, out);
    for (const r of results) {
      r.out.dispose();
      r.lse.dispose();
    }
    const ref = oracleForward({
      batch: B,
      headsQ: Hq,
      headsKv: Hkv,
      seqQ: Sq,
      seqK: Sk,
      headDim: D,
      q: toF64(q),
      k: toF64(k),
      v: toF64(v),
    });
    assertElementwise(
      `${dtype} x${parts} merged out`,
      out.toFloat32(),
      ref.out,
      mergeTolerance(dtype, outDtype ?? dtype, ref.out, ref.outMag),
    );
    const gotLse = lse.toFloat32();
    assertElementwise(`${dtype} merged lse`, gotLse, ref.lse, (i) => 2 * lseTolerance(ref.lse[i]));
  }
});

Deno.test("merge cpu: rows whose parts are all empty give 0 / -inf; a NaN lse makes its row NaN only", () => {
  const B = 1, H = 2, S = 3, D = 8;
  const rng = new Rng(91);
  const part = (lses: number[]) => ({
    out: Tensor.fromArray(rng.normalArray(B * H * S * D), [B, H, S, D], { dtype: "float32" }),
    lse: Tensor.fromArray(Float32Array.from(lses), [B, H, S], { dtype: "float32" }),
  });
  const inf = -Infinity;
  // Row (h 0, i 0): both parts empty; (h 0, i 1): only part 1; (h 1, i 2): NaN in part 0.
  const a = part([inf, inf, 0.5, 1, 2, NaN]);
  const b = part([inf, 0.25, -1, 0, 3, 1]);
  const { out, lse } = mergeAttention([a, b]);
  const o = out.toFloat32(), l = lse.toFloat32();
  assertAllEqual("empty row out", o.subarray(0, D), 0);
  assert.equal(l[0], -Infinity);
  const bOut = b.out.toFloat32(), aOut = a.out.toFloat32();
  assertBitwise("a lone part passes through", o.subarray(D, 2 * D), bOut.subarray(D, 2 * D));
  assert.equal(l[1], 0.25);
  assert.ok(Number.isNaN(l[5]));
  assert.ok(o.subarray(5 * D, 6 * D).every(Number.isNaN), "NaN row");
  // Other rows are finite mixtures of their parts.
  const w = 1 / (1 + Math.exp(-1.5));
  for (let d = 0; d < D; d++) {
    const expected = w * aOut[2 * D + d] + (1 - w) * bOut[2 * D + d];
    assert.ok(Math.abs(o[2 * D + d] - expected) < 1e-5, `row 2 [${d}]`);
  }
  assert.ok(Math.abs(l[2] - Math.log(Math.exp(0.5) + Math.exp(-1))) < 1e-6);
  for (const t of [a.out, a.lse, b.out, b.lse, out, lse]) t.dispose();
});

Deno.test("merge cpu: nested [T, H, D] parts and bshd layout", () => {
  const rng = new Rng(92);
  const T = 5, H = 2, D = 8;
  const make = (shape: number[], lseShape: number[]) => ({
    out: Tensor.fromArray(rng.normalArray(T * H * D), shape, { dtype: "float16" }),
    lse: Tensor.fromArray(rng.normalArray(T * H), lseShape, { dtype: "float32" }),
  });
  const nested = [make([T, H, D], [T, H]), make([T, H, D], [T, H])];
  const flat = mergeAttention(nested);
  assert.deepEqual(flat.out.shape, [T, H, D]);
  assert.deepEqual(flat.lse.shape, [T, H]);
  // The same data as [1, T, H, D] "bshd" with lse [1, H, T] gives the same rows.
  const asBshd = nested.map((p) => ({
    out: p.out.reshape([1, T, H, D]),
    lse: p.lse.reshape([1, T, H]).permute([0, 2, 1]),
  }));
  const dense = mergeAttention(asBshd, { layout: "bshd" });
  assertBitwise("bshd out", dense.out.toFloat32(), flat.out.toFloat32());
  using lseT = dense.lse.permute([0, 2, 1]);
  assertBitwise("bshd lse", lseT.toFloat32(), flat.lse.toFloat32());
  for (const p of [...nested, ...asBshd]) {
    p.out.dispose();
    p.lse.dispose();
  }
  for (const t of [flat.out, flat.lse, dense.out, dense.lse]) t.dispose();
});

// ---------------------------------------------------------------------------------------------
// Graphs and the workspace on the CPU.

Deno.test("graph cpu: capture on the CPU is unsupported, naming the stream; workspace size is 0", () => {
  using stream = Stream.create(cpu);
  let ran = false;
  let caught: unknown;
  try {
    CudaGraph.capture(stream, () => {
      ran = true;
    });
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof FlashAttentionError);
  assert.equal(caught.code, "unsupported");
  assert.equal(caught.argument, "stream");
  assert.equal(ran, false, "the body does not run");
  const c: KvConfig = { ...base, pageSize: 16, Snew: 2, numSplits: 4, seed: 100 };
  const t = kvTensors(makeKvData(c), cpu);
  try {
    assert.equal(kvcacheWorkspaceSize(t.q, t.cache, t.options), 0);
    assert.deepEqual([...t.cache.lengths], c.lengths, "the size query changes nothing");
    // Pages for lengths 0, 7 and 40 of 16 rows each: 0 + 1 + 3.
    assert.equal(t.cache.freePages, t.cache.numPages - 4);
  } finally {
    disposeKv(t);
  }
});

Deno.test("kvcache cpu: a poisoned out is fully written; POISON never survives", () => {
  const c: KvConfig = { ...base, Snew: 3, pageSize: 3, seed: 110 };
  const t = kvTensors(makeKvData(c), cpu);
  try {
    using out = Tensor.full([c.B, c.Hq, c.Snew, c.D], NaN, c.dtype, cpu);
    using lse = Tensor.full([c.B, c.Hq, c.Snew], NaN, "float32", cpu);
    attentionWithKVCache(t.q, t.cache, { ...t.options, out, lse });
    assert.ok(out.toFloat32().every((x) => Number.isFinite(x) && x !== POISON));
    assert.ok(lse.toFloat32().every(Number.isFinite));
  } finally {
    disposeKv(t);
  }
});

Deno.test({
  name: "kvcache cpu: a NaN in one q row makes that row NaN only (paged, append, sinks, splits)",
  fn: () => checkNaNRow(cpu),
});
