/**
 * The decode mode's --check. GPU runs: the same calls on the CPU backend's
 * `attentionWithKVCache`, from the same data. CPU runs: dense `attention()` per sequence
 * over its rows gathered from the data (the appended keys and q rotated here, in float32
 * as rotary.h does), bottom-right aligned: Sq = Snew, Sk = L + Snew. Both compare the last
 * call's out and lse, the appended rows in the cache, and the lengths.
 * @module
 */

import { attention } from "../attention.ts";
import { Device } from "../device.ts";
import { roundToDtype } from "../dtype.ts";
import type { KVCache } from "../kvcache.ts";
import { attentionWithKVCache } from "../kvcache_attention.ts";
import { Tensor } from "../tensor.ts";
import { compare, type Comparison } from "./compare.ts";
import type { Config } from "./config.ts";
import type { DecodeConfig } from "./decode_config.ts";
import { type DecodeData, type DecodePlan, makeDecodeSetup } from "./decode_inputs.ts";

/** The run's state after its last call. */
export interface DecodeResults {
  /** The last call's output, in the configured layout. */
  out: Tensor;
  /** The last call's log-sum-exp [B, Hq, Snew]. */
  lse: Tensor;
  /** The run's cache. */
  cache: KVCache;
}

/** Reference values of a run. */
interface DecodeExpected {
  /** The last call's output [B, Hq, Snew, D]. */
  out: ArrayLike<number>;
  /** Its log-sum-exp [B, Hq, Snew]. */
  lse: ArrayLike<number>;
  /** The appended rows of every sequence, [rows, Hkv, D] one after another. */
  k: ArrayLike<number>;
  /** Their values. */
  v: ArrayLike<number>;
  /** The lengths after the run. */
  lengths: number[];
}

/** Rows each call appends to a sequence, and the calls that append (each at the next rows). */
function appends(decode: DecodeConfig, plan: DecodePlan): { rows: number; calls: number } {
  return { rows: decode.append ? decode.newRows : 0, calls: Math.max(1, plan.stepCalls) };
}

/** The lengths after the run: only steps advance them. */
function finalLengths(decode: DecodeConfig, plan: DecodePlan): number[] {
  const { rows } = appends(decode, plan);
  return decode.cacheLengths.map((length) => length + rows * plan.stepCalls);
}

/** Whether --check runs when neither --check nor --no-check was given. */
export function decodeCheckByDefault(config: Config, plan: DecodePlan): boolean {
  // GPU runs replay every step on the CPU backend; CPU runs make one dense call.
  const calls = config.device.kind === "cuda" ? Math.max(1, plan.stepCalls) : 1;
  const rows = plan.finalRows.reduce((sum, count) => sum + count, 0);
  return rows * config.headsQ * config.headDim * calls <= 2 ** 32;
}

/** Values of a q-like tensor in [B, H, S, D] order, whatever the layout. */
function bhsdValues(tensor: Tensor, layout: Config["layout"]): Float32Array {
  if (layout === "bhsd") return tensor.toFloat32();
  using view = tensor.permute([0, 2, 1, 3]);
  return view.toFloat32();
}

/** The appended rows of every sequence and its lengths (host and device) in a cache. */
function cacheState(cache: KVCache, decode: DecodeConfig, plan: DecodePlan) {
  const { rows, calls } = appends(decode, plan);
  const k: Float32Array[] = [], v: Float32Array[] = [];
  decode.cacheLengths.forEach((length, b) => {
    if (rows === 0) return;
    const read = cache.read(b, length, length + rows * calls);
    using kRows = read.k, vRows = read.v;
    k.push(kRows.toFloat32());
    v.push(vRows.toFloat32());
  });
  const host = [...cache.lengths], device = [...cache.seqlens.toFloat32()];
  return { k: concat(k), v: concat(v), host, device };
}

/** GPU runs: the same calls on the CPU backend (steps advance, a repeated call does not). */
function cpuBackendExpected(
  config: Config,
  decode: DecodeConfig,
  plan: DecodePlan,
  data: DecodeData,
): DecodeExpected {
  using stack = new DisposableStack();
  const cpuConfig: Config = { ...config, device: Device.cpu() };
  const { cache, q, options } = makeDecodeSetup(cpuConfig, decode, plan, data, stack);
  if (plan.stepCalls === 0) options.advanceSeqlens = false;
  let result = attentionWithKVCache(q, cache, options);
  for (let call = 1; call < plan.stepCalls; call++) {
    result.out.dispose();
    result.lse.dispose();
    result = attentionWithKVCache(q, cache, options);
  }
  using out = result.out, lse = result.lse;
  const state = cacheState(cache, decode, plan);
  return {
    out: bhsdValues(out, config.layout),
    lse: lse.toFloat32(),
    k: state.k,
    v: state.v,
    lengths: state.host,
  };
}

/**
 * Rotates row `r` of `rows` ([count, D]) at position `position(r)` in float32
 * (rotary.h: pairs (m, m + dim / 2)), then rounds to the dtype.
 */
function rotate(
  rows: Float32Array,
  count: number,
  config: Config,
  decode: DecodeConfig,
  data: DecodeData,
  position: (row: number) => number,
): Float32Array {
  const { cos, sin } = data;
  if (cos === undefined || sin === undefined) return rows;
  const out = Float32Array.from(rows);
  const half = decode.rotaryDim / 2, d = config.headDim, f = Math.fround;
  for (let r = 0; r < count; r++) {
    const t = position(r);
    for (let m = 0; m < half; m++) {
      const x1 = rows[r * d + m], x2 = rows[r * d + m + half];
      const c = cos[t * half + m], s = sin[t * half + m];
      out[r * d + m] = f(f(x1 * c) - f(x2 * s));
      out[r * d + m + half] = f(f(x1 * s) + f(x2 * c));
    }
  }
  return roundToDtype(out, config.dtype);
}

/** Sequence b's appended rows over all calls, [calls * Snew, Hkv, D] (keys rotated). */
function appendedRows(
  config: Config,
  decode: DecodeConfig,
  plan: DecodePlan,
  data: DecodeData,
  b: number,
): { k: Float32Array; v: Float32Array } {
  const { rows, calls } = appends(decode, plan);
  const { headsKv, headDim: d } = config;
  const k = new Float32Array(rows * calls * headsKv * d), v = new Float32Array(k.length);
  if (data.kNew === undefined || data.vNew === undefined) return { k, v };
  for (let h = 0; h < headsKv; h++) {
    const from = (b * headsKv + h) * rows * d;
    const kNew = data.kNew.subarray(from, from + rows * d);
    for (let call = 0; call < calls; call++) {
      const start = decode.cacheLengths[b] + call * rows;
      const rotated = rotate(kNew, rows, config, decode, data, (i) => start + i);
      for (let i = 0; i < rows; i++) {
        const to = ((call * rows + i) * headsKv + h) * d;
        k.set(rotated.subarray(i * d, (i + 1) * d), to);
        v.set(data.vNew.subarray(from + i * d, from + (i + 1) * d), to);
      }
    }
  }
  return { k, v };
}

/** Float32Arrays one after another. */
function concat(parts: readonly Float32Array[]): Float32Array {
  const all = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

/** [rows, Hkv, D] host rows as a [1, Hkv, rows, D] view on the CPU. */
function headsView(rows: Float32Array, count: number, config: Config, stack: DisposableStack) {
  const shape = [1, count, config.headsKv, config.headDim];
  using tensor = Tensor.fromArray(rows, shape, { dtype: config.dtype });
  return stack.use(tensor.permute([0, 2, 1, 3]));
}

/**
 * Sequence b's last call as dense attention(): its q rows rotated at the positions after
 * the rows before the call, over those rows and the call's own appended rows.
 */
function sequenceExpected(
  config: Config,
  decode: DecodeConfig,
  data: DecodeData,
  b: number,
  appended: { k: Float32Array; v: Float32Array },
  before: number,
): { out: Float32Array; lse: Float32Array } {
  using stack = new DisposableStack();
  const { headsQ, headDim: d } = config;
  const snew = decode.newRows, rowsQ = headsQ * snew;
  const length = decode.cacheLengths[b];
  const keys = before + (decode.append ? snew : 0);
  const qRows = data.q.subarray(b * rowsQ * d, (b + 1) * rowsQ * d);
  const rotated = new Float32Array(qRows.length);
  for (let h = 0; h < headsQ; h++) {
    const head = qRows.subarray(h * snew * d, (h + 1) * snew * d);
    rotated.set(rotate(head, snew, config, decode, data, (i) => before + i), h * snew * d);
  }
  if (keys === 0) {
    // No key to see: out 0 and lse -Infinity, or the sink's logit.
    const lse = Float32Array.from(
      { length: rowsQ },
      (_, r) => data.sinks?.[r / snew | 0] ?? -Infinity,
    );
    return { out: new Float32Array(rowsQ * d), lse };
  }
  const row = config.headsKv * d;
  const gather = (cached: Float32Array, added: Float32Array) => {
    const rows = new Float32Array(keys * row);
    rows.set(cached);
    rows.set(added.subarray(0, (keys - length) * row), length * row);
    return headsView(rows, keys, config, stack);
  };
  const float32 = (values: Float32Array | undefined) =>
    values && stack.use(Tensor.fromArray(values, [headsQ]));
  const q = stack.use(Tensor.fromArray(rotated, [1, headsQ, snew, d], { dtype: config.dtype }));
  const k = gather(data.cacheK[b], appended.k), v = gather(data.cacheV[b], appended.v);
  const result = attention(q, k, v, {
    causal: config.causal,
    window: config.window,
    softcap: config.softcap > 0 ? config.softcap : undefined,
    sinks: float32(data.sinks),
    alibiSlopes: float32(data.alibiSlopes),
  });
  using out = result.out, lse = result.lse;
  return { out: out.toFloat32(), lse: lse.toFloat32() };
}

/** CPU runs: dense attention() of the last call per sequence over its gathered rows. */
function gatheredExpected(
  config: Config,
  decode: DecodeConfig,
  plan: DecodePlan,
  data: DecodeData,
): DecodeExpected {
  const { rows, calls } = appends(decode, plan);
  const sequences = decode.cacheLengths.map((length, b) => {
    const appended = appendedRows(config, decode, plan, data, b);
    const before = length + rows * (calls - 1);
    return { appended, ...sequenceExpected(config, decode, data, b, appended, before) };
  });
  return {
    out: concat(sequences.map((sequence) => sequence.out)),
    lse: concat(sequences.map((sequence) => sequence.lse)),
    k: concat(sequences.map((sequence) => sequence.appended.k)),
    v: concat(sequences.map((sequence) => sequence.appended.v)),
    lengths: finalLengths(decode, plan),
  };
}

/** One exact comparison of the lengths after the run (host and device copies). */
export interface LengthsCheck {
  /** The cache's host lengths. */
  host: number[];
  /** The cache's device lengths. */
  device: number[];
  /** What they should be. */
  expected: number[];
  /** All three agree. */
  ok: boolean;
}

/** The comparisons of a run with its reference. */
export interface DecodeCheck {
  /** Against what ("the CPU backend", ...). */
  reference: string;
  /** out, lse and (appending) the appended rows kcache, vcache. */
  comparisons: Comparison[];
  /** The lengths. */
  lengths: LengthsCheck;
}

/** Compares the run's last call and cache with the reference of its device. */
export function checkDecode(
  config: Config,
  decode: DecodeConfig,
  plan: DecodePlan,
  data: DecodeData,
  results: DecodeResults,
): DecodeCheck {
  const onGpu = config.device.kind === "cuda";
  const expected = onGpu
    ? cpuBackendExpected(config, decode, plan, data)
    : gatheredExpected(config, decode, plan, data);
  const state = cacheState(results.cache, decode, plan);
  const comparisons = [
    // lse is float32 throughout; out passes one rounding to the dtype; cache rows are stored
    // rounded (keys rotated in float32 first, a fused multiply-add may round differently).
    compare("out", bhsdValues(results.out, config.layout), expected.out, config.dtype, 4),
    compare("lse", results.lse.toFloat32(), expected.lse, "float32", 8),
  ];
  if (decode.append) {
    comparisons.push(compare("kcache", state.k, expected.k, config.dtype, 2));
    comparisons.push(compare("vcache", state.v, expected.v, config.dtype, 2));
  }
  const same = (a: number[], b: number[]) => a.every((x, i) => x === b[i]);
  const finals = finalLengths(decode, plan);
  return {
    reference: onGpu
      ? "the CPU backend's attentionWithKVCache"
      : "dense attention() over the gathered rows",
    comparisons,
    lengths: {
      host: state.host,
      device: state.device,
      expected: finals,
      ok: same(state.host, finals) && same(state.device, finals) && same(expected.lengths, finals),
    },
  };
}
