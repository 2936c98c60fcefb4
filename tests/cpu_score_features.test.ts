/**
 * The score features (sliding window, logit softcap, attention sinks, ALiBi) on the CPU
 * backend: the float64 oracle's closed forms and its gradients against finite differences
 * (which validates the oracle), then the CPU backend's forward and backward (dq, dk, dv,
 * dbias, dsinks) against the oracle over hand-picked and seeded random combinations with
 * causal, bias, dropout, GQA, nested batches and both dtypes, then degenerate shapes.
 *
 * Tolerances: the forward's per element and lse's are those of helpers/cases.ts
 * (forwardTolerance, lseTolerance; the features only change the scores, whose float32
 * rounding those bounds already cover); gradients use cpu_backward's rule
 * (u |ref| + (u + 1e-4) mag + 1e-6 max(mag)); dsinks, a float32 output summed in double, is
 * within 1e-4 of its magnitude (sum of |terms|) plus 1e-6 of the largest one.
 */

import assert from "node:assert/strict";
import { attention, attentionBackward, Device, NestedBatch, Tensor } from "../mod.ts";
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
  poisoned,
  randomFeatureConfigs,
} from "./helpers/cases.ts";
import {
  assertAllEqual,
  assertBitwise,
  assertElementwise,
  assertNoNaN,
  assertNontrivial,
} from "./helpers/check.ts";
import {
  broadcastTo,
  dropoutMaskRows,
  oracleBackward,
  oracleForward,
  type OracleProblem,
  reduceTo,
  swapAxes12,
} from "./helpers/oracle.ts";
import { maxAbs, quantize, Rng, toF64, unitRoundoff } from "./helpers/random.ts";
import { visibleScores } from "../src/cli/flops.ts";

// ---------------------------------------------------------------------------------------------
// 1. The oracle on closed forms.

const close = (a: number, b: number, what: string): void =>
  assert.ok(Math.abs(a - b) <= 1e-12 * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

Deno.test("oracle: a sink joins the denominator without a value; an empty row with a sink", () => {
  const v = toF64([1, -2, 3, 0.5]);
  const q = toF64([0.3, 0.1, -0.2, 0.7]);
  const k = toF64([1, 0, 0, 2]);
  const x = 0.5 * (0.3 + 1.4); // scale 0.5
  const sink = 0.25;
  const p = {
    ...{ batch: 1, headsQ: 1, headsKv: 1, seqQ: 1, seqK: 1, headDim: 4, scale: 0.5 },
    ...{ q, k, v, sinks: toF64([sink]) },
  };
  const r = oracleForward(p);
  const w = Math.exp(x) / (Math.exp(x) + Math.exp(sink));
  for (let d = 0; d < 4; d++) close(r.out[d], w * v[d], `out[${d}]`);
  close(r.lse[0], Math.log(Math.exp(x) + Math.exp(sink)), "lse");
  // A -inf sink changes nothing.
  const none = oracleForward({ ...p, sinks: toF64([-Infinity]) });
  for (let d = 0; d < 4; d++) close(none.out[d], v[d], `out[${d}] with a -inf sink`);
  // Causal with Sq = 2 > Sk = 1 hides the only key from row 0: out 0, lse = the sink.
  const hidden = oracleForward({ ...p, seqQ: 2, q: toF64([...q, ...q]), causal: true });
  assert.deepEqual([...hidden.out.subarray(0, 4)], [0, 0, 0, 0]);
  assert.equal(hidden.lse[0], sink);
});

Deno.test("oracle: ALiBi and the window equal a materialized bias; softcap is c tanh(x / c)", () => {
  const rng = new Rng(5);
  const B = 2, H = 3, Sq = 5, Sk = 7, D = 8;
  const base: OracleProblem = {
    ...{ batch: B, headsQ: H, headsKv: H, seqQ: Sq, seqK: Sk, headDim: D },
    q: toF64(rng.normalArray(B * H * Sq * D)),
    k: toF64(rng.normalArray(B * H * Sk * D)),
    v: toF64(rng.normalArray(B * H * Sk * D)),
  };
  const slopes = toF64(rng.normalArray(B * H).map(Math.abs));
  const window: [number, number] = [2, 1];
  const bias = new Float64Array(B * H * Sq * Sk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Sq; i++) {
        for (let j = 0; j < Sk; j++) {
          const diagonal = i + Sk - Sq;
          const visible = diagonal - 2 <= j && j <= diagonal + 1;
          bias[((b * H + h) * Sq + i) * Sk + j] = visible
            ? -slopes[b * H + h] * Math.abs(diagonal - j)
            : -Infinity;
        }
      }
    }
  }
  const features = oracleForward({ ...base, alibiSlopes: slopes, window });
  const materialized = oracleForward({ ...base, bias });
  for (let i = 0; i < features.out.length; i++) {
    close(features.out[i], materialized.out[i], `out[${i}]`);
  }
  // A softcap far above every score changes nothing measurable; a small one bounds |score|.
  const huge = oracleForward({ ...base, softcap: 1e9 });
  const plain = oracleForward(base);
  for (let i = 0; i < plain.lse.length; i++) close(huge.lse[i], plain.lse[i], `lse[${i}]`);
  const capped = oracleForward({ ...base, softcap: 0.1 });
  for (const l of capped.lse) assert.ok(l <= 0.1 + Math.log(Sk) + 1e-12);
});

// ---------------------------------------------------------------------------------------------
// 2. The oracle's gradients (dq, dk, dv, dsinks) against central finite differences.

function fdGradients(name: string, p: OracleProblem): void {
  const rng = new Rng(name.length * 31 + 7);
  const g = toF64(rng.normalArray(p.q.length));
  const loss = (): number => {
    const out = oracleForward(p).out;
    let l = 0;
    for (let i = 0; i < out.length; i++) l += out[i] * g[i];
    return l;
  };
  const grads = oracleBackward(p, g);
  const params: [string, Float64Array, Float64Array][] = [
    ["dq", p.q, grads.dq],
    ["dk", p.k, grads.dk],
    ["dv", p.v, grads.dv],
  ];
  if (p.sinks) params.push(["dsinks", p.sinks, grads.dsinks]);
  // As in cpu_backward: h = 1e-5 in float64 leaves ~1e-9 of truncation and ~1e-10 of
  // cancellation, far below 1e-6 (1 + max|grad|).
  const h = 1e-5;
  for (const [what, param, grad] of params) {
    assertNontrivial(`${name} ${what}`, grad);
    const fd = new Float64Array(param.length);
    for (let i = 0; i < param.length; i++) {
      const saved = param[i];
      if (!Number.isFinite(saved)) continue; // a -inf sink: no gradient, checked below
      param[i] = saved + h;
      const lp = loss();
      param[i] = saved - h;
      const lm = loss();
      param[i] = saved;
      fd[i] = (lp - lm) / (2 * h);
    }
    const tol = 1e-6 * (1 + maxAbs(grad));
    assertElementwise(`${name} ${what} vs finite differences`, grad, fd, () => tol);
  }
}

function fdProblem(seed: number, dims: number[], extra: Partial<OracleProblem>): OracleProblem {
  const [B, Hq, Hkv, Sq, Sk, D] = dims;
  const rng = new Rng(seed);
  return {
    ...{ batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D },
    q: toF64(rng.normalArray(B * Hq * Sq * D, 1.5)),
    k: toF64(rng.normalArray(B * Hkv * Sk * D)),
    v: toF64(rng.normalArray(B * Hkv * Sk * D)),
    ...extra,
  };
}

Deno.test("oracle backward vs finite differences: softcap (tight cap 0.8, GQA, causal)", () => {
  fdGradients("softcap", fdProblem(1, [1, 4, 2, 5, 7, 8], { softcap: 0.8, causal: true }));
});

Deno.test("oracle backward vs finite differences: sinks -> dsinks (one -inf sink, window)", () => {
  const sinks = toF64([0.5, -Infinity, 2]);
  const p = fdProblem(2, [2, 3, 1, 6, 5, 8], { sinks, window: [1, 0] });
  fdGradients("sinks", p);
  assert.equal(oracleBackward(p, new Float64Array(p.q.length).fill(1)).dsinks[1], 0);
});

Deno.test("oracle backward vs finite differences: ALiBi [B, Hq] with softcap, bias and sinks", () => {
  const rng = new Rng(3);
  const B = 2, Hq = 2, Sq = 4, Sk = 9;
  fdGradients(
    "alibi",
    fdProblem(3, [B, Hq, 2, Sq, Sk, 8], {
      alibiSlopes: toF64([0.3, 0.05, 0.5, 0.125]),
      softcap: 3,
      bias: broadcastTo(toF64(rng.normalArray(Sk)), [Sk], [B, Hq, Sq, Sk]),
      sinks: toF64([0, 1]),
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// 3. The CPU backend against the oracle.

/** cpu_backward's gradient tolerance. */
function gradTolerance(u: number, ref: Float64Array, mag: Float64Array): (i: number) => number {
  const floor = 1e-6 * maxAbs(mag);
  return (i: number) => u * Math.abs(ref[i]) + (u + 1e-4) * mag[i] + floor;
}

function dsinksTolerance(mag: Float64Array): (i: number) => number {
  const floor = 1e-6 * maxAbs(mag) + 1e-7;
  return (i: number) => 1e-4 * mag[i] + floor;
}

function checkCase(c: CaseConfig): void {
  const data = makeCase(c);
  const t = caseTensors(data, Device.cpu());
  const opts = { ...caseOptions(c), ...caseTensorOptions(t) };
  const out = poisoned(data.qShape, c.dtype);
  const lse = poisoned([c.B, c.Hq, c.Sq], "float32");
  const dq = poisoned(data.qShape, c.dtype);
  const dk = poisoned(data.kvShape, c.dtype);
  const dv = poisoned(data.kvShape, c.dtype);
  const dbias = c.bias ? poisoned(c.bias.shape, c.bias.dtype) : undefined;
  const dsinks = c.sinks ? poisoned([c.Hq], "float32") : undefined;
  try {
    attention(t.q, t.k, t.v, { ...opts, out, lse });
    const ref = oracleForward(data.problem);
    const got = out.toFloat32(), gotLse = lse.toFloat32();
    assertNoNaN("out", got);
    assertElementwise("out", got, ref.out, forwardTolerance(c.dtype, ref.out, ref.outMag));
    assertElementwise("lse", gotLse, ref.lse, (i) => lseTolerance(ref.lse[i]));

    const g = attentionBackward(t.dout, t.q, t.k, t.v, out, lse, {
      ...opts,
      computeDbias: c.bias !== undefined,
      ...{ dq, dk, dv, dbias, dsinks },
    });
    assert.equal(g.dsinks, dsinks, "dsinks returned exactly when sinks were given");
    const gref = oracleBackward(data.problem, toF64(data.dout), got);
    const u = unitRoundoff(c.dtype);
    const named: [string, Float32Array, Float64Array, Float64Array, number][] = [
      ["dq", dq.toFloat32(), gref.dq, gref.dqMag, u],
      ["dk", dk.toFloat32(), gref.dk, gref.dkMag, u],
      ["dv", dv.toFloat32(), gref.dv, gref.dvMag, u],
    ];
    if (c.bias && dbias) {
      const full = [c.B, c.Hq, c.Sq, c.Sk];
      named.push([
        "dbias",
        dbias.toFloat32(),
        reduceTo(gref.dbias, full, c.bias.shape),
        reduceTo(gref.dbiasMag, full, c.bias.shape),
        unitRoundoff(c.bias.dtype),
      ]);
    }
    for (const [name, gotGrad, want, mag, uOut] of named) {
      assertNoNaN(name, gotGrad);
      assertElementwise(name, gotGrad, want, gradTolerance(uOut, want, mag));
    }
    if (dsinks) {
      const gotDsinks = dsinks.toFloat32();
      assertNoNaN("dsinks", gotDsinks);
      assertElementwise("dsinks", gotDsinks, gref.dsinks, dsinksTolerance(gref.dsinksMag));
      if (c.sinks?.negInfHead0) assert.equal(gotDsinks[0], 0, "a -inf sink's gradient");
    }
    disposeTensors(g);
  } finally {
    disposeTensors(t, { out, lse, dq, dk, dv });
    dbias?.dispose();
    dsinks?.dispose();
  }
}

const HANDPICKED: CaseConfig[] = [
  // each feature alone
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 33, Sk: 70, D: 64, window: [5, 3], seed: 1 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 70, Sk: 33, D: 40, window: [0, -1], seed: 2 },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 65, Sk: 130, D: 32, softcap: 0.7, seed: 3 },
  { dtype: "bfloat16", B: 2, Hq: 3, Hkv: 1, Sq: 17, Sk: 40, D: 64, softcap: 30, seed: 4 },
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 9, Sk: 33, D: 64, sinks: { mean: 1 }, seed: 5 },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 4, Hkv: 2, Sq: 70, Sk: 9, D: 40, seed: 6 },
    sinks: { mean: 3, negInfHead0: true },
  },
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 33, Sk: 70, D: 32, alibi: "heads", seed: 7 },
  { dtype: "bfloat16", B: 2, Hq: 4, Hkv: 1, Sq: 130, Sk: 65, D: 16, alibi: "batch", seed: 8 },
  // causal + window (sliding-window causal, Mistral style); Sq > Sk leaves empty rows
  {
    dtype: "float16",
    ...{ B: 1, Hq: 2, Hkv: 1, Sq: 130, Sk: 130, D: 32, causal: true, window: [16, 0], seed: 9 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 40, Sk: 17, D: 40, causal: true, window: [3, -1], seed: 10 },
    sinks: { mean: 0 },
  },
  // with bias and dropout
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 33, Sk: 40, D: 64, softcap: 2, alibi: "batch", seed: 11 },
    bias: { dtype: "float32", shape: [2, 1, 1, 40], negInf: 0.1 },
    ...{ dropout: 0.2, dropoutSeed: 7n, dropoutOffset: 3 },
  },
  // everything at once
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 70, Sk: 129, D: 64, causal: true, scale: 0.3, seed: 12 },
    ...{ window: [40, 0], softcap: 5, sinks: { mean: -1 }, alibi: "heads" },
    bias: { dtype: "bfloat16", shape: [1, 4, 70, 129], negInf: 0.05 },
    ...{ dropout: 0.1, dropoutSeed: 2n ** 50n, dropoutOffset: 1 },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 3, Hkv: 3, Sq: 1, Sk: 200, D: 128, window: [7, 7], seed: 13 },
    ...{ softcap: 1, sinks: { mean: 2 }, alibi: "batch" },
  },
];

for (const c of HANDPICKED) {
  Deno.test(`cpu score features vs oracle: ${describeCase(c)}`, () => checkCase(c));
}

for (const c of randomFeatureConfigs(24, 9090, 1_500_000)) {
  Deno.test(`cpu score features vs oracle (random): ${describeCase(c)}`, () => checkCase(c));
}

// ---------------------------------------------------------------------------------------------
// 4. dsinks of the CPU backend against finite differences of the CPU forward.

Deno.test("cpu dsinks vs finite differences of the CPU forward (L = sum(out * dout))", () => {
  const B = 1, H = 2, Sq = 4, Sk = 6, D = 8;
  const rng = new Rng(41);
  const half = (n: number) => quantize(rng.normalArray(n), "float16");
  const [qv, kv, vv] = [half(H * Sq * D), half(H * Sk * D), half(H * Sk * D)];
  const q = Tensor.fromArray(qv, [B, H, Sq, D], { dtype: "float16" });
  const k = Tensor.fromArray(kv, [B, H, Sk, D], { dtype: "float16" });
  const v = Tensor.fromArray(vv, [B, H, Sk, D], { dtype: "float16" });
  const sinkValues = [1.5, 0.5];
  const features = { softcap: 2, window: [2, 1] as [number, number] };
  const problem = (values: number[]): OracleProblem => ({
    ...{ batch: B, headsQ: H, headsKv: H, seqQ: Sq, seqK: Sk, headDim: D },
    ...{ q: toF64(qv), k: toF64(kv), v: toF64(vv), sinks: toF64(values), ...features },
  });
  const cpuLoss = (values: number[]): { loss: number; magnitude: number } => {
    using sinks = Tensor.fromArray(values, [H], { dtype: "float32" });
    const r = attention(q, k, v, { sinks, ...features });
    const o = r.out.toFloat32();
    disposeTensors(r);
    let loss = 0, magnitude = 0;
    for (let i = 0; i < o.length; i++) {
      loss += o[i] * gv[i];
      magnitude += Math.abs(o[i] * gv[i]);
    }
    return { loss, magnitude };
  };
  // dout along out, so that rowsum(dout * out), and with it dsinks, is far from 0.
  const outNow = oracleForward(problem(sinkValues)).out;
  const gv = quantize(Float32Array.from(outNow, (x) => 2 * x + 0.1 * rng.normal()), "float16");
  const dout = Tensor.fromArray(gv, [B, H, Sq, D], { dtype: "float16" });
  const oracleLoss = (values: number[]): number => {
    const o = oracleForward(problem(values)).out;
    return o.reduce((sum, x, i) => sum + x * gv[i], 0);
  };
  try {
    using sinks = Tensor.fromArray(sinkValues, [H], { dtype: "float32" });
    const r = attention(q, k, v, { sinks, ...features });
    const g = attentionBackward(dout, q, k, v, r.out, r.lse, { sinks, ...features });
    const analytic = g.dsinks!.toFloat32();
    disposeTensors(r, g);
    const exact = oracleBackward(problem(sinkValues), toF64(gv)).dsinks;
    // The sinks are float32, so sink +- h is exact. The loss reads the float16 out, whose
    // rounding moves L by at most u sum|out * dout| per evaluation: the CPU's difference
    // quotient is off by at most that / h, plus the truncation error of the quotient, which
    // the oracle's own quotient at the same h measures; 2e-3 covers the float32 rest.
    const h = 1 / 4, u = unitRoundoff("float16");
    for (let head = 0; head < H; head++) {
      const plus = [...sinkValues], minus = [...sinkValues];
      plus[head] += h;
      minus[head] -= h;
      const [lp, lm] = [cpuLoss(plus), cpuLoss(minus)];
      const fd = (lp.loss - lm.loss) / (2 * h);
      const truncation = Math.abs((oracleLoss(plus) - oracleLoss(minus)) / (2 * h) - exact[head]);
      const tol = (u * Math.max(lp.magnitude, lm.magnitude)) / h + 2 * truncation + 2e-3;
      assert.ok(
        Math.abs(analytic[head]) > 2 * tol,
        `dsinks[${head}] = ${analytic[head]} vs ${tol}`,
      );
      assert.ok(
        Math.abs(analytic[head] - fd) <= tol,
        `dsinks[${head}]: analytic ${analytic[head]}, finite difference ${fd}, tolerance ${tol}`,
      );
    }
  } finally {
    disposeTensors({ q, k, v, dout });
  }
});

// ---------------------------------------------------------------------------------------------
// 5. Nested batches: per-sequence indices (ALiBi distance, window, b of [B, Hq] slopes), an
// empty sequence, dsinks summed over every sequence.

Deno.test("nested: window, softcap, sinks and [B, Hq] ALiBi per sequence (an empty one), vs oracle", () => {
  const seqQ = [5, 0, 70, 1], seqK = [9, 4, 33, 1];
  const Hq = 4, Hkv = 2, D = 32, dtype = "float16" as const;
  const B = seqQ.length;
  const rng = new Rng(515);
  const parts = (lens: number[], heads: number) =>
    lens.map((s) => quantize(rng.normalArray(s * heads * D), dtype));
  const [qs, ks, vs, gs] = [parts(seqQ, Hq), parts(seqK, Hkv), parts(seqK, Hkv), parts(seqQ, Hq)];
  const pack = (values: Float32Array[], lens: number[], heads: number): NestedBatch => {
    const tensors = values.map((x, b) => Tensor.fromArray(x, [lens[b], heads, D], { dtype }));
    const batch = NestedBatch.pack(tensors);
    for (const t of tensors) t.dispose();
    return batch;
  };
  const q = pack(qs, seqQ, Hq), k = pack(ks, seqK, Hkv), v = pack(vs, seqK, Hkv);
  const dout = pack(gs, seqQ, Hq);
  const sinkValues = Float32Array.from([0.5, -Infinity, 1.5, -1]);
  const slopeValues = Float32Array.from({ length: B * Hq }, () => 0.4 * rng.uniform());
  const sinks = Tensor.fromArray(sinkValues, [Hq], { dtype: "float32" });
  const alibiSlopes = Tensor.fromArray(slopeValues, [B, Hq], { dtype: "float32" });
  const window: [number, number] = [6, 2];
  const opts = { window, softcap: 1.5, sinks, alibiSlopes, dropout: { p: 0.2, seed: 3n } };
  try {
    const fwd = attention(q, k, v, opts);
    const grads = attentionBackward(dout, q, k, v, fwd.out, fwd.lse, opts);
    const outs = fwd.out.unpack(), lses = fwd.lse.toFloat32();
    const dqs = grads.dq.unpack(), dks = grads.dk.unpack(), dvs = grads.dv.unpack();
    const u = unitRoundoff(dtype);
    const dsinksRef = new Float64Array(Hq), dsinksMag = new Float64Array(Hq);
    let row0 = 0;
    for (let b = 0; b < B; b++) {
      const Sq = seqQ[b], Sk = seqK[b];
      const keep = new Uint8Array(Hq * Sq * Sk);
      for (let h = 0; h < Hq; h++) {
        keep.set(dropoutMaskRows(3n, 0, b * Hq + h, Sq, Sk, 0.2), h * Sq * Sk);
      }
      const problem: OracleProblem = {
        ...{ batch: 1, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D },
        q: toF64(swapAxes12(qs[b], [1, Sq, Hq, D])),
        k: toF64(swapAxes12(ks[b], [1, Sk, Hkv, D])),
        v: toF64(swapAxes12(vs[b], [1, Sk, Hkv, D])),
        ...{ window, softcap: 1.5, keep, dropoutP: 0.2 },
        sinks: toF64(sinkValues),
        alibiSlopes: toF64(slopeValues.subarray(b * Hq, (b + 1) * Hq)),
      };
      const name = `sequence ${b} (Sq=${Sq}, Sk=${Sk})`;
      const ref = oracleForward(problem);
      const got = swapAxes12(outs[b].toFloat32(), [1, Sq, Hq, D]);
      assertElementwise(`${name} out`, got, ref.out, forwardTolerance(dtype, ref.out, ref.outMag));
      for (let i = 0; i < Sq; i++) {
        for (let h = 0; h < Hq; h++) {
          const want = ref.lse[h * Sq + i];
          const gotLse = lses[(row0 + i) * Hq + h];
          assert.ok(Math.abs(gotLse - want) <= lseTolerance(want) || gotLse === want, name);
        }
      }
      const gref = oracleBackward(problem, toF64(swapAxes12(gs[b], [1, Sq, Hq, D])), got);
      for (let h = 0; h < Hq; h++) {
        dsinksRef[h] += gref.dsinks[h];
        dsinksMag[h] += gref.dsinksMag[h];
      }
      const pairs: [string, Tensor, Float64Array, Float64Array, number][] = [
        ["dq", dqs[b], gref.dq, gref.dqMag, Hq],
        ["dk", dks[b], gref.dk, gref.dkMag, Hkv],
        ["dv", dvs[b], gref.dv, gref.dvMag, Hkv],
      ];
      for (const [what, tensor, want, mag, heads] of pairs) {
        const S = tensor.shape[0];
        const gotGrad = swapAxes12(tensor.toFloat32(), [1, S, heads, D]);
        assertElementwise(`${name} ${what}`, gotGrad, want, gradTolerance(u, want, mag));
      }
      row0 += Sq;
    }
    assert.ok(grads.dsinks, "nested dsinks");
    const gotDsinks = grads.dsinks.toFloat32();
    assertElementwise("nested dsinks", gotDsinks, dsinksRef, dsinksTolerance(dsinksMag));
    assert.equal(gotDsinks[1], 0);
    for (const batch of [...outs, ...dqs, ...dks, ...dvs]) batch.dispose();
    for (const batch of [fwd.out, grads.dq, grads.dk, grads.dv]) batch.dispose();
    disposeTensors(fwd, grads);
  } finally {
    for (const batch of [q, k, v, dout]) batch.dispose();
    disposeTensors({ sinks, alibiSlopes });
  }
});

// ---------------------------------------------------------------------------------------------
// 6. Degenerate shapes.

function tensors(seed: number, B: number, H: number, Sq: number, Sk: number, D: number) {
  const rng = new Rng(seed);
  const make = (shape: number[]) =>
    Tensor.fromArray(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape, {
      dtype: "float16",
    });
  return {
    q: make([B, H, Sq, D]),
    k: make([B, H, Sk, D]),
    v: make([B, H, Sk, D]),
    dout: make([B, H, Sq, D]),
  };
}

Deno.test("windows hiding every key of some rows: out 0, lse -inf (or the sink), zero gradients", () => {
  const B = 2, H = 2, Sq = 12, Sk = 5, D = 16;
  const t = tensors(61, B, H, Sq, Sk, D);
  // diagonal(i) = i - 7: [1, 0] hides rows 0..6 (nothing at or left of a negative diagonal);
  // [0, 2] non-causal hides rows 0..4 (diagonal + 2 < 0).
  const cases: { window: [number, number]; causal?: boolean; empty: (i: number) => boolean }[] = [
    { window: [1, 0], empty: (i) => i < 7 },
    { window: [1, 0], causal: true, empty: (i) => i < 7 },
    { window: [0, 2], empty: (i) => i < 5 },
  ];
  const sinks = Tensor.fromArray([0.25, -Infinity], [H], { dtype: "float32" });
  try {
    for (const c of cases) {
      for (const withSink of [false, true]) {
        const what = `window [${c.window}]${c.causal ? " causal" : ""}${withSink ? " sink" : ""}`;
        const opts = { window: c.window, causal: c.causal, sinks: withSink ? sinks : undefined };
        const out = poisoned([B, H, Sq, D], "float16");
        const lse = poisoned([B, H, Sq], "float32");
        attention(t.q, t.k, t.v, { ...opts, out, lse });
        const o = out.toFloat32(), l = lse.toFloat32();
        assertNoNaN(`${what} out`, o);
        const g = attentionBackward(t.dout, t.q, t.k, t.v, out, lse, opts);
        const dq = g.dq.toFloat32();
        assertNoNaN(`${what} dq`, dq);
        assertNoNaN(`${what} dk`, g.dk.toFloat32());
        let emptyRows = 0;
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < H; h++) {
            const sink = withSink ? [0.25, -Infinity][h] : -Infinity;
            for (let i = 0; i < Sq; i++) {
              const row = (b * H + h) * Sq + i;
              if (!c.empty(i)) {
                assert.ok(Number.isFinite(l[row]), `${what} lse[${row}] = ${l[row]}`);
                continue;
              }
              emptyRows++;
              assert.equal(l[row], sink, `${what} lse[${row}]`);
              assertAllEqual(`${what} out row ${row}`, o.subarray(row * D, (row + 1) * D), 0);
              assertAllEqual(`${what} dq row ${row}`, dq.subarray(row * D, (row + 1) * D), 0);
            }
          }
        }
        assert.ok(emptyRows > 0);
        if (withSink) {
          const ds = g.dsinks!.toFloat32();
          assertNoNaN(`${what} dsinks`, ds);
          assert.equal(ds[1], 0, "a -inf sink's gradient");
        }
        disposeTensors(g, { out, lse });
      }
    }
  } finally {
    disposeTensors(t, { sinks });
  }
});

Deno.test("a window wider than the sequence equals no window, bit for bit", () => {
  const t = tensors(62, 1, 2, 70, 90, 32);
  try {
    const wide = { window: [1000, 5000] as [number, number], softcap: 3 };
    const a = attention(t.q, t.k, t.v, wide);
    const b = attention(t.q, t.k, t.v, { softcap: 3 });
    assertBitwise("out", a.out.toFloat32(), b.out.toFloat32());
    assertBitwise("lse", a.lse.toFloat32(), b.lse.toFloat32());
    const ga = attentionBackward(t.dout, t.q, t.k, t.v, a.out, a.lse, wide);
    const gb = attentionBackward(t.dout, t.q, t.k, t.v, a.out, a.lse, { softcap: 3 });
    for (const name of ["dq", "dk", "dv"] as const) {
      assertBitwise(name, ga[name].toFloat32(), gb[name].toFloat32());
    }
    // Causal with a window left bound past the sequence is plain causal.
    const c1 = attention(t.q, t.k, t.v, { causal: true, window: [500, -1] });
    const c2 = attention(t.q, t.k, t.v, { causal: true });
    assertBitwise("causal out", c1.out.toFloat32(), c2.out.toFloat32());
    disposeTensors(a, b, ga, gb, c1, c2);
  } finally {
    disposeTensors(t);
  }
});

Deno.test("one key and one query with every feature: out, lse and gradients vs oracle", () => {
  for (const [Sq, Sk] of [[1, 1], [1, 9], [9, 1]]) {
    checkCase({
      dtype: "float16",
      ...{ B: 2, Hq: 2, Hkv: 1, Sq, Sk, D: 8, seed: 70 + Sq * 10 + Sk },
      ...{ window: [0, 0], softcap: 1, sinks: { mean: 0.5 }, alibi: "batch" },
    });
  }
});

Deno.test("NaN in one query row with softcap or sinks: NaN in that row only, like plain NaN", () => {
  const H = 1, Sq = 3, Sk = 5, D = 8;
  const t = tensors(80, 1, H, Sq, Sk, D);
  const qv = t.q.toFloat32();
  qv[D + 2] = NaN; // row 1
  const qNaN = Tensor.fromArray(qv, [1, H, Sq, D], { dtype: "float16" });
  const sinks = Tensor.fromArray([0.5], [H], { dtype: "float32" });
  try {
    for (
      const [what, opts] of [["plain", {}], ["softcap", { softcap: 2 }], ["sinks", {
        sinks,
      }]] as const
    ) {
      const r = attention(qNaN, t.k, t.v, opts);
      const o = r.out.toFloat32(), l = r.lse.toFloat32();
      assert.ok(Number.isNaN(l[1]), `${what}: lse of the NaN row is ${l[1]}`);
      assert.ok(o.subarray(D, 2 * D).every(Number.isNaN), `${what}: out of the NaN row`);
      for (const row of [0, 2]) {
        assert.ok(Number.isFinite(l[row]), `${what}: lse[${row}]`);
        assertNoNaN(`${what} out row ${row}`, o.subarray(row * D, (row + 1) * D));
      }
      disposeTensors(r);
    }
  } finally {
    disposeTensors(t, { qNaN, sinks });
  }
});

Deno.test("+inf in a bias row makes that row NaN (PyTorch's math: exp(inf - inf)); others unchanged", () => {
  const H = 1, Sq = 4, Sk = 6, D = 8;
  const t = tensors(81, 1, H, Sq, Sk, D);
  const values = Float32Array.from({ length: Sq * Sk }, (_, i) => Math.sin(i * 0.7));
  const finite = Tensor.fromArray(values, [1, H, Sq, Sk], { dtype: "float32" });
  values[2 * Sk + 3] = Infinity; // row 2, key 3
  const inf = Tensor.fromArray(values, [1, H, Sq, Sk], { dtype: "float32" });
  try {
    const want = attention(t.q, t.k, t.v, { bias: finite });
    const got = attention(t.q, t.k, t.v, { bias: inf });
    const o = got.out.toFloat32(), l = got.lse.toFloat32();
    const wo = want.out.toFloat32(), wl = want.lse.toFloat32();
    assert.ok(Number.isNaN(l[2]), `lse of the +inf row is ${l[2]}`);
    assert.ok(o.subarray(2 * D, 3 * D).every(Number.isNaN), "out of the +inf row");
    for (const row of [0, 1, 3]) {
      assert.equal(l[row], wl[row], `lse[${row}]`);
      assertBitwise(
        `out row ${row}`,
        o.subarray(row * D, (row + 1) * D),
        wo.subarray(row * D, (row + 1) * D),
      );
    }
    disposeTensors(want, got);
  } finally {
    disposeTensors(t, { finite, inf });
  }
});

Deno.test("NaN in one value row reaches exactly the rows that see that key (causal)", () => {
  const H = 1, S = 6, D = 8, key = 3;
  const t = tensors(82, 1, H, S, S, D);
  const vv = t.v.toFloat32();
  vv[key * D + 5] = NaN;
  const vNaN = Tensor.fromArray(vv, [1, H, S, D], { dtype: "float16" });
  try {
    const r = attention(t.q, t.k, vNaN, { causal: true });
    const o = r.out.toFloat32(), l = r.lse.toFloat32();
    for (let row = 0; row < S; row++) {
      const out = o.subarray(row * D, (row + 1) * D);
      assert.ok(Number.isFinite(l[row]), `lse[${row}] stays finite (scores have no NaN)`);
      if (row < key) assertNoNaN(`row ${row} (does not see key ${key})`, out);
      else assert.ok(Number.isNaN(out[5]), `row ${row} sees key ${key}: out[5] is ${out[5]}`);
    }
    disposeTensors(r);
  } finally {
    disposeTensors(t, { vNaN });
  }
});

Deno.test("ALiBi [Hq] equals [B, Hq] with the rows repeated; slopes of 0 change nothing", () => {
  const B = 2, H = 3;
  const t = tensors(90, B, H, 20, 30, 16);
  const perHead = [0.1, 0.25, 0.5];
  const a = Tensor.fromArray(perHead, [H], { dtype: "float32" });
  const ab = Tensor.fromArray([...perHead, ...perHead], [B, H], { dtype: "float32" });
  const zero = Tensor.zeros([H], "float32");
  try {
    const r1 = attention(t.q, t.k, t.v, { alibiSlopes: a });
    const r2 = attention(t.q, t.k, t.v, { alibiSlopes: ab });
    const r3 = attention(t.q, t.k, t.v, { alibiSlopes: zero });
    const r4 = attention(t.q, t.k, t.v);
    assertBitwise("[Hq] vs [B, Hq]", r1.out.toFloat32(), r2.out.toFloat32());
    assertBitwise("zero slopes", r3.out.toFloat32(), r4.out.toFloat32());
    disposeTensors(r1, r2, r3, r4);
  } finally {
    disposeTensors(t, { a, ab, zero });
  }
});

Deno.test("flop counts: visible scores under causal, window and none (src/cli/flops.ts)", () => {
  assert.equal(visibleScores(4, 4, [-1, -1]), 16);
  assert.equal(visibleScores(4, 4, [-1, 0]), 10);
  // Window (1, 0): row 0 sees key 0, rows 1..3 their key and the one before.
  assert.equal(visibleScores(4, 4, [1, 0]), 7);
  // Bottom-right causal with Sq < Sk: row 0 sees keys 0..2, row 1 all four.
  assert.equal(visibleScores(2, 4, [-1, 0]), 7);
  // Sq > Sk: the first rows see nothing.
  assert.equal(visibleScores(4, 2, [-1, 0]), 3);
});
