/**
 * CPU backend forward against the independent float64 oracle (tests/helpers/oracle.ts) over
 * hand-picked and seeded random configurations covering every feature and their combinations.
 *
 * Inputs are drawn already representable in the storage dtype, and the oracle runs in float64
 * on exactly those values, so what remains is the library's float32 accumulation and output
 * rounding; the tolerances (helpers/cases.ts) are derived from those and stated there.
 */

import assert from "node:assert/strict";
import { attention, Device, Tensor } from "../mod.ts";
import {
  type CaseConfig,
  caseOptions,
  caseTensors,
  describeCase,
  disposeTensors,
  forwardTolerance,
  lseTolerance,
  makeCase,
  poisoned,
  randomConfigs,
} from "./helpers/cases.ts";
import {
  assertBitwise,
  assertElementwise,
  assertNoNaN,
  assertNontrivial,
} from "./helpers/check.ts";
import {
  dropoutMaskRows,
  mulhi32,
  oracleForward,
  philox4x32,
  philox4x32BigInt,
} from "./helpers/oracle.ts";
import { Rng, toF64 } from "./helpers/random.ts";

// ---------------------------------------------------------------------------------------------
// Self-checks of the yardsticks: Philox known answers, the oracle on closed-form cases.

const hex = (words: readonly number[]): string =>
  words.map((w) => (w >>> 0).toString(16).padStart(8, "0")).join(" ");

Deno.test("philox4x32-10 known-answer vectors (Random123 kat_vectors)", () => {
  const kat: [[number, number, number, number], [number, number], string][] = [
    [[0, 0, 0, 0], [0, 0], "6627e8d5 e169c58d bc57ac4c 9b00dbd8"],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0xffffffff, 0xffffffff],
      "408f276d 41c83b0e a20bc7c6 6d5451fd",
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
      [0xa4093822, 0x299f31d0],
      "d16cfe09 94fdcceb 5001e420 24126ea1",
    ],
  ];
  for (const [counter, key, want] of kat) {
    assert.equal(hex(philox4x32(counter, key)), want, `Number implementation, key ${hex(key)}`);
    assert.equal(hex(philox4x32BigInt(counter, key)), want, `BigInt implementation`);
  }
});

Deno.test("philox: Number and BigInt implementations agree on random counters and keys", () => {
  const rng = new Rng(11);
  for (let n = 0; n < 2000; n++) {
    const a = rng.nextU32(), b = rng.nextU32();
    assert.equal(mulhi32(a, b), Number((BigInt(a) * BigInt(b)) >> 32n), `mulhi ${a} ${b}`);
    const counter: [number, number, number, number] = [
      rng.nextU32(),
      rng.nextU32(),
      rng.nextU32(),
      rng.nextU32(),
    ];
    const key: [number, number] = [rng.nextU32(), rng.nextU32()];
    assert.deepEqual(philox4x32(counter, key), philox4x32BigInt(counter, key));
  }
});

Deno.test("dropout mask layout: column j of row i uses draw j%8 of counter (j/8, i, bh, offset)", () => {
  // Spelled out for one group: seed 0x0000000500000003 -> key (3, 5).
  const words = philox4x32BigInt([2, 4, 7, 9], [3, 5]);
  const mask = dropoutMaskRows(0x0000000500000003n, 9, 7, 5, 24, 0.5);
  for (let t = 0; t < 8; t++) {
    const word = words[t >> 1];
    const draw = t % 2 === 0 ? word & 0xffff : word >>> 16;
    assert.equal(mask[4 * 24 + 16 + t], draw >= 32768 ? 1 : 0, `column ${16 + t}`);
  }
});

Deno.test("oracle: closed forms (Sk=1 gives v; equal scores give the mean; causal, bias, lse)", () => {
  const v = toF64([1, -2, 3, 0.5, 4, 8, -1, 2]); // [1, 1, 2, 4] keys
  const q = toF64([0.3, 0.1, -0.2, 0.7]); // [1, 1, 1, 4]
  const k = toF64([0, 0, 0, 0, 0, 0, 0, 0]); // equal scores (0)
  const base = { batch: 1, headsQ: 1, headsKv: 1, seqQ: 1, headDim: 4, q };
  const mean = oracleForward({ ...base, seqK: 2, k, v });
  assert.deepEqual([...mean.out], [2.5, 3, 1, 1.25]);
  assert.ok(Math.abs(mean.lse[0] - Math.log(2)) < 1e-15);
  const one = oracleForward({ ...base, seqK: 1, k: k.slice(0, 4), v: v.slice(0, 4) });
  assert.deepEqual([...one.out], [1, -2, 3, 0.5]);
  // A bias of log(3) on key 1 weights it 3:1.
  const biased = oracleForward({ ...base, seqK: 2, k, v, bias: toF64([0, Math.log(3)]) });
  const want = [0.25 * 1 + 0.75 * 4, 0.25 * -2 + 0.75 * 8, 0.25 * 3 - 0.75, 0.25 * 0.5 + 1.5];
  for (let d = 0; d < 4; d++) assert.ok(Math.abs(biased.out[d] - want[d]) < 1e-12);
  // Causal with Sq=2 > Sk=1: row 0 sees nothing (0, -inf), row 1 sees key 0.
  const causal = oracleForward({
    ...base,
    seqQ: 2,
    seqK: 1,
    q: toF64([...q, ...q]),
    k: k.slice(0, 4),
    v: v.slice(0, 4),
    causal: true,
  });
  assert.deepEqual([...causal.out], [0, 0, 0, 0, 1, -2, 3, 0.5]);
  assert.deepEqual([...causal.lse], [-Infinity, 0]);
  // Dropout keeps key 1 only: out = P_1 / (1 - p) * v_1.
  const dropped = oracleForward({
    ...base,
    seqK: 2,
    k,
    v,
    keep: Uint8Array.from([0, 1]),
    dropoutP: 0.5,
  });
  assert.deepEqual([...dropped.out], [4, 8, -1, 2]);
});

// ---------------------------------------------------------------------------------------------
// The CPU backend against the oracle.

/** Runs one case on the CPU into poisoned outputs and checks out and lse against the oracle. */
function checkForward(c: CaseConfig): void {
  const data = makeCase(c);
  const t = caseTensors(data, Device.cpu());
  const out = poisoned(data.qShape, c.dtype);
  const lse = poisoned([c.B, c.Hq, c.Sq], "float32");
  try {
    const result = attention(t.q, t.k, t.v, { ...caseOptions(c), bias: t.bias, out, lse });
    assert.deepEqual([...result.out.shape], data.qShape);
    assert.deepEqual([...result.lse.shape], [c.B, c.Hq, c.Sq]);
    assert.equal(result.out.dtype, c.dtype);
    assert.equal(result.lse.dtype, "float32");
    const got = result.out.toFloat32();
    const gotLse = result.lse.toFloat32();
    const ref = oracleForward(data.problem);
    assertNontrivial("oracle out", ref.out);
    assertNoNaN("out", got);
    assertNoNaN("lse", gotLse);
    // Tolerance: see forwardTolerance (output rounding + P rounding + float32 accumulation).
    assertElementwise("out", got, ref.out, forwardTolerance(c.dtype, ref.out, ref.outMag));
    // lse: float32 result, -inf exactly where a row sees no key.
    assertElementwise("lse", gotLse, ref.lse, (i) => lseTolerance(ref.lse[i]));
    if (result.out !== out) {
      // A preallocated output must be the tensor written to; if a new tensor came back, the
      // preallocated one must still hold the same values (it was written, not ignored).
      assertBitwise("preallocated out", out.toFloat32(), got);
    }
    disposeTensors(result);
  } finally {
    disposeTensors(t, { out, lse });
  }
}

const HANDPICKED: CaseConfig[] = [
  // plain shapes: D, Sq, Sk coverage
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 1 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 200, D: 40, seed: 2 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 1, Sk: 200, D: 128, seed: 3 },
  { dtype: "bfloat16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 1, D: 8, seed: 4 },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 129, D: 256, seed: 5 },
  { dtype: "bfloat16", B: 1, Hq: 1, Hkv: 1, Sq: 1, Sk: 1, D: 256, seed: 6 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 200, Sk: 33, D: 8, seed: 7 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 7, Sk: 129, D: 128, seed: 8 },
  // causal, Sq < Sk, Sq == Sk, Sq > Sk (rows with no visible key)
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, causal: true, seed: 10 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 33, Sk: 7, D: 40, causal: true, seed: 11 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 129, Sk: 129, D: 128, causal: true, seed: 12 },
  { dtype: "bfloat16", B: 1, Hq: 2, Hkv: 2, Sq: 1, Sk: 200, D: 64, causal: true, seed: 13 },
  { dtype: "float16", B: 1, Hq: 1, Hkv: 1, Sq: 129, Sk: 200, D: 8, causal: true, seed: 14 },
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 200, Sk: 1, D: 64, causal: true, seed: 15 },
  // bias: every dtype and broadcast, -inf entries, fully masked rows
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 20 },
    bias: { dtype: "float16", shape: [2, 1, 1, 33], negInf: 0.2 },
  },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 33, Sk: 129, D: 40, seed: 21 },
    bias: { dtype: "bfloat16", shape: [1, 2, 33, 129] },
  },
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 128, causal: true, seed: 22 },
    bias: { dtype: "float32", shape: [2, 2, 7, 33], negInf: 0.1, maskFirstRow: true },
  },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 33, D: 64, seed: 23 },
    bias: { dtype: "float32", shape: [33] },
  },
  {
    dtype: "float16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 200, D: 8, seed: 24 },
    bias: { dtype: "bfloat16", shape: [2, 1, 7, 200] },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 4, Hkv: 4, Sq: 7, Sk: 33, D: 256, causal: true, seed: 25 },
    bias: { dtype: "float16", shape: [1, 4, 1, 33] },
  },
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 2, Hkv: 2, Sq: 33, Sk: 7, D: 40, seed: 26 },
    bias: { dtype: "bfloat16", shape: [33, 7], negInf: 0.3, maskFirstRow: true },
  },
  // GQA / MQA
  { dtype: "float16", B: 2, Hq: 4, Hkv: 2, Sq: 7, Sk: 33, D: 64, seed: 30 },
  { dtype: "bfloat16", B: 1, Hq: 4, Hkv: 1, Sq: 129, Sk: 200, D: 128, causal: true, seed: 31 },
  { dtype: "float16", B: 1, Hq: 4, Hkv: 1, Sq: 1, Sk: 33, D: 40, seed: 32 },
  // custom scale
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 40, scale: 0.3, seed: 40 },
  {
    dtype: "bfloat16",
    B: 1,
    Hq: 2,
    Hkv: 2,
    Sq: 33,
    Sk: 33,
    D: 64,
    scale: 1.7,
    causal: true,
    seed: 41,
  },
  // large logits: peaked rows, the running maximum changes often (online-softmax rescaling)
  { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 200, D: 64, qStd: 4, seed: 42 },
  {
    dtype: "bfloat16",
    B: 1,
    Hq: 1,
    Hkv: 1,
    Sq: 33,
    Sk: 200,
    D: 8,
    qStd: 8,
    causal: true,
    seed: 43,
  },
  // dropout (mask from the test's own Philox)
  { dtype: "float16", B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 33, D: 64, dropout: 0.1, seed: 50 },
  {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 2, Hkv: 2, Sq: 129, Sk: 200, D: 40, seed: 51 },
    ...{ dropout: 0.5, dropoutSeed: 0x123456789abcdefn, dropoutOffset: 7 },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 4, Hkv: 2, Sq: 33, Sk: 7, D: 256, causal: true, seed: 52 },
    ...{ dropout: 0.3, dropoutSeed: 99n },
  },
  // everything at once
  {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 33, Sk: 129, D: 64, causal: true, scale: 0.2, seed: 60 },
    bias: { dtype: "float32", shape: [2, 1, 33, 129], negInf: 0.05, maskFirstRow: true },
    ...{ dropout: 0.2, dropoutSeed: 42n, dropoutOffset: 3 },
  },
  {
    dtype: "float16",
    ...{ B: 1, Hq: 4, Hkv: 1, Sq: 129, Sk: 33, D: 40, causal: true, seed: 61 },
    bias: { dtype: "bfloat16", shape: [1, 4, 129, 33], negInf: 0.1 },
    ...{ dropout: 0.1, dropoutSeed: 2n ** 63n + 5n, dropoutOffset: 1 },
  },
];

for (const c of HANDPICKED) {
  Deno.test(`cpu forward vs oracle: ${describeCase(c)}`, () => checkForward(c));
}

for (const c of randomConfigs(24, 20240611, 4_000_000)) {
  Deno.test(`cpu forward vs oracle (random): ${describeCase(c)}`, () => checkForward(c));
}

Deno.test("cpu forward: freshly allocated outputs equal preallocated ones bit for bit", () => {
  const c: CaseConfig = {
    dtype: "bfloat16",
    ...{ B: 2, Hq: 4, Hkv: 2, Sq: 33, Sk: 40, D: 64, causal: true, seed: 70 },
    bias: { dtype: "float16", shape: [2, 1, 1, 40], negInf: 0.1 },
    dropout: 0.2,
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  const out = poisoned(data.qShape, c.dtype);
  const lse = poisoned([c.B, c.Hq, c.Sq], "float32");
  const a = attention(t.q, t.k, t.v, { ...caseOptions(c), bias: t.bias, out, lse });
  const b = attention(t.q, t.k, t.v, { ...caseOptions(c), bias: t.bias });
  try {
    assertBitwise("out", b.out.toFloat32(), out.toFloat32());
    assertBitwise("lse", b.lse.toFloat32(), lse.toFloat32());
    assertBitwise("returned out", a.out.toFloat32(), out.toFloat32());
  } finally {
    disposeTensors(t, a, b, { out, lse });
  }
});

Deno.test("cpu forward: default scale is 1/sqrt(D), and scale changes the result", () => {
  const c: CaseConfig = { dtype: "float16", B: 1, Hq: 2, Hkv: 2, Sq: 9, Sk: 17, D: 40, seed: 71 };
  const data = makeCase(c);
  const t = caseTensors(data);
  try {
    const implicit = attention(t.q, t.k, t.v).out.toFloat32();
    const explicit = attention(t.q, t.k, t.v, { scale: 1 / Math.sqrt(40) }).out.toFloat32();
    const other = attention(t.q, t.k, t.v, { scale: 0.5 }).out.toFloat32();
    assertBitwise("default vs explicit scale", implicit, explicit);
    // scale 0.5 vs 0.158: the outputs must differ clearly (the check above is not vacuous).
    let diff = 0;
    for (let i = 0; i < implicit.length; i++) {
      diff = Math.max(diff, Math.abs(implicit[i] - other[i]));
    }
    assert.ok(diff > 1e-2, `scale ignored? max difference ${diff}`);
  } finally {
    disposeTensors(t);
  }
});

Deno.test("cpu forward: MQA, float32 bias [1,1,Sq,Sk], outputs allocated by the library", () => {
  const c: CaseConfig = {
    dtype: "bfloat16",
    ...{ B: 1, Hq: 2, Hkv: 1, Sq: 5, Sk: 11, D: 16, seed: 72 },
    bias: { dtype: "float32", shape: [1, 1, 5, 11] },
  };
  const data = makeCase(c);
  const t = caseTensors(data);
  try {
    const got = attention(t.q, t.k, t.v, { bias: t.bias });
    const ref = oracleForward(data.problem);
    assertElementwise(
      "out",
      got.out.toFloat32(),
      ref.out,
      forwardTolerance(c.dtype, ref.out, ref.outMag),
    );
    disposeTensors(got);
  } finally {
    disposeTensors(t);
  }
});

Deno.test("cpu forward: device of results is the cpu", () => {
  const q = Tensor.fromArray(new Rng(73).normalArray(1 * 1 * 3 * 8), [1, 1, 3, 8], {
    dtype: "float16",
  });
  try {
    const r = attention(q, q, q);
    assert.equal(r.out.device.kind, "cpu");
    assert.equal(r.lse.device.kind, "cpu");
    assert.ok(r.out.device.equals(Device.cpu()));
    disposeTensors(r);
  } finally {
    q.dispose();
  }
});
