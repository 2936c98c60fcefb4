/**
 * A reduced GPU workload for compute-sanitizer (memcheck, racecheck): one small forward and
 * backward per feature, odd sizes so that every tail path runs. Exits non-zero on any error.
 *
 *   compute-sanitizer --tool memcheck deno run --allow-ffi --allow-read --allow-env \
 *     bench/sanitize_cases.ts
 * @module
 */

import {
  attention,
  attentionBackward,
  attentionWithKVCache,
  CudaGraph,
  Device,
  KVCache,
  kvcacheWorkspaceSize,
  mergeAttention,
  NestedBatch,
  Stream,
  Tensor,
} from "../mod.ts";
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

/**
 * The KV-cache paths: paged append with rotary and every score feature over lengths from 0
 * (split and unsplit), a dense prefill chunk (the forward kernels' route), a merge, and a
 * captured graph step replayed twice.
 */
function runKvCache(device: Device): void {
  const [B, Hq, Hkv, D] = [3, 8, 2, 64];
  const rand = (shape: number[], seed: number) => randomTensor(shape, "bfloat16", device, seed);
  using paged = KVCache.paged({
    batch: B,
    heads: Hkv,
    headDim: D,
    pageSize: 16,
    numPages: 64,
    maxPagesPerSeq: 32,
    dtype: "bfloat16",
    device,
  });
  paged.setLengths([0, 37, 300]);
  const rows = 512;
  const angles = Float32Array.from({ length: rows * 16 }, (_, i) => (i % 97) * 0.01);
  using cos = Tensor.fromArray(angles.map(Math.cos), [rows, 16], { dtype: "float32", device });
  using sin = Tensor.fromArray(angles.map(Math.sin), [rows, 16], { dtype: "float32", device });
  using sinks = Tensor.fromArray(Array.from({ length: Hq }, (_, h) => h * 0.1), [Hq], {
    dtype: "float32",
    device,
  });
  for (const numSplits of [0, 1, 3]) {
    using q = rand([B, Hq, 3, D], 1), k = rand([B, Hkv, 3, D], 2), v = rand([B, Hkv, 3, D], 3);
    const r = attentionWithKVCache(q, paged, {
      kNew: k,
      vNew: v,
      rotary: { cos, sin },
      causal: true,
      window: [100, 0],
      softcap: 10,
      sinks,
      numSplits,
    });
    device.synchronize();
    const merged = mergeAttention([r, r]);
    device.synchronize();
    for (const t of [r.out, r.lse, merged.out, merged.lse]) t.dispose();
  }
  using dense = KVCache.dense({
    batch: 1,
    heads: Hkv,
    headDim: D,
    capacity: 400,
    dtype: "bfloat16",
    device,
  });
  dense.setLengths([200]);
  {
    using q = rand([1, Hq, 100, D], 4), k = rand([1, Hkv, 100, D], 5);
    using v = rand([1, Hkv, 100, D], 6);
    const r = attentionWithKVCache(q, dense, { kNew: k, vNew: v, causal: true });
    device.synchronize();
    r.out.dispose();
    r.lse.dispose();
  }
  using stream = Stream.create(device);
  using q = rand([1, Hq, 1, D], 7), k = rand([1, Hkv, 1, D], 8), v = rand([1, Hkv, 1, D], 9);
  using out = Tensor.empty([1, Hq, 1, D], "bfloat16", device);
  using lse = Tensor.empty([1, Hq, 1], "float32", device);
  const step = { kNew: k, vNew: v, out, lse, maxSeqlenK: dense.capacity, stream };
  const bytes = kvcacheWorkspaceSize(q, dense, step);
  using workspace = Tensor.empty([Math.max(1, Math.ceil(bytes / 4))], "int32", device);
  using graph = CudaGraph.capture(stream, () => {
    attentionWithKVCache(q, dense, { ...step, workspace });
  });
  graph.launch(stream);
  graph.launch(stream);
  stream.synchronize();
}

if (import.meta.main) {
  const device = Device.cuda(0);
  CASES.forEach((c, i) => {
    runCase(device, c, 100 * i);
    console.log(`ok  ${c.name}`);
  });
  runNested(device);
  console.log("ok  nested causal dropout, then with every score feature");
  runKvCache(device);
  console.log("ok  KV cache: paged append rotary features (splits 0/1/3), merge, prefill, graph");
}
