/**
 * KV-cache attention, merge and CUDA graphs on the GPU against the CPU backend (itself
 * checked against the float64 oracle in cpu_kvcache): the same inputs on both devices, GPU
 * outputs poisoned first. Ignored without a CUDA device; run with `make test-gpu`.
 *
 * Tolerances, for unit roundoff u of the dtype: out per element within twice each
 * backend's bound against the exact result, 2 (u |cpu_i| + (u + 1e-5) mag_i) + 2e-5
 * max(mag), with mag_i = sum_j P_ij |v_j| computed by the CPU backend on |v| (as in
 * gpu_attention); lse within 2 lseTolerance. The caches after an append: values bit for
 * bit; keys bit for bit without rotary, within one rounding of the dtype with it (a GPU may
 * fuse the rotation's multiply-adds). A graph replay runs the same kernels with the same
 * arguments as a direct call: bit for bit.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionWithKVCache,
  CudaGraph,
  Device,
  type KVCache,
  kvcacheWorkspaceSize,
  mergeAttention,
  Stream,
  Tensor,
} from "../mod.ts";
import { copyInto } from "../src/tensor.ts";
import { lseTolerance, POISON, poisoned } from "./helpers/cases.ts";
import { assertBitwise, assertElementwise, assertNoNaN } from "./helpers/check.ts";
import {
  bhsdValues,
  checkNaNRow,
  describeKv,
  disposeKv,
  type KvConfig,
  type KvData,
  kvTensors,
  layoutShape,
  makeKvData,
} from "./helpers/kvcache.ts";
import { maxAbs, quantize, Rng, unitRoundoff } from "./helpers/random.ts";

const ignore = Device.cudaCount() === 0;
const gpu = (): Device => Device.cuda(0);
const cpu = Device.cpu();

/** The same case with |v| (cache rows and appended rows): its out is the magnitude mag. */
function absData(data: KvData): KvData {
  const abs = (values: Float32Array) => values.map(Math.abs);
  return { ...data, cacheV: data.cacheV.map(abs), vNew: abs(data.vNew) };
}

/** out, lse and the cache rows of a case run on `device` (GPU outputs poisoned first). */
function runOn(data: KvData, device: Device, more: { maxSeqlenK?: number } = {}) {
  const c = data.config;
  const layout = c.layout ?? "bhsd";
  const t = kvTensors(data, device);
  try {
    using out = poisoned(layoutShape([c.B, c.Hq, c.Snew, c.D], layout), c.dtype, device);
    using lse = poisoned([c.B, c.Hq, c.Snew], "float32", device);
    attentionWithKVCache(t.q, t.cache, { ...t.options, ...more, out, lse });
    const rows = Array.from({ length: c.B }, (_, b) => {
      const { k, v } = t.cache.read(b);
      const values = { k: k.toFloat32(), v: v.toFloat32() };
      k.dispose();
      v.dispose();
      return values;
    });
    return {
      out: bhsdValues(out, layout),
      lse: lse.toFloat32(),
      rows,
      lengths: [...t.cache.lengths],
      seqlens: [...t.cache.seqlens.toFloat32()],
    };
  } finally {
    disposeKv(t);
  }
}

/** GPU vs CPU on one case: out, lse, lengths and the caches after. */
function checkGpuKv(c: KvConfig, more: { maxSeqlenK?: number } = {}): void {
  const data = makeKvData(c);
  const ref = runOn(data, cpu);
  const mag = runOn(absData(data), cpu).out;
  const got = runOn(data, gpu(), more);
  const u = unitRoundoff(c.dtype), floor = 2e-5 * maxAbs(mag);
  assertNoNaN("gpu out", got.out);
  assert.ok(!got.out.includes(POISON), "every out element written");
  assertElementwise(
    "out (gpu vs cpu)",
    got.out,
    ref.out,
    (i) => 2 * (u * Math.abs(ref.out[i]) + (u + 1e-5) * mag[i]) + floor,
  );
  assertElementwise("lse (gpu vs cpu)", got.lse, ref.lse, (i) => 2 * lseTolerance(ref.lse[i]));
  assert.deepEqual(got.lengths, ref.lengths, "host lengths");
  assert.deepEqual(got.seqlens, ref.seqlens, "device lengths");
  for (let b = 0; b < c.B; b++) {
    assertBitwise(`cache v ${b}`, got.rows[b].v, ref.rows[b].v);
    if (c.rotary) {
      const k = ref.rows[b].k;
      assertElementwise(`cache k ${b}`, got.rows[b].k, k, (i) => 2 * u * Math.abs(k[i]) + 1e-7);
    } else {
      assertBitwise(`cache k ${b}`, got.rows[b].k, ref.rows[b].k);
    }
  }
}

const base: Omit<KvConfig, "seed"> = {
  dtype: "bfloat16",
  B: 4,
  Hq: 8,
  Hkv: 2,
  D: 128,
  lengths: [0, 1, 77, 500],
  Snew: 1,
  append: true,
  capacity: 1024,
};

const cases: KvConfig[] = [
  { ...base, seed: 1 },
  { ...base, dtype: "float16", pageSize: 1, capacity: 600, seed: 2 },
  { ...base, pageSize: 16, Snew: 4, causal: true, seed: 3 },
  { ...base, dtype: "float16", pageSize: 64, Snew: 16, causal: true, seed: 4 },
  { ...base, pageSize: 256, Snew: 7, layout: "bshd", causal: true, seed: 5 },
  { ...base, Hq: 4, Hkv: 4, D: 64, pageSize: 16, Snew: 2, seed: 6 },
  { ...base, D: 256, Hq: 4, Hkv: 1, Snew: 3, causal: true, seed: 7 },
  { ...base, D: 96, pageSize: 16, Snew: 5, causal: true, seed: 8 },
  { ...base, dtype: "float16", D: 40, Hq: 6, Hkv: 3, Snew: 2, seed: 9 },
  { ...base, pageSize: 16, Snew: 1, rotary: { dim: 128, interleaved: false }, seed: 10 },
  {
    ...base,
    dtype: "float16",
    pageSize: 64,
    Snew: 8,
    causal: true,
    rotary: { dim: 64, interleaved: true },
    layout: "bshd",
    seed: 11,
  },
  { ...base, pageSize: 16, Snew: 3, causal: true, window: [100, 0], seed: 12 },
  { ...base, Snew: 2, softcap: 30, seed: 13 },
  { ...base, pageSize: 16, Snew: 4, causal: true, sinks: 0, seed: 14 },
  { ...base, Snew: 2, alibi: "batch", scale: 0.05, seed: 15 },
  { ...base, append: false, lengths: [0, 3, 400, 900], Snew: 2, causal: true, seed: 16 },
  { ...base, append: false, lengths: [0, 0, 10, 1], Snew: 1, sinks: 1, pageSize: 16, seed: 17 },
  {
    ...base,
    dtype: "float16",
    pageSize: 16,
    Snew: 6,
    causal: true,
    window: [64, -1],
    softcap: 20,
    sinks: -1,
    alibi: "heads",
    rotary: { dim: 128, interleaved: false },
    seed: 18,
  },
];

for (const c of cases) {
  for (const numSplits of [0, 1, 5]) {
    Deno.test({
      name: `kvcache gpu: ${describeKv({ ...c, numSplits })}`,
      ignore,
      fn: () => checkGpuKv({ ...c, numSplits }),
    });
  }
}

Deno.test({
  name: "kvcache gpu: lengths 0 to 32768 in one batch (dense and paged 256), decode step",
  ignore,
  fn: () => {
    const long: KvConfig = {
      ...base,
      B: 4,
      Hq: 8,
      Hkv: 1,
      lengths: [0, 1, 3000, 32767],
      capacity: 32768,
      seed: 20,
    };
    checkGpuKv(long);
    checkGpuKv({ ...long, pageSize: 256, dtype: "float16", causal: true, seed: 21 });
    checkGpuKv({ ...long, append: false, lengths: [0, 5, 17000, 32767], seed: 22 });
  },
});

Deno.test({
  name: "kvcache gpu: trusted maxSeqlenK (exact and loose bounds) equals the checked path",
  ignore,
  fn: () => {
    for (const c of [cases[2], cases[4], cases[15]]) {
      const longest = Math.max(...c.lengths) + c.Snew;
      checkGpuKv(c, { maxSeqlenK: longest });
      checkGpuKv(c, { maxSeqlenK: c.capacity });
    }
  },
});

Deno.test({
  name: "kvcache gpu: advanceSeqlens without an append; an append that does not advance",
  ignore,
  fn: () => {
    for (const device of [cpu, gpu()]) {
      const c: KvConfig = { ...base, append: false, Snew: 2, pageSize: 16, seed: 30 };
      const t = kvTensors(makeKvData(c), device);
      try {
        for (let b = 0; b < c.B; b++) t.cache.reserve(b, c.lengths[b] + c.Snew);
        const r = attentionWithKVCache(t.q, t.cache, { ...t.options, advanceSeqlens: true });
        r.out.dispose();
        r.lse.dispose();
        const advanced = c.lengths.map((length) => length + c.Snew);
        assert.deepEqual([...t.cache.lengths], advanced, `${device}: host`);
        assert.deepEqual([...t.cache.seqlens.toFloat32()], advanced, `${device}: device`);
      } finally {
        disposeKv(t);
      }
    }
  },
});

Deno.test({
  name: "merge gpu: equals the CPU merge (2-4 parts, every output dtype, empty and NaN rows)",
  ignore,
  fn: () => {
    const rng = new Rng(40);
    const B = 2, H = 8, S = 33, D = 128;
    for (const [count, dtype] of [[2, "float16"], [3, "bfloat16"], [4, "float32"]] as const) {
      const parts = Array.from({ length: count }, () => {
        const lse = rng.normalArray(B * H * S, 3);
        lse[0] = -Infinity; // row 0 of every part empty: out 0, lse -inf
        if (rng.uniform() < 0.5) lse[1] = -Infinity;
        return { out: quantize(rng.normalArray(B * H * S * D), "bfloat16"), lse };
      });
      parts[0].lse[2] = NaN;
      const on = (device: Device) =>
        parts.map((p) => ({
          out: Tensor.fromArray(p.out, [B, H, S, D], { dtype: "bfloat16", device }),
          lse: Tensor.fromArray(p.lse, [B, H, S], { dtype: "float32", device }),
        }));
      const cpuParts = on(cpu), gpuParts = on(gpu());
      const ref = mergeAttention(cpuParts, { dtype });
      using out = poisoned([B, H, S, D], dtype, gpu());
      using lse = poisoned([B, H, S], "float32", gpu());
      mergeAttention(gpuParts, { dtype, out, lse });
      const refOut = ref.out.toFloat32(), refLse = ref.lse.toFloat32();
      const got = out.toFloat32(), gotLse = lse.toFloat32();
      assert.ok(Number.isNaN(gotLse[2]) && got.subarray(2 * D, 3 * D).every(Number.isNaN));
      assert.equal(gotLse[0], -Infinity);
      const u = unitRoundoff(dtype);
      const finite = (a: Float32Array) => a.map((x) => Number.isNaN(x) ? 0 : x);
      assertElementwise(
        "merged out",
        finite(got),
        finite(refOut),
        (i) => (2 * u + 1e-6) * Math.abs(refOut[i]) + 1e-6,
      );
      assertElementwise(
        "merged lse",
        finite(gotLse),
        finite(refLse),
        (i) => 1e-6 * (Math.abs(refLse[i]) + 1),
      );
      for (const p of [...cpuParts, ...gpuParts]) {
        p.out.dispose();
        p.lse.dispose();
      }
      ref.out.dispose();
      ref.lse.dispose();
    }
  },
});

Deno.test({
  name: "merge gpu: split attention() merged equals attention() over all keys on the GPU",
  ignore,
  fn: () => {
    const rng = new Rng(41);
    const B = 1, Hq = 8, Hkv = 2, Sq = 64, Sk = 3000, D = 128, dtype = "bfloat16";
    const device = gpu();
    using q = Tensor.fromArray(quantize(rng.normalArray(B * Hq * Sq * D), dtype), [B, Hq, Sq, D], {
      dtype,
      device,
    });
    using k = Tensor.fromArray(
      quantize(rng.normalArray(B * Hkv * Sk * D), dtype),
      [B, Hkv, Sk, D],
      {
        dtype,
        device,
      },
    );
    using v = Tensor.fromArray(
      quantize(rng.normalArray(B * Hkv * Sk * D), dtype),
      [B, Hkv, Sk, D],
      {
        dtype,
        device,
      },
    );
    const whole = attention(q, k, v);
    const cuts = [0, 700, 1900, Sk];
    const parts = cuts.slice(1).map((end, i) => {
      using kp = k.slice(2, cuts[i], end);
      using vp = v.slice(2, cuts[i], end);
      return attention(q, kp, vp);
    });
    const merged = mergeAttention(parts);
    const ref = whole.out.toFloat32(), got = merged.out.toFloat32();
    const u = unitRoundoff(dtype);
    assertElementwise("merged vs whole", got, ref, (i) => 4 * u * (Math.abs(ref[i]) + 1));
    const refLse = whole.lse.toFloat32();
    assertElementwise("lse", merged.lse.toFloat32(), refLse, (i) => 2 * lseTolerance(refLse[i]));
    for (const r of [whole, merged, ...parts]) {
      r.out.dispose();
      r.lse.dispose();
    }
  },
});

/** A decode step's inputs for a graph: fixed device tensors refreshed in place. */
function stepInputs(rng: Rng, c: KvConfig) {
  const draw = (n: number) => quantize(rng.normalArray(n), c.dtype);
  return {
    q: draw(c.B * c.Hq * c.D),
    k: draw(c.B * c.Hkv * c.D),
    v: draw(c.B * c.Hkv * c.D),
  };
}

function cacheState(cache: KVCache) {
  return {
    k: cache.k.toFloat32(),
    v: cache.v.toFloat32(),
    lengths: [...cache.lengths],
    seqlens: [...cache.seqlens.toFloat32()],
  };
}

Deno.test({
  name: "graph gpu: a captured decode step (advanceSeqlens) replayed equals direct calls",
  ignore,
  fn: () => {
    const device = gpu();
    for (const pageSize of [undefined, 16]) {
      const c: KvConfig = {
        ...base,
        lengths: [5, 100, 0, 31],
        Snew: 1,
        capacity: 256,
        pageSize,
        causal: true,
        sinks: 0,
        seed: 50,
      };
      const data = makeKvData(c);
      const direct = kvTensors(data, device), captured = kvTensors(data, device);
      using stream = Stream.create(device);
      const qShape = [c.B, c.Hq, 1, c.D], newShape = [c.B, c.Hkv, 1, c.D];
      using q = Tensor.zeros(qShape, c.dtype, device);
      using kNew = Tensor.zeros(newShape, c.dtype, device);
      using vNew = Tensor.zeros(newShape, c.dtype, device);
      using out = poisoned(qShape, c.dtype, device);
      using lse = poisoned([c.B, c.Hq, 1], "float32", device);
      const fixed = {
        kNew,
        vNew,
        causal: true,
        sinks: captured.options.sinks,
        maxSeqlenK: c.capacity,
        numSplits: 3,
      };
      const bytes = kvcacheWorkspaceSize(q, captured.cache, fixed);
      using workspace = Tensor.empty([Math.max(1, Math.ceil(bytes / 4))], "int32", device);
      try {
        using graph = CudaGraph.capture(stream, () => {
          attentionWithKVCache(q, captured.cache, { ...fixed, out, lse, workspace, stream });
        });
        assert.deepEqual([...captured.cache.lengths], c.lengths, "capture runs nothing");
        const rng = new Rng(51);
        for (let step = 0; step < 4; step++) {
          const inputs = stepInputs(rng, c);
          using qHost = Tensor.fromArray(inputs.q, qShape, { dtype: c.dtype });
          using kHost = Tensor.fromArray(inputs.k, newShape, { dtype: c.dtype });
          using vHost = Tensor.fromArray(inputs.v, newShape, { dtype: c.dtype });
          stream.synchronize(); // the previous replay has read q, kNew, vNew
          copyInto(q, 0, qHost);
          copyInto(kNew, 0, kHost);
          copyInto(vNew, 0, vHost);
          device.synchronize(); // the copies (legacy stream) landed before the replay
          graph.launch(stream);
          stream.synchronize();
          using qd = qHost.to(device), kd = kHost.to(device), vd = vHost.to(device);
          const ref = attentionWithKVCache(qd, direct.cache, {
            ...fixed,
            kNew: kd,
            vNew: vd,
            sinks: direct.options.sinks,
          });
          assertBitwise(`step ${step} out`, out.toFloat32(), ref.out.toFloat32());
          assertBitwise(`step ${step} lse`, lse.toFloat32(), ref.lse.toFloat32());
          ref.out.dispose();
          ref.lse.dispose();
          const a = cacheState(captured.cache), b = cacheState(direct.cache);
          assert.deepEqual(a.lengths, b.lengths, `step ${step}: host lengths`);
          assert.deepEqual(a.seqlens, b.seqlens, `step ${step}: device lengths`);
          assert.deepEqual(a.lengths, c.lengths.map((length) => length + step + 1));
          if (pageSize === undefined) {
            assertBitwise(`step ${step}: cache k`, a.k, b.k);
            assertBitwise(`step ${step}: cache v`, a.v, b.v);
          }
        }
        // Paged: the same rows, wherever their pages are.
        for (let b = 0; b < c.B; b++) {
          const x = captured.cache.read(b), y = direct.cache.read(b);
          assertBitwise(`rows k ${b}`, x.k.toFloat32(), y.k.toFloat32());
          assertBitwise(`rows v ${b}`, x.v.toFloat32(), y.v.toFloat32());
          for (const t of [x.k, x.v, y.k, y.v]) t.dispose();
        }
      } finally {
        disposeKv(direct);
        disposeKv(captured);
      }
    }
  },
});

Deno.test({
  name: "kvcache gpu: a NaN in one q row makes that row NaN only (paged, append, sinks, splits)",
  ignore,
  fn: () => checkNaNRow(gpu()),
});
