/**
 * The decode mode's inputs: how many calls the run makes and the cache room they need,
 * seeded random host data (the cache's rows, q, the appended rows, rotary tables), and a
 * KV cache filled with that data plus the call's options on a device.
 * @module
 */

import { roundToDtype } from "../dtype.ts";
import { KVCache } from "../kvcache.ts";
import type { KVCacheAttentionOptions } from "../kvcache_attention.ts";
import { Tensor } from "../tensor.ts";
import type { Config } from "./config.ts";
import type { DecodeConfig } from "./decode_config.ts";
import { alibiSlopes } from "./inputs.ts";
import { inputSeed, SeededRandom } from "./random.ts";

/** The calls of a run and the cache room they need. */
export interface DecodePlan {
  /** Calls made as decode steps: warm-up plus timed ones (0: one call repeated). */
  stepCalls: number;
  /** Rows each sequence holds after its last call (at least L_b + Snew: the library's rule). */
  finalRows: number[];
  /** The trusted bound on every L_b + Snew passed as maxSeqlenK: the longest final rows. */
  maxSeqlenK: number;
  /** Rows of the rotary tables: the cache's capacity. */
  capacity: number;
}

/**
 * The calls and room of a run: with `--steps`, warm-up and timed steps alike append and
 * advance; otherwise every call writes the same rows and the lengths stay.
 */
export function decodePlan(config: Config, decode: DecodeConfig): DecodePlan {
  const stepCalls = decode.steps > 0 ? config.warmup + decode.steps : 0;
  const appended = decode.append ? decode.newRows * Math.max(1, stepCalls) : 0;
  const finalRows = decode.cacheLengths.map((length) =>
    length + Math.max(appended, decode.newRows)
  );
  const maxSeqlenK = Math.max(...finalRows);
  const pageSize = decode.pageSize;
  const capacity = pageSize === undefined
    ? maxSeqlenK
    : Math.ceil(maxSeqlenK / pageSize) * pageSize;
  return { stepCalls, finalRows, maxSeqlenK, capacity };
}

/** Host data of a run, rounded to the dtype; q-like arrays in [B, H, Snew, D] order. */
export interface DecodeData {
  /** Per sequence: the rows in the cache before the run, [L_b, Hkv, D]. */
  cacheK: Float32Array[];
  /** Values, like `cacheK`. */
  cacheV: Float32Array[];
  /** Queries [B, Hq, Snew, D]. */
  q: Float32Array;
  /** Appended keys [B, Hkv, Snew, D] (with --append). */
  kNew?: Float32Array;
  /** Appended values, like `kNew`. */
  vNew?: Float32Array;
  /** float32 [capacity, rotaryDim / 2] cosines of position t, frequency m (with --rotary). */
  cos?: Float32Array;
  /** The sines, like `cos`. */
  sin?: Float32Array;
  /** float32 [Hq] sink logits (with --sinks). */
  sinks?: Float32Array;
  /** float32 [Hq] ALiBi slopes (with --alibi). */
  alibiSlopes?: Float32Array;
}

/** Standard rotary tables (base 10000) over `dim` dims for positions `[0, rows)`. */
function rotaryTables(rows: number, dim: number): [Float32Array, Float32Array] {
  const half = dim / 2;
  const cos = new Float32Array(rows * half), sin = new Float32Array(rows * half);
  for (let t = 0; t < rows; t++) {
    for (let m = 0; m < half; m++) {
      const angle = t / 10000 ** (m / half);
      cos[t * half + m] = Math.cos(angle);
      sin[t * half + m] = Math.sin(angle);
    }
  }
  return [cos, sin];
}

/** Seeded N(0, 1) data of a run, rounded to the dtype. */
export function makeDecodeData(config: Config, decode: DecodeConfig, plan: DecodePlan): DecodeData {
  const random = new SeededRandom(inputSeed(config.seed));
  const draw = (count: number) => roundToDtype(random.normals(count), config.dtype);
  const row = config.headsKv * config.headDim;
  const rows = config.batch * decode.newRows * config.headDim;
  const data: DecodeData = {
    cacheK: decode.cacheLengths.map((length) => draw(length * row)),
    cacheV: decode.cacheLengths.map((length) => draw(length * row)),
    q: draw(rows * config.headsQ),
  };
  if (decode.append) {
    data.kNew = draw(rows * config.headsKv);
    data.vNew = draw(rows * config.headsKv);
  }
  if (decode.rotaryDim > 0) [data.cos, data.sin] = rotaryTables(plan.capacity, decode.rotaryDim);
  if (config.sinks !== "none") {
    data.sinks = config.sinks === "random"
      ? random.normals(config.headsQ)
      : new Float32Array(config.headsQ).fill(config.sinks);
  }
  if (config.alibi) data.alibiSlopes = alibiSlopes(config.headsQ);
  return data;
}

/** A run's cache and the tensors of its call on one device, all owned by a stack. */
export interface DecodeSetup {
  /** The cache, filled with the data's rows. */
  cache: KVCache;
  /** Queries, in the configured layout. */
  q: Tensor;
  /** The call's options: appended rows, rotary, score features, splits, maxSeqlenK. */
  options: KVCacheAttentionOptions;
}

/** `[B, H, S, D]` host data as a tensor of the configured layout on `device`. */
export function layoutTensor(
  values: Float32Array,
  shape: readonly number[],
  config: Config,
  stack: DisposableStack,
): Tensor {
  const { dtype, device } = config;
  if (config.layout === "bhsd") {
    return stack.use(Tensor.fromArray(values, shape, { dtype, device }));
  }
  using host = Tensor.fromArray(values, shape, { dtype });
  using view = host.permute([0, 2, 1, 3]);
  using bshd = view.contiguous();
  return stack.use(bshd.to(device));
}

/** The cache (dense, or paged with pages in shuffled order) filled with the data's rows. */
function makeCache(config: Config, decode: DecodeConfig, plan: DecodePlan, data: DecodeData) {
  const shape = {
    batch: config.batch,
    heads: config.headsKv,
    headDim: config.headDim,
    dtype: config.dtype,
    device: config.device,
  };
  const pageSize = decode.pageSize;
  const cache = pageSize === undefined
    ? KVCache.dense({ ...shape, capacity: plan.capacity })
    : KVCache.paged({
      ...shape,
      pageSize,
      numPages: plan.finalRows.reduce((pages, rows) => pages + Math.ceil(rows / pageSize), 0),
      maxPagesPerSeq: plan.capacity / pageSize,
      shufflePages: inputSeed(config.seed),
    });
  try {
    decode.cacheLengths.forEach((length, b) => {
      if (length === 0) return;
      const rows = [length, config.headsKv, config.headDim];
      using k = Tensor.fromArray(data.cacheK[b], rows, { dtype: config.dtype });
      using v = Tensor.fromArray(data.cacheV[b], rows, { dtype: config.dtype });
      cache.fill(b, k, v);
    });
    // Every page the run writes, now: no table upload (and its synchronization) while timing.
    plan.finalRows.forEach((rows, b) => cache.reserve(b, rows));
  } catch (error) {
    cache.dispose();
    throw error;
  }
  return cache;
}

/** The run's cache and call on `config.device` (owned by `stack`). */
export function makeDecodeSetup(
  config: Config,
  decode: DecodeConfig,
  plan: DecodePlan,
  data: DecodeData,
  stack: DisposableStack,
): DecodeSetup {
  const { batch, headsQ, headsKv, headDim } = config;
  const float32 = (values: Float32Array, shape: number[]) =>
    stack.use(Tensor.fromArray(values, shape, { dtype: "float32", device: config.device }));
  const cache = stack.use(makeCache(config, decode, plan, data));
  const q = layoutTensor(data.q, [batch, headsQ, decode.newRows, headDim], config, stack);
  const options: KVCacheAttentionOptions = {
    layout: config.layout,
    causal: config.causal,
    numSplits: decode.numSplits,
    maxSeqlenK: plan.maxSeqlenK,
  };
  if (data.kNew && data.vNew) {
    const shape = [batch, headsKv, decode.newRows, headDim];
    options.kNew = layoutTensor(data.kNew, shape, config, stack);
    options.vNew = layoutTensor(data.vNew, shape, config, stack);
  }
  if (data.cos && data.sin) {
    const shape = [plan.capacity, decode.rotaryDim / 2];
    options.rotary = { cos: float32(data.cos, shape), sin: float32(data.sin, shape) };
  }
  if (config.window) options.window = config.window;
  if (config.softcap > 0) options.softcap = config.softcap;
  if (data.sinks) options.sinks = float32(data.sinks, [headsQ]);
  if (data.alibiSlopes) options.alibiSlopes = float32(data.alibiSlopes, [headsQ]);
  return { cache, q, options };
}
