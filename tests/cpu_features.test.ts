/**
 * Feature semantics on the CPU backend: dropout reproducibility and its exact mask, nested
 * batches, GQA, strided layouts, bias broadcasting, rows with no visible key, dtype conversion
 * and tensor views.
 */

import assert from "node:assert/strict";
import {
  attention,
  attentionBackward,
  bfloat16BitsToFloat32,
  Device,
  FlashAttentionError,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  NestedBatch,
  roundToDtype,
  Tensor,
} from "../mod.ts";
import {
  type CaseConfig,
  caseOptions,
  caseTensors,
  disposeTensors,
  forwardTolerance,
  lseTolerance,
  makeCase,
  POISON,
  poisoned,
} from "./helpers/cases.ts";
import {
  assertAllEqual,
  assertBitwise,
  assertElementwise,
  assertMaxAbs,
  assertNoNaN,
  assertNontrivial,
} from "./helpers/check.ts";
import {
  broadcastTo,
  dropoutMask,
  dropoutMaskRows,
  dropoutThreshold,
  oracleBackward,
  oracleForward,
  type OracleProblem,
  reduceTo,
  repeatHeads,
  swapAxes12,
} from "./helpers/oracle.ts";
import {
  bf16BitsOf,
  bitsF32,
  type HalfDType,
  maxAbs,
  quantize,
  Rng,
  toF64,
  unitRoundoff,
} from "./helpers/random.ts";
import { dropoutThreshold as cliDropoutThreshold } from "../src/cli/philox.ts";

const cpu = Device.cpu();

function bitsEqual(a: Uint16Array, b: Uint16Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Dropout

/**
 * Reads the keep mask of the library's dropout directly: all keys share one vector, so every
 * score of a row is equal and P = 1/Sk; with v_j = e_j (D = Sk) out[i, j] = keep_ij / ((1-p) Sk).
 */
function libraryMask(
  B: number,
  Hq: number,
  Hkv: number,
  Sq: number,
  p: number,
  seed: bigint | number,
  offset: number,
): { keep: Uint8Array; values: Float32Array } {
  const Sk = 256, D = 256;
  const rng = new Rng(Sq + Hq);
  const q = quantize(rng.normalArray(B * Hq * Sq * D, 0.1), "float16");
  const row = quantize(rng.normalArray(D, 0.1), "float16");
  const k = new Float32Array(B * Hkv * Sk * D);
  for (let r = 0; r < B * Hkv * Sk; r++) k.set(row, r * D);
  const v = new Float32Array(B * Hkv * Sk * D);
  for (let r = 0; r < B * Hkv * Sk; r++) v[r * D + (r % Sk)] = 1;
  const tq = Tensor.fromArray(q, [B, Hq, Sq, D], { dtype: "float16" });
  const tk = Tensor.fromArray(k, [B, Hkv, Sk, D], { dtype: "float16" });
  const tv = Tensor.fromArray(v, [B, Hkv, Sk, D], { dtype: "float16" });
  const out = poisoned([B, Hq, Sq, D], "float16");
  try {
    attention(tq, tk, tv, { dropout: { p, seed, offset }, out });
    const values = out.toFloat32();
    const keep = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) keep[i] = values[i] !== 0 ? 1 : 0;
    return { keep, values };
  } finally {
    disposeTensors({ tq, tk, tv, out });
  }
}

Deno.test("dropout: the CPU mask equals the test's Philox mask bit for bit (64-bit seed, offset, GQA)", () => {
  const B = 2, Hq = 4, Hkv = 2, Sq = 40, Sk = 256, p = 0.3;
  const seed = 0x9abcdef012345678n, offset = 12345;
  const { keep, values } = libraryMask(B, Hq, Hkv, Sq, p, seed, offset);
  const want = dropoutMask(seed, offset, B, Hq, Sq, Sk, p);
  let mismatches = 0, first = -1;
  for (let i = 0; i < want.length; i++) {
    if (keep[i] !== want[i]) {
      mismatches++;
      if (first < 0) first = i;
    }
  }
  assert.equal(mismatches, 0, `${mismatches} mask mismatches, first at flat index ${first}`);
  // Kept entries are scaled by 1/(1-p): out = 1/((1-p) Sk), rounded to float16.
  const kept = Math.f16round(1 / ((1 - p) * Sk));
  for (let i = 0; i < values.length; i++) {
    if (values[i] !== 0) {
      assertMaxAbs("kept value", [values[i]], [kept], 2 * unitRoundoff("float16") * kept);
    }
  }
});

Deno.test("dropout: kept fraction is 1 - round(p*65536)/65536 within 5 sigma (512K elements)", () => {
  for (const p of [0.1, 0.5, 0.87]) {
    const B = 2, Hq = 4, Sq = 256;
    const { keep } = libraryMask(B, Hq, Hq, Sq, p, 7n + BigInt(Math.round(p * 100)), 0);
    let kept = 0;
    for (const x of keep) kept += x;
    const n = keep.length;
    const expected = 1 - dropoutThreshold(p) / 65536;
    const sigma = Math.sqrt(expected * (1 - expected) / n);
    const fraction = kept / n;
    assert.ok(
      Math.abs(fraction - expected) <= 5 * sigma,
      `p=${p}: kept ${fraction}, expected ${expected} +- ${5 * sigma}`,
    );
  }
});

Deno.test("dropout: same seed -> identical bits; other seed, seed high word or offset -> different", () => {
  const c: CaseConfig = {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 17, Sk: 40, D: 64, seed: 200 },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const run = (seed: bigint | number, offset: number): Uint16Array => {
    const r = attention(t.q, t.k, t.v, { dropout: { p: 0.25, seed, offset } });
    const bits = r.out.toBits();
    disposeTensors(r);
    return bits;
  };
  try {
    const a = run(1234n, 5);
    assert.ok(bitsEqual(a, run(1234n, 5)), "same seed and offset must repeat bit for bit");
    assert.ok(bitsEqual(a, run(1234, 5)), "seed as number equals seed as bigint");
    assert.ok(!bitsEqual(a, run(1235n, 5)), "another seed must change the output");
    assert.ok(!bitsEqual(a, run(1234n + (1n << 32n), 5)), "the seed's high word must matter");
    assert.ok(!bitsEqual(a, run(1234n, 6)), "another offset must change the output");
    // The ABI uses the offset's low 32 bits (Philox counter word 3).
    assert.ok(bitsEqual(a, run(1234n, 5 + 2 ** 32)), "offset is taken modulo 2^32");
    // Options as a bare number: p with seed 0, offset 0.
    const bare = attention(t.q, t.k, t.v, { dropout: 0.25 });
    assert.ok(bitsEqual(bare.out.toBits(), run(0n, 0)), "dropout: p means seed 0, offset 0");
    disposeTensors(bare);
    // p = 0 is no dropout at all.
    const none = attention(t.q, t.k, t.v);
    const zero = attention(t.q, t.k, t.v, { dropout: { p: 0, seed: 99n } });
    assert.ok(bitsEqual(none.out.toBits(), zero.out.toBits()), "p = 0 equals no dropout");
    disposeTensors(none, zero);
  } finally {
    disposeTensors(t);
  }
});

Deno.test("dropout: backward uses the forward's mask (oracle with same mask; another seed fails)", () => {
  const c: CaseConfig = {
    dtype: "float16",
    ...{ B: 1, Hq: 2, Hkv: 1, Sq: 17, Sk: 33, D: 32, seed: 201 },
    ...{ dropout: 0.4, dropoutSeed: 31337n, dropoutOffset: 4 },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const opts = caseOptions(c);
  const fwd = attention(t.q, t.k, t.v, opts);
  try {
    const ref = oracleBackward(data.problem, toF64(data.dout), fwd.out.toFloat32());
    const g = attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, opts);
    const u = unitRoundoff(c.dtype);
    const dv = g.dv.toFloat32();
    const tol = (i: number): number => u * Math.abs(ref.dv[i]) + (u + 1e-4) * ref.dvMag[i] + 1e-6;
    assertElementwise("dv", dv, ref.dv, tol);
    // The same backward with another seed regenerates another mask: it must not pass.
    const other = attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, {
      ...opts,
      dropout: { p: 0.4, seed: 31338n, offset: 4 },
    });
    assert.throws(() => assertElementwise("dv", other.dv.toFloat32(), ref.dv, tol));
    disposeTensors(g, other);
  } finally {
    disposeTensors(t, fwd);
  }
});

// ---------------------------------------------------------------------------------------------
// Nested batches

interface NestedSetup {
  H: number;
  Hkv: number;
  D: number;
  seqQ: number[];
  seqK: number[];
  dtype: HalfDType;
  /** Per sequence, [S, H, D] host data. */
  q: Float32Array[];
  k: Float32Array[];
  v: Float32Array[];
  dout: Float32Array[];
}

function nestedSetup(seed: number, seqQ: number[], seqK: number[], dtype: HalfDType): NestedSetup {
  const rng = new Rng(seed);
  const H = 4, Hkv = 2, D = 32;
  const q = seqQ.map((s) => quantize(rng.normalArray(s * H * D), dtype));
  const k = seqK.map((s) => quantize(rng.normalArray(s * Hkv * D), dtype));
  const v = seqK.map((s) => quantize(rng.normalArray(s * Hkv * D), dtype));
  const dout = seqQ.map((s) => quantize(rng.normalArray(s * H * D), dtype));
  return { H, Hkv, D, seqQ, seqK, dtype, q, k, v, dout };
}

function pack(seqs: Float32Array[], heads: number, D: number, dtype: HalfDType): NestedBatch {
  const tensors = seqs.map((s) =>
    Tensor.fromArray(s, [s.length / (heads * D), heads, D], { dtype })
  );
  const batch = NestedBatch.pack(tensors);
  for (const t of tensors) t.dispose();
  return batch;
}

/** [S, H, D] host data as a dense [1, H, S, D] tensor. */
function denseOf(s: Float32Array, heads: number, D: number, dtype: HalfDType): Tensor {
  const S = s.length / (heads * D);
  return Tensor.fromArray(swapAxes12(s, [1, S, heads, D]), [1, heads, S, D], { dtype });
}

/** Output tensor [1, H, S, D] back to [S, H, D] host order. */
function hostOf(t: Tensor): Float32Array {
  return swapAxes12(t.toFloat32(), t.shape);
}

Deno.test("nested: forward and backward equal per-sequence dense calls (lengths 1..130, causal)", () => {
  const seqQ = [1, 37, 5, 130, 9];
  const seqK = [20, 1, 64, 130, 9];
  const s = nestedSetup(300, seqQ, seqK, "float16");
  const u = unitRoundoff(s.dtype);
  const nq = pack(s.q, s.H, s.D, s.dtype);
  const nk = pack(s.k, s.Hkv, s.D, s.dtype);
  const nv = pack(s.v, s.Hkv, s.D, s.dtype);
  const ndout = pack(s.dout, s.H, s.D, s.dtype);
  try {
    assert.equal(nq.batch, 5);
    assert.equal(nq.total, seqQ.reduce((a, b) => a + b));
    assert.equal(nq.maxSeqlen, 130);
    assert.deepEqual([...nq.seqlens], seqQ);
    assert.deepEqual([...nq.cuSeqlens.toFloat32()], [0, 1, 38, 43, 173, 182]);
    // Outputs preallocated and poisoned: every element must be written.
    const outP = poisoned(nq.data.shape, s.dtype), lseP = poisoned([nq.total, s.H], "float32");
    const dqP = poisoned(nq.data.shape, s.dtype);
    const dkP = poisoned(nk.data.shape, s.dtype), dvP = poisoned(nv.data.shape, s.dtype);
    const fwd = attention(nq, nk, nv, { causal: true, out: outP, lse: lseP });
    assert.ok(fwd.out instanceof NestedBatch);
    assert.deepEqual([...fwd.lse.shape], [nq.total, s.H]);
    assertBitwise(
      "nested out is the preallocated tensor",
      fwd.out.data.toFloat32(),
      outP.toFloat32(),
    );
    const outs = fwd.out.unpack();
    const lseAll = fwd.lse.toFloat32();
    const grads = attentionBackward(ndout, nq, nk, nv, fwd.out, fwd.lse, {
      causal: true,
      dq: dqP,
      dk: dkP,
      dv: dvP,
    });
    for (const [name, t] of [["out", outP], ["dq", dqP], ["dk", dkP], ["dv", dvP]] as const) {
      assert.ok(t.toFloat32().every((x) => x !== POISON), `nested ${name}: not fully written`);
    }
    assert.ok(lseP.toFloat32().every((x) => x !== POISON), "nested lse: not fully written");
    disposeTensors({ outP, lseP, dqP, dkP, dvP });
    const dqs = grads.dq.unpack(), dks = grads.dk.unpack(), dvs = grads.dv.unpack();
    let rowBase = 0;
    for (let b = 0; b < seqQ.length; b++) {
      const name = `sequence ${b} (Sq=${seqQ[b]}, Sk=${seqK[b]})`;
      const dq = denseOf(s.q[b], s.H, s.D, s.dtype);
      const dk = denseOf(s.k[b], s.Hkv, s.D, s.dtype);
      const dv = denseOf(s.v[b], s.Hkv, s.D, s.dtype);
      const ddout = denseOf(s.dout[b], s.H, s.D, s.dtype);
      const dense = attention(dq, dk, dv, { causal: true });
      const denseOut = hostOf(dense.out);
      const nestedOut = outs[b].toFloat32();
      // Same rows, same arithmetic; allow one rounding step of difference (2u relative).
      assertElementwise(
        `${name} out`,
        nestedOut,
        denseOut,
        (i) => 2 * u * Math.abs(denseOut[i]) + 1e-6,
      );
      const denseLse = dense.lse.toFloat32(); // [1, H, S]
      const nestedLse = new Float32Array(seqQ[b] * s.H);
      for (let i = 0; i < seqQ[b]; i++) {
        for (let h = 0; h < s.H; h++) nestedLse[h * seqQ[b] + i] = lseAll[(rowBase + i) * s.H + h];
      }
      assertElementwise(`${name} lse`, nestedLse, denseLse, (i) => lseTolerance(denseLse[i]));
      const dg = attentionBackward(ddout, dq, dk, dv, dense.out, dense.lse, { causal: true });
      const pairs: [string, Tensor, Tensor][] = [
        ["dq", dqs[b], dg.dq],
        ["dk", dks[b], dg.dk],
        ["dv", dvs[b], dg.dv],
      ];
      for (const [g, nested, d] of pairs) {
        const want = hostOf(d);
        const scale = maxAbs(want);
        // Summation order over rows may differ between the two calls: 2u of the result plus
        // 1e-3 of the largest gradient (float32 sums of up to 130 terms, then rounding).
        assertElementwise(
          `${name} ${g}`,
          nested.toFloat32(),
          want,
          (i) => 2 * u * Math.abs(want[i]) + 1e-3 * scale + 1e-7,
        );
      }
      disposeTensors({ dq, dk, dv, ddout }, dense, dg);
      rowBase += seqQ[b];
    }
    // A sequence with Sq > Sk under causal (37 vs 1) has rows with no key: out 0, lse -inf.
    const seq1 = outs[1].toFloat32();
    for (let i = 0; i < 36 * s.H * s.D; i++) assert.equal(seq1[i], 0);
    for (let i = 0; i < 36; i++) {
      for (let h = 0; h < s.H; h++) assert.equal(lseAll[(1 + i) * s.H + h], -Infinity);
    }
    for (const batch of [fwd.out, grads.dq, grads.dk, grads.dv]) batch.dispose();
  } finally {
    for (const batch of [nq, nk, nv, ndout]) batch.dispose();
  }
});

Deno.test("nested: dropout and bias use per-sequence indices (oracle per sequence, b = sequence)", () => {
  const seqQ = [3, 1, 50, 17];
  const seqK = [8, 33, 50, 1];
  const s = nestedSetup(301, seqQ, seqK, "bfloat16");
  const B = seqQ.length, maxQ = 50, maxK = 50;
  const p = 0.3, seed = 0x1_0000_0007n, offset = 9;
  const rng = new Rng(302);
  // bias [B, 1, maxSq, maxSk] float32, indexed by local (row, column).
  const biasVals = rng.normalArray(B * maxQ * maxK);
  const bias = Tensor.fromArray(biasVals, [B, 1, maxQ, maxK], { dtype: "float32" });
  const nq = pack(s.q, s.H, s.D, s.dtype);
  const nk = pack(s.k, s.Hkv, s.D, s.dtype);
  const nv = pack(s.v, s.Hkv, s.D, s.dtype);
  const ndout = pack(s.dout, s.H, s.D, s.dtype);
  try {
    const opts = { causal: true, bias, dropout: { p, seed, offset } };
    const fwd = attention(nq, nk, nv, opts);
    const grads = attentionBackward(ndout, nq, nk, nv, fwd.out, fwd.lse, opts);
    const outs = fwd.out.unpack();
    const dqs = grads.dq.unpack(), dks = grads.dk.unpack(), dvs = grads.dv.unpack();
    const u = unitRoundoff(s.dtype);
    for (let b = 0; b < B; b++) {
      const Sq = seqQ[b], Sk = seqK[b];
      const fullBias = new Float64Array(s.H * Sq * Sk);
      for (let h = 0; h < s.H; h++) {
        for (let i = 0; i < Sq; i++) {
          for (let j = 0; j < Sk; j++) {
            fullBias[(h * Sq + i) * Sk + j] = biasVals[(b * maxQ + i) * maxK + j];
          }
        }
      }
      const keep = new Uint8Array(s.H * Sq * Sk);
      for (let h = 0; h < s.H; h++) {
        keep.set(dropoutMaskRows(seed, offset, b * s.H + h, Sq, Sk, p), h * Sq * Sk);
      }
      const problem: OracleProblem = {
        batch: 1,
        headsQ: s.H,
        headsKv: s.Hkv,
        seqQ: Sq,
        seqK: Sk,
        headDim: s.D,
        q: toF64(swapAxes12(s.q[b], [1, Sq, s.H, s.D])),
        k: toF64(swapAxes12(s.k[b], [1, Sk, s.Hkv, s.D])),
        v: toF64(swapAxes12(s.v[b], [1, Sk, s.Hkv, s.D])),
        causal: true,
        bias: fullBias,
        keep,
        dropoutP: p,
      };
      const ref = oracleForward(problem);
      const got = swapAxes12(outs[b].toFloat32(), [1, Sq, s.H, s.D]);
      const name = `sequence ${b} (Sq=${Sq}, Sk=${Sk})`;
      assertNoNaN(`${name} out`, got);
      assertElementwise(
        `${name} out`,
        got,
        ref.out,
        forwardTolerance(s.dtype, ref.out, ref.outMag),
      );
      const gotOut = swapAxes12(outs[b].toFloat32(), [1, Sq, s.H, s.D]);
      const gref = oracleBackward(problem, toF64(swapAxes12(s.dout[b], [1, Sq, s.H, s.D])), gotOut);
      const pairs: [string, Tensor, Float64Array, Float64Array, number][] = [
        ["dq", dqs[b], gref.dq, gref.dqMag, s.H],
        ["dk", dks[b], gref.dk, gref.dkMag, s.Hkv],
        ["dv", dvs[b], gref.dv, gref.dvMag, s.Hkv],
      ];
      for (const [g, nested, want, mag, heads] of pairs) {
        const S = nested.shape[0];
        const floor = 1e-6 * maxAbs(mag);
        assertElementwise(
          `${name} ${g}`,
          swapAxes12(nested.toFloat32(), [1, S, heads, s.D]),
          want,
          (i) => u * Math.abs(want[i]) + (u + 1e-4) * mag[i] + floor,
        );
      }
    }
    for (const batch of [fwd.out, grads.dq, grads.dk, grads.dv]) batch.dispose();
  } finally {
    for (const batch of [nq, nk, nv, ndout]) batch.dispose();
    bias.dispose();
  }
});

Deno.test("nested: a single sequence equals the dense call bit for bit", () => {
  const s = nestedSetup(303, [29], [45], "float16");
  const nq = pack(s.q, s.H, s.D, s.dtype);
  const nk = pack(s.k, s.Hkv, s.D, s.dtype);
  const nv = pack(s.v, s.Hkv, s.D, s.dtype);
  const dq = denseOf(s.q[0], s.H, s.D, s.dtype);
  const dk = denseOf(s.k[0], s.Hkv, s.D, s.dtype);
  const dv = denseOf(s.v[0], s.Hkv, s.D, s.dtype);
  try {
    const a = attention(nq, nk, nv, { dropout: { p: 0.2, seed: 3n } });
    const b = attention(dq, dk, dv, { dropout: { p: 0.2, seed: 3n } });
    assertBitwise("out", a.out.unpack()[0].toFloat32(), hostOf(b.out));
    a.out.dispose();
    disposeTensors(a, b);
  } finally {
    for (const x of [nq, nk, nv]) x.dispose();
    disposeTensors({ dq, dk, dv });
  }
});

Deno.test("nested: every query sequence empty -> nothing written through the empty dbias view; a broadcast dbias is zeroed", () => {
  const H = 2, D = 16, kLens = [5, 9];
  const rng = new Rng(310);
  const seqs = kLens.map((n) =>
    Tensor.fromArray(rng.normalArray(n * H * D), [n, H, D], { dtype: "float16" })
  );
  using none = Tensor.zeros([0, H, D], "float16");
  using q = NestedBatch.pack([none, none]);
  using k = NestedBatch.pack(seqs);
  // [B, 1, 1, maxSk] seen as [B, H, 0, maxSk]: the row dim broadcasts (stride 0) to 0 rows.
  using bias = Tensor.fromArray(rng.normalArray(2 * 9), [2, 1, 1, 9], { dtype: "float32" });
  const fwd = attention(q, k, k, { bias });
  // The caller's dbias, contiguous and as a strided view (row 0 of two per batch entry).
  using given = Tensor.full([2, 1, 1, 9], POISON, "float32");
  using wide = Tensor.full([2, 1, 2, 9], POISON, "float32");
  using strided = wide.slice(2, 0, 1);
  try {
    assert.deepEqual([...strided.shape], [2, 1, 1, 9]);
    assert.ok(!strided.isContiguous);
    for (const dbias of [given, strided]) {
      const g = attentionBackward(fwd.out, q, k, k, fwd.out, fwd.lse, { bias, dbias });
      assert.equal(g.dbias, dbias, "the given dbias is returned");
      assertAllEqual("dbias (a sum over no rows)", dbias.toFloat32(), 0);
      assertAllEqual("dk (no queries)", g.dk.data.toFloat32(), 0);
      assertAllEqual("dv (no queries)", g.dv.data.toFloat32(), 0);
      g.dq.dispose();
      g.dk.dispose();
      g.dv.dispose();
    }
    const unviewed = wide.toFloat32().filter((_, i) => Math.floor(i / 9) % 2 === 1);
    assertAllEqual("rows of the strided dbias's storage it does not view", unviewed, POISON);
    const made = attentionBackward(fwd.out, q, k, k, fwd.out, fwd.lse, {
      bias,
      computeDbias: true,
    });
    assert.ok(made.dbias !== undefined);
    assert.deepEqual([...made.dbias.shape], [2, 1, 1, 9]);
    assertAllEqual("dbias made by the call", made.dbias.toFloat32(), 0);
    for (const batch of [made.dq, made.dk, made.dv]) batch.dispose();
    made.dbias.dispose();
  } finally {
    fwd.out.dispose();
    fwd.lse.dispose();
    for (const seq of seqs) seq.dispose();
  }
});

// ---------------------------------------------------------------------------------------------
// GQA

Deno.test("GQA equals MHA with repeated K/V; dk, dv are the group sums", () => {
  const c: CaseConfig = {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 6, Hkv: 2, Sq: 19, Sk: 41, D: 40, causal: true, seed: 400 },
    ...{ dropout: 0.15, dropoutSeed: 17n },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const groups = c.Hq / c.Hkv;
  const kr = Tensor.fromArray(repeatHeads(data.k, data.kvShape, groups), [c.B, c.Hq, c.Sk, c.D], {
    dtype: c.dtype,
  });
  const vr = Tensor.fromArray(repeatHeads(data.v, data.kvShape, groups), [c.B, c.Hq, c.Sk, c.D], {
    dtype: c.dtype,
  });
  const opts = caseOptions(c);
  try {
    const gqa = attention(t.q, t.k, t.v, opts);
    const mha = attention(t.q, kr, vr, opts);
    const u = unitRoundoff(c.dtype);
    const a = gqa.out.toFloat32(), b = mha.out.toFloat32();
    assertNontrivial("out", b);
    assertElementwise("out", a, b, (i) => 2 * u * Math.abs(b[i]) + 1e-6);
    const g1 = attentionBackward(t.dout, t.q, t.k, t.v, gqa.out, gqa.lse, opts);
    const g2 = attentionBackward(t.dout, t.q, kr, vr, mha.out, mha.lse, opts);
    const dq1 = g1.dq.toFloat32(), dq2 = g2.dq.toFloat32();
    assertElementwise("dq", dq1, dq2, (i) => 2 * u * Math.abs(dq2[i]) + 1e-3 * maxAbs(dq2));
    for (const name of ["dk", "dv"] as const) {
      const grouped = g1[name].toFloat32();
      const full = g2[name].toFloat32();
      const block = c.Sk * c.D;
      const sum = new Float64Array(grouped.length), mag = new Float64Array(grouped.length);
      for (let bb = 0; bb < c.B; bb++) {
        for (let h = 0; h < c.Hq; h++) {
          const to = (bb * c.Hkv + Math.floor(h / groups)) * block;
          const from = (bb * c.Hq + h) * block;
          for (let e = 0; e < block; e++) {
            sum[to + e] += full[from + e];
            mag[to + e] += Math.abs(full[from + e]);
          }
        }
      }
      assertNontrivial(name, sum);
      // Each MHA part was rounded (u each), the GQA sum once more, plus float32 accumulation
      // differences: 2u * sum |parts| + 1e-3 of the largest value.
      const scale = maxAbs(sum);
      assertElementwise(name, grouped, sum, (i) => 2 * u * mag[i] + 1e-3 * scale);
    }
    disposeTensors(gqa, mha, g1, g2);
  } finally {
    disposeTensors(t, { kr, vr });
  }
});

// ---------------------------------------------------------------------------------------------
// Strided layouts

Deno.test("layout bshd, permuted views, slices and strided outputs equal contiguous bhsd", () => {
  const c: CaseConfig = {
    dtype: "float16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 13, Sk: 29, D: 24, causal: true, seed: 500 },
    bias: { dtype: "float32", shape: [2, 1, 1, 29], negInf: 0.1 },
    ...{ dropout: 0.2, dropoutSeed: 8n },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const opts = { ...caseOptions(c), bias: t.bias };
  const qs = swapAxes12(data.q, data.qShape); // [B, Sq, Hq, D]
  const ks = swapAxes12(data.k, data.kvShape);
  const vs = swapAxes12(data.v, data.kvShape);
  const dos = swapAxes12(data.dout, data.qShape);
  const bshdQ = [c.B, c.Sq, c.Hq, c.D], bshdKv = [c.B, c.Sk, c.Hkv, c.D];
  const q2 = Tensor.fromArray(qs, bshdQ, { dtype: c.dtype });
  const k2 = Tensor.fromArray(ks, bshdKv, { dtype: c.dtype });
  const v2 = Tensor.fromArray(vs, bshdKv, { dtype: c.dtype });
  const do2 = Tensor.fromArray(dos, bshdQ, { dtype: c.dtype });
  try {
    const ref = attention(t.q, t.k, t.v, opts);
    const refOut = ref.out.toFloat32();
    const refG = attentionBackward(t.dout, t.q, t.k, t.v, ref.out, ref.lse, opts);
    // 1. layout "bshd": [B, S, H, D] tensors in and out.
    const out2 = poisoned(bshdQ, c.dtype);
    const r2 = attention(q2, k2, v2, { ...opts, layout: "bshd", out: out2 });
    assertBitwise("bshd out", swapAxes12(out2.toFloat32(), bshdQ), refOut);
    assertBitwise("bshd lse", r2.lse.toFloat32(), ref.lse.toFloat32());
    const g2 = attentionBackward(do2, q2, k2, v2, out2, r2.lse, { ...opts, layout: "bshd" });
    assert.deepEqual([...g2.dq.shape], bshdQ);
    assert.deepEqual([...g2.dk.shape], bshdKv);
    assertBitwise("bshd dq", swapAxes12(g2.dq.toFloat32(), bshdQ), refG.dq.toFloat32());
    assertBitwise("bshd dk", swapAxes12(g2.dk.toFloat32(), bshdKv), refG.dk.toFloat32());
    assertBitwise("bshd dv", swapAxes12(g2.dv.toFloat32(), bshdKv), refG.dv.toFloat32());
    // 2. Permuted views (strides, default layout), output into a permuted poisoned view.
    const qp = q2.permute([0, 2, 1, 3]), kp = k2.permute([0, 2, 1, 3]);
    const vp = v2.permute([0, 2, 1, 3]), dop = do2.permute([0, 2, 1, 3]);
    assert.equal(qp.isContiguous, false);
    assert.deepEqual([...qp.strides], [c.Sq * c.Hq * c.D, c.D, c.Hq * c.D, 1]);
    const outStore = poisoned(bshdQ, c.dtype);
    const outView = outStore.permute([0, 2, 1, 3]);
    const r3 = attention(qp, kp, vp, { ...opts, out: outView });
    assertBitwise("permuted out", outView.toFloat32(), refOut);
    const dqStore = poisoned(bshdQ, c.dtype);
    const dqView = dqStore.permute([0, 2, 1, 3]);
    const g3 = attentionBackward(dop, qp, kp, vp, outView, r3.lse, { ...opts, dq: dqView });
    assertBitwise("permuted dq", dqView.toFloat32(), refG.dq.toFloat32());
    assertBitwise("permuted dk", g3.dk.toFloat32(), refG.dk.toFloat32());
    // 3. A slice with a storage offset: rows 3.. of a longer query sequence.
    const longQ = new Rng(501).normalArray(c.B * c.Hq * (c.Sq + 5) * c.D);
    const longShape = [c.B, c.Hq, c.Sq + 5, c.D];
    for (let bh = 0; bh < c.B * c.Hq; bh++) {
      for (let i = 0; i < c.Sq; i++) {
        const to = (bh * (c.Sq + 5) + 3 + i) * c.D, from = (bh * c.Sq + i) * c.D;
        for (let d = 0; d < c.D; d++) longQ[to + d] = data.q[from + d];
      }
    }
    const long = Tensor.fromArray(longQ, longShape, { dtype: c.dtype });
    const sliced = long.slice(2, 3, 3 + c.Sq);
    assert.deepEqual([...sliced.shape], data.qShape);
    const r4 = attention(sliced, t.k, t.v, opts);
    assertBitwise("sliced q out", r4.out.toFloat32(), refOut);
    disposeTensors(ref, refG, r2, g2, r3, g3, r4);
    disposeTensors({ out2, qp, kp, vp, dop, outStore, outView, dqStore, dqView, long, sliced });
  } finally {
    disposeTensors(t, { q2, k2, v2, do2 });
  }
});

// ---------------------------------------------------------------------------------------------
// Bias broadcasting

function checkBroadcastBias(biasDtype: "float32" | "bfloat16", shape: number[], Sk = 21): void {
  const c: CaseConfig = {
    dtype: "float16",
    ...{ B: 2, Hq: 3, Hkv: 3, Sq: 11, Sk, D: 16, causal: true, seed: 600 },
    bias: { dtype: biasDtype, shape, negInf: 0.05 },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const full = [c.B, c.Hq, c.Sq, c.Sk];
  const fullVals = new Float32Array(broadcastTo(data.bias as Float32Array, shape, full));
  const mat = Tensor.fromArray(fullVals, full, { dtype: biasDtype });
  const name = `${biasDtype} [${shape}]`;
  try {
    const a = attention(t.q, t.k, t.v, { causal: true, bias: t.bias });
    const b = attention(t.q, t.k, t.v, { causal: true, bias: mat });
    assertBitwise(`${name} out`, a.out.toFloat32(), b.out.toFloat32());
    const ga = attentionBackward(t.dout, t.q, t.k, t.v, a.out, a.lse, {
      causal: true,
      bias: t.bias,
      computeDbias: true,
    });
    const gb = attentionBackward(t.dout, t.q, t.k, t.v, b.out, b.lse, {
      causal: true,
      bias: mat,
      computeDbias: true,
    });
    assert.ok(ga.dbias && gb.dbias);
    assert.deepEqual([...ga.dbias.shape], shape);
    const fullD = gb.dbias.toFloat32();
    const want = reduceTo(fullD, full, shape);
    const mag = reduceTo(fullD.map(Math.abs), full, shape);
    // With one key P = 1 wherever it is visible, so dS = P (dP - delta) = 0 for any bias.
    if (c.Sk > 1) assertNontrivial(name, want);
    // Parts rounded to the bias dtype (u each) and the reduced sum rounded once, float32
    // accumulation besides: 2u * sum |parts| + 1e-5 of the largest part.
    const u = unitRoundoff(biasDtype);
    const scale = maxAbs(fullD);
    assertElementwise(
      `${name} dbias`,
      ga.dbias.toFloat32(),
      want,
      (i) => 2 * u * mag[i] + 1e-5 * scale,
    );
    assertBitwise(`${name} dq`, ga.dq.toFloat32(), gb.dq.toFloat32());
    disposeTensors(a, b, ga, gb);
  } finally {
    disposeTensors(t, { mat });
  }
}

Deno.test("broadcast bias equals the materialized bias; dbias of a broadcast is the sum", () => {
  for (const biasDtype of ["float32", "bfloat16"] as const) {
    for (
      const shape of [[2, 1, 1, 21], [1, 3, 11, 21], [2, 3, 1, 21], [11, 21], [3, 1, 21], [21]]
    ) {
      checkBroadcastBias(biasDtype, shape);
    }
  }
});

Deno.test("bias broadcast over the key dim (key size 1 while Sk > 1) is refused: invalid_argument, bias", () => {
  const c: CaseConfig = {
    dtype: "float16",
    ...{ B: 2, Hq: 3, Hkv: 3, Sq: 11, Sk: 21, D: 16, causal: true, seed: 601 },
  };
  const t = caseTensors(makeCase(c));
  const refused = (error: unknown): boolean => {
    assert.ok(error instanceof FlashAttentionError, String(error));
    assert.equal(error.code, "invalid_argument");
    assert.equal(error.argument, "bias");
    assert.match(error.message, /^bias: the key dimension must be full: expected 21 keys/);
    assert.match(error.message, /batch, heads and query rows/);
    return true;
  };
  const fwd = attention(t.q, t.k, t.v, { causal: true });
  try {
    for (const shape of [[11, 1], [2, 3, 11, 1], [2, 1, 1, 1], [1], []]) {
      using bias = Tensor.zeros(shape, "float32");
      using out = poisoned([c.B, c.Hq, c.Sq, c.D], "float16");
      const options = { causal: true, bias };
      assert.throws(() => attention(t.q, t.k, t.v, { ...options, out }), refused, `[${shape}]`);
      assertAllEqual(`[${shape}] out untouched`, out.toFloat32(), POISON);
      using dbias = Tensor.full(shape, POISON, "float32");
      using dq = poisoned([c.B, c.Hq, c.Sq, c.D], "float16");
      assert.throws(
        () => attentionBackward(t.dout, t.q, t.k, t.v, fwd.out, fwd.lse, { ...options, dbias, dq }),
        refused,
        `[${shape}] backward`,
      );
      assertAllEqual(`[${shape}] dbias untouched`, dbias.toFloat32(), POISON);
      assertAllEqual(`[${shape}] dq untouched`, dq.toFloat32(), POISON);
    }
  } finally {
    disposeTensors(t, fwd);
  }
  // With a single key the key dim of size 1 is full: allowed, and equal to materializing.
  checkBroadcastBias("float32", [1, 3, 11, 1], 1);
  checkBroadcastBias("bfloat16", [11, 1], 1);
});

// ---------------------------------------------------------------------------------------------
// Rows that see no key

Deno.test("rows with no visible key: out 0, lse -inf, zero gradients, no NaN (causal Sq>Sk, -inf bias)", () => {
  const B = 2, H = 2, Sq = 12, Sk = 5, D = 16;
  const rng = new Rng(700);
  const q = Tensor.fromArray(rng.normalArray(B * H * Sq * D), [B, H, Sq, D], { dtype: "float16" });
  const k = Tensor.fromArray(rng.normalArray(B * H * Sk * D), [B, H, Sk, D], { dtype: "float16" });
  const v = Tensor.fromArray(rng.normalArray(B * H * Sk * D), [B, H, Sk, D], { dtype: "float16" });
  const dout = Tensor.fromArray(rng.normalArray(B * H * Sq * D), [B, H, Sq, D], {
    dtype: "float16",
  });
  // bias: row 9 of (b=0, h=1) fully -inf; batch 1 has every key of head 0 masked via row -inf.
  const biasVals = rng.normalArray(B * H * Sq * Sk);
  const masked = (b: number, h: number, i: number): boolean =>
    (b === 0 && h === 1 && i === 9) || (b === 1 && h === 0);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < Sq; i++) {
        if (masked(b, h, i)) {
          for (let j = 0; j < Sk; j++) biasVals[((b * H + h) * Sq + i) * Sk + j] = -Infinity;
        }
      }
    }
  }
  const bias = Tensor.fromArray(biasVals, [B, H, Sq, Sk], { dtype: "float32" });
  try {
    for (const variant of ["causal", "bias", "both"] as const) {
      const opts = {
        causal: variant !== "bias",
        bias: variant === "causal" ? undefined : bias,
        dropout: { p: 0.1, seed: 1n },
      };
      const empty = (b: number, h: number, i: number): boolean =>
        (variant !== "bias" && i < Sq - Sk) || (variant !== "causal" && masked(b, h, i));
      const out = poisoned([B, H, Sq, D], "float16");
      const lse = poisoned([B, H, Sq], "float32");
      const r = attention(q, k, v, { ...opts, out, lse });
      const o = out.toFloat32(), l = lse.toFloat32();
      assertNoNaN(`${variant} out`, o);
      assertNoNaN(`${variant} lse`, l);
      let emptyRows = 0;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let i = 0; i < Sq; i++) {
            const row = (b * H + h) * Sq + i;
            if (empty(b, h, i)) {
              emptyRows++;
              assert.equal(l[row], -Infinity, `${variant} lse[${b},${h},${i}]`);
              for (let d = 0; d < D; d++) {
                assert.equal(o[row * D + d], 0, `${variant} out row ${row}`);
              }
            } else {
              assert.ok(Number.isFinite(l[row]), `${variant} lse[${b},${h},${i}] = ${l[row]}`);
              assert.ok(o[row * D] !== POISON, `${variant} out row ${row} not written`);
            }
          }
        }
      }
      assert.ok(emptyRows > 0);
      const g = attentionBackward(dout, q, k, v, out, lse, {
        ...opts,
        computeDbias: opts.bias !== undefined,
      });
      const dq = g.dq.toFloat32();
      assertNoNaN(`${variant} dq`, dq);
      assertNoNaN(`${variant} dk`, g.dk.toFloat32());
      assertNoNaN(`${variant} dv`, g.dv.toFloat32());
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let i = 0; i < Sq; i++) {
            if (!empty(b, h, i)) continue;
            const row = (b * H + h) * Sq + i;
            for (let d = 0; d < D; d++) {
              assert.equal(dq[row * D + d], 0, `${variant} dq row ${row}`);
            }
          }
        }
      }
      if (g.dbias) {
        const db = g.dbias.toFloat32();
        assertNoNaN(`${variant} dbias`, db);
        for (let i = 0; i < db.length; i++) {
          if (biasVals[i] === -Infinity) assert.equal(db[i], 0, `dbias[${i}] of a -inf entry`);
        }
      }
      if (variant === "bias") {
        // (b=1, h=0) sees nothing at all: its K/V head receives no gradient.
        const dk = g.dk.toFloat32(), dv = g.dv.toFloat32();
        for (let e = 0; e < Sk * D; e++) {
          assert.equal(dk[(1 * H + 0) * Sk * D + e], 0);
          assert.equal(dv[(1 * H + 0) * Sk * D + e], 0);
        }
      }
      disposeTensors(r, g, { out, lse });
    }
  } finally {
    disposeTensors({ q, k, v, dout, bias });
  }
});

// ---------------------------------------------------------------------------------------------
// dtype conversion

function f16BitsRef(x: number): number {
  return new Uint16Array(new Float16Array([x]).buffer)[0];
}

function isF16NaN(bits: number): boolean {
  return (bits & 0x7c00) === 0x7c00 && (bits & 0x03ff) !== 0;
}

function isBf16NaN(bits: number): boolean {
  return (bits & 0x7f80) === 0x7f80 && (bits & 0x007f) !== 0;
}

Deno.test("float16 conversion: round-to-nearest-even edge cases", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [65504, 0x7bff], // largest finite
    [65519.996, 0x7bff], // just below the rounding boundary to inf
    [65520, 0x7c00], // tie between 65504 and 65536 -> even -> overflow to inf
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24 -> even (0)
    [3 * 2 ** -26, 0x0001], // 0.75 ulp -> up
    [3 * 2 ** -25, 0x0002], // tie 1.5 ulp -> even (2)
    [5 * 2 ** -25, 0x0002], // tie 2.5 ulp -> even (2)
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [1 + 2 ** -11, 0x3c00], // tie -> even
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie -> up
    [2049, 0x6800], // tie -> 2048
    [2051, 0x6802], // tie -> 2052
    [-1 - 2 ** -11, 0xbc00],
  ];
  const got = float32ToFloat16Bits(Float32Array.from(cases.map(([x]) => x)));
  for (let i = 0; i < cases.length; i++) {
    assert.equal(
      got[i],
      cases[i][1],
      `float32ToFloat16Bits(${cases[i][0]}) = 0x${got[i].toString(16)}, want 0x${
        cases[i][1].toString(16)
      }`,
    );
  }
  const nan = float32ToFloat16Bits(
    Float32Array.from([NaN, -NaN, bitsF32(0x7f800001), bitsF32(0xffc00001)]),
  );
  for (const b of nan) assert.ok(isF16NaN(b), `NaN -> 0x${b.toString(16)} is not a NaN`);
});

Deno.test("bfloat16 conversion: round-to-nearest-even edge cases", () => {
  const cases: [number, number][] = [
    [1, 0x3f80],
    [-0, 0x8000],
    [1 + 2 ** -8, 0x3f80], // tie -> even
    [1 + 3 * 2 ** -8, 0x3f82], // tie -> even (up)
    [1 + 2 ** -8 + 2 ** -20, 0x3f81], // above the tie
    [bitsF32(0x7f7fffff), 0x7f80], // FLT_MAX rounds to inf
    [bitsF32(0x7f7f0000), 0x7f7f], // largest finite bfloat16
    [bitsF32(0x7f7f8000), 0x7f80], // tie above the largest finite (odd) -> inf
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [bitsF32(0x00000001), 0x0000], // float32 subnormals round like normals
    [bitsF32(0x00018000), 0x0002], // tie -> even (up)
    [bitsF32(0x00008000), 0x0000], // tie -> even (down)
    [bitsF32(0x00800000), 0x0080], // smallest normal
  ];
  const got = float32ToBfloat16Bits(Float32Array.from(cases.map(([x]) => x)));
  for (let i = 0; i < cases.length; i++) {
    assert.equal(
      got[i],
      cases[i][1],
      `float32ToBfloat16Bits(${cases[i][0]}) = 0x${got[i].toString(16)}, want 0x${
        cases[i][1].toString(16)
      }`,
    );
  }
  // NaN payloads that naive rounding would carry into the exponent (0x7f800001 -> inf).
  const nanBits = [0x7f800001, 0x7fffffff, 0xff800001, 0x7fc00000, 0x7f80ffff];
  const nan = float32ToBfloat16Bits(Float32Array.from(nanBits.map(bitsF32)));
  for (let i = 0; i < nan.length; i++) {
    assert.ok(isBf16NaN(nan[i]), `NaN 0x${nanBits[i].toString(16)} -> 0x${nan[i].toString(16)}`);
  }
});

Deno.test("16-bit decode: all 65536 patterns (float16 and bfloat16) and re-encode round trip", () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f16 = float16BitsToFloat32(all);
  const bf16 = bfloat16BitsToFloat32(all);
  const f16Ref = new Float16Array(all.buffer);
  for (let i = 0; i < 65536; i++) {
    if (isF16NaN(i)) assert.ok(Number.isNaN(f16[i]), `f16 0x${i.toString(16)} -> ${f16[i]}`);
    else {
      assert.ok(
        Object.is(f16[i], f16Ref[i]),
        `f16 0x${i.toString(16)}: ${f16[i]} vs ${f16Ref[i]}`,
      );
      // The same value from the binary16 fields, independently of the engine's Float16Array.
      const sign = i & 0x8000 ? -1 : 1, exponent = (i >>> 10) & 0x1f, mantissa = i & 0x3ff;
      const fields = exponent === 0
        ? sign * mantissa * 2 ** -24
        : exponent === 31
        ? sign * Infinity
        : sign * (1024 + mantissa) * 2 ** (exponent - 25);
      assert.ok(Object.is(f16[i], fields), `f16 0x${i.toString(16)}: ${f16[i]} vs ${fields}`);
    }
    const want = bitsF32(i << 16);
    if (isBf16NaN(i)) assert.ok(Number.isNaN(bf16[i]), `bf16 0x${i.toString(16)} -> ${bf16[i]}`);
    else assert.ok(Object.is(bf16[i], want), `bf16 0x${i.toString(16)}: ${bf16[i]} vs ${want}`);
  }
  const back16 = float32ToFloat16Bits(f16);
  const backBf = float32ToBfloat16Bits(bf16);
  for (let i = 0; i < 65536; i++) {
    if (isF16NaN(i)) assert.ok(isF16NaN(back16[i]));
    else assert.equal(back16[i], i, `f16 round trip 0x${i.toString(16)}`);
    if (isBf16NaN(i)) assert.ok(isBf16NaN(backBf[i]));
    else assert.equal(backBf[i], i, `bf16 round trip 0x${i.toString(16)}`);
  }
});

Deno.test("16-bit encode of random float32 over the whole range matches independent rounding", () => {
  const rng = new Rng(800);
  const n = 200_000;
  const x = new Float32Array(n);
  const u = new Uint32Array(x.buffer);
  for (let i = 0; i < n; i++) u[i] = rng.nextU32();
  // Half of them in the float16 range, where rounding (not overflow) decides.
  for (let i = 0; i < n; i += 2) x[i] = (rng.uniform() - 0.5) * 2 ** rng.int(-30, 17);
  const f16 = float32ToFloat16Bits(x);
  const bf16 = float32ToBfloat16Bits(x);
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(x[i])) {
      assert.ok(isF16NaN(f16[i]) && isBf16NaN(bf16[i]));
      continue;
    }
    assert.equal(f16[i], f16BitsRef(x[i]), `float16 of ${x[i]} (0x${u[i].toString(16)})`);
    assert.equal(bf16[i], bf16BitsOf(x[i]), `bfloat16 of ${x[i]} (0x${u[i].toString(16)})`);
  }
  for (const dtype of ["float16", "bfloat16"] as const) {
    const finite = x.filter((v) => Number.isFinite(v));
    assertBitwise(`roundToDtype ${dtype}`, roundToDtype(finite, dtype), quantize(finite, dtype));
  }
  assertBitwise(
    "roundToDtype float32",
    roundToDtype(x.subarray(0, 100), "float32"),
    x.subarray(0, 100),
  );
});

// ---------------------------------------------------------------------------------------------
// Tensors: creation, views, refcounted storage

Deno.test("tensor: fromArray/toFloat32/toBits for every dtype and input kind", () => {
  const rng = new Rng(900);
  const vals = rng.normalArray(24);
  for (const dtype of ["float16", "bfloat16", "float32"] as const) {
    const t = Tensor.fromArray(vals, [2, 3, 4], { dtype });
    assert.equal(t.dtype, dtype);
    assert.equal(t.numel, 24);
    assert.ok(t.device.equals(cpu));
    assert.deepEqual([...t.strides], [12, 4, 1]);
    assert.ok(t.isContiguous);
    assertBitwise(dtype, t.toFloat32(), quantize(vals, dtype));
    t.dispose();
  }
  const bits = float32ToBfloat16Bits(vals);
  const fromBits = Tensor.fromArray(bits, [24], { dtype: "bfloat16" });
  assert.deepEqual(fromBits.toBits(), bits);
  const half = new Float16Array(vals);
  const fromHalf = Tensor.fromArray(half, [4, 6]);
  assert.equal(fromHalf.dtype, "float16");
  assertBitwise("Float16Array", fromHalf.toFloat32(), Float32Array.from(half));
  const ints = Tensor.fromArray(new Int32Array([0, 5, -7, 2 ** 30]), [4]);
  assert.equal(ints.dtype, "int32");
  assert.deepEqual([...ints.toFloat32()], [0, 5, -7, 2 ** 30]);
  const list = Tensor.fromArray([1.5, -2, 3], [3]);
  assert.equal(list.dtype, "float32");
  assert.deepEqual([...list.toFloat32()], [1.5, -2, 3]);
  const full = Tensor.full([3, 5], -1.25, "bfloat16");
  assertAllEqual("full", full.toFloat32(), -1.25);
  const zeros = Tensor.zeros([7], "float16");
  assertAllEqual("zeros", zeros.toFloat32(), 0);
  disposeTensors({ fromBits, fromHalf, ints, list, full, zeros });
});

Deno.test("tensor: permute, slice, reshape, contiguous views read the right elements", () => {
  const n = 2 * 3 * 4 * 5;
  const vals = Float32Array.from({ length: n }, (_, i) => i);
  const t = Tensor.fromArray(vals, [2, 3, 4, 5], { dtype: "float32" });
  const p = t.permute([0, 2, 1, 3]);
  assert.deepEqual([...p.shape], [2, 4, 3, 5]);
  assert.deepEqual([...p.strides], [60, 5, 20, 1]);
  assertBitwise("permute", p.toFloat32(), swapAxes12(vals, [2, 3, 4, 5]));
  const s = t.slice(2, 1, 3); // [2, 3, 2, 5]
  const sWant: number[] = [];
  for (let a = 0; a < 2; a++) {
    for (let b = 0; b < 3; b++) {
      for (let c = 1; c < 3; c++) {
        for (let d = 0; d < 5; d++) sWant.push(vals[((a * 3 + b) * 4 + c) * 5 + d]);
      }
    }
  }
  assert.deepEqual([...s.toFloat32()], sWant);
  const cp = p.contiguous();
  assert.ok(cp.isContiguous);
  assertBitwise("contiguous", cp.toFloat32(), p.toFloat32());
  const r = t.reshape([6, 20]);
  assertBitwise("reshape", r.toFloat32(), vals);
  assert.throws(() => p.reshape([120]), FlashAttentionError);
  // Views share storage: the parent's disposal leaves the view readable.
  t.dispose();
  assert.equal(t.disposed, true);
  assertBitwise("view after parent disposed", p.toFloat32(), swapAxes12(vals, [2, 3, 4, 5]));
  assert.throws(
    () => t.toFloat32(),
    (e: unknown) => e instanceof FlashAttentionError && e.code === "disposed",
  );
  disposeTensors({ p, s, cp, r });
  assert.throws(
    () => p.toFloat32(),
    (e: unknown) => e instanceof FlashAttentionError && e.code === "disposed",
  );
});

Deno.test("tensor: `using` disposes at scope end", () => {
  let escaped: Tensor | undefined;
  {
    using t = Tensor.full([4], 2, "float16");
    escaped = t;
    assert.equal(t.disposed, false);
  }
  assert.equal(escaped.disposed, true);
});

Deno.test("nested: pack/unpack round trip and fromData", () => {
  const rng = new Rng(950);
  const lens = [3, 1, 6];
  const seqs = lens.map((s) =>
    Tensor.fromArray(rng.normalArray(s * 2 * 8), [s, 2, 8], { dtype: "bfloat16" })
  );
  const nb = NestedBatch.pack(seqs);
  try {
    assert.equal(nb.heads, 2);
    assert.equal(nb.headDim, 8);
    assert.deepEqual([...nb.data.shape], [10, 2, 8]);
    assert.equal(nb.cuSeqlens.dtype, "int32");
    const parts = nb.unpack();
    for (let i = 0; i < lens.length; i++) {
      assert.deepEqual(parts[i].toBits(), seqs[i].toBits());
    }
    const again = NestedBatch.fromData(nb.data, lens);
    assert.deepEqual([...again.cuSeqlens.toFloat32()], [0, 3, 4, 10]);
    assert.deepEqual(again.unpack()[2].toBits(), seqs[2].toBits());
    again.dispose();
  } finally {
    nb.dispose();
    for (const s of seqs) s.dispose();
  }
});

Deno.test("dropout threshold helper agrees with the header's round(p * 65536) on float32 p", () => {
  // The test suite's own threshold: p is carried as float32 by the ABI.
  assert.equal(dropoutThreshold(0.1), 6554);
  assert.equal(dropoutThreshold(0.5), 32768);
  assert.equal(dropoutThreshold(0), 0);
  assert.equal(dropoutThreshold(0.99999), 65535);
  // The CLI's reference rounds p to float32 like the library: just below 0.5 / 65536 as a
  // double (threshold 0), exactly 0.5 / 65536 as a float32 (threshold 1).
  const straddling = 2 ** -17 - 2 ** -50;
  assert.equal(dropoutThreshold(straddling), 1);
  for (const p of [straddling, 0.1, 0.5, 0.99999, 1 / 3]) {
    assert.equal(cliDropoutThreshold(p), dropoutThreshold(p), `p = ${p}`);
  }
});

// Reference arrays used only for the quantization of inputs must stay consistent.
Deno.test("cases: quantized inputs are representable (conversion is exact)", () => {
  const c: CaseConfig = { dtype: "bfloat16", B: 1, Hq: 1, Hkv: 1, Sq: 4, Sk: 4, D: 8, seed: 990 };
  const data = makeCase(c);
  const t = caseTensors(data);
  try {
    assertBitwise("q", t.q.toFloat32(), data.q);
    assertBitwise("k", t.k.toFloat32(), data.k);
  } finally {
    disposeTensors(t);
  }
});
