/**
 * A reduced GPU workload for compute-sanitizer (memcheck, racecheck): one small forward and
 * backward per feature, odd sizes so that every tail path runs. Exits non-zero on any error.
 *
 *   compute-sanitizer --tool memcheck deno run --allow-ffi --allow-read --allow-env \
 *     bench/sanitize_cases.ts
 * @module
 */

import { attention, attentionBackward, Device, NestedBatch, type Tensor } from "../mod.ts";
import { randomTensor } from "./seed_inputs.ts";

interface SanitizeCase {
  name: string;
  dtype: "float16" | "bfloat16";
  b: number;
  hq: number;
  hkv: number;
  sq: number;
  sk: number;
  d: number;
  causal?: boolean;
  bias?: "full" | "key-padding";
  dropout?: number;
  deterministic?: boolean;
}

const CASES: SanitizeCase[] = [
  { name: "plain fp16 D64", dtype: "float16", b: 2, hq: 2, hkv: 2, sq: 77, sk: 131, d: 64 },
  { name: "plain bf16 D40", dtype: "bfloat16", b: 1, hq: 2, hkv: 2, sq: 65, sk: 65, d: 40 },
  { name: "D8 Sq1", dtype: "float16", b: 1, hq: 1, hkv: 1, sq: 1, sk: 9, d: 8 },
  {
    name: "D128 causal",
    dtype: "bfloat16",
    b: 1,
    hq: 2,
    hkv: 1,
    sq: 150,
    sk: 97,
    d: 128,
    causal: true,
  },
  {
    name: "D256 causal",
    dtype: "float16",
    b: 1,
    hq: 1,
    hkv: 1,
    sq: 70,
    sk: 150,
    d: 256,
    causal: true,
  },
  {
    name: "D96 bias full",
    dtype: "bfloat16",
    b: 2,
    hq: 2,
    hkv: 2,
    sq: 33,
    sk: 70,
    d: 96,
    bias: "full",
  },
  {
    name: "D64 key padding",
    dtype: "float16",
    b: 2,
    hq: 4,
    hkv: 2,
    sq: 70,
    sk: 70,
    d: 64,
    bias: "key-padding",
  },
  {
    name: "D128 dropout",
    dtype: "bfloat16",
    b: 1,
    hq: 2,
    hkv: 2,
    sq: 90,
    sk: 90,
    d: 128,
    dropout: 0.2,
  },
  {
    name: "D64 everything, deterministic",
    dtype: "float16",
    b: 1,
    hq: 4,
    hkv: 2,
    sq: 80,
    sk: 130,
    d: 64,
    causal: true,
    bias: "full",
    dropout: 0.1,
    deterministic: true,
  },
];

function runCase(device: Device, c: SanitizeCase, seed: number): void {
  using q = randomTensor([c.b, c.hq, c.sq, c.d], c.dtype, device, seed);
  using k = randomTensor([c.b, c.hkv, c.sk, c.d], c.dtype, device, seed + 1);
  using v = randomTensor([c.b, c.hkv, c.sk, c.d], c.dtype, device, seed + 2);
  using dout = randomTensor([c.b, c.hq, c.sq, c.d], c.dtype, device, seed + 3);
  const biasShape = c.bias === "full" ? [1, c.hq, c.sq, c.sk] : [c.b, 1, 1, c.sk];
  using bias = c.bias ? randomTensor(biasShape, c.dtype, device, seed + 4) : undefined;
  const options = {
    causal: c.causal,
    bias,
    dropout: c.dropout ? { p: c.dropout, seed: 11 } : undefined,
    deterministic: c.deterministic,
    computeDbias: bias !== undefined,
  };
  const { out, lse } = attention(q, k, v, options);
  const grads = attentionBackward(dout, q, k, v, out, lse, options);
  device.synchronize();
  for (const t of [out, lse, grads.dq, grads.dk, grads.dv, grads.dbias]) t?.dispose();
}

function runNested(device: Device): void {
  const lengths = [1, 70, 129, 5];
  const seqs: Tensor[] = lengths.map((s, i) =>
    randomTensor([s, 2, 64], "bfloat16", device, 50 + i)
  );
  using q = NestedBatch.pack(seqs);
  using k = NestedBatch.pack(seqs);
  using v = NestedBatch.pack(seqs);
  using dout = NestedBatch.pack(seqs);
  for (const s of seqs) s.dispose();
  const options = { causal: true, dropout: { p: 0.1, seed: 3 } };
  const { out, lse } = attention(q, k, v, options);
  const grads = attentionBackward(dout, q, k, v, out, lse, options);
  device.synchronize();
  for (const t of [out, lse, grads.dq, grads.dk, grads.dv]) t.dispose();
}

if (import.meta.main) {
  const device = Device.cuda(0);
  CASES.forEach((c, i) => {
    runCase(device, c, 100 * i);
    console.log(`ok  ${c.name}`);
  });
  runNested(device);
  console.log("ok  nested causal dropout");
}
