/**
 * Backward: the float64 oracle's gradients against central finite differences of its own
 * forward (which validates the oracle), then the CPU backend's dq, dk, dv and dbias against the
 * oracle over random configurations with every feature.
 */

import assert from "node:assert/strict";
import { attention, attentionBackward, Device } from "../mod.ts";
import {
  type CaseConfig,
  caseOptions,
  caseTensors,
  describeCase,
  disposeTensors,
  makeCase,
  poisoned,
  randomConfigs,
} from "./helpers/cases.ts";
import { assertElementwise, assertNoNaN, assertNontrivial } from "./helpers/check.ts";
import {
  broadcastTo,
  dropoutMask,
  oracleBackward,
  oracleForward,
  type OracleProblem,
  reduceTo,
} from "./helpers/oracle.ts";
import { maxAbs, Rng, toF64, unitRoundoff } from "./helpers/random.ts";

// ---------------------------------------------------------------------------------------------
// 1. The oracle's backward against finite differences of the oracle's forward.

interface FdProblem {
  name: string;
  base: OracleProblem;
  /** Compact bias and its shape (broadcast to [B, Hq, Sq, Sk] for the forward). */
  bias?: { values: Float64Array; shape: number[] };
}

/** L = sum(out * G) with the compact bias broadcast into the problem. */
function loss(p: OracleProblem, g: Float64Array, bias?: FdProblem["bias"]): number {
  const full = [p.batch, p.headsQ, p.seqQ, p.seqK];
  const problem = bias ? { ...p, bias: broadcastTo(bias.values, bias.shape, full) } : p;
  const out = oracleForward(problem).out;
  let l = 0;
  for (let i = 0; i < out.length; i++) l += out[i] * g[i];
  return l;
}

function fdCheck(fp: FdProblem): void {
  const rng = new Rng(fp.name.length * 7919 + 13);
  const p = fp.base;
  const g = toF64(rng.normalArray(p.q.length));
  const full = [p.batch, p.headsQ, p.seqQ, p.seqK];
  const withBias = fp.bias ? { ...p, bias: broadcastTo(fp.bias.values, fp.bias.shape, full) } : p;
  const grads = oracleBackward(withBias, g);
  const analytic: [string, Float64Array, Float64Array][] = [
    ["dq", p.q, grads.dq],
    ["dk", p.k, grads.dk],
    ["dv", p.v, grads.dv],
  ];
  if (fp.bias) {
    analytic.push(["dbias", fp.bias.values, reduceTo(grads.dbias, full, fp.bias.shape)]);
  }
  // h = 1e-5 in float64: truncation error ~ h^2 |L'''| ~ 1e-9, cancellation ~ 1e-16 |L| / h
  // ~ 1e-10; so 1e-6 * (1 + max|grad|) separates a correct gradient from any wrong one.
  const h = 1e-5;
  for (const [name, param, grad] of analytic) {
    assertNontrivial(`${fp.name} ${name}`, grad);
    const fd = new Float64Array(param.length);
    for (let i = 0; i < param.length; i++) {
      const saved = param[i];
      param[i] = saved + h;
      const lp = loss(p, g, fp.bias);
      param[i] = saved - h;
      const lm = loss(p, g, fp.bias);
      param[i] = saved;
      fd[i] = (lp - lm) / (2 * h);
    }
    const tol = 1e-6 * (1 + maxAbs(grad));
    assertElementwise(`${fp.name} ${name} vs finite differences`, grad, fd, () => tol);
  }
}

function fdBase(
  rng: Rng,
  dims: { B: number; Hq: number; Hkv: number; Sq: number; Sk: number; D: number },
): OracleProblem {
  return {
    batch: dims.B,
    headsQ: dims.Hq,
    headsKv: dims.Hkv,
    seqQ: dims.Sq,
    seqK: dims.Sk,
    headDim: dims.D,
    q: toF64(rng.normalArray(dims.B * dims.Hq * dims.Sq * dims.D)),
    k: toF64(rng.normalArray(dims.B * dims.Hkv * dims.Sk * dims.D)),
    v: toF64(rng.normalArray(dims.B * dims.Hkv * dims.Sk * dims.D)),
  };
}

Deno.test("oracle backward vs finite differences: plain, D=8, Sq=5, Sk=9", () => {
  const rng = new Rng(1);
  fdCheck({ name: "plain", base: fdBase(rng, { B: 2, Hq: 2, Hkv: 2, Sq: 5, Sk: 9, D: 8 }) });
});

Deno.test("oracle backward vs finite differences: causal Sq>Sk (empty rows), scale 0.7", () => {
  const rng = new Rng(2);
  const base = fdBase(rng, { B: 1, Hq: 2, Hkv: 2, Sq: 9, Sk: 5, D: 8 });
  fdCheck({ name: "causal", base: { ...base, causal: true, scale: 0.7 } });
});

Deno.test("oracle backward vs finite differences: GQA Hq=4 Hkv=2, causal Sq<Sk", () => {
  const rng = new Rng(3);
  const base = fdBase(rng, { B: 1, Hq: 4, Hkv: 2, Sq: 4, Sk: 7, D: 8 });
  fdCheck({ name: "gqa", base: { ...base, causal: true } });
});

Deno.test("oracle backward vs finite differences: full bias with -inf entries -> dbias", () => {
  const rng = new Rng(4);
  const base = fdBase(rng, { B: 1, Hq: 2, Hkv: 1, Sq: 5, Sk: 9, D: 8 });
  const values = toF64(rng.normalArray(2 * 5 * 9));
  for (let i = 0; i < values.length; i += 7) values[i] = -Infinity;
  for (let j = 0; j < 9; j++) values[2 * 9 + j] = -Infinity; // head 0, row 2: no visible key
  fdCheck({ name: "bias", base, bias: { values, shape: [1, 2, 5, 9] } });
});

Deno.test("oracle backward vs finite differences: broadcast bias [B,1,1,Sk] and [Hq,Sq,Sk]", () => {
  const rng = new Rng(5);
  const base = fdBase(rng, { B: 2, Hq: 2, Hkv: 2, Sq: 4, Sk: 6, D: 8 });
  fdCheck({
    name: "bias-b11k",
    base,
    bias: { values: toF64(rng.normalArray(12)), shape: [2, 1, 1, 6] },
  });
  fdCheck({
    name: "bias-hqk",
    base: { ...base, causal: true },
    bias: { values: toF64(rng.normalArray(48)), shape: [2, 4, 6] },
  });
});

Deno.test("oracle backward vs finite differences: dropout mask (p=0.3) + bias + causal", () => {
  const rng = new Rng(6);
  const dims = { B: 2, Hq: 2, Hkv: 1, Sq: 6, Sk: 9, D: 8 };
  const base = fdBase(rng, dims);
  const keep = dropoutMask(77n, 3, dims.B, dims.Hq, dims.Sq, dims.Sk, 0.3);
  fdCheck({
    name: "dropout",
    base: { ...base, causal: true, keep, dropoutP: 0.3 },
    bias: { values: toF64(rng.normalArray(6 * 9)), shape: [6, 9] },
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The CPU backend's backward against the oracle's.

/**
 * Per-element tolerance of a gradient, for unit roundoff u of its dtype:
 * - u * |ref|: the result is rounded once to the dtype;
 * - (uOp + 1e-4) * mag: an implementation may round its intermediate products (P, dS) to the
 *   operand dtype (uOp) before the matrix products, as the GPU kernels do, and accumulates in
 *   float32; both errors are proportional to the sum of the absolute values of the terms
 *   (`mag`, from the oracle), 1e-4 covering float32 accumulation, exp and lse with margin;
 * - 1e-6 * max(mag): an absolute floor for elements whose terms are all tiny.
 */
function gradTolerance(
  u: number,
  uOp: number,
  ref: Float64Array,
  mag: Float64Array,
): (i: number) => number {
  const floor = 1e-6 * maxAbs(mag);
  return (i: number) => u * Math.abs(ref[i]) + (uOp + 1e-4) * mag[i] + floor;
}

function checkBackward(c: CaseConfig): void {
  const data = makeCase(c);
  const t = caseTensors(data, Device.cpu());
  const opts = { ...caseOptions(c), bias: t.bias };
  const fwd = attention(t.q, t.k, t.v, opts);
  const dq = poisoned(data.qShape, c.dtype);
  const dk = poisoned(data.kvShape, c.dtype);
  const dv = poisoned(data.kvShape, c.dtype);
  const dbias = c.bias ? poisoned(c.bias.shape, c.bias.dtype) : undefined;
  try {
    const g = attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, {
      ...opts,
      computeDbias: c.bias !== undefined,
      dq,
      dk,
      dv,
      dbias,
    });
    assert.deepEqual([...g.dq.shape], data.qShape);
    assert.deepEqual([...g.dk.shape], data.kvShape);
    assert.deepEqual([...g.dv.shape], data.kvShape);
    assert.equal(g.dq.dtype, c.dtype);
    const ref = oracleBackward(data.problem, toF64(data.dout), fwd.out.toFloat32());
    const u = unitRoundoff(c.dtype);
    const named: [string, Float32Array, Float64Array, Float64Array][] = [
      ["dq", dq.toFloat32(), ref.dq, ref.dqMag],
      ["dk", dk.toFloat32(), ref.dk, ref.dkMag],
      ["dv", dv.toFloat32(), ref.dv, ref.dvMag],
    ];
    if (c.bias && dbias) {
      assert.ok(g.dbias, "dbias missing from the result");
      assert.deepEqual([...g.dbias.shape], c.bias.shape);
      assert.equal(g.dbias.dtype, c.bias.dtype);
      const full = [c.B, c.Hq, c.Sq, c.Sk];
      named.push([
        "dbias",
        dbias.toFloat32(),
        reduceTo(ref.dbias, full, c.bias.shape),
        reduceTo(ref.dbiasMag, full, c.bias.shape),
      ]);
    }
    for (const [name, got, want, mag] of named) {
      // With a single key the softmax is constant: dS = 0, so dq, dk and dbias are exactly 0
      // (the check against the oracle then requires zeros from the library).
      if (c.Sk > 1 || name === "dv") assertNontrivial(`oracle ${name}`, want);
      assertNoNaN(name, got);
      const uOut = name === "dbias" ? unitRoundoff(c.bias?.dtype ?? "float32") : u;
      assertElementwise(name, got, want, gradTolerance(uOut, u, want, mag));
    }
    disposeTensors(g);
  } finally {
    disposeTensors(t, fwd, { dq, dk, dv });
    dbias?.dispose();
  }
}

const CONFIGS: CaseConfig[] = [
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 101 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 40, D: 40, seed: 102 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 1, Sk: 200, D: 128, seed: 103 },
  { dtype: "bfloat16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 1, D: 8, seed: 104 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 33, Sk: 40, D: 256, seed: 105 },
  // causal: Sq < Sk, Sq > Sk (empty rows: zero gradients), Sq == Sk
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, causal: true, seed: 110 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 33, Sk: 7, D: 40, causal: true, seed: 111 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 129, Sk: 129, D: 8, causal: true, seed: 112 },
  // bias + dbias, every dtype and broadcast (dbias reduced over broadcast dims)
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 120 },
    bias: { dtype: "float32", shape: [2, 1, 1, 33], negInf: 0.2 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 9, Sk: 40, D: 40, seed: 121 },
    bias: { dtype: "bfloat16", shape: [1, 2, 9, 40] },
  },
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 128, causal: true, seed: 122 },
    bias: { dtype: "float16", shape: [2, 2, 7, 33], negInf: 0.1, maskFirstRow: true },
  },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 1, Sq: 33, Sk: 9, D: 64, seed: 123 },
    bias: { dtype: "float32", shape: [33, 9] },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 4, Hkv: 4, Sq: 9, Sk: 17, D: 8, seed: 124 },
    bias: { dtype: "float32", shape: [17] },
  },
  // Sq >= 130: three row blocks of the CPU backend, so dbias rows are summed over several
  // row blocks (a [B,1,1,Sk] bias: over heads and every query row), or written per block.
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 1, Sq: 130, Sk: 40, D: 32, causal: true, seed: 125 },
    bias: { dtype: "float32", shape: [2, 1, 1, 40], negInf: 0.05 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 131, Sk: 24, D: 16, seed: 126 },
    bias: { dtype: "bfloat16", shape: [1, 2, 131, 24] },
  },
  // GQA / MQA: dk, dv summed over each group
  { dtype: "float16", B: 2, Hq: 4, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 130 },
  { dtype: "bfloat16", B: 1, Hq: 4, Hkv: 1, Sq: 33, Sk: 65, D: 128, causal: true, seed: 131 },
  // scale, peaked rows
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 9, Sk: 33, D: 40, scale: 0.3, seed: 140 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 33, Sk: 65, D: 64, qStd: 4, seed: 141 },
  // dropout: the backward regenerates the forward's mask
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, dropout: 0.1, seed: 150 },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 33, Sk: 65, D: 40, seed: 151 },
    ...{ dropout: 0.5, dropoutSeed: 0xfedcba9876543210n, dropoutOffset: 11 },
  },
  // everything
  {
    dtype: "float16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 17, Sk: 40, D: 64, causal: true, scale: 0.2, seed: 160 },
    bias: { dtype: "bfloat16", shape: [2, 1, 17, 40], negInf: 0.05, maskFirstRow: true },
    ...{ dropout: 0.25, dropoutSeed: 5n, dropoutOffset: 2 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 3, Hkv: 1, Sq: 40, Sk: 17, D: 40, causal: true, seed: 161 },
    bias: { dtype: "float32", shape: [1, 3, 1, 17], negInf: 0.1 },
    ...{ dropout: 0.1, dropoutSeed: 2n ** 40n + 1n },
  },
];

for (const c of CONFIGS) {
  Deno.test(`cpu backward vs oracle: ${describeCase(c)}`, () => checkBackward(c));
}

for (const c of randomConfigs(16, 777, 1_500_000)) {
  Deno.test(`cpu backward vs oracle (random): ${describeCase(c)}`, () => checkBackward(c));
}

Deno.test("cpu backward: deterministic backward is bitwise repeatable, forward too", () => {
  const c: CaseConfig = {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 17, Sk: 33, D: 40, causal: true, seed: 170 },
    dropout: 0.2,
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const opts = caseOptions(c);
  const fwd = attention(t.q, t.k, t.v, opts);
  const fwd2 = attention(t.q, t.k, t.v, opts);
  try {
    assert.deepEqual(fwd.out.toBits(), fwd2.out.toBits(), "forward out");
    assert.deepEqual(fwd.lse.toFloat32(), fwd2.lse.toFloat32(), "forward lse");
    const det = { ...opts, deterministic: true };
    const a = attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, det);
    const b = attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, det);
    for (const name of ["dq", "dk", "dv"] as const) {
      assert.deepEqual(a[name].toBits(), b[name].toBits(), name);
    }
    disposeTensors(a, b);
  } finally {
    disposeTensors(t, fwd, fwd2);
  }
});
