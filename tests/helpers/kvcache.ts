/**
 * Random KV-cache problems shared by the CPU and GPU suites: one description (`KvConfig`)
 * turns into quantized host data (the cache's rows, q, the appended rows, rotary tables),
 * library objects on a device (a KVCache filled with the rows) and the expected result:
 * the float64 oracle over each sequence's rows gathered densely, bottom-right aligned, with
 * q and the appended keys rotated here independently (float32 arithmetic, as rotary.h
 * specifies, then rounded to the dtype).
 * @module
 */

import assert from "node:assert/strict";
import {
  attentionWithKVCache,
  type Device,
  KVCache,
  type KVCacheAttentionOptions,
  Tensor,
} from "../../mod.ts";
import { type OracleForward, oracleForward, type OracleProblem } from "./oracle.ts";
import { type HalfDType, quantize, Rng, toF64 } from "./random.ts";

/** One random KV-cache problem. */
export interface KvConfig {
  dtype: HalfDType;
  B: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Rows already in the cache, one per sequence. */
  lengths: number[];
  /** New query rows per sequence. */
  Snew: number;
  /** Append Snew key/value rows in the call. */
  append: boolean;
  /** Rows each sequence can hold (paged: rounded up to whole pages). */
  capacity: number;
  /** Paged cache with this page size and pages shuffled with `seed`; absent = dense. */
  pageSize?: number;
  /** Rotary embedding over the first `dim` dims. */
  rotary?: { dim: number; interleaved: boolean };
  layout?: "bhsd" | "bshd";
  causal?: boolean;
  window?: [number, number];
  softcap?: number;
  /** Sink logits N(mean, 1) per query head. */
  sinks?: number;
  /** ALiBi slopes in [0, 0.5): [Hq] or [B, Hq]. */
  alibi?: "heads" | "batch";
  scale?: number;
  numSplits?: number;
  seed: number;
}

/** Host data of a case, already representable in its dtype. */
export interface KvData {
  config: KvConfig;
  /** Per sequence: the cache's rows, [L_b, Hkv, D] row-major. */
  cacheK: Float32Array[];
  cacheV: Float32Array[];
  /** [B, Hq, Snew, D] (bhsd order, whatever the layout). */
  q: Float32Array;
  /** [B, Hkv, Snew, D] (bhsd order). */
  kNew: Float32Array;
  vNew: Float32Array;
  /** float32 [capacity, dim / 2]. */
  cos?: Float32Array;
  sin?: Float32Array;
  sinks?: Float32Array;
  alibi?: Float32Array;
  alibiShape?: number[];
}

/** A readable one-line description, used in test names. */
export function describeKv(c: KvConfig): string {
  const parts = [
    c.dtype,
    `B${c.B}`,
    c.Hq === c.Hkv ? `H${c.Hq}` : `Hq${c.Hq}/Hkv${c.Hkv}`,
    `D${c.D}`,
    `L[${c.lengths.join(",")}]`,
    `Snew${c.Snew}`,
    c.append ? "append" : "no-append",
    c.pageSize === undefined ? `dense${c.capacity}` : `paged${c.pageSize}`,
  ];
  if (c.rotary) parts.push(`rotary${c.rotary.dim}${c.rotary.interleaved ? "i" : ""}`);
  if (c.layout === "bshd") parts.push("bshd");
  if (c.causal) parts.push("causal");
  if (c.window) parts.push(`window=${c.window.join(",")}`);
  if (c.softcap !== undefined) parts.push(`softcap=${c.softcap}`);
  if (c.sinks !== undefined) parts.push(`sinks~${c.sinks}`);
  if (c.alibi) parts.push(`alibi:${c.alibi}`);
  if (c.scale !== undefined) parts.push(`scale=${c.scale}`);
  if (c.numSplits !== undefined) parts.push(`splits=${c.numSplits}`);
  parts.push(`seed=${c.seed}`);
  return parts.join(" ");
}

/** Draws the case's data from its seed. */
export function makeKvData(c: KvConfig): KvData {
  const rng = new Rng(c.seed);
  const rowElements = c.Hkv * c.D;
  const draw = (n: number): Float32Array => quantize(rng.normalArray(n), c.dtype);
  const data: KvData = {
    config: c,
    cacheK: c.lengths.map((length) => draw(length * rowElements)),
    cacheV: c.lengths.map((length) => draw(length * rowElements)),
    q: draw(c.B * c.Hq * c.Snew * c.D),
    kNew: draw(c.B * c.Hkv * c.Snew * c.D),
    vNew: draw(c.B * c.Hkv * c.Snew * c.D),
  };
  if (c.rotary) {
    const half = c.rotary.dim / 2;
    const rows = roundedCapacity(c);
    data.cos = new Float32Array(rows * half);
    data.sin = new Float32Array(rows * half);
    for (let t = 0; t < rows; t++) {
      for (let m = 0; m < half; m++) {
        const angle = t / 10000 ** (m / half);
        data.cos[t * half + m] = Math.cos(angle);
        data.sin[t * half + m] = Math.sin(angle);
      }
    }
  }
  if (c.sinks !== undefined) {
    data.sinks = Float32Array.from(rng.normalArray(c.Hq), (x) => x + c.sinks!);
  }
  if (c.alibi) {
    data.alibiShape = c.alibi === "heads" ? [c.Hq] : [c.B, c.Hq];
    const n = data.alibiShape.reduce((a, b) => a * b, 1);
    data.alibi = Float32Array.from({ length: n }, () => 0.5 * rng.uniform());
  }
  return data;
}

/** The capacity the cache really has (paged: whole pages). */
export function roundedCapacity(c: KvConfig): number {
  return c.pageSize === undefined ? c.capacity : Math.ceil(c.capacity / c.pageSize) * c.pageSize;
}

/** Rows of all sequences that a paged cache needs pages for, with some to spare. */
function pagesNeeded(c: KvConfig): number {
  const perSeq = Math.ceil(c.capacity / c.pageSize!);
  return c.B * perSeq + 3;
}

/** `[B, S, H, D]` view of bhsd data when the case's layout is "bshd" (a contiguous copy). */
function inLayout(values: Float32Array, shape: number[], layout: "bhsd" | "bshd"): Float32Array {
  if (layout === "bhsd") return values;
  const [B, H, S, D] = shape;
  const out = new Float32Array(values.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        const from = ((b * H + h) * S + s) * D, to = ((b * S + s) * H + h) * D;
        out.set(values.subarray(from, from + D), to);
      }
    }
  }
  return out;
}

/** Shape of a bhsd shape in the layout. */
export function layoutShape(shape: number[], layout: "bhsd" | "bshd"): number[] {
  const [B, H, S, D] = shape;
  return layout === "bhsd" ? shape : [B, S, H, D];
}

/** Library objects of a case on one device. Dispose with {@link disposeKv}. */
export interface KvTensors {
  cache: KVCache;
  q: Tensor;
  kNew?: Tensor;
  vNew?: Tensor;
  options: KVCacheAttentionOptions;
  owned: Tensor[];
}

/** Uploads a case: a KVCache filled with its rows, q, the new rows and the options. */
export function kvTensors(data: KvData, device: Device): KvTensors {
  const c = data.config;
  const layout = c.layout ?? "bhsd";
  const owned: Tensor[] = [];
  const upload = (values: Float32Array, shape: number[], dtype: HalfDType | "float32") => {
    const tensor = Tensor.fromArray(values, shape, { dtype, device });
    owned.push(tensor);
    return tensor;
  };
  const cache = c.pageSize === undefined
    ? KVCache.dense({ ...shapeOf(c), capacity: c.capacity, device })
    : KVCache.paged({
      ...shapeOf(c),
      pageSize: c.pageSize,
      numPages: pagesNeeded(c),
      maxPagesPerSeq: Math.ceil(c.capacity / c.pageSize),
      shufflePages: c.seed,
      device,
    });
  for (let b = 0; b < c.B; b++) {
    const rows = [c.lengths[b], c.Hkv, c.D];
    using k = Tensor.fromArray(data.cacheK[b], rows, { dtype: c.dtype });
    using v = Tensor.fromArray(data.cacheV[b], rows, { dtype: c.dtype });
    cache.fill(b, k, v);
  }
  const qShape = [c.B, c.Hq, c.Snew, c.D], newShape = [c.B, c.Hkv, c.Snew, c.D];
  const q = upload(inLayout(data.q, qShape, layout), layoutShape(qShape, layout), c.dtype);
  const options: KVCacheAttentionOptions = { layout };
  let kNew: Tensor | undefined, vNew: Tensor | undefined;
  if (c.append) {
    kNew = upload(inLayout(data.kNew, newShape, layout), layoutShape(newShape, layout), c.dtype);
    vNew = upload(inLayout(data.vNew, newShape, layout), layoutShape(newShape, layout), c.dtype);
    options.kNew = kNew;
    options.vNew = vNew;
  }
  if (c.rotary && data.cos && data.sin) {
    const tableShape = [roundedCapacity(c), c.rotary.dim / 2];
    options.rotary = {
      cos: upload(data.cos, tableShape, "float32"),
      sin: upload(data.sin, tableShape, "float32"),
      interleaved: c.rotary.interleaved,
    };
  }
  if (c.causal) options.causal = true;
  if (c.window) options.window = c.window;
  if (c.softcap !== undefined) options.softcap = c.softcap;
  if (c.scale !== undefined) options.scale = c.scale;
  if (c.numSplits !== undefined) options.numSplits = c.numSplits;
  if (data.sinks) options.sinks = upload(data.sinks, [c.Hq], "float32");
  if (data.alibi && data.alibiShape) {
    options.alibiSlopes = upload(data.alibi, data.alibiShape, "float32");
  }
  return { cache, q, kNew, vNew, options, owned };
}

function shapeOf(c: KvConfig) {
  return { batch: c.B, heads: c.Hkv, headDim: c.D, dtype: c.dtype };
}

/** Disposes a case's library objects. */
export function disposeKv(t: KvTensors): void {
  t.cache.dispose();
  for (const tensor of t.owned) tensor.dispose();
}

/**
 * Rotates rows [rows, D] (row-major, values of the dtype) at positions start + r, in
 * float32 arithmetic as rotary.h does (each product and the sum rounded to float32), then
 * rounds to the dtype.
 */
export function rotateRows(
  values: Float32Array,
  rows: number,
  c: KvConfig,
  data: KvData,
  position: (row: number) => number,
): Float32Array {
  if (!c.rotary || !data.cos || !data.sin) return values;
  const out = Float32Array.from(values);
  const half = c.rotary.dim / 2, f = Math.fround;
  for (let r = 0; r < rows; r++) {
    const t = position(r);
    for (let m = 0; m < half; m++) {
      const i1 = r * c.D + (c.rotary.interleaved ? 2 * m : m);
      const i2 = r * c.D + (c.rotary.interleaved ? 2 * m + 1 : m + half);
      const x1 = values[i1], x2 = values[i2];
      const cs = data.cos[t * half + m], sn = data.sin[t * half + m];
      out[i1] = f(f(x1 * cs) - f(x2 * sn));
      out[i2] = f(f(x1 * sn) + f(x2 * cs));
    }
  }
  return quantize(out, c.dtype);
}

/**
 * Sequence b's expected cache rows after the call, [Sk, Hkv, D]: the rows it held, then
 * (appending) k_new rotated at positions L_b + i and rounded, and v_new as given.
 */
export function expectedRows(data: KvData, b: number): { k: Float32Array; v: Float32Array } {
  const c = data.config;
  const length = c.lengths[b];
  const rows = length + (c.append ? c.Snew : 0);
  const k = new Float32Array(rows * c.Hkv * c.D), v = new Float32Array(k.length);
  k.set(data.cacheK[b]);
  v.set(data.cacheV[b]);
  if (!c.append) return { k, v };
  for (let h = 0; h < c.Hkv; h++) {
    const from = ((b * c.Hkv + h) * c.Snew) * c.D;
    const kRows = rotateRows(
      data.kNew.subarray(from, from + c.Snew * c.D),
      c.Snew,
      c,
      data,
      (i) => length + i,
    );
    for (let i = 0; i < c.Snew; i++) {
      const to = ((length + i) * c.Hkv + h) * c.D;
      k.set(kRows.subarray(i * c.D, (i + 1) * c.D), to);
      v.set(data.vNew.subarray(from + i * c.D, from + (i + 1) * c.D), to);
    }
  }
  return { k, v };
}

/**
 * The expected result, [B, Hq, Snew, D] and [B, Hq, Snew] (bhsd order): per sequence, the
 * oracle over its rows gathered into [1, Hkv, Sk, D] with the rotated q.
 */
export function kvOracle(data: KvData): OracleForward {
  const c = data.config;
  const rowsQ = c.Hq * c.Snew * c.D;
  const out = new Float64Array(c.B * rowsQ), outMag = new Float64Array(out.length);
  const lse = new Float64Array(c.B * c.Hq * c.Snew);
  for (let b = 0; b < c.B; b++) {
    const { k, v } = expectedRows(data, b);
    const keys = k.length / (c.Hkv * c.D);
    const q = new Float32Array(rowsQ);
    for (let h = 0; h < c.Hq; h++) {
      const from = ((b * c.Hq + h) * c.Snew) * c.D;
      const rows = data.q.subarray(from, from + c.Snew * c.D);
      q.set(rotateRows(rows, c.Snew, c, data, (i) => c.lengths[b] + i), h * c.Snew * c.D);
    }
    const problem: OracleProblem = {
      batch: 1,
      headsQ: c.Hq,
      headsKv: c.Hkv,
      seqQ: c.Snew,
      seqK: keys,
      headDim: c.D,
      q: toF64(q),
      k: toF64(rowsToHeads(k, keys, c)),
      v: toF64(rowsToHeads(v, keys, c)),
      scale: c.scale,
      causal: c.causal,
      window: c.window,
      softcap: c.softcap,
      sinks: data.sinks && toF64(data.sinks),
      alibiSlopes: data.alibi &&
        toF64(c.alibi === "batch" ? data.alibi.subarray(b * c.Hq, (b + 1) * c.Hq) : data.alibi),
    };
    const result = oracleForward(problem);
    out.set(result.out, b * rowsQ);
    outMag.set(result.outMag, b * rowsQ);
    lse.set(result.lse, b * c.Hq * c.Snew);
  }
  return { out, lse, outMag };
}

/** [S, H, D] rows to [H, S, D]. */
function rowsToHeads(rows: Float32Array, count: number, c: KvConfig): Float32Array {
  const out = new Float32Array(rows.length);
  for (let r = 0; r < count; r++) {
    for (let h = 0; h < c.Hkv; h++) {
      const from = (r * c.Hkv + h) * c.D, to = (h * count + r) * c.D;
      out.set(rows.subarray(from, from + c.D), to);
    }
  }
  return out;
}

/** A library output in bhsd order (transposing a "bshd" one). */
export function bhsdValues(tensor: Tensor, layout: "bhsd" | "bshd"): Float32Array {
  if (layout === "bhsd") return tensor.toFloat32();
  using view = tensor.permute([0, 2, 1, 3]);
  return view.toFloat32();
}

/**
 * A NaN in one q row (sequence 1, head 2, new row 0): that row's out and lse are NaN, every
 * other row finite (PyTorch's math), on `device`, paged with append, sinks and splits.
 */
export function checkNaNRow(device: Device): void {
  const c: KvConfig = {
    dtype: "bfloat16",
    B: 3,
    Hq: 4,
    Hkv: 2,
    D: 32,
    lengths: [0, 37, 300],
    Snew: 2,
    append: true,
    capacity: 512,
    pageSize: 16,
    causal: true,
    sinks: 0,
    numSplits: 3,
    seed: 4711,
  };
  const data = makeKvData(c);
  const nanRow = (1 * c.Hq + 2) * c.Snew; // (b 1, h 2, i 0) in [B, Hq, Snew]
  data.q[nanRow * c.D + 3] = NaN;
  const t = kvTensors(data, device);
  try {
    const { out, lse } = attentionWithKVCache(t.q, t.cache, t.options);
    const o = out.toFloat32(), l = lse.toFloat32();
    out.dispose();
    lse.dispose();
    for (let row = 0; row < c.B * c.Hq * c.Snew; row++) {
      const values = o.subarray(row * c.D, (row + 1) * c.D);
      if (row === nanRow) {
        assert.ok(Number.isNaN(l[row]), `lse of the NaN row is ${l[row]}`);
        assert.ok(values.every(Number.isNaN), "out of the NaN row");
      } else {
        assert.ok(Number.isFinite(l[row]), `lse[${row}] is ${l[row]}`);
        assert.ok(values.every(Number.isFinite), `out row ${row}`);
      }
    }
  } finally {
    disposeKv(t);
  }
}
