/**
 * GPU attention against the CPU backend (itself validated against the float64 oracle in the
 * cpu_* suites) and, for the smaller problems, against the oracle directly. Ignored without a
 * CUDA device. Run with `make test-gpu`.
 *
 * Tolerances, for unit roundoff u of the dtype (2^-11 float16, 2^-8 bfloat16):
 * - forward, per element: each backend is within u |out_i| + (u + 1e-5) mag_i of the exact
 *   result (mag_i = sum_j P_ij drop_ij |v_j|: rounding of P before P.V, see
 *   helpers/cases.ts forwardTolerance), so GPU and CPU are within twice that of each other;
 *   mag is computed by the CPU backend as attention(q, k, |v|) with the same options.
 * - lse: twice the float32 bound of lseTolerance.
 * - backward, GPU vs CPU on the same out/lse: both round intermediates (P, dS) once and
 *   accumulate in float32, errors ~u per element in random directions, so the normwise
 *   relative difference is a few u: we require <= 4u, and elementwise
 *   <= 8u (|cpu_i| + rms(cpu)) to catch localized faults (a wrong tile, a missed row).
 * - where the float64 oracle is affordable, the GPU must also meet the exact per-element
 *   bounds the CPU meets in cpu_oracle / cpu_backward.
 */

import assert from "node:assert/strict";
import { ffi, lastError } from "../ffi/library.ts";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type BackwardOptions,
  Device,
  FlashAttentionError,
  NestedBatch,
  Stream,
  Tensor,
} from "../mod.ts";
import { describeTensor } from "../src/tensor.ts";
import {
  type CaseConfig,
  caseOptions,
  caseTensorOptions,
  caseTensors,
  describeCase,
  disposeTensors,
  forwardTolerance,
  lseTolerance,
  makeCase,
  POISON,
  poisoned,
  randomFeatureConfigs,
} from "./helpers/cases.ts";
import {
  assertBitwise,
  assertElementwise,
  assertNoNaN,
  assertNontrivial,
} from "./helpers/check.ts";
import {
  dropoutMask,
  dropoutMaskRows,
  oracleBackward,
  oracleForward,
  reduceTo,
  swapAxes12,
} from "./helpers/oracle.ts";
import { type HalfDType, maxAbs, quantize, Rng, toF64, unitRoundoff } from "./helpers/random.ts";

const ignore = Device.cudaCount() === 0;
const gpu = (): Device => Device.cuda(0);
const cpu = Device.cpu();

/** Problems up to this many multiply-adds (B Hq Sq Sk D) are also checked against the oracle. */
const ORACLE_LIMIT = 12_000_000;

function absTensor(t: Tensor, dtype: HalfDType): Tensor {
  return Tensor.fromArray(t.toFloat32().map(Math.abs), t.shape, { dtype, device: t.device });
}

/** GPU vs CPU forward tolerance (twice each backend's bound against the exact result). */
function pairForwardTolerance(
  dtype: HalfDType,
  ref: ArrayLike<number>,
  mag: ArrayLike<number>,
): (i: number) => number {
  const u = unitRoundoff(dtype);
  const floor = 2e-5 * maxAbs(mag);
  return (i: number) => 2 * (u * Math.abs(ref[i]) + (u + 1e-5) * mag[i]) + floor;
}

/**
 * GPU vs CPU backward: normwise <= 4u and elementwise <= 16u (|ref_i| + rms(ref)).
 * The GPU rounds P and dS to the input dtype before the second matrix products (as
 * FlashAttention-2 does), which adds up to u * sum_k |term_k| per element; under cancellation
 * that exceeds |ref_i| + rms. On an H100 (2026-11-24) a handful of elements per million
 * reached 8u-17u there while the normwise error stayed under u.
 *
 * `scale` (optional, > 0) is a magnitude the gradient's terms have even where they cancel:
 * dq and dk are sums of dS terms that can cancel to exactly 0 (a window of one key gives
 * P = 1 and dS = dP - D = 0), where a relative test is meaningless; errors are then measured
 * against the larger of rms(ref) and `scale` (callers pass 1% of rms(dv), whose terms are
 * non-negative weights of dO and never cancel).
 */
function assertBackwardPair(
  name: string,
  got: Float32Array,
  ref: Float32Array,
  u: number,
  scale = 0,
): void {
  assertNoNaN(name, got);
  let ss = 0, diff = 0;
  for (let i = 0; i < ref.length; i++) {
    ss += ref[i] * ref[i];
    if (got[i] !== ref[i]) diff += (got[i] - ref[i]) ** 2;
  }
  const rms = Math.sqrt(ss / Math.max(1, ref.length));
  const floor = Math.max(rms, scale);
  const rel = Math.sqrt(diff / Math.max(1, ref.length)) / floor;
  assert.ok(rel <= 4 * u, `${name}: normwise relative difference ${rel} > 4u = ${4 * u}`);
  assertElementwise(name, got, ref, (i) => 16 * u * (Math.abs(ref[i]) + floor) + 1e-7);
}

/** 1% of rms(dv): the cancellation-free magnitude assertBackwardPair's `scale` takes. */
function dvScale(dv: Float32Array): number {
  let ss = 0;
  for (const x of dv) ss += x * x;
  return 0.01 * Math.sqrt(ss / Math.max(1, dv.length));
}

/**
 * dsinks in float64 from the CPU backend's out and lse (both runs' backward read those):
 * -sum over (b, i) of exp(sink_h - lse) * rowsum(dout * out), and the same sum over absolute
 * values (the scale of a float32 summation's error).
 */
function hostDsinks(
  c: CaseConfig,
  sinks: Float32Array,
  out: Float32Array,
  lse: Float32Array,
  dout: Float32Array,
): { dsinks: Float64Array; mag: Float64Array } {
  const dsinks = new Float64Array(c.Hq), mag = new Float64Array(c.Hq);
  for (let b = 0; b < c.B; b++) {
    for (let h = 0; h < c.Hq; h++) {
      if (sinks[h] === -Infinity) continue;
      for (let i = 0; i < c.Sq; i++) {
        const row = (b * c.Hq + h) * c.Sq + i;
        let delta = 0;
        for (let d = 0; d < c.D; d++) delta += dout[row * c.D + d] * out[row * c.D + d];
        const term = Math.exp(sinks[h] - lse[row]) * delta;
        dsinks[h] -= term;
        mag[h] += Math.abs(term);
      }
    }
  }
  return { dsinks, mag };
}

function macs(c: CaseConfig): number {
  return c.B * c.Hq * c.Sq * c.Sk * c.D;
}

/** Forward and backward of one case on the GPU, against the CPU backend and the oracle. */
/** `deterministic`: the GPU backward runs without atomics (the sm80 dQ kernel). */
function checkGpuCase(c: CaseConfig, deterministic = false): void {
  const data = makeCase(c);
  const tc = caseTensors(data, cpu);
  const tg = caseTensors(data, gpu());
  const vAbs = absTensor(tc.v, c.dtype);
  const opts = caseOptions(c);
  const u = unitRoundoff(c.dtype);
  const made: Tensor[] = [vAbs];
  try {
    // CPU reference and magnitudes.
    // bias, sinks and ALiBi slopes of each device.
    const onCpu = caseTensorOptions(tc), onGpu = caseTensorOptions(tg);
    const ref = attention(tc.q, tc.k, tc.v, { ...opts, ...onCpu });
    const magT = attention(tc.q, tc.k, vAbs, { ...opts, ...onCpu });
    made.push(ref.out, ref.lse, magT.out, magT.lse);
    const refOut = ref.out.toFloat32(), refLse = ref.lse.toFloat32(), mag = magT.out.toFloat32();
    // GPU into poisoned outputs.
    const out = poisoned(data.qShape, c.dtype, gpu());
    const lse = poisoned([c.B, c.Hq, c.Sq], "float32", gpu());
    made.push(out, lse);
    attention(tg.q, tg.k, tg.v, { ...opts, ...onGpu, out, lse });
    const got = out.toFloat32(), gotLse = lse.toFloat32();
    assertNoNaN("out", got);
    assertNontrivial("cpu out", refOut);
    assertElementwise("out (gpu vs cpu)", got, refOut, pairForwardTolerance(c.dtype, refOut, mag));
    assertElementwise("lse (gpu vs cpu)", gotLse, refLse, (i) => 2 * lseTolerance(refLse[i]));

    // Backward: both on the CPU's out and lse, so only the backward kernels differ.
    const outG = ref.out.to(gpu()), lseG = ref.lse.to(gpu());
    made.push(outG, lseG);
    const dq = poisoned(data.qShape, c.dtype, gpu());
    const dk = poisoned(data.kvShape, c.dtype, gpu());
    const dv = poisoned(data.kvShape, c.dtype, gpu());
    const dbias = c.bias ? poisoned(c.bias.shape, c.bias.dtype, gpu()) : undefined;
    const dsinks = c.sinks ? poisoned([c.Hq], "float32", gpu()) : undefined;
    made.push(dq, dk, dv);
    if (dbias) made.push(dbias);
    if (dsinks) made.push(dsinks);
    const bopts: BackwardOptions = { ...opts, computeDbias: c.bias !== undefined };
    attentionBackward(tg.dout, tg.q, tg.k, tg.v, outG, lseG, {
      ...bopts,
      ...onGpu,
      deterministic,
      dq,
      dk,
      dv,
      dbias,
      dsinks,
    });
    const gref = attentionBackward(tc.dout, tc.q, tc.k, tc.v, ref.out, ref.lse, {
      ...bopts,
      ...onCpu,
    });
    made.push(gref.dq, gref.dk, gref.dv);
    if (gref.dbias) made.push(gref.dbias);
    if (gref.dsinks) made.push(gref.dsinks);
    if (dsinks && gref.dsinks && data.sinks) {
      const want = hostDsinks(c, data.sinks, refOut, refLse, data.dout);
      const tol = (i: number) => 1e-4 * want.mag[i] + 1e-6 * maxAbs(want.mag) + 1e-7;
      assertElementwise("dsinks (cpu vs host)", gref.dsinks.toFloat32(), want.dsinks, tol);
      assertElementwise("dsinks (gpu vs host)", dsinks.toFloat32(), want.dsinks, tol);
    }
    const pairs: [string, Tensor, Tensor][] = [["dq", dq, gref.dq], ["dk", dk, gref.dk], [
      "dv",
      dv,
      gref.dv,
    ]];
    if (dbias && gref.dbias) pairs.push(["dbias", dbias, gref.dbias]);
    const scale = dvScale(gref.dv.toFloat32());
    for (const [name, g, r] of pairs) {
      const uu = name === "dbias" ? Math.max(u, unitRoundoff(c.bias?.dtype ?? "float32")) : u;
      assertBackwardPair(`${name} (gpu vs cpu)`, g.toFloat32(), r.toFloat32(), uu, scale);
    }

    // The exact bounds against the float64 oracle, where affordable.
    if (macs(c) <= ORACLE_LIMIT) {
      const oref = oracleForward(data.problem);
      assertElementwise(
        "out (gpu vs oracle)",
        got,
        oref.out,
        forwardTolerance(c.dtype, oref.out, oref.outMag),
      );
      const ograd = oracleBackward(data.problem, toF64(data.dout), refOut);
      const full = [c.B, c.Hq, c.Sq, c.Sk];
      const checks: [string, Tensor, Float64Array, Float64Array, number][] = [
        ["dq", dq, ograd.dq, ograd.dqMag, u],
        ["dk", dk, ograd.dk, ograd.dkMag, u],
        ["dv", dv, ograd.dv, ograd.dvMag, u],
      ];
      if (dbias && c.bias) {
        checks.push([
          "dbias",
          dbias,
          reduceTo(ograd.dbias, full, c.bias.shape),
          reduceTo(ograd.dbiasMag, full, c.bias.shape),
          unitRoundoff(c.bias.dtype),
        ]);
      }
      if (dsinks && c.sinks) {
        const floor = 1e-6 * maxAbs(ograd.dsinksMag) + 1e-7;
        assertElementwise(
          "dsinks (gpu vs oracle)",
          dsinks.toFloat32(),
          ograd.dsinks,
          (i) => 1e-4 * ograd.dsinksMag[i] + floor,
        );
      }
      for (const [name, g, want, m, uOut] of checks) {
        const floor = 1e-6 * maxAbs(m);
        assertElementwise(
          `${name} (gpu vs oracle)`,
          g.toFloat32(),
          want,
          (i) => uOut * Math.abs(want[i]) + (u + 1e-4) * m[i] + floor,
        );
      }
    }
  } finally {
    disposeTensors(tc, tg);
    for (const t of made) if (!t.disposed) t.dispose();
  }
}

// ---------------------------------------------------------------------------------------------

Deno.test({
  name: "gpu attention: kernels give a correct result, or a clear 'unsupported' error",
  ignore,
  fn() {
    const c: CaseConfig = {
      dtype: "bfloat16",
      B: 1,
      Hq: 2,
      Hkv: 2,
      Sq: 17,
      Sk: 33,
      D: 64,
      seed: 1,
    };
    const data = makeCase(c);
    const tg = caseTensors(data, gpu());
    try {
      let result: { out: Tensor; lse: Tensor } | undefined;
      try {
        result = attention(tg.q, tg.k, tg.v);
      } catch (error) {
        assert.ok(error instanceof FlashAttentionError, String(error));
        assert.equal(error.code, "unsupported", error.message);
        assert.match(error.message, /CUDA|GPU/i);
        console.warn(`GPU attention unsupported in this build: ${error.message}`);
        return;
      }
      const ref = oracleForward(data.problem);
      const got = result.out.toFloat32();
      assertElementwise("out", got, ref.out, forwardTolerance(c.dtype, ref.out, ref.outMag));
      disposeTensors(result);
    } finally {
      disposeTensors(tg);
    }
  },
});

const CONFIGS: CaseConfig[] = [
  { dtype: "float16", B: 2, Hq: 4, Hkv: 4, Sq: 1, Sk: 129, D: 64, seed: 1 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 7, Sk: 1000, D: 128, causal: true, seed: 2 },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 7, D: 8, causal: true, seed: 3 },
  { dtype: "bfloat16", B: 2, Hq: 2, Hkv: 2, Sq: 1000, Sk: 1000, D: 40, causal: true, seed: 4 },
  { dtype: "float16", B: 1, Hq: 4, Hkv: 1, Sq: 1000, Sk: 129, D: 96, seed: 5 },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 129, Sk: 1000, D: 256, seed: 6 },
    bias: { dtype: "float32", shape: [2, 1, 1, 1000], negInf: 0.1 },
  },
  {
    dtype: "float16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 129, Sk: 129, D: 128, seed: 7 },
    bias: { dtype: "bfloat16", shape: [1, 4, 129, 129] },
    ...{ dropout: 0.1, dropoutSeed: 1234n, dropoutOffset: 5 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 3, Hkv: 1, Sq: 1000, Sk: 1000, D: 64, causal: true, scale: 0.2, seed: 8 },
    bias: { dtype: "float16", shape: [1, 3, 1000, 1000], negInf: 0.05, maskFirstRow: true },
    ...{ dropout: 0.3, dropoutSeed: 0xdeadbeefcafef00dn, dropoutOffset: 2 },
  },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 7, Sk: 7, D: 256, dropout: 0.5, seed: 9 },
  { dtype: "bfloat16", B: 1, Hq: 1, Hkv: 1, Sq: 1, Sk: 1, D: 8, seed: 10 },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 513, Sk: 1000, D: 128, qStd: 4, seed: 11 },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 1000, Sk: 7, D: 96, causal: true, seed: 12 },
    bias: { dtype: "float32", shape: [1000, 7] },
  },
  {
    dtype: "float16",
    B: 1,
    Hq: 2,
    Hkv: 2,
    Sq: 1000,
    Sk: 1000,
    D: 256,
    causal: true,
    dropout: 0.2,
    seed: 13,
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 8, Hkv: 1, Sq: 257, Sk: 511, D: 64, causal: true, seed: 14 },
    bias: { dtype: "float32", shape: [1, 1, 257, 511] },
  },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 33, Sk: 4096, D: 128, seed: 15 },
  { dtype: "float16", B: 3, Hq: 6, Hkv: 2, Sq: 65, Sk: 65, D: 40, scale: 0.7, seed: 16 },
];

for (const c of CONFIGS) {
  Deno.test({ name: `gpu vs cpu: ${describeCase(c)}`, ignore, fn: () => checkGpuCase(c) });
}

// The score features (window, softcap, sinks, ALiBi), alone and combined with causal, bias,
// dropout and GQA, in both dtypes and across head dims, forward and backward (dsinks too).
const FEATURE_CONFIGS: CaseConfig[] = [
  { dtype: "float16", B: 2, Hq: 4, Hkv: 4, Sq: 300, Sk: 500, D: 64, window: [64, 16], seed: 31 },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 4, Hkv: 2, Sq: 1000, Sk: 1000, D: 128, causal: true, window: [128, 0] },
    seed: 32,
  },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 1000, D: 256, window: [0, -1], seed: 33 },
  { dtype: "bfloat16", B: 2, Hq: 2, Hkv: 1, Sq: 257, Sk: 257, D: 128, softcap: 30, seed: 34 },
  { dtype: "float16", B: 1, Hq: 4, Hkv: 4, Sq: 200, Sk: 333, D: 40, softcap: 0.5, seed: 35 },
  { dtype: "bfloat16", B: 2, Hq: 8, Hkv: 2, Sq: 129, Sk: 700, D: 64, sinks: { mean: 2 }, seed: 36 },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 4, Hkv: 4, Sq: 300, Sk: 100, D: 96, causal: true, seed: 37 },
    sinks: { mean: 0, negInfHead0: true },
  },
  { dtype: "bfloat16", B: 2, Hq: 4, Hkv: 4, Sq: 500, Sk: 500, D: 64, alibi: "heads", seed: 38 },
  { dtype: "float16", B: 3, Hq: 6, Hkv: 2, Sq: 65, Sk: 900, D: 128, alibi: "batch", seed: 39 },
  // Decode-like: one query over a long cache with a sliding window and sinks (gpt-oss).
  {
    dtype: "bfloat16",
    ...{ B: 4, Hq: 8, Hkv: 1, Sq: 1, Sk: 4096, D: 64, causal: true, window: [1024, 0] },
    ...{ sinks: { mean: 1 }, seed: 40 },
  },
  // Rows that see no key (Sq > Sk under a window) with and without a sink.
  {
    dtype: "float16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 400, Sk: 100, D: 64, window: [3, 0], seed: 41 },
    sinks: { mean: 0.5, negInfHead0: true },
  },
  // Everything at once.
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 333, Sk: 777, D: 128, causal: true, scale: 0.2, seed: 42 },
    ...{ window: [200, 0], softcap: 10, sinks: { mean: -1 }, alibi: "batch" },
    bias: { dtype: "float32", shape: [2, 1, 1, 777], negInf: 0.05 },
    ...{ dropout: 0.15, dropoutSeed: 0x1234n, dropoutOffset: 5 },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 1000, Sk: 300, D: 256, seed: 43 },
    ...{ window: [40, 40], softcap: 5, sinks: { mean: 0 }, alibi: "heads" },
    bias: { dtype: "bfloat16", shape: [1, 2, 1000, 300] },
    ...{ dropout: 0.3, dropoutSeed: 99n },
  },
];

for (const c of FEATURE_CONFIGS) {
  Deno.test({
    name: `gpu vs cpu (score features): ${describeCase(c)}`,
    ignore,
    fn: () => checkGpuCase(c),
  });
}

for (const c of FEATURE_CONFIGS) {
  Deno.test({
    name: `gpu vs cpu (score features, deterministic backward): ${describeCase(c)}`,
    ignore,
    fn: () => checkGpuCase(c, true),
  });
}

for (const c of randomFeatureConfigs(16, 5151, 20_000_000)) {
  Deno.test({
    name: `gpu vs cpu (score features, random): ${describeCase(c)}`,
    ignore,
    fn: () => checkGpuCase(c),
  });
}

Deno.test({
  name: "gpu vs cpu: every head dim 8..256 (step 8), causal Sq=65 Sk=130, both dtypes",
  ignore,
  fn() {
    for (let D = 8; D <= 256; D += 8) {
      const dtype: HalfDType = D % 16 === 0 ? "bfloat16" : "float16";
      const c: CaseConfig = {
        dtype,
        B: 1,
        Hq: 2,
        Hkv: 1,
        Sq: 65,
        Sk: 130,
        D,
        causal: true,
        seed: D,
      };
      try {
        checkGpuCase(c);
      } catch (error) {
        throw new Error(`D = ${D} (${describeCase(c)}): ${(error as Error).message}`);
      }
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Dropout: the GPU mask equals the test's Philox mask bit for bit.

/**
 * The keep mask of columns [c0, c0 + 256) read from a GPU forward: identical keys make every
 * score of a row equal, and v_j = e_(j - c0) for keys in the window (0 elsewhere), so
 * out[i, j - c0] is nonzero iff key j is kept.
 */
function gpuMaskWindow(
  B: number,
  Hq: number,
  Hkv: number,
  Sq: number,
  Sk: number,
  c0: number,
  p: number,
  seed: bigint,
  offset: number,
): Uint8Array {
  const D = 256;
  const rng = new Rng(Sq * 31 + Sk);
  const q = quantize(rng.normalArray(B * Hq * Sq * D, 0.1), "float16");
  const row = quantize(rng.normalArray(D, 0.1), "float16");
  const k = new Float32Array(B * Hkv * Sk * D);
  const v = new Float32Array(B * Hkv * Sk * D);
  for (let r = 0; r < B * Hkv * Sk; r++) {
    k.set(row, r * D);
    const j = r % Sk;
    if (j >= c0 && j < c0 + D) v[r * D + (j - c0)] = 1;
  }
  const tq = Tensor.fromArray(q, [B, Hq, Sq, D], { dtype: "float16", device: gpu() });
  const tk = Tensor.fromArray(k, [B, Hkv, Sk, D], { dtype: "float16", device: gpu() });
  const tv = Tensor.fromArray(v, [B, Hkv, Sk, D], { dtype: "float16", device: gpu() });
  const out = poisoned([B, Hq, Sq, D], "float16", gpu());
  try {
    attention(tq, tk, tv, { dropout: { p, seed, offset }, out });
    const o = out.toFloat32();
    const mask = new Uint8Array(o.length);
    for (let i = 0; i < o.length; i++) {
      assert.notEqual(o[i], POISON);
      mask[i] = o[i] !== 0 ? 1 : 0;
    }
    return mask;
  } finally {
    disposeTensors({ tq, tk, tv, out });
  }
}

Deno.test({
  name: "gpu dropout: mask equals the Philox spec bit for bit (Sk=1000 in 4 windows, GQA)",
  ignore,
  fn() {
    const B = 2, Hq = 4, Hkv = 2, Sq = 100, Sk = 1000, p = 0.35;
    const seed = 0x0123456789abcdefn, offset = 77;
    const want = dropoutMask(seed, offset, B, Hq, Sq, Sk, p);
    for (let c0 = 0; c0 < Sk; c0 += 256) {
      const got = gpuMaskWindow(B, Hq, Hkv, Sq, Sk, c0, p, seed, offset);
      let bad = 0, first = "";
      for (let bh = 0; bh < B * Hq; bh++) {
        for (let i = 0; i < Sq; i++) {
          for (let t = 0; t < 256 && c0 + t < Sk; t++) {
            const g = got[(bh * Sq + i) * 256 + t];
            const w = want[(bh * Sq + i) * Sk + c0 + t];
            if (g !== w) {
              bad++;
              if (!first) first = `bh=${bh} i=${i} j=${c0 + t}`;
            }
          }
        }
      }
      assert.equal(bad, 0, `window ${c0}: ${bad} mismatches, first at ${first}`);
    }
  },
});

Deno.test({
  name: "gpu dropout: nested masks use per-sequence indices (b = sequence) bit for bit",
  ignore,
  fn() {
    // Nested: per-sequence indices with b = sequence index, read with the one-hot trick.
    const seqQ = [5, 100, 37], seqK = [256, 13, 200], H = 2, D = 256, p = 0.5;
    const seed = 99n, offset = 3;
    const rng = new Rng(5);
    const row = quantize(rng.normalArray(D, 0.1), "float16");
    const qs = seqQ.map((s) =>
      Tensor.fromArray(quantize(rng.normalArray(s * H * D, 0.1), "float16"), [s, H, D], {
        dtype: "float16",
        device: gpu(),
      })
    );
    const ks = seqK.map((s) => {
      const a = new Float32Array(s * H * D);
      for (let r = 0; r < s * H; r++) a.set(row, r * D);
      return Tensor.fromArray(a, [s, H, D], { dtype: "float16", device: gpu() });
    });
    const vs = seqK.map((s) => {
      const a = new Float32Array(s * H * D);
      for (let j = 0; j < s; j++) for (let h = 0; h < H; h++) a[(j * H + h) * D + j] = 1;
      return Tensor.fromArray(a, [s, H, D], { dtype: "float16", device: gpu() });
    });
    const nq = NestedBatch.pack(qs), nk = NestedBatch.pack(ks), nv = NestedBatch.pack(vs);
    try {
      const r = attention(nq, nk, nv, { dropout: { p, seed, offset } });
      const parts = r.out.unpack();
      for (let b = 0; b < seqQ.length; b++) {
        const o = parts[b].toFloat32(); // [Sq, H, D]
        for (let h = 0; h < H; h++) {
          const want = dropoutMaskRows(seed, offset, b * H + h, seqQ[b], seqK[b], p);
          for (let i = 0; i < seqQ[b]; i++) {
            for (let j = 0; j < seqK[b]; j++) {
              const kept = o[(i * H + h) * D + j] !== 0 ? 1 : 0;
              if (kept !== want[i * seqK[b] + j]) {
                assert.fail(`sequence ${b} head ${h} row ${i} key ${j}: got ${kept}`);
              }
            }
          }
        }
      }
      r.out.dispose();
      r.lse.dispose();
    } finally {
      for (const x of [nq, nk, nv]) x.dispose();
      disposeTensors(qs, ks, vs);
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Nested batches on the GPU

function nestedPair(
  seqQ: number[],
  seqK: number[],
  H: number,
  Hkv: number,
  D: number,
  dtype: HalfDType,
  seed: number,
): { cpu: NestedBatch[]; gpu: NestedBatch[] } {
  const rng = new Rng(seed);
  const make = (lens: number[], heads: number): NestedBatch => {
    const parts = lens.map((s) =>
      Tensor.fromArray(rng.normalArray(s * heads * D), [s, heads, D], { dtype })
    );
    const nb = NestedBatch.pack(parts);
    for (const p of parts) p.dispose();
    return nb;
  };
  const host = [make(seqQ, H), make(seqK, Hkv), make(seqK, Hkv), make(seqQ, H)];
  return { cpu: host, gpu: host.map((nb) => nb.to(gpu())) };
}

function checkNested(
  seqQ: number[],
  seqK: number[],
  options: AttentionOptions,
  biasShape?: number[],
): void {
  const H = 4, Hkv = 2, D = 64, dtype: HalfDType = "bfloat16";
  const u = unitRoundoff(dtype);
  const { cpu: hc, gpu: hg } = nestedPair(seqQ, seqK, H, Hkv, D, dtype, seqQ.length * 7 + 1);
  const [q, k, v, dout] = hc;
  const [qg, kg, vg, doutg] = hg;
  let bias: Tensor | undefined, biasG: Tensor | undefined;
  if (biasShape) {
    const n = biasShape.reduce((a, b) => a * b, 1);
    bias = Tensor.fromArray(new Rng(3).normalArray(n), biasShape, { dtype: "float32" });
    biasG = bias.to(gpu());
  }
  const vAbsData = absTensor(v.data, dtype);
  const vAbs = NestedBatch.fromData(vAbsData, v.seqlens);
  const owned: { dispose(): void }[] = [...hc, ...hg, vAbs, vAbsData];
  try {
    const ref = attention(q, k, v, { ...options, bias });
    const magR = attention(q, k, vAbs, { ...options, bias });
    const outG = poisoned(qg.data.shape, dtype, gpu());
    const lseG = poisoned([qg.total, H], "float32", gpu());
    const got = attention(qg, kg, vg, { ...options, bias: biasG, out: outG, lse: lseG });
    owned.push(ref.out, ref.lse, magR.out, magR.lse, got.out, got.lse, outG, lseG);
    const refOut = ref.out.data.toFloat32(), mag = magR.out.data.toFloat32();
    const refLse = ref.lse.toFloat32();
    assertElementwise(
      "nested out",
      outG.toFloat32(),
      refOut,
      pairForwardTolerance(dtype, refOut, mag),
    );
    assertElementwise("nested lse", lseG.toFloat32(), refLse, (i) => 2 * lseTolerance(refLse[i]));
    const gradR = attentionBackward(dout, q, k, v, ref.out, ref.lse, { ...options, bias });
    const outOnG = ref.out.to(gpu()), lseOnG = ref.lse.to(gpu());
    const gradG = attentionBackward(doutg, qg, kg, vg, outOnG, lseOnG, { ...options, bias: biasG });
    owned.push(gradR.dq, gradR.dk, gradR.dv, gradG.dq, gradG.dk, gradG.dv, outOnG, lseOnG);
    for (const name of ["dq", "dk", "dv"] as const) {
      assertBackwardPair(
        `nested ${name}`,
        gradG[name].data.toFloat32(),
        gradR[name].data.toFloat32(),
        u,
      );
    }
  } finally {
    for (const o of owned) o.dispose();
    bias?.dispose();
    biasG?.dispose();
  }
}

Deno.test({
  name: "gpu nested: lengths 1..4096 (causal, dropout) vs the CPU backend",
  ignore,
  fn() {
    checkNested([1, 4096, 17, 300, 2048, 1], [4096, 1, 300, 17, 2048, 5], {
      causal: true,
      dropout: { p: 0.1, seed: 21n, offset: 1 },
    });
  },
});

Deno.test({
  name: "gpu nested: Inf/NaN in one sequence's K and V stay out of the others' results",
  ignore,
  fn() {
    // Sequence 0 ends inside a key tile (100 keys), so a kernel's last key tile of sequence 0
    // covers rows of sequence 1, which are all Inf (V) and NaN (K). Sequence 0 must still equal
    // the CPU backend's result; sequence 1 is NaN/Inf on both and not compared.
    const H = 2, D = 64, dtype: HalfDType = "bfloat16", u = unitRoundoff(dtype);
    const seqQ = [150, 20], seqK = [100, 37];
    const rng = new Rng(41);
    const part = (s: number, fill?: number) =>
      Tensor.fromArray(
        fill === undefined ? rng.normalArray(s * H * D) : new Float32Array(s * H * D).fill(fill),
        [s, H, D],
        { dtype },
      );
    const qs = seqQ.map((s) => part(s));
    const ks = [part(seqK[0]), part(seqK[1], NaN)];
    const vs = [part(seqK[0]), part(seqK[1], Infinity)];
    const owned: { dispose(): void }[] = [...qs, ...ks, ...vs];
    try {
      const [q, k, v] = [qs, ks, vs].map((parts) => NestedBatch.pack(parts));
      const [qg, kg, vg] = [q, k, v].map((nb) => nb.to(gpu()));
      owned.push(q, k, v, qg, kg, vg);
      for (const causal of [false, true]) {
        const ref = attention(q, k, v, { causal });
        const got = attention(qg, kg, vg, { causal });
        owned.push(ref.out, ref.lse, got.out, got.lse);
        const refOut = ref.out.unpack()[0], gotOut = got.out.unpack()[0];
        owned.push(refOut, gotOut);
        const r = refOut.toFloat32(), g = gotOut.toFloat32();
        assertNontrivial("sequence 0 reference", r);
        assertElementwise(
          `sequence 0 out (causal ${causal})`,
          g,
          r,
          (i) => 8 * u * (1 + Math.abs(r[i])),
        );
      }
    } finally {
      for (const o of owned) o.dispose();
    }
  },
});

Deno.test({
  name: "gpu nested: bias [B,1,maxSq,maxSk] and GQA vs the CPU backend",
  ignore,
  fn() {
    checkNested([3, 130, 64, 1], [200, 7, 64, 129], { causal: false, scale: 0.3 }, [
      4,
      1,
      130,
      200,
    ]);
  },
});

Deno.test({
  name:
    "gpu nested: window, softcap, sinks and [B, Hq] ALiBi (an empty sequence) vs the CPU backend",
  ignore,
  fn() {
    const seqQ = [3, 0, 700, 1, 129], seqK = [200, 5, 700, 64, 1];
    const H = 4, Hkv = 2, D = 64, dtype: HalfDType = "float16", u = unitRoundoff(dtype);
    const { cpu: hc, gpu: hg } = nestedPair(seqQ, seqK, H, Hkv, D, dtype, 91);
    const [q, k, v, dout] = hc;
    const [qg, kg, vg, doutg] = hg;
    const rng = new Rng(92);
    const sinks = Tensor.fromArray([0.5, -Infinity, 2, -1], [H], { dtype: "float32" });
    const slopes = Tensor.fromArray(
      Float32Array.from({ length: seqQ.length * H }, () => 0.3 * rng.uniform()),
      [seqQ.length, H],
      { dtype: "float32" },
    );
    const [sinksG, slopesG] = [sinks.to(gpu()), slopes.to(gpu())];
    const owned: { dispose(): void }[] = [...hc, ...hg, sinks, slopes, sinksG, slopesG];
    const features = { window: [100, 20] as [number, number], softcap: 20, dropout: 0.1 };
    try {
      const ref = attention(q, k, v, { ...features, sinks, alibiSlopes: slopes });
      const vAbsData = absTensor(v.data, dtype);
      const vAbs = NestedBatch.fromData(vAbsData, v.seqlens);
      const magR = attention(q, k, vAbs, { ...features, sinks, alibiSlopes: slopes });
      owned.push(vAbsData, vAbs, magR.out, magR.lse);
      const outG = poisoned(qg.data.shape, dtype, gpu());
      const lseG = poisoned([qg.total, H], "float32", gpu());
      const got = attention(qg, kg, vg, {
        ...{ ...features, sinks: sinksG, alibiSlopes: slopesG },
        ...{ out: outG, lse: lseG },
      });
      owned.push(ref.out, ref.lse, got.out, got.lse, outG, lseG);
      const refOut = ref.out.data.toFloat32(), refLse = ref.lse.toFloat32();
      const mag = magR.out.data.toFloat32();
      assertElementwise(
        "nested out",
        outG.toFloat32(),
        refOut,
        pairForwardTolerance(dtype, refOut, mag),
      );
      assertElementwise("nested lse", lseG.toFloat32(), refLse, (i) => 2 * lseTolerance(refLse[i]));
      const outOnG = ref.out.to(gpu()), lseOnG = ref.lse.to(gpu());
      const dsinksG = poisoned([H], "float32", gpu());
      owned.push(outOnG, lseOnG, dsinksG);
      const gradR = attentionBackward(dout, q, k, v, ref.out, ref.lse, {
        ...{ ...features, sinks, alibiSlopes: slopes },
      });
      const gradG = attentionBackward(doutg, qg, kg, vg, outOnG, lseOnG, {
        ...{ ...features, sinks: sinksG, alibiSlopes: slopesG, dsinks: dsinksG },
      });
      owned.push(gradR.dq, gradR.dk, gradR.dv, gradG.dq, gradG.dk, gradG.dv, gradR.dsinks!);
      for (const name of ["dq", "dk", "dv"] as const) {
        assertBackwardPair(
          `nested ${name}`,
          gradG[name].data.toFloat32(),
          gradR[name].data.toFloat32(),
          u,
        );
      }
      const want = gradR.dsinks!.toFloat32();
      assertElementwise(
        "nested dsinks",
        dsinksG.toFloat32(),
        want,
        (i) => 1e-3 * (Math.abs(want[i]) + maxAbs(want)) + 1e-6,
      );
      assert.equal(dsinksG.toFloat32()[1], 0, "a -inf sink's gradient");
    } finally {
      for (const o of owned) o.dispose();
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Layouts, streams, repeatability

Deno.test({
  name: "gpu layouts: bshd, permuted views and sliced q equal contiguous bhsd",
  ignore,
  fn() {
    const c: CaseConfig = {
      dtype: "float16",
      ...{ B: 2, Hq: 4, Hkv: 2, Sq: 130, Sk: 257, D: 64, causal: true, seed: 30 },
      ...{ dropout: 0.1, dropoutSeed: 4n },
    };
    const data = makeCase(c);
    const tg = caseTensors(data, gpu());
    const opts = caseOptions(c);
    const u = unitRoundoff(c.dtype);
    const bshdQ = [c.B, c.Sq, c.Hq, c.D], bshdKv = [c.B, c.Sk, c.Hkv, c.D];
    const up = (a: Float32Array, shape: number[]): Tensor =>
      Tensor.fromArray(a, shape, { dtype: c.dtype, device: gpu() });
    const q2 = up(swapAxes12(data.q, data.qShape), bshdQ);
    const k2 = up(swapAxes12(data.k, data.kvShape), bshdKv);
    const v2 = up(swapAxes12(data.v, data.kvShape), bshdKv);
    const owned: Tensor[] = [q2, k2, v2];
    try {
      const ref = attention(tg.q, tg.k, tg.v, opts);
      owned.push(ref.out, ref.lse);
      const want = ref.out.toFloat32();
      const close = (name: string, got: Float32Array): void =>
        assertElementwise(name, got, want, (i) => 2 * u * Math.abs(want[i]) + 1e-6);
      const r2 = attention(q2, k2, v2, { ...opts, layout: "bshd" });
      owned.push(r2.out, r2.lse);
      close("bshd", swapAxes12(r2.out.toFloat32(), bshdQ));
      const qp = q2.permute([0, 2, 1, 3]),
        kp = k2.permute([0, 2, 1, 3]),
        vp = v2.permute([0, 2, 1, 3]);
      const outStore = poisoned(bshdQ, c.dtype, gpu());
      const outView = outStore.permute([0, 2, 1, 3]);
      owned.push(qp, kp, vp, outStore, outView);
      attention(qp, kp, vp, { ...opts, out: outView });
      close("permuted", outView.toFloat32());
      // q as rows 8.. of a longer sequence (storage offset of 8 rows: still 16-byte aligned).
      const longQ = new Rng(31).normalArray(c.B * c.Hq * (c.Sq + 8) * c.D);
      for (let bh = 0; bh < c.B * c.Hq; bh++) {
        longQ.set(
          data.q.subarray(bh * c.Sq * c.D, (bh + 1) * c.Sq * c.D),
          (bh * (c.Sq + 8) + 8) * c.D,
        );
      }
      const long = up(longQ, [c.B, c.Hq, c.Sq + 8, c.D]);
      const sliced = long.slice(2, 8, 8 + c.Sq);
      owned.push(long, sliced);
      const r4 = attention(sliced, tg.k, tg.v, opts);
      owned.push(r4.out, r4.lse);
      close("sliced", r4.out.toFloat32());
      // Backward in bshd equals bhsd.
      const g1 = attentionBackward(tg.dout, tg.q, tg.k, tg.v, ref.out, ref.lse, opts);
      const do2 = up(swapAxes12(data.dout, data.qShape), bshdQ);
      const out2 = ref.out.to(cpu);
      const outB = up(swapAxes12(out2.toFloat32(), data.qShape), bshdQ);
      const g2 = attentionBackward(do2, q2, k2, v2, outB, ref.lse, { ...opts, layout: "bshd" });
      owned.push(g1.dq, g1.dk, g1.dv, do2, out2, outB, g2.dq, g2.dk, g2.dv);
      assertBackwardPair("bshd dq", swapAxes12(g2.dq.toFloat32(), bshdQ), g1.dq.toFloat32(), u);
      assertBackwardPair("bshd dk", swapAxes12(g2.dk.toFloat32(), bshdKv), g1.dk.toFloat32(), u);
    } finally {
      disposeTensors(tg);
      for (const t of owned) if (!t.disposed) t.dispose();
    }
  },
});

Deno.test({
  name: "gpu layouts: any strides with a contiguous last dim (row stride not a multiple of 8)",
  ignore,
  fn() {
    // DESIGN.md: "Any strides are accepted as long as the last dimension is contiguous".
    const rng = new Rng(40);
    const wide = Tensor.fromArray(quantize(rng.normalArray(1 * 2 * 50 * 44), "float16"), [
      1,
      2,
      50,
      44,
    ], {
      dtype: "float16",
      device: gpu(),
    });
    const q = wide.slice(3, 0, 40); // D = 40 with row stride 44
    const qc = q.contiguous();
    try {
      const a = attention(q, q, q, { causal: true });
      const b = attention(qc, qc, qc, { causal: true });
      const want = b.out.toFloat32();
      const u = unitRoundoff("float16");
      assertElementwise(
        "strided",
        a.out.toFloat32(),
        want,
        (i) => 2 * u * Math.abs(want[i]) + 1e-6,
      );
      disposeTensors(a, b);
    } finally {
      disposeTensors({ wide, q, qc });
    }
  },
});

Deno.test({
  name: "gpu: forward bitwise repeatable; deterministic backward bitwise repeatable; streams",
  ignore,
  fn() {
    const c: CaseConfig = {
      dtype: "bfloat16",
      ...{ B: 2, Hq: 8, Hkv: 2, Sq: 777, Sk: 1025, D: 128, causal: true, seed: 50 },
      bias: { dtype: "float32", shape: [2, 1, 1, 1025] },
      ...{ dropout: 0.1, dropoutSeed: 8n },
    };
    const data = makeCase(c);
    const tg = caseTensors(data, gpu());
    const opts = { ...caseOptions(c), bias: tg.bias };
    const owned: Tensor[] = [];
    const stream = Stream.create(gpu());
    try {
      const a = attention(tg.q, tg.k, tg.v, opts);
      const b = attention(tg.q, tg.k, tg.v, opts);
      const s = attention(tg.q, tg.k, tg.v, { ...opts, stream });
      stream.synchronize();
      owned.push(a.out, a.lse, b.out, b.lse, s.out, s.lse);
      assert.deepEqual(a.out.toBits(), b.out.toBits(), "forward out repeats bit for bit");
      assertBitwise("forward lse", a.lse.toFloat32(), b.lse.toFloat32());
      assert.deepEqual(s.out.toBits(), a.out.toBits(), "on a created stream");
      const det: BackwardOptions = { ...opts, deterministic: true, computeDbias: true };
      const g1 = attentionBackward(tg.dout, tg.q, tg.k, tg.v, a.out, a.lse, det);
      const g2 = attentionBackward(tg.dout, tg.q, tg.k, tg.v, a.out, a.lse, det);
      owned.push(g1.dq, g1.dk, g1.dv, g2.dq, g2.dk, g2.dv);
      for (const name of ["dq", "dk", "dv"] as const) {
        assert.deepEqual(g1[name].toBits(), g2[name].toBits(), `deterministic ${name}`);
      }
      assert.ok(g1.dbias && g2.dbias);
      owned.push(g1.dbias, g2.dbias);
      assertBitwise("deterministic dbias", g1.dbias.toFloat32(), g2.dbias.toFloat32());
      // The default (possibly atomic) backward agrees with the deterministic one.
      const g3 = attentionBackward(tg.dout, tg.q, tg.k, tg.v, a.out, a.lse, {
        ...opts,
        computeDbias: true,
      });
      owned.push(g3.dq, g3.dk, g3.dv);
      if (g3.dbias) owned.push(g3.dbias);
      const u = unitRoundoff(c.dtype);
      for (const name of ["dq", "dk", "dv"] as const) {
        assertBackwardPair(
          `default vs deterministic ${name}`,
          g3[name].toFloat32(),
          g1[name].toFloat32(),
          u,
        );
      }
    } finally {
      stream.dispose();
      disposeTensors(tg);
      for (const t of owned) if (!t.disposed) t.dispose();
    }
  },
});

Deno.test({
  name: "gpu errors: misaligned base address on CUDA is refused with a clear message",
  ignore,
  fn() {
    const wide = Tensor.fromArray(new Rng(41).normalArray(16 * 72), [1, 1, 16, 72], {
      dtype: "float16",
      device: gpu(),
    });
    const q = wide.slice(3, 1, 65); // starts 2 bytes into the row: not 16-byte aligned
    const out = poisoned([1, 1, 16, 64], "float16", gpu());
    try {
      let caught: unknown;
      try {
        attention(q, q, q, { out });
      } catch (e) {
        caught = e;
      }
      if (caught !== undefined) {
        assert.ok(caught instanceof FlashAttentionError, String(caught));
        assert.equal(caught.code, "invalid_argument", caught.message);
        assert.equal(caught.argument, "q", caught.message);
        assert.ok(out.toFloat32().every((x) => x === POISON), "out written despite the error");
      } else {
        // Accepting the view is within the contract too, if the result is right.
        const qc = q.contiguous();
        const ref = attention(qc, qc, qc);
        const want = ref.out.toFloat32();
        const u = unitRoundoff("float16");
        assertElementwise(
          "misaligned q",
          out.toFloat32(),
          want,
          (i) => 2 * u * Math.abs(want[i]) + 1e-6,
        );
        disposeTensors(ref, { qc });
      }
    } finally {
      disposeTensors({ wide, q, out });
    }
  },
});

// ---------------------------------------------------------------------------------------------
// More than 2^31 elements in one tensor

Deno.test({
  name: "gpu: q with more than 2^31 elements ([1, 1, 2^23 + 64, 256]); sampled rows vs CPU",
  ignore,
  fn() {
    const D = 256, tileRows = 1000, Sk = 64;
    const rows = 2 ** 23 + 64; // elements 2^31 + 16384
    const rng = new Rng(60);
    const tile = quantize(rng.normalArray(tileRows * D), "bfloat16");
    const kv = [
      quantize(rng.normalArray(Sk * D), "bfloat16"),
      quantize(rng.normalArray(Sk * D), "bfloat16"),
    ];
    const q = Tensor.empty([1, 1, rows, D], "bfloat16", gpu());
    const tileG = Tensor.fromArray(tile, [tileRows, D], { dtype: "bfloat16", device: gpu() });
    const k = Tensor.fromArray(kv[0], [1, 1, Sk, D], { dtype: "bfloat16", device: gpu() });
    const v = Tensor.fromArray(kv[1], [1, 1, Sk, D], { dtype: "bfloat16", device: gpu() });
    const owned: Tensor[] = [q, tileG, k, v];
    try {
      // Fill q by doubling copies of the tile: row r holds tile row r % 1000.
      const rowBytes = BigInt(D * 2);
      const base = describeTensor(q, "q").data;
      const lib = ffi();
      assert.equal(
        lib.fa_memcpy_dtod(
          0,
          base,
          describeTensor(tileG, "tile").data,
          BigInt(tileRows) * rowBytes,
        ),
        0,
        lastError(),
      );
      let filled = tileRows;
      while (filled < rows) {
        const n = Math.min(filled, rows - filled);
        const status = lib.fa_memcpy_dtod(
          0,
          base + BigInt(filled) * rowBytes,
          base,
          BigInt(n) * rowBytes,
        );
        assert.equal(status, 0, lastError());
        filled += n;
      }
      // Poison by bytes (0x7f7f = 3.4e38 in bfloat16, 0x7f7f7f7f = 3.4e38 in float32) on the
      // device: 4 GiB is too much to fill from the host.
      const out = Tensor.empty([1, 1, rows, D], "bfloat16", gpu());
      const lse = Tensor.empty([1, 1, rows], "float32", gpu());
      owned.push(out, lse);
      for (const t of [out, lse]) {
        const bytes = BigInt(t.numel * (t.dtype === "float32" ? 4 : 2));
        assert.equal(
          lib.fa_memset(0, describeTensor(t, "poison").data, 0x7f, bytes),
          0,
          lastError(),
        );
      }
      attention(q, k, v, { out, lse });
      const sample = [
        0,
        1,
        2,
        3,
        2 ** 23 - 2,
        2 ** 23 - 1,
        2 ** 23,
        2 ** 23 + 1,
        rows - 2,
        rows - 1,
      ];
      const qs = new Float32Array(sample.length * D);
      sample.forEach((r, i) =>
        qs.set(tile.subarray((r % tileRows) * D, (r % tileRows + 1) * D), i * D)
      );
      const qc = Tensor.fromArray(qs, [1, 1, sample.length, D], { dtype: "bfloat16" });
      const kc = Tensor.fromArray(kv[0], [1, 1, Sk, D], { dtype: "bfloat16" });
      const vc = Tensor.fromArray(kv[1], [1, 1, Sk, D], { dtype: "bfloat16" });
      const vAbs = absTensor(vc, "bfloat16");
      const ref = attention(qc, kc, vc);
      const magR = attention(qc, kc, vAbs);
      owned.push(qc, kc, vc, vAbs, ref.out, ref.lse, magR.out, magR.lse);
      const refOut = ref.out.toFloat32(), mag = magR.out.toFloat32(), refLse = ref.lse.toFloat32();
      const tol = pairForwardTolerance("bfloat16", refOut, mag);
      sample.forEach((r, i) => {
        const gotRow = out.slice(2, r, r + 1).toFloat32();
        const gotLse = lse.slice(2, r, r + 1).toFloat32()[0];
        for (let d = 0; d < D; d++) {
          const e = Math.abs(gotRow[d] - refOut[i * D + d]);
          if (!(e <= tol(i * D + d))) {
            assert.fail(`row ${r} d ${d}: ${gotRow[d]} vs ${refOut[i * D + d]}`);
          }
        }
        assert.ok(Math.abs(gotLse - refLse[i]) <= 2 * lseTolerance(refLse[i]), `lse row ${r}`);
      });
    } finally {
      for (const t of owned) if (!t.disposed) t.dispose();
    }
  },
});

Deno.test({
  name: "gpu layouts: backward with row strides not a multiple of 8, into strided gradients",
  ignore,
  fn() {
    // Inputs and gradients are D = 40 views of rows 44 wide: the library stages them through
    // aligned copies. Results must equal the contiguous run, and the 4 padding columns of
    // each gradient buffer must keep their poison.
    const rng = new Rng(41);
    const shape = [1, 2, 70, 44];
    const wideInput = () =>
      Tensor.fromArray(quantize(rng.normalArray(2 * 70 * 44), "bfloat16"), shape, {
        dtype: "bfloat16",
        device: gpu(),
      });
    const [qw, kw, vw, dow] = [wideInput(), wideInput(), wideInput(), wideInput()];
    const [q, k, v, dout] = [qw, kw, vw, dow].map((t) => t.slice(3, 0, 40));
    const [qc, kc, vc, doutc] = [q, k, v, dout].map((t) => t.contiguous());
    const poison = 7;
    const gradBuffers = [0, 1, 2].map(() => Tensor.full(shape, poison, "bfloat16", gpu()));
    const [dq, dk, dv] = gradBuffers.map((t) => t.slice(3, 0, 40));
    try {
      const options = { causal: true, dropout: { p: 0.1, seed: 5n }, deterministic: true };
      const fwd = attention(q, k, v, options);
      const ref = attention(qc, kc, vc, options);
      attentionBackward(dout, q, k, v, fwd.out, fwd.lse, { ...options, dq, dk, dv });
      const want = attentionBackward(doutc, qc, kc, vc, ref.out, ref.lse, options);
      const u = unitRoundoff("bfloat16");
      for (
        const [name, got, expected] of [["dq", dq, want.dq], ["dk", dk, want.dk], [
          "dv",
          dv,
          want.dv,
        ]] as const
      ) {
        const w = expected.toFloat32();
        assertElementwise(
          `strided ${name}`,
          got.toFloat32(),
          w,
          (i) => 2 * u * Math.abs(w[i]) + 1e-6,
        );
      }
      for (const buffer of gradBuffers) {
        const all = buffer.toFloat32();
        for (let row = 0; row < 2 * 70; row++) {
          for (let col = 40; col < 44; col++) assert.equal(all[row * 44 + col], poison);
        }
      }
      disposeTensors(fwd, ref, want);
    } finally {
      for (const t of [qw, kw, vw, dow, q, k, v, dout, qc, kc, vc, doutc, dq, dk, dv]) t.dispose();
      for (const t of gradBuffers) t.dispose();
    }
  },
});

Deno.test({
  name: "gpu: NaN in one query row with each score feature: NaN out and lse in that row only",
  ignore,
  fn() {
    const H = 2, Sq = 130, Sk = 200, D = 64, nanRow = 70;
    const rng = new Rng(4242);
    const normals = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const q = normals(H * Sq * D), k = normals(H * Sk * D), v = normals(H * Sk * D);
    q[nanRow * D + 5] = NaN; // head 0, row 70
    const on = (a: Float32Array, S: number) =>
      Tensor.fromArray(a, [1, H, S, D], { dtype: "bfloat16", device: gpu() });
    const tq = on(q, Sq), tk = on(k, Sk), tv = on(v, Sk);
    const sinks = Tensor.fromArray([0.5, -1], [H], { dtype: "float32", device: gpu() });
    const slopes = Tensor.fromArray([0.25, 0.0625], [H], { dtype: "float32", device: gpu() });
    const variants = [
      ["plain", {}],
      ["causal window", { causal: true, window: [40, 0] as [number, number] }],
      ["softcap", { softcap: 5 }],
      ["sinks", { sinks }],
      ["alibi", { alibiSlopes: slopes }],
    ] as const;
    try {
      for (const [what, opts] of variants) {
        const r = attention(tq, tk, tv, opts);
        const o = r.out.toFloat32(), l = r.lse.toFloat32();
        assert.ok(Number.isNaN(l[nanRow]), `${what}: lse of the NaN row is ${l[nanRow]}`);
        assert.ok(o.subarray(nanRow * D, (nanRow + 1) * D).every(Number.isNaN), `${what}: out`);
        for (let row = 0; row < H * Sq; row++) {
          if (row === nanRow) continue;
          assert.ok(!Number.isNaN(l[row]), `${what}: lse[${row}] is NaN`);
          assertNoNaN(`${what} out row ${row}`, o.subarray(row * D, (row + 1) * D));
        }
        disposeTensors(r);
      }
    } finally {
      disposeTensors({ tq, tk, tv, sinks, slopes });
    }
  },
});

Deno.test({
  name: "gpu: a +inf bias value makes its row NaN, other rows unchanged",
  ignore,
  fn() {
    const H = 2, S = 150, D = 64, infRow = 77;
    const rng = new Rng(4343);
    const normals = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const q = normals(H * S * D), k = normals(H * S * D), v = normals(H * S * D);
    const b = normals(S * S);
    b[infRow * S + 12] = Infinity; // every head, row 77, key 12
    const on = (a: Float32Array) =>
      Tensor.fromArray(a, [1, H, S, D], { dtype: "bfloat16", device: gpu() });
    const tq = on(q), tk = on(k), tv = on(v);
    const bias = Tensor.fromArray(b, [1, 1, S, S], { dtype: "float32", device: gpu() });
    try {
      for (const causal of [false, true]) {
        const r = attention(tq, tk, tv, { bias, causal });
        const o = r.out.toFloat32(), l = r.lse.toFloat32();
        for (let row = 0; row < H * S; row++) {
          const out = o.subarray(row * D, (row + 1) * D);
          if (row % S === infRow) {
            assert.ok(Number.isNaN(l[row]), `causal=${causal}: lse[${row}] is ${l[row]}`);
            assert.ok(out.every(Number.isNaN), `causal=${causal}: out row ${row}`);
          } else {
            assert.ok(Number.isFinite(l[row]), `causal=${causal}: lse[${row}] is ${l[row]}`);
            assertNoNaN(`causal=${causal} out row ${row}`, out);
          }
        }
        disposeTensors(r);
      }
    } finally {
      disposeTensors({ tq, tk, tv, bias });
    }
  },
});
