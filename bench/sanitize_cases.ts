/**
 * A reduced GPU workload for compute-sanitizer (memcheck, racecheck): one small forward and
 * backward per feature, odd sizes so that every tail path runs. Exits non-zero on any error.
 *
 *   compute-sanitizer --tool memcheck deno run --allow-ffi --allow-read --allow-env \
 *     bench/sanitize_cases.ts
 * @module
 */

import { attention, attentionBackward, Device, NestedBatch, Tensor } from "../mod.ts";
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
  /** Sliding window [left, right]. */
  window?: [number, number];
  /** Logit softcap. */
  softcap?: number;
  /** Attention sinks (float32 [Hq], one per head). */
  sinks?: boolean;
  /** ALiBi slopes, [Hq] ("heads") or [B, Hq] ("batch"). */
  alibi?: "heads" | "batch";
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
  // The score features, one small forward + backward each, then all together.
  {
    name: "D64 sliding window",
    ...{ dtype: "float16", b: 2, hq: 2, hkv: 2, sq: 150, sk: 97, d: 64, window: [17, 5] },
  },
  {
    name: "D128 causal window",
    ...{ dtype: "bfloat16", b: 1, hq: 2, hkv: 1, sq: 131, sk: 131, d: 128, causal: true },
    window: [40, 0],
  },
  {
    name: "D96 softcap",
    ...{ dtype: "bfloat16", b: 1, hq: 2, hkv: 2, sq: 77, sk: 131, d: 96, softcap: 5 },
  },
  {
    name: "D64 sinks (window hides the first rows)",
    ...{ dtype: "float16", b: 2, hq: 4, hkv: 2, sq: 130, sk: 70, d: 64, window: [3, 0] },
    sinks: true,
  },
  {
    name: "D256 ALiBi [Hq]",
    ...{ dtype: "float16", b: 1, hq: 2, hkv: 2, sq: 70, sk: 150, d: 256, alibi: "heads" },
  },
  {
    name: "D40 ALiBi [B, Hq]",
    ...{ dtype: "bfloat16", b: 3, hq: 2, hkv: 1, sq: 65, sk: 33, d: 40, alibi: "batch" },
  },
  {
    name: "D128 every score feature with bias, dropout, deterministic",
    ...{ dtype: "bfloat16", b: 2, hq: 4, hkv: 2, sq: 99, sk: 140, d: 128, causal: true },
    ...{ window: [60, 0], softcap: 10, sinks: true, alibi: "batch", bias: "key-padding" },
    ...{ dropout: 0.1, deterministic: true },
  },
];

/** float32 [shape] with values from a fixed formula (sinks around 0, slopes in (0, 0.5]). */
function float32Tensor(shape: number[], device: Device, value: (i: number) => number): Tensor {
  const count = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Float32Array.from({ length: count }, (_, i) => value(i)), shape, {
    dtype: "float32",
    device,
  });
}

function runCase(device: Device, c: SanitizeCase, seed: number): void {
  using q = randomTensor([c.b, c.hq, c.sq, c.d], c.dtype, device, seed);
  using k = randomTensor([c.b, c.hkv, c.sk, c.d], c.dtype, device, seed + 1);
  using v = randomTensor([c.b, c.hkv, c.sk, c.d], c.dtype, device, seed + 2);
  using dout = randomTensor([c.b, c.hq, c.sq, c.d], c.dtype, device, seed + 3);
  const biasShape = c.bias === "full" ? [1, c.hq, c.sq, c.sk] : [c.b, 1, 1, c.sk];
  using bias = c.bias ? randomTensor(biasShape, c.dtype, device, seed + 4) : undefined;
  using sinks = c.sinks ? float32Tensor([c.hq], device, (i) => Math.sin(i + seed)) : undefined;
  const slopesShape = c.alibi === "batch" ? [c.b, c.hq] : [c.hq];
  using alibiSlopes = c.alibi
    ? float32Tensor(slopesShape, device, (i) => 2 ** (-1 - (i % 8)))
    : undefined;
  const options = {
    causal: c.causal,
    bias,
    window: c.window,
    softcap: c.softcap,
    sinks,
    alibiSlopes,
    dropout: c.dropout ? { p: c.dropout, seed: 11 } : undefined,
    deterministic: c.deterministic,
    computeDbias: bias !== undefined,
  };
  const { out, lse } = attention(q, k, v, options);
  const grads = attentionBackward(dout, q, k, v, out, lse, options);
  device.synchronize();
  for (const t of [out, lse, grads.dq, grads.dk, grads.dv, grads.dbias, grads.dsinks]) {
    t?.dispose();
  }
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
  using sinks = Tensor.fromArray([0.5, -1], [2], { dtype: "float32", device });
  using alibiSlopes = Tensor.fromArray([0.25, 0.5, 0.125, 0.25, 0.5, 0.5, 0.0625, 1], [4, 2], {
    dtype: "float32",
    device,
  });
  const plain = { causal: true, dropout: { p: 0.1, seed: 3 } };
  const features = {
    ...plain,
    window: [20, 0] as [number, number],
    softcap: 8,
    sinks,
    alibiSlopes,
  };
  for (const options of [plain, features]) {
    const { out, lse } = attention(q, k, v, options);
    const grads = attentionBackward(dout, q, k, v, out, lse, options);
    device.synchronize();
    for (const t of [out, lse, grads.dq, grads.dk, grads.dv, grads.dsinks]) t?.dispose();
  }
}

if (import.meta.main) {
  const device = Device.cuda(0);
  CASES.forEach((c, i) => {
    runCase(device, c, 100 * i);
    console.log(`ok  ${c.name}`);
  });
  runNested(device);
  console.log("ok  nested causal dropout, then with every score feature");
}
