/**
 * attention() and attentionBackward(): exact fused attention, forward and backward, for
 * dense `[B, H, S, D]` (or `[B, S, H, D]`) tensors and for nested (variable-length)
 * batches. Everything runs on the inputs' device; there is no fallback to another device.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import { keepAliveDuring } from "../ffi/pointers.ts";
import {
  type BackwardArgs,
  FLAG_CAUSAL,
  FLAG_DETERMINISTIC,
  type ForwardArgs,
  packBackwardArgs,
  packForwardArgs,
  type TensorDescriptor,
} from "../ffi/structs.ts";
import type { Device } from "./device.ts";
import { invalidArgument } from "./errors.ts";
import { booleanOption, optionsObject } from "./options.ts";
import { checkDisjoint, type NamedTensor } from "./overlap.ts";
import { checkNestedUsable, NestedBatch, nestedFromParts } from "./nested.ts";
import { biasOperand, finishDbias, planDbias } from "./bias.ts";
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
import { scoreArgs } from "./score.ts";
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
  /**
   * Causal mask, bottom-right aligned: query i sees key j iff j <= i + Sk - Sq. The same as
   * a window's right edge of 0; combined with `window`, its right must be -1 or 0.
   */
  causal?: boolean;
  /**
   * Sliding window `[left, right]` around the bottom-right aligned diagonal, -1 = unbounded
   * on that side: query i sees key j iff i + Sk - Sq - left <= j <= i + Sk - Sq + right.
   * Rows that see no key give out 0 and lse -Infinity (or the sink).
   */
  window?: [number, number];
  /**
   * Logit softcap c > 0: each score becomes `c * tanh(scale * q·k / c)` before bias and
   * ALiBi (Gemma 2, Grok). 0 or absent = off.
   */
  softcap?: number;
  /**
   * Attention sinks: float32 `[Hq]`, one logit per query head that joins every row's
   * softmax denominator without a value (gpt-oss). lse includes it; a row that sees no key
   * gets out 0 and lse = the sink. The backward returns its gradient as `dsinks`.
   */
  sinks?: Tensor;
  /**
   * ALiBi slopes, float32 `[Hq]` or `[B, Hq]`: adds `-slope * |i + Sk - Sq - j|` to each
   * score (after softcap and bias), computed in place. No gradient.
   */
  alibiSlopes?: Tensor;
  /** Multiplier of q·k before the softmax; default 1/sqrt(D). */
  scale?: number;
  /**
   * Additive bias (after scaling), float16/bfloat16/float32, rank <= 4, right-aligned with
   * [B, Hq, Sq, Sk] (nested: [B, Hq, maxSq, maxSk]); size-1 (or missing leading) dims
   * broadcast over B, Hq and Sq, while the key dim must be full. -Infinity masks.
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
  /** Preallocated dsinks, float32 [Hq] (with `sinks` only); it is overwritten. */
  dsinks?: Tensor;
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
  /** Gradient of the sinks, float32 [Hq]; present when `sinks` were given. */
  dsinks?: Tensor;
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
  /** Gradient of the sinks, float32 [Hq]; present when `sinks` were given. */
  dsinks?: Tensor;
}

/** The scalar fields shared by the forward and backward argument structs. */
function scalarArgs(options: BackwardOptions, headDim: number, device: Device) {
  const dropout = parseDropout(options.dropout);
  return {
    scale: parseScale(options.scale, headDim),
    dropoutP: dropout.p,
    seed: dropout.seed,
    offset: dropout.offset,
    flags: (booleanOption(options.causal, "causal") ? FLAG_CAUSAL : 0) |
      (booleanOption(options.deterministic, "deterministic") ? FLAG_DETERMINISTIC : 0),
    stream: streamFor(options.stream, device),
    ...scoreArgs(options, device),
  };
}

/** What differs between dense and nested batches, once their inputs are checked. */
interface Problem {
  readonly device: Device;
  readonly headDim: number;
  /** Query heads (sinks and dsinks are [Hq]). */
  readonly headsQ: number;
  /** The bias's full shape [B, Hq, Sq, Sk] (nested: [B, Hq, maxSq, maxSk]). */
  readonly biasShape: number[];
  /** lse's shape: [B, Hq, Sq] (nested: [totalQ, Hq]). */
  readonly lseShape: number[];
  /** The struct's cu_seqlens and max lengths (dense: none, 0 and 0). */
  readonly seqlens: Pick<ForwardArgs, "cuSeqlensQ" | "cuSeqlensK" | "maxSeqlenQ" | "maxSeqlenK">;
  /** The ABI descriptor of an output (dense: permuted from the layout). */
  readonly describe: (tensor: Tensor, argument: string) => TensorDescriptor;
  /** The inputs: owners of the host memory behind the packed addresses. */
  readonly owners: readonly unknown[];
  /** The input tensors by argument name, which no output may overlap. */
  readonly inputs: readonly NamedTensor[];
}

function denseProblem(
  q: TensorDescriptor,
  k: TensorDescriptor,
  layout: Layout,
  device: Device,
  inputs: readonly NamedTensor[],
): Problem {
  const [batch, headsQ, seqlenQ, headDim] = q.shape;
  return {
    device,
    headDim,
    headsQ,
    biasShape: [batch, headsQ, seqlenQ, k.shape[2]],
    lseShape: [batch, headsQ, seqlenQ],
    seqlens: { maxSeqlenQ: 0, maxSeqlenK: 0 },
    describe: (tensor, argument) => denseOperand(tensor, argument, layout, device),
    owners: inputs.map(([, tensor]) => tensor),
    inputs,
  };
}

function nestedProblem(
  q: NestedBatch,
  k: NestedBatch,
  device: Device,
  batches: readonly (readonly [string, NestedBatch])[],
  more: readonly NamedTensor[] = [],
): Problem {
  return {
    device,
    headDim: q.headDim,
    headsQ: q.heads,
    biasShape: [q.batch, q.heads, q.maxSeqlen, k.maxSeqlen],
    lseShape: [q.total, q.heads],
    // Built from the batches' checked host lengths, so with the max lengths given the
    // library may trust them (and need not read them back from a GPU).
    seqlens: {
      cuSeqlensQ: describeTensor(q.cuSeqlens, "cu_seqlens_q"),
      cuSeqlensK: describeTensor(k.cuSeqlens, "cu_seqlens_k"),
      maxSeqlenQ: q.maxSeqlen,
      maxSeqlenK: k.maxSeqlen,
    },
    describe: describeTensor,
    owners: [...batches.map(([, batch]) => batch), ...more.map(([, tensor]) => tensor)],
    inputs: [
      ...batches.map(([name, batch]): NamedTensor => [name, batch.data]),
      ["cu_seqlens_q", q.cuSeqlens],
      ["cu_seqlens_k", k.cuSeqlens],
      ...more,
    ],
  };
}

/** The input tensors of the options, by argument name. */
function optionInputs(options: AttentionOptions): NamedTensor[] {
  return [["bias", options.bias], ["sinks", options.sinks], ["alibi_slopes", options.alibiSlopes]];
}

function biasFor(options: AttentionOptions, problem: Problem): TensorDescriptor | undefined {
  if (options.bias === undefined) return undefined;
  return biasOperand(options.bias, "bias", problem.biasShape, problem.device);
}

/** The dbias plan (output zeroed when made here), if dbias was asked for. */
function dbiasFor(options: BackwardOptions, problem: Problem, outputs: Outputs) {
  const asked = booleanOption(options.computeDbias, "compute_dbias");
  if (!asked && options.dbias === undefined) return undefined;
  if (options.bias === undefined) {
    throw invalidArgument("dbias", "computing dbias needs options.bias");
  }
  return planDbias(options.bias, options.dbias, problem.biasShape, problem.device, outputs);
}

/** The dsinks output (float32 [Hq]) when sinks were given; refused without them. */
function dsinksFor(
  options: BackwardOptions,
  problem: Problem,
  outputs: Outputs,
): Tensor | undefined {
  if (options.sinks === undefined) {
    if (options.dsinks !== undefined) {
      throw invalidArgument("dsinks", "given without options.sinks (dsinks is their gradient)");
    }
    return undefined;
  }
  return outputs.take(options.dsinks, "dsinks", [problem.headsQ], "float32", problem.device);
}

/** Runs `body` with a fresh {@link Outputs}; the outputs it made are released if it throws. */
function withOutputs<R>(body: (outputs: Outputs) => R): R {
  const outputs = new Outputs();
  try {
    return body(outputs);
  } catch (error) {
    outputs.release();
    throw error;
  }
}

/** Makes one ABI call with the inputs and `more` (bias, outputs) held until it returns. */
function callLibrary(problem: Problem, more: readonly unknown[], call: () => number): void {
  check(keepAliveDuring([...problem.owners, ...more], call), "attention");
}

/** A passed-in output returned inside a new batch gets a reference of its own. */
function owned(tensor: Tensor, given: Tensor | undefined): Tensor {
  return tensor === given ? shareTensor(tensor) : tensor;
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
  givenOptions?: AttentionOptions,
): AttentionResult | NestedAttentionResult {
  const options = optionsObject(givenOptions);
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

/** Makes out (like `outLike`) and lse, calls fa_forward and hands both to `finish`. */
function runForward<R>(
  problem: Problem,
  inputs: Pick<ForwardArgs, "q" | "k" | "v">,
  options: AttentionOptions,
  outLike: Tensor,
  finish: (out: Tensor, lse: Tensor) => R,
): R {
  const { device } = problem;
  const scalars = scalarArgs(options, problem.headDim, device);
  return withOutputs((outputs) => {
    const bias = biasFor(options, problem);
    const out = outputs.take(options.out, "out", outLike.shape, outLike.dtype, device);
    const lse = outputs.take(options.lse, "lse", problem.lseShape, "float32", device);
    checkDisjoint([["out", out], ["lse", lse]], [...problem.inputs, ...optionInputs(options)]);
    const args = packForwardArgs({
      ...inputs,
      out: problem.describe(out, "out"),
      lse: describeTensor(lse, "lse"),
      bias,
      ...problem.seqlens,
      ...scalars,
    });
    const more = [options.bias, options.sinks, options.alibiSlopes, options.stream, out, lse];
    callLibrary(problem, more, () => ffi().fa_forward(args));
    return finish(out, lse);
  });
}

function denseForward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): AttentionResult {
  const device = q.device;
  const layout = parseLayout(options.layout);
  const inputs = {
    q: denseOperand(q, "q", layout, device),
    k: denseOperand(k, "k", layout, device),
    v: denseOperand(v, "v", layout, device),
  };
  const problem = denseProblem(inputs.q, inputs.k, layout, device, [["q", q], ["k", k], ["v", v]]);
  return runForward(problem, inputs, options, q, (out, lse) => ({ out, lse }));
}

function nestedForward(
  q: NestedBatch,
  k: NestedBatch,
  v: NestedBatch,
  options: AttentionOptions,
): NestedAttentionResult {
  const device = q.data.device;
  const inputs = {
    q: nestedOperand(q, "q", device),
    k: nestedOperand(k, "k", device),
    v: nestedOperand(v, "v", device),
  };
  checkNestedLengths(q, k, v);
  const problem = nestedProblem(q, k, device, [["q", q], ["k", k], ["v", v]]);
  return runForward(problem, inputs, options, q.data, (out, lse) => ({
    out: nestedFromParts(owned(out, options.out), shareTensor(q.cuSeqlens), q.seqlens),
    lse,
  }));
}

/**
 * Gradients of {@link attention}: given `dout` = dL/dout and the forward's q, k, v, out and
 * lse (with the same options: causal, window, scale, softcap, bias, ALiBi slopes, sinks,
 * dropout seed and offset), returns dq, dk, dv, with `computeDbias` dbias reduced over the
 * dims the bias broadcasts over, and with `sinks` their gradient `dsinks` (float32 [Hq]).
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
  givenOptions?: BackwardOptions,
): BackwardResult | NestedBackwardResult {
  const options = optionsObject(givenOptions);
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

/** Makes dq, dk, dv (like `likes`) and dbias, calls fa_backward, hands them to `finish`. */
function runBackward<R>(
  problem: Problem,
  inputs: Pick<BackwardArgs, "q" | "k" | "v" | "out" | "dout" | "lse">,
  options: BackwardOptions,
  likes: readonly [Tensor, Tensor, Tensor],
  finish: (gradients: BackwardResult) => R,
): R {
  const { device } = problem;
  const scalars = scalarArgs(options, problem.headDim, device);
  return withOutputs((outputs) => {
    const bias = biasFor(options, problem);
    const [dq, dk, dv] = (["dq", "dk", "dv"] as const).map((name, i) =>
      outputs.take(options[name], name, likes[i].shape, likes[i].dtype, device)
    );
    const dbias = dbiasFor(options, problem, outputs);
    const dsinks = dsinksFor(options, problem, outputs);
    const written: NamedTensor[] = [["dq", dq], ["dk", dk], ["dv", dv]];
    written.push(["dbias", dbias?.tensor], ["dsinks", dsinks]);
    checkDisjoint(written, [...problem.inputs, ...optionInputs(options)]);
    const args = packBackwardArgs({
      ...inputs,
      dq: problem.describe(dq, "dq"),
      dk: problem.describe(dk, "dk"),
      dv: problem.describe(dv, "dv"),
      bias,
      dbias: dbias?.operand,
      dsinks: dsinks && describeTensor(dsinks, "dsinks"),
      ...problem.seqlens,
      ...scalars,
      workspace: 0n,
      workspaceBytes: 0n,
    });
    const more = [options.bias, options.sinks, options.alibiSlopes, options.stream, dq, dk, dv];
    callLibrary(problem, [...more, dbias?.tensor, dsinks], () => ffi().fa_backward(args));
    const gradients: BackwardResult = { dq, dk, dv };
    if (dbias !== undefined) {
      finishDbias(dbias);
      gradients.dbias = dbias.tensor;
    }
    if (dsinks !== undefined) gradients.dsinks = dsinks;
    return finish(gradients);
  });
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
  const inputs = {
    q: denseOperand(q, "q", layout, device),
    k: denseOperand(k, "k", layout, device),
    v: denseOperand(v, "v", layout, device),
    out: denseOperand(out, "out", layout, device),
    dout: denseOperand(dout, "dout", layout, device),
    lse: lseOperand(lse, device),
  };
  const named: NamedTensor[] = [["dout", dout], ["q", q], ["k", k], ["v", v], ["out", out]];
  const problem = denseProblem(inputs.q, inputs.k, layout, device, [...named, ["lse", lse]]);
  return runBackward(problem, inputs, options, [q, k, v], (gradients) => gradients);
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
  const operands = {
    q: nestedOperand(q, "q", device),
    k: nestedOperand(k, "k", device),
    v: nestedOperand(v, "v", device),
    out: nestedOperand(out, "out", device),
    dout: nestedOperand(dout, "dout", device),
  };
  checkNestedLengths(q, k, v, [["out", out], ["dout", dout]]);
  const inputs = { ...operands, lse: lseOperand(lse, device) };
  const batches = [["dout", dout], ["q", q], ["k", k], ["v", v], ["out", out]] as const;
  const problem = nestedProblem(q, k, device, batches, [["lse", lse]]);
  return runBackward(problem, inputs, options, [q.data, k.data, v.data], (gradients) => {
    const result: NestedBackwardResult = {
      dq: nestedFromParts(owned(gradients.dq, options.dq), shareTensor(q.cuSeqlens), q.seqlens),
      dk: nestedFromParts(owned(gradients.dk, options.dk), shareTensor(k.cuSeqlens), k.seqlens),
      dv: nestedFromParts(owned(gradients.dv, options.dv), shareTensor(v.cuSeqlens), v.seqlens),
    };
    if (gradients.dbias !== undefined) result.dbias = gradients.dbias;
    if (gradients.dsinks !== undefined) result.dsinks = gradients.dsinks;
    return result;
  });
}
