/**
 * attention() and attentionBackward(): exact fused attention, forward and backward, for
 * dense `[B, H, S, D]` (or `[B, S, H, D]`) tensors and for nested (variable-length)
 * batches. Everything runs on the inputs' device; there is no fallback to another device.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import {
  FLAG_CAUSAL,
  FLAG_DETERMINISTIC,
  packBackwardArgs,
  packForwardArgs,
  type TensorDescriptor,
} from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import { invalidArgument } from "./errors.ts";
import { checkNestedUsable, NestedBatch, nestedFromParts } from "./nested.ts";
import { biasOperand, type DbiasPlan, finishDbias, planDbias } from "./bias.ts";
import {
  checkDevice,
  denseOperand,
  type Layout,
  nestedOperand,
  Outputs,
  parseDropout,
  parseLayout,
  parseScale,
} from "./operands.ts";
import type { Stream } from "./stream.ts";
import { streamFor } from "./stream.ts";
import { checkUsable, describeTensor, shareTensor, Tensor } from "./tensor.ts";

/** Dropout on the attention probabilities. */
export interface DropoutOptions {
  /** Probability of dropping an element, in [0, 1); kept elements are scaled by 1/(1-p). */
  p: number;
  /** Philox key: the mask is a pure function of (seed, offset, b, h, i, j). Default 0. */
  seed?: bigint | number;
  /** Philox counter word, to draw a fresh mask with the same seed. Default 0. */
  offset?: number;
}

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Causal mask, bottom-right aligned: query i sees key j iff j <= i + Sk - Sq. */
  causal?: boolean;
  /** Multiplier of q·k before the softmax; default 1/sqrt(D). */
  scale?: number;
  /**
   * Additive bias (after scaling), float16/bfloat16/float32, rank <= 4, broadcastable by
   * numpy rules to [B, Hq, Sq, Sk] (nested: [B, Hq, maxSq, maxSk]); -Infinity masks.
   */
  bias?: Tensor;
  /** Dropout probability, or probability with seed and offset. */
  dropout?: number | DropoutOptions;
  /** How dense q/k/v/out are shaped: "bhsd" = [B, H, S, D] (default), "bshd" = [B, S, H, D]. */
  layout?: "bhsd" | "bshd";
  /** Preallocated output, shaped like q (nested: like q.data); returned as `out`. */
  out?: Tensor;
  /** Preallocated log-sum-exp, float32 [B, Hq, Sq] (nested: [totalQ, Hq]). */
  lse?: Tensor;
  /** Stream to queue the work on (CUDA); default the legacy default stream. */
  stream?: Stream;
}

/** The outputs of dense {@link attention}. */
export interface AttentionResult {
  /** The attention output, shaped and laid out like q. */
  out: Tensor;
  /** Natural-log log-sum-exp of each row's scores, float32 [B, Hq, Sq]; -Infinity if none. */
  lse: Tensor;
}

/** The outputs of nested {@link attention}. */
export interface NestedAttentionResult {
  /** The attention output, with q's sequence lengths. */
  out: NestedBatch;
  /** Log-sum-exp per row and head, float32 [totalQ, Hq]. */
  lse: Tensor;
}

/** Options of {@link attentionBackward}: the forward's options plus gradient outputs. */
export interface BackwardOptions extends AttentionOptions {
  /** Also compute dbias (needs `bias`); it has the bias's own shape and dtype. */
  computeDbias?: boolean;
  /** Bitwise repeatable gradients (no floating-point atomics). */
  deterministic?: boolean;
  /** Preallocated dq, shaped like q (nested: like q.data). */
  dq?: Tensor;
  /** Preallocated dk, shaped like k (nested: like k.data). */
  dk?: Tensor;
  /** Preallocated dv, shaped like v (nested: like v.data). */
  dv?: Tensor;
  /** Preallocated dbias, shaped like bias; implies `computeDbias`. */
  dbias?: Tensor;
}

/** The gradients of dense {@link attentionBackward}. */
export interface BackwardResult {
  /** Gradient of q, like q. */
  dq: Tensor;
  /** Gradient of k, like k (summed over each GQA group). */
  dk: Tensor;
  /** Gradient of v, like v. */
  dv: Tensor;
  /** Gradient of the bias, reduced to its own shape; present when asked for. */
  dbias?: Tensor;
}

/** The gradients of nested {@link attentionBackward}. */
export interface NestedBackwardResult {
  /** Gradient of q, with q's sequence lengths. */
  dq: NestedBatch;
  /** Gradient of k, with k's sequence lengths. */
  dk: NestedBatch;
  /** Gradient of v, with v's sequence lengths. */
  dv: NestedBatch;
  /** Gradient of the bias, reduced to its own shape; present when asked for. */
  dbias?: Tensor;
}

/** The scalar fields shared by the forward and backward argument structs. */
function scalarArgs(options: BackwardOptions, headDim: number, device: Device) {
  const dropout = parseDropout(options.dropout);
  return {
    scale: parseScale(options.scale, headDim),
    dropoutP: dropout.p,
    seed: dropout.seed,
    offset: dropout.offset,
    flags: (options.causal ? FLAG_CAUSAL : 0) | (options.deterministic ? FLAG_DETERMINISTIC : 0),
    stream: streamFor(options.stream, device),
  };
}

/** Problem sizes, read from q and k as [B, H, S, D] (nested: B sequences, max lengths). */
interface Dims {
  batch: number;
  headsQ: number;
  seqlenQ: number;
  seqlenK: number;
  headDim: number;
}

function biasFor(options: BackwardOptions, dims: Dims, device: Device, outputs: Outputs) {
  if (options.bias === undefined) return undefined;
  const target = [dims.batch, dims.headsQ, dims.seqlenQ, dims.seqlenK];
  return biasOperand(options.bias, "bias", target, device, outputs);
}

/** The dbias plan (output zeroed when made here), if dbias was asked for. */
function dbiasFor(
  options: BackwardOptions,
  dims: Dims,
  device: Device,
  outputs: Outputs,
): DbiasPlan | undefined {
  if (!options.computeDbias && options.dbias === undefined) return undefined;
  if (options.bias === undefined) {
    throw invalidArgument("dbias", "computing dbias needs options.bias");
  }
  const target = [dims.batch, dims.headsQ, dims.seqlenQ, dims.seqlenK];
  return planDbias(options.bias, options.dbias, target, device, outputs);
}

function denseDims(q: TensorDescriptor, k: TensorDescriptor): Dims {
  const [batch, headsQ, seqlenQ, headDim] = q.shape;
  return { batch, headsQ, seqlenQ, seqlenK: k.shape[2], headDim };
}

function nestedDims(q: NestedBatch, k: NestedBatch): Dims {
  return {
    batch: q.batch,
    headsQ: q.heads,
    seqlenQ: q.maxSeqlen,
    seqlenK: k.maxSeqlen,
    headDim: q.headDim,
  };
}

function sameLengths(a: NestedBatch, b: NestedBatch): boolean {
  return a.batch === b.batch && a.seqlens.every((length, i) => length === b.seqlens[i]);
}

/** Checks that nested k/v (and dout/out against q) agree on their sequences. */
function checkNestedLengths(
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  followers: [string, NestedBatch][] = [],
): void {
  if (k.batch !== q.batch) {
    throw invalidArgument("k", `expected ${q.batch} sequences like q, got ${k.batch}`);
  }
  if (!sameLengths(k, v)) throw invalidArgument("v", "expected the sequence lengths of k");
  for (const [argument, batch] of followers) {
    if (!sameLengths(q, batch)) {
      throw invalidArgument(argument, "expected the sequence lengths of q");
    }
  }
}

/**
 * Exact attention: `out = softmax(scale · q kᵀ + bias, masked) [dropout] v` and the
 * log-sum-exp of each row, with multi/grouped-query heads (Hq a multiple of Hkv).
 *
 * Dense: q `[B, Hq, Sq, D]`, k and v `[B, Hkv, Sk, D]` (or `[B, S, H, D]` with
 * `layout: "bshd"`), float16 or bfloat16, last dimension contiguous; out like q and lse
 * float32 `[B, Hq, Sq]`, on q's device unless passed in.
 *
 * @example
 * ```ts
 * using q = Tensor.fromArray(qValues, [1, 8, 128, 64], { dtype: "bfloat16" });
 * using k = Tensor.fromArray(kValues, [1, 2, 128, 64], { dtype: "bfloat16" });
 * using v = Tensor.fromArray(vValues, [1, 2, 128, 64], { dtype: "bfloat16" });
 * const { out, lse } = attention(q, k, v, { causal: true });
 * using _out = out;
 * using _lse = lse;
 * ```
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options?: AttentionOptions,
): AttentionResult;
/**
 * Nested (variable-length) attention: each sequence attends only within itself; causal
 * and dropout indices are per sequence. q.data `[totalQ, Hq, D]`, k/v data
 * `[totalK, Hkv, D]`; `out` has q's lengths and `lse` is float32 `[totalQ, Hq]`. A passed
 * `options.out` is the data of the returned batch (which holds its own reference to it).
 */
export function attention(
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  options?: AttentionOptions,
): NestedAttentionResult;
export function attention(
  q: Tensor | NestedBatch,
  k: Tensor | NestedBatch,
  v: Tensor | NestedBatch,
  options: AttentionOptions = {},
): AttentionResult | NestedAttentionResult {
  if (q instanceof NestedBatch) {
    if (!(k instanceof NestedBatch)) throw invalidArgument("k", "expected a NestedBatch like q");
    if (!(v instanceof NestedBatch)) throw invalidArgument("v", "expected a NestedBatch like q");
    return nestedForward(q, k, v, options);
  }
  checkUsable(q, "q");
  if (!(k instanceof Tensor)) throw invalidArgument("k", "expected a Tensor like q");
  if (!(v instanceof Tensor)) throw invalidArgument("v", "expected a Tensor like q");
  return denseForward(q, k, v, options);
}

function denseForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): AttentionResult {
  const device = q.device;
  const layout: Layout = parseLayout(options.layout);
  const qOperand = denseOperand(q, "q", layout, device);
  const kOperand = denseOperand(k, "k", layout, device);
  const vOperand = denseOperand(v, "v", layout, device);
  const dims = denseDims(qOperand, kOperand);
  const scalars = scalarArgs(options, dims.headDim, device);
  const outputs = new Outputs();
  try {
    const bias = biasFor(options, dims, device, outputs);
    const out = outputs.take(options.out, "out", q.shape, q.dtype, device);
    const lse = outputs.take(
      options.lse,
      "lse",
      [dims.batch, dims.headsQ, dims.seqlenQ],
      "float32",
      device,
    );
    // q, k, v and the options stay referenced (as parameters) until the call returns, so
    // host buffers behind the addresses cannot be collected meanwhile.
    const args = packForwardArgs({
      q: qOperand,
      k: kOperand,
      v: vOperand,
      out: denseOperand(out, "out", layout, device),
      lse: describeTensor(lse, "lse"),
      bias,
      ...scalars,
      maxSeqlenQ: 0,
      maxSeqlenK: 0,
    });
    check(ffi().fa_forward(args), "attention");
    return { out, lse };
  } catch (error) {
    outputs.release();
    throw error;
  } finally {
    outputs.releaseScratch();
  }
}

function nestedForward(
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  options: AttentionOptions,
): NestedAttentionResult {
  const device = q.data.device;
  const qOperand = nestedOperand(q, "q", device);
  const kOperand = nestedOperand(k, "k", device);
  const vOperand = nestedOperand(v, "v", device);
  checkNestedLengths(q, k, v);
  const dims = nestedDims(q, k);
  const scalars = scalarArgs(options, dims.headDim, device);
  const outputs = new Outputs();
  try {
    const bias = biasFor(options, dims, device, outputs);
    const out = outputs.take(options.out, "out", q.data.shape, q.data.dtype, device);
    const lse = outputs.take(options.lse, "lse", [q.total, q.heads], "float32", device);
    const args = packForwardArgs({
      q: qOperand,
      k: kOperand,
      v: vOperand,
      out: describeTensor(out, "out"),
      lse: describeTensor(lse, "lse"),
      bias,
      cuSeqlensQ: describeTensor(q.cuSeqlens, "cu_seqlens_q"),
      cuSeqlensK: describeTensor(k.cuSeqlens, "cu_seqlens_k"),
      ...scalars,
      maxSeqlenQ: dims.seqlenQ,
      maxSeqlenK: dims.seqlenK,
    });
    check(ffi().fa_forward(args), "attention");
    const outData = out === options.out ? shareTensor(out, "out") : out;
    return { out: nestedFromParts(outData, shareTensor(q.cuSeqlens), q.seqlens), lse };
  } catch (error) {
    outputs.release();
    throw error;
  } finally {
    outputs.releaseScratch();
  }
}

/**
 * Gradients of {@link attention}: given `dout` = dL/dout and the forward's q, k, v, out and
 * lse (with the same options: causal, scale, bias, dropout seed and offset), returns dq, dk,
 * dv and, with `computeDbias`, dbias reduced over the dims the bias broadcasts over.
 * Outputs are allocated on q's device like their inputs unless passed in.
 *
 * @example
 * ```ts
 * const { out, lse } = attention(q, k, v, { causal: true });
 * const { dq, dk, dv } = attentionBackward(dout, q, k, v, out, lse, { causal: true });
 * ```
 */
export function attentionBackward(
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  options?: BackwardOptions,
): BackwardResult;
/**
 * Gradients of nested {@link attention}: dout, q, k, v and out are nested batches, lse the
 * forward's float32 `[totalQ, Hq]`; dq has q's lengths, dk and dv k's.
 */
export function attentionBackward(
  dout: NestedBatch,
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  out: NestedBatch,
  lse: Tensor,
  options?: BackwardOptions,
): NestedBackwardResult;
export function attentionBackward(
  dout: Tensor | NestedBatch,
  q: Tensor | NestedBatch,
  k: Tensor | NestedBatch,
  v: Tensor | NestedBatch,
  out: Tensor | NestedBatch,
  lse: Tensor,
  options: BackwardOptions = {},
): BackwardResult | NestedBackwardResult {
  const named: [string, Tensor | NestedBatch][] = [
    ["dout", dout],
    ["k", k],
    ["v", v],
    ["out", out],
  ];
  if (q instanceof NestedBatch) {
    checkNestedUsable(q, "q");
    for (const [argument, value] of named) {
      if (!(value instanceof NestedBatch)) {
        throw invalidArgument(argument, "expected a NestedBatch like q");
      }
    }
    return nestedBackward(
      dout as NestedBatch,
      q,
      k as NestedBatch,
      v as NestedBatch,
      out as NestedBatch,
      lse,
      options,
    );
  }
  checkUsable(q, "q");
  for (const [argument, value] of named) {
    if (!(value instanceof Tensor)) throw invalidArgument(argument, "expected a Tensor like q");
  }
  return denseBackward(
    dout as Tensor,
    q,
    k as Tensor,
    v as Tensor,
    out as Tensor,
    lse,
    options,
  );
}

function lseOperand(lse: Tensor, device: Device): TensorDescriptor {
  checkUsable(lse, "lse");
  checkDevice(lse, "lse", device);
  return describeTensor(lse, "lse");
}

function denseBackward(
  dout: Tensor,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  options: BackwardOptions,
): BackwardResult {
  const device = q.device;
  const layout = parseLayout(options.layout);
  const qOperand = denseOperand(q, "q", layout, device);
  const kOperand = denseOperand(k, "k", layout, device);
  const vOperand = denseOperand(v, "v", layout, device);
  const outOperand = denseOperand(out, "out", layout, device);
  const doutOperand = denseOperand(dout, "dout", layout, device);
  const lseDescriptor = lseOperand(lse, device);
  const dims = denseDims(qOperand, kOperand);
  const scalars = scalarArgs(options, dims.headDim, device);
  const outputs = new Outputs();
  try {
    const bias = biasFor(options, dims, device, outputs);
    const dq = outputs.take(options.dq, "dq", q.shape, q.dtype, device);
    const dk = outputs.take(options.dk, "dk", k.shape, k.dtype, device);
    const dv = outputs.take(options.dv, "dv", v.shape, v.dtype, device);
    const dbias = dbiasFor(options, dims, device, outputs);
    const args = packBackwardArgs({
      q: qOperand,
      k: kOperand,
      v: vOperand,
      out: outOperand,
      dout: doutOperand,
      lse: lseDescriptor,
      dq: denseOperand(dq, "dq", layout, device),
      dk: denseOperand(dk, "dk", layout, device),
      dv: denseOperand(dv, "dv", layout, device),
      bias,
      dbias: dbias?.operand,
      ...scalars,
      maxSeqlenQ: 0,
      maxSeqlenK: 0,
      workspace: 0n,
      workspaceBytes: 0n,
    });
    check(ffi().fa_backward(args), "attention");
    if (dbias === undefined) return { dq, dk, dv };
    finishDbias(dbias);
    return { dq, dk, dv, dbias: dbias.tensor };
  } catch (error) {
    outputs.release();
    throw error;
  } finally {
    outputs.releaseScratch();
  }
}

function nestedBackward(
  dout: NestedBatch,
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  out: NestedBatch,
  lse: Tensor,
  options: BackwardOptions,
): NestedBackwardResult {
  const device = q.data.device;
  const qOperand = nestedOperand(q, "q", device);
  const kOperand = nestedOperand(k, "k", device);
  const vOperand = nestedOperand(v, "v", device);
  const outOperand = nestedOperand(out, "out", device);
  const doutOperand = nestedOperand(dout, "dout", device);
  checkNestedLengths(q, k, v, [["out", out], ["dout", dout]]);
  const lseDescriptor = lseOperand(lse, device);
  const dims = nestedDims(q, k);
  const scalars = scalarArgs(options, dims.headDim, device);
  const outputs = new Outputs();
  try {
    const bias = biasFor(options, dims, device, outputs);
    const dq = outputs.take(options.dq, "dq", q.data.shape, q.data.dtype, device);
    const dk = outputs.take(options.dk, "dk", k.data.shape, k.data.dtype, device);
    const dv = outputs.take(options.dv, "dv", v.data.shape, v.data.dtype, device);
    const dbias = dbiasFor(options, dims, device, outputs);
    const args = packBackwardArgs({
      q: qOperand,
      k: kOperand,
      v: vOperand,
      out: outOperand,
      dout: doutOperand,
      lse: lseDescriptor,
      dq: describeTensor(dq, "dq"),
      dk: describeTensor(dk, "dk"),
      dv: describeTensor(dv, "dv"),
      bias,
      dbias: dbias?.operand,
      cuSeqlensQ: describeTensor(q.cuSeqlens, "cu_seqlens_q"),
      cuSeqlensK: describeTensor(k.cuSeqlens, "cu_seqlens_k"),
      ...scalars,
      maxSeqlenQ: dims.seqlenQ,
      maxSeqlenK: dims.seqlenK,
      workspace: 0n,
      workspaceBytes: 0n,
    });
    check(ffi().fa_backward(args), "attention");
    if (dbias !== undefined) finishDbias(dbias);
    // Results own their data; a passed-in output gets a reference of its own.
    const own = (tensor: Tensor, given: Tensor | undefined) =>
      tensor === given ? shareTensor(tensor) : tensor;
    const result: NestedBackwardResult = {
      dq: nestedFromParts(own(dq, options.dq), shareTensor(q.cuSeqlens), q.seqlens),
      dk: nestedFromParts(own(dk, options.dk), shareTensor(k.cuSeqlens), k.seqlens),
      dv: nestedFromParts(own(dv, options.dv), shareTensor(v.cuSeqlens), v.seqlens),
    };
    if (dbias !== undefined) result.dbias = dbias.tensor;
    return result;
  } catch (error) {
    outputs.release();
    throw error;
  } finally {
    outputs.releaseScratch();
  }
}
