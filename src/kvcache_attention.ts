/**
 * attentionWithKVCache(): decoding attention over a KV cache (`fa_kvcache_forward`), with
 * the new rows appended in the same call, rotary embeddings and split-KV; and the query of
 * the workspace that splitting needs.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import { type KvCacheArgs, packKvcacheArgs } from "../ffi/kvcache_structs.ts";
import { keepAliveDuring } from "../ffi/pointers.ts";
import { FLAG_ADVANCE_SEQLENS, FLAG_CAUSAL, FLAG_ROTARY_INTERLEAVED } from "../ffi/structs.ts";
import type { AttentionResult } from "./attention.ts";
import type { Device } from "./device.ts";
import { dtypeBytes } from "./dtype.ts";
import { invalidArgument } from "./errors.ts";
import { captureOn, type CaptureRecord, recordReplayStep } from "./graph.ts";
import { advanceHostLengths, KVCache, reserveCacheRows, type UndoPages } from "./kvcache.ts";
import {
  checkDevice,
  denseOperand,
  type Layout,
  Outputs,
  parseLayout,
  parseScale,
} from "./operands.ts";
import { booleanOption, optionsObject } from "./options.ts";
import { checkDisjoint, type NamedTensor } from "./overlap.ts";
import { scoreArgs } from "./score.ts";
import { type Stream, streamFor } from "./stream.ts";
import { checkUsable, describeTensor, shareTensor, type Tensor } from "./tensor.ts";

/** Rotary embedding of q and the appended keys (`rotary.h`). */
export interface RotaryOptions {
  /** float32 `[rows, rotaryDim / 2]`, rows >= the cache capacity: cos of position t, freq m. */
  cos: Tensor;
  /** float32, like `cos`: the sines. */
  sin: Tensor;
  /** Pairs `(2m, 2m + 1)` (GPT-J) instead of `(m, m + rotaryDim / 2)` (GPT-NeoX, Llama). */
  interleaved?: boolean;
}

/**
 * The cache as raw tensors, for callers who keep their own lengths and pages (nothing is
 * checked or allocated on the host; the library checks the values unless `maxSeqlenK`).
 */
export interface KVCacheTensors {
  /** Keys: dense `[B, capacity, Hkv, D]` or paged `[numPages, pageSize, Hkv, D]`. */
  readonly k: Tensor;
  /** Values, like `k`. */
  readonly v: Tensor;
  /** int32 `[B]`: rows of each sequence in the cache. */
  readonly seqlens: Tensor;
  /** Paged: int32 `[B, maxPagesPerSeq]` page indices. */
  readonly blockTable?: Tensor;
}

/** Options of {@link attentionWithKVCache}. */
export interface KVCacheAttentionOptions {
  /**
   * Keys to append before attending: `[B, Hkv, Snew, D]` (`layout: "bshd"`:
   * `[B, Snew, Hkv, D]`), written at rows `L_b .. L_b + Snew - 1` of each sequence (rotated
   * when `rotary` is given). Needs `vNew`.
   */
  kNew?: Tensor;
  /** Values to append with `kNew`, shaped like it. */
  vNew?: Tensor;
  /** Rotary embedding of q and kNew at positions `L_b + i`. */
  rotary?: RotaryOptions;
  /** Causal mask, bottom-right aligned: new row i sees the cache rows `j <= L_b + i`. */
  causal?: boolean;
  /**
   * Sliding window `[left, right]` around the bottom-right aligned diagonal, -1 = unbounded
   * on that side: new row i sees cache row j iff `L + i - left <= j <= L + i + right`
   * (L = the rows before the new ones).
   */
  window?: [number, number];
  /** Logit softcap c > 0: each score becomes `c * tanh(scale * q·k / c)`. 0 or absent = off. */
  softcap?: number;
  /** Attention sinks: float32 `[Hq]`, one logit per query head in every row's denominator. */
  sinks?: Tensor;
  /** ALiBi slopes, float32 `[Hq]` or `[B, Hq]`: adds `-slope * |i + Sk - Snew - j|`. */
  alibiSlopes?: Tensor;
  /** Multiplier of q·k before the softmax; default 1/sqrt(D). */
  scale?: number;
  /** How q, out, kNew and vNew are shaped: "bhsd" (default) or "bshd". */
  layout?: "bhsd" | "bshd";
  /**
   * Split the keys of each sequence into parts merged exactly (split-KV): 0 (default) lets
   * the library decide from the GPU's size, 1 never splits, n > 1 (up to 256) makes n parts.
   */
  numSplits?: number;
  /**
   * A trusted bound on every `L_b + Snew` (0 = none, the default). On CUDA the library then
   * reads no length back and never synchronizes (needed for graph capture); a KVCache
   * checks its host lengths against it, raw tensors are the caller's promise.
   */
  maxSeqlenK?: number;
  /**
   * Advance the lengths by Snew in the call (the device copy in the kernel, the host copy
   * now). Default: true when appending, false otherwise. `false` with `kNew` writes the
   * rows without counting them (speculative decoding: `setLengths` accepts them later).
   */
  advanceSeqlens?: boolean;
  /** Preallocated output, shaped like q. */
  out?: Tensor;
  /** Preallocated log-sum-exp, float32 `[B, Hq, Snew]`. */
  lse?: Tensor;
  /** Device scratch for split parts (see {@link kvcacheWorkspaceSize}); default the pool. */
  workspace?: Tensor;
  /** Stream to queue the work on (CUDA); default the legacy default stream. */
  stream?: Stream;
}

/** A checked request: the packed fields but out/lse, and what holds their memory. */
interface Request {
  readonly device: Device;
  readonly layout: Layout;
  readonly fields: Omit<KvCacheArgs, "out" | "lse">;
  readonly owners: Tensor[];
  /** The input tensors by argument name, and the cache tensors the call writes. */
  readonly inputs: NamedTensor[];
  readonly written: NamedTensor[];
  readonly lseShape: number[];
  readonly cache: KVCache | undefined;
  readonly rows: number;
  readonly appends: boolean;
  readonly advances: boolean;
  readonly capture: CaptureRecord | undefined;
}

function optionalTensor(tensor: Tensor | undefined, argument: string, device: Device) {
  if (tensor === undefined) return undefined;
  checkUsable(tensor, argument);
  checkDevice(tensor, argument, device);
  return describeTensor(tensor, argument);
}

function integerOption(value: unknown, argument: string): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || Math.abs(value) > 2 ** 31 - 1) {
    throw invalidArgument(argument, `expected an integer, got ${String(value)}`);
  }
  return value;
}

function cacheTensors(cache: KVCache | KVCacheTensors): KVCacheTensors {
  if (cache instanceof KVCache) return cache; // its getters throw once it is disposed
  if (typeof cache !== "object" || cache === null) {
    throw invalidArgument("cache", "expected a KVCache or { k, v, seqlens, blockTable? }");
  }
  return cache;
}

function rotaryArgs(rotary: RotaryOptions | undefined, device: Device) {
  if (rotary === undefined) return { flags: 0 };
  if (typeof rotary !== "object" || rotary === null) {
    throw invalidArgument("rotary", "expected { cos, sin, interleaved? }");
  }
  return {
    rotaryCos: optionalTensor(rotary.cos, "rotary_cos", device),
    rotarySin: optionalTensor(rotary.sin, "rotary_sin", device),
    flags: booleanOption(rotary.interleaved, "rotary_interleaved") ? FLAG_ROTARY_INTERLEAVED : 0,
  };
}

/** Every TypeScript-side check, before anything is allocated or reserved. */
function checkRequest(
  q: Tensor,
  cacheArgument: KVCache | KVCacheTensors,
  options: KVCacheAttentionOptions,
): Request {
  checkUsable(q, "q");
  const device = q.device;
  const layout = parseLayout(options.layout);
  const qd = denseOperand(q, "q", layout, device);
  const cache = cacheTensors(cacheArgument);
  const kCache = optionalTensor(cache.k, "k_cache", device)!;
  const vCache = optionalTensor(cache.v, "v_cache", device)!;
  const cacheSeqlens = optionalTensor(cache.seqlens, "cache_seqlens", device)!;
  const blockTable = optionalTensor(cache.blockTable, "block_table", device);
  if ((options.kNew === undefined) !== (options.vNew === undefined)) {
    const [missing, given] = options.kNew === undefined ? ["k_new", "v_new"] : ["v_new", "k_new"];
    throw invalidArgument(missing, `missing while ${given} is given (appending needs both)`);
  }
  const appends = options.kNew !== undefined;
  const kNew = appends ? denseOperand(options.kNew!, "k_new", layout, device) : undefined;
  const vNew = appends ? denseOperand(options.vNew!, "v_new", layout, device) : undefined;
  const rotary = rotaryArgs(options.rotary, device);
  const advances = booleanOption(options.advanceSeqlens, "advance_seqlens", appends);
  const [batch, headsQ, rows, headDim] = qd.shape;
  const stream = streamFor(options.stream, device);
  const workspace = optionalTensor(options.workspace, "workspace", device);
  const flags = (booleanOption(options.causal, "causal") ? FLAG_CAUSAL : 0) | rotary.flags |
    (advances ? FLAG_ADVANCE_SEQLENS : 0);
  // The library's rule: the caches are written when appending, the lengths when advancing.
  const written: NamedTensor[] = appends ? [["k_cache", cache.k], ["v_cache", cache.v]] : [];
  if (advances) written.push(["cache_seqlens", cache.seqlens]);
  const inputs: NamedTensor[] = [
    ["q", q],
    ["k_cache", cache.k],
    ["v_cache", cache.v],
    ["cache_seqlens", cache.seqlens],
    ["block_table", cache.blockTable],
    ["k_new", options.kNew],
    ["v_new", options.vNew],
    ["rotary_cos", options.rotary?.cos],
    ["rotary_sin", options.rotary?.sin],
    ["sinks", options.sinks],
    ["alibi_slopes", options.alibiSlopes],
    ["workspace", options.workspace],
  ];
  const owners = inputs.map(([, tensor]) => tensor)
    .filter((tensor): tensor is Tensor => tensor !== undefined);
  const score = scoreArgs(options, device);
  return {
    device,
    layout,
    fields: {
      q: qd,
      kCache,
      vCache,
      cacheSeqlens,
      blockTable,
      kNew,
      vNew,
      rotaryCos: rotary.rotaryCos,
      rotarySin: rotary.rotarySin,
      sinks: score.sinks,
      alibiSlopes: score.alibiSlopes,
      scale: parseScale(options.scale, headDim),
      softcap: score.softcap,
      windowLeft: score.windowLeft,
      windowRight: score.windowRight,
      flags,
      numSplits: integerOption(options.numSplits, "num_splits"),
      maxSeqlenK: integerOption(options.maxSeqlenK, "max_seqlen_k"),
      stream,
      workspace: workspace?.data ?? 0n,
      workspaceBytes: BigInt(options.workspace ? workspaceBytes(options.workspace) : 0),
    },
    owners,
    inputs: inputs.filter(([name]) => !written.some(([other]) => other === name)),
    written,
    lseShape: [batch, headsQ, rows],
    cache: cacheArgument instanceof KVCache ? cacheArgument : undefined,
    rows,
    appends,
    advances,
    capture: captureOn(options.stream),
  };
}

function workspaceBytes(tensor: Tensor): number {
  return tensor.numel * dtypeBytes(tensor.dtype);
}

/**
 * A KVCache's side of a direct call: its host lengths leave room for the new rows (and
 * within `maxSeqlenK`), and a paged cache gets the pages the appended rows go to.
 * Returns how to undo the pages if the call fails.
 */
function prepareCache(request: Request): UndoPages {
  const { cache, rows } = request;
  if (cache === undefined) return () => {};
  const total = cache.lengths.map((length) => length + rows);
  const bound = request.fields.maxSeqlenK;
  total.forEach((count, b) => {
    if (count > cache.capacity) {
      throw invalidArgument(
        "cache_seqlens",
        `sequence ${b} holds ${count - rows} rows; with ${rows} new rows that exceeds the ` +
          `cache capacity ${cache.capacity}`,
      );
    }
    if (bound > 0 && count > bound) {
      throw invalidArgument(
        "max_seqlen_k",
        `${bound} is below sequence ${b}'s length with the new rows, ${count}`,
      );
    }
  });
  const needed = request.appends ? total : cache.lengths;
  return reserveCacheRows(cache, needed, "cache_seqlens");
}

/** The checks of a call made while its stream is captured into a graph. */
function checkCapturable(request: Request, options: KVCacheAttentionOptions): void {
  if (request.fields.maxSeqlenK <= 0) {
    throw invalidArgument(
      "max_seqlen_k",
      "capturing a graph needs maxSeqlenK > 0 (a trusted bound: no lengths read back)",
    );
  }
  if (options.out === undefined || options.lse === undefined) {
    throw invalidArgument(
      options.out === undefined ? "out" : "lse",
      "capturing a graph needs preallocated out and lse (no allocation during capture)",
    );
  }
  if (request.cache !== undefined && request.appends && !request.advances) {
    throw invalidArgument(
      "advance_seqlens",
      "a captured append must advance the lengths, or every replay writes the same rows",
    );
  }
}

/** Runs fa_kvcache_forward or fa_kvcache_workspace_size over `request` with out and lse. */
function callLibrary(
  request: Request,
  out: Tensor,
  lse: Tensor | undefined,
  call: (args: Uint8Array<ArrayBuffer>) => number,
): void {
  const args = packKvcacheArgs({
    ...request.fields,
    out: denseOperand(out, "out", request.layout, request.device),
    lse: lse && describeTensor(lse, "lse"),
  });
  const owners = [...request.owners, out, lse];
  check(keepAliveDuring(owners, () => call(args)), "attention");
}

/**
 * Attention of new query rows over a KV cache: sequence b's `Snew` rows of q attend to the
 * cache rows `[0, L_b + Snew)` (with `kNew`/`vNew` appended first in the same call; without
 * them `[0, L_b)`), bottom-right aligned — exactly {@link attention} over those rows
 * gathered densely, with every score feature (causal, window, softcap, sinks, ALiBi) and
 * MQA/GQA (`Hq % Hkv == 0`). q is `[B, Hq, Snew, D]` (`"bshd"`: `[B, Snew, Hq, D]`); out is
 * like q and lse float32 `[B, Hq, Snew]`.
 *
 * With a {@link KVCache}, the lengths are checked against the capacity and the pages of a
 * paged cache allocated on the host before the call; the lengths advance by Snew when
 * appending (see `advanceSeqlens`). On any error nothing is written: the cache's contents,
 * lengths and pages are as before.
 *
 * @example
 * ```ts
 * // Prefill: append the prompt's keys and values, attend causally.
 * attentionWithKVCache(qPrompt, cache, { kNew: kPrompt, vNew: vPrompt, causal: true });
 * // Each decoding step: one new row per sequence.
 * const { out, lse } = attentionWithKVCache(qStep, cache, { kNew: kStep, vNew: vStep });
 * ```
 */
export function attentionWithKVCache(
  q: Tensor,
  cache: KVCache | KVCacheTensors,
  givenOptions?: KVCacheAttentionOptions,
): AttentionResult {
  const options = optionsObject(givenOptions);
  const request = checkRequest(q, cache, options);
  const capture = request.capture;
  if (capture !== undefined) checkCapturable(request, options);
  const outputs = new Outputs();
  let undo: UndoPages = () => {};
  try {
    const out = outputs.take(options.out, "out", q.shape, q.dtype, request.device);
    const lse = outputs.take(options.lse, "lse", request.lseShape, "float32", request.device);
    checkDisjoint([["out", out], ["lse", lse], ...request.written], request.inputs);
    if (capture !== undefined && options.workspace === undefined) {
      const bytes = workspaceSize(request, out, lse);
      if (bytes > 0) {
        throw invalidArgument(
          "workspace",
          `capturing a graph needs a preallocated workspace of ${bytes} bytes ` +
            "(kvcacheWorkspaceSize) for the split parts",
        );
      }
    }
    // Capture: pages are allocated and host lengths advanced at each launch instead.
    if (capture === undefined) undo = prepareCache(request);
    callLibrary(request, out, lse, (args) => ffi().fa_kvcache_forward(args));
    if (capture !== undefined) {
      for (const tensor of [...request.owners, out, lse]) capture.owners.push(shareTensor(tensor));
      if (request.cache !== undefined && request.advances) {
        const bound = request.fields.maxSeqlenK;
        recordReplayStep(capture, request.cache, request.rows, request.appends, bound);
      }
    } else if (request.cache !== undefined && request.advances) {
      advanceHostLengths(request.cache, request.rows);
    }
    return { out, lse };
  } catch (error) {
    undo();
    outputs.release();
    throw error;
  }
}

function workspaceSize(request: Request, out: Tensor, lse: Tensor | undefined): number {
  const bytes = new BigUint64Array(1);
  callLibrary(request, out, lse, (args) => ffi().fa_kvcache_workspace_size(args, bytes));
  return Number(bytes[0]);
}

/**
 * Bytes of workspace {@link attentionWithKVCache} wants for these arguments (0 when it does
 * not split, and on the CPU): pass a device tensor of at least this size as
 * `options.workspace` to keep the call from allocating (graph capture needs that).
 */
export function kvcacheWorkspaceSize(
  q: Tensor,
  cache: KVCache | KVCacheTensors,
  givenOptions?: KVCacheAttentionOptions,
): number {
  const options = optionsObject(givenOptions);
  const request = checkRequest(q, cache, options);
  const outputs = new Outputs();
  let undo: UndoPages = () => {};
  try {
    const out = outputs.take(options.out, "out", q.shape, q.dtype, request.device);
    checkDisjoint([["out", out], ["lse", options.lse], ...request.written], request.inputs);
    // The library checks the rows an append would write, so they need their pages: taken
    // for the query and given back after (outside a capture, where nothing may copy).
    if (request.capture === undefined) undo = prepareCache(request);
    return workspaceSize(request, out, options.lse);
  } finally {
    undo();
    outputs.release();
  }
}
