/**
 * The KV-cache decode rows of bench/decode_rows.json through the TypeScript API (what a
 * user's decode step runs), timed with CUDA events (median, L2 flushed before each call),
 * writing the JSON bench/peers/decode_peers.py reads with `--ours` (the same schema as
 * bench/kvcache_device.py, which times the same rows over ctypes). Then the host time of a
 * 32-layer decode step: 32 direct calls against one CudaGraph launch.
 *
 *   deno run --allow-ffi --allow-read --allow-env --allow-write bench/decode_rows.ts \
 *     [--json ours_ts.json] [--rows label,group,...] [--iterations 30] [--device cpu]
 *
 * Every call takes the graph-capturable form: trusted lengths (`maxSeqlenK`), preallocated
 * out and lse, a caller workspace. `--device cpu` runs the same code on the CPU backend (a
 * smoke test: pick a small row with --rows).
 * @module
 */

import { parseArgs } from "node:util";
import {
  attentionWithKVCache,
  CudaGraph,
  Device,
  type KVCacheAttentionOptions,
  type KVCacheTensors,
  kvcacheWorkspaceSize,
  Stream,
  Tensor,
  timeCuda,
} from "../mod.ts";
import { randomTensor } from "./seed_inputs.ts";

/** One row of bench/decode_rows.json. */
interface DecodeRow {
  label: string;
  batch: number;
  heads_q: number;
  heads_kv: number;
  head_dim: number;
  seqlen_new: number;
  cache_lens: number | { spread: [number, number]; seed?: number };
  causal: boolean;
  group: string;
}

/** The lengths L_b of a row (decode_rows.json's README gives the spread rule). */
export function rowLengths(row: DecodeRow): number[] {
  const lens = row.cache_lens;
  if (typeof lens === "number") return Array(row.batch).fill(lens);
  const [lo, hi] = lens.spread, seed = lens.seed ?? 0, B = row.batch;
  return Array.from({ length: B }, (_, b) => {
    const t = B > 1 ? ((b + seed) % B) / (B - 1) : 0;
    return Math.floor(lo * Math.pow(hi / lo, t) + 0.5);
  });
}

/** Bytes of K and V a step must read: sum over b of 2 L_b Hkv D 2 (bf16). */
function kvBytes(row: DecodeRow): number {
  return rowLengths(row).reduce((sum, L) => sum + 2 * L * row.heads_kv * row.head_dim * 2, 0);
}

/** A cache holding L_b + Snew rows per sequence (dense, or paged in shuffled page order). */
function makeCache(row: DecodeRow, device: Device, pageSize?: number): KVCacheTensors {
  const lengths = rowLengths(row).map((L) => L + row.seqlen_new);
  // Room for Snew more rows: the library checks L_b + Snew <= capacity on every call.
  const capacity = Math.max(...lengths) + row.seqlen_new;
  const [B, H, D] = [row.batch, row.heads_kv, row.head_dim];
  if (pageSize === undefined) {
    return {
      k: randomTensor([B, capacity, H, D], "bfloat16", device, 1),
      v: randomTensor([B, capacity, H, D], "bfloat16", device, 2),
      seqlens: Tensor.fromArray(Int32Array.from(lengths), [B], { device }),
    };
  }
  const perSeq = Math.ceil(capacity / pageSize);
  const pages = Int32Array.from({ length: B * perSeq }, (_, i) => i);
  for (let i = pages.length - 1; i > 0; i--) { // a fixed shuffle (the order must not matter)
    const j = (i * 2654435761) % (i + 1);
    [pages[i], pages[j]] = [pages[j], pages[i]];
  }
  return {
    k: randomTensor([B * perSeq, pageSize, H, D], "bfloat16", device, 1),
    v: randomTensor([B * perSeq, pageSize, H, D], "bfloat16", device, 2),
    seqlens: Tensor.fromArray(Int32Array.from(lengths), [B], { device }),
    blockTable: Tensor.fromArray(pages, [B, perSeq], { device }),
  };
}

function disposeCache(cache: KVCacheTensors): void {
  for (const t of [cache.k, cache.v, cache.seqlens, cache.blockTable]) t?.dispose();
}

/** Median us of one attention step of `row` (the cache already holds the new rows). */
function timeRow(row: DecodeRow, device: Device, iterations: number, pageSize?: number): number {
  const cache = makeCache(row, device, pageSize);
  const [B, Hq, Snew, D] = [row.batch, row.heads_q, row.seqlen_new, row.head_dim];
  using q = randomTensor([B, Hq, Snew, D], "bfloat16", device, 3);
  using out = Tensor.empty([B, Hq, Snew, D], "bfloat16", device);
  using lse = Tensor.empty([B, Hq, Snew], "float32", device);
  const maxSeqlenK = Math.max(...rowLengths(row)) + 2 * Snew;
  const options: KVCacheAttentionOptions = { causal: row.causal, out, lse, maxSeqlenK };
  const bytes = kvcacheWorkspaceSize(q, cache, options);
  using workspace = Tensor.empty([Math.max(1, Math.ceil(bytes / 4))], "int32", device);
  try {
    const step = () => attentionWithKVCache(q, cache, { ...options, workspace });
    const t = timeCuda(step, { device, warmup: 3, iterations, flushL2: device.kind === "cuda" });
    return t.medianMs * 1e3;
  } finally {
    disposeCache(cache);
  }
}

/** Host time of a 32-layer step (b8 32/8 4k d128), direct calls against one graph launch. */
function graphHostTime(device: Device, layers = 32): Record<string, number> {
  const row: DecodeRow = {
    label: "graph",
    batch: 8,
    heads_q: 32,
    heads_kv: 8,
    head_dim: 128,
    seqlen_new: 1,
    cache_lens: 4096,
    causal: false,
    group: "decode",
  };
  using stream = Stream.create(device);
  const caches = Array.from({ length: layers }, () => makeCache(row, device));
  using q = randomTensor([8, 32, 1, 128], "bfloat16", device, 3);
  using out = Tensor.empty([8, 32, 1, 128], "bfloat16", device);
  using lse = Tensor.empty([8, 32, 1], "float32", device);
  const options: KVCacheAttentionOptions = { out, lse, maxSeqlenK: 4098, stream };
  const bytes = kvcacheWorkspaceSize(q, caches[0], options);
  using workspace = Tensor.empty([Math.max(1, Math.ceil(bytes / 4))], "int32", device);
  const direct = () => {
    for (const cache of caches) attentionWithKVCache(q, cache, { ...options, workspace });
  };
  try {
    using graph = CudaGraph.capture(stream, direct);
    const hostMs = (fn: () => void) => {
      const samples: number[] = [];
      for (let i = 0; i < 50; i++) {
        const start = performance.now();
        fn();
        samples.push(performance.now() - start);
        stream.synchronize();
      }
      return samples.sort((a, b) => a - b)[25];
    };
    direct();
    graph.launch(stream);
    stream.synchronize();
    return {
      direct_host_us: hostMs(direct) * 1e3,
      graph_host_us: hostMs(() => graph.launch(stream)) * 1e3,
    };
  } finally {
    for (const cache of caches) disposeCache(cache);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      json: { type: "string" },
      rows: { type: "string" },
      iterations: { type: "string", default: "30" },
      device: { type: "string", default: "cuda" },
    },
  });
  const device = values.device === "cpu" ? Device.cpu() : Device.cuda(0);
  const iterations = Number(values.iterations);
  const file = new URL("./decode_rows.json", import.meta.url);
  const all = (JSON.parse(Deno.readTextFileSync(file)) as { rows: DecodeRow[] }).rows;
  const wanted = values.rows?.split(",");
  const rows = all.filter((r) => !wanted || wanted.includes(r.label) || wanted.includes(r.group));
  const result: Record<string, Record<string, number>> = {};
  for (const row of rows) {
    const entry: Record<string, number> = {
      us: timeRow(row, device, iterations),
      kv_bytes: kvBytes(row),
    };
    if (row.group === "decode" && row.head_dim === 128) {
      for (const pageSize of [16, 64, 256]) {
        entry[`paged${pageSize}_us`] = timeRow(row, device, iterations, pageSize);
      }
    }
    result[row.label] = entry;
    const rate = entry.kv_bytes / entry.us / 1e6;
    console.log(
      `${row.label.padEnd(40)} ${entry.us.toFixed(1).padStart(9)} us ` +
        `${rate.toFixed(2)} TB/s`,
    );
  }
  const graph = device.kind === "cuda" ? graphHostTime(device) : undefined;
  if (graph) console.log("graph:", graph);
  if (values.json) {
    Deno.writeTextFileSync(values.json, JSON.stringify({ rows: result, graph }, null, 1));
  }
}
