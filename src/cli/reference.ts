/**
 * Plain float64 attention, forward and backward, straight from the definitions: the
 * independent check the CLI compares the library against on small problems.
 * Dense [B, H, S, D] only; values in logical row-major order.
 * @module
 */

import { dropoutRow, dropoutThreshold } from "./philox.ts";

/** A reference problem; arrays are row-major [B, H, S, D] (bias as given, with its shape). */
export interface ReferenceProblem {
  /** Queries [B, Hq, Sq, D]. */
  q: Float32Array;
  /** Keys [B, Hkv, Sk, D]. */
  k: Float32Array;
  /** Values [B, Hkv, Sk, D]. */
  v: Float32Array;
  /** B. */
  batch: number;
  /** Hq. */
  headsQ: number;
  /** Hkv, dividing Hq. */
  headsKv: number;
  /** Sq. */
  seqlenQ: number;
  /** Sk. */
  seqlenK: number;
  /** D. */
  headDim: number;
  /** Multiplier of q·k. */
  scale: number;
  /** Bottom-right aligned causal mask. */
  causal: boolean;
  /** Bias values and their shape (rank <= 4, broadcastable to [B, Hq, Sq, Sk]). */
  bias?: { values: Float32Array; shape: readonly number[] };
  /** Dropout as the library draws it (Philox). */
  dropout?: { p: number; seed: bigint; offset: number };
  /** Sliding window [left, right] around the diagonal i + Sk - Sq, -1 = unbounded. */
  window?: readonly [number, number];
  /** Logit softcap (0 or absent = off): score = c tanh(scale q·k / c). */
  softcap?: number;
  /** One sink logit per query head [Hq]. */
  sinks?: Float32Array;
  /** ALiBi slopes [Hq]: the score gets -slope |i + Sk - Sq - j|. */
  alibiSlopes?: Float32Array;
  /**
   * Index of batch entry 0 in the dropout counter (default 0): a nested batch's sequence
   * checked on its own draws the mask of its place in the batch.
   */
  firstSequence?: number;
}

/** Forward results. */
export interface ReferenceForward {
  /** Output [B, Hq, Sq, D]. */
  out: Float64Array;
  /** Log-sum-exp [B, Hq, Sq]. */
  lse: Float64Array;
}

/** Backward results (dbias reduced to the bias's shape when a bias is given). */
export interface ReferenceBackward {
  /** Gradient of q. */
  dq: Float64Array;
  /** Gradient of k. */
  dk: Float64Array;
  /** Gradient of v. */
  dv: Float64Array;
  /** Gradient of the bias, in the bias's own shape. */
  dbias?: Float64Array;
  /** Gradient of the sinks [Hq], when sinks are given. */
  dsinks?: Float64Array;
}

/** Whether row i sees key j: causal and the window, around the diagonal i + Sk - Sq. */
function visible(problem: ReferenceProblem, i: number, j: number): boolean {
  const diagonal = i + problem.seqlenK - problem.seqlenQ;
  if (problem.causal && j > diagonal) return false;
  const [left, right] = problem.window ?? [-1, -1];
  return (left < 0 || j >= diagonal - left) && (right < 0 || j <= diagonal + right);
}

/** Element strides of the bias broadcast to [B, Hq, Sq, Sk] (0 on broadcast dims). */
function biasStrides(shape: readonly number[]): number[] {
  const padded = [...Array(4 - shape.length).fill(1), ...shape];
  const strides = [0, 0, 0, 0];
  let stride = 1;
  for (let dim = 3; dim >= 0; dim--) {
    strides[dim] = padded[dim] === 1 ? 0 : stride;
    stride *= padded[dim];
  }
  return strides;
}

/**
 * Per (b, h, i): the normalized probabilities P (pre-dropout), the dropout scale Z, lse, the
 * softcap's derivative per key and the sink's probability.
 */
function rowProbabilities(problem: ReferenceProblem, b: number, h: number, i: number) {
  const { q, k, headsQ, headsKv, seqlenQ, seqlenK, headDim: d, scale } = problem;
  const kvHead = Math.floor(h / (headsQ / headsKv));
  const qBase = ((b * headsQ + h) * seqlenQ + i) * d;
  const scores = new Float64Array(seqlenK);
  const capGrad = new Float64Array(seqlenK).fill(1);
  const strides = problem.bias ? biasStrides(problem.bias.shape) : undefined;
  const sink = problem.sinks ? problem.sinks[h] : -Infinity;
  const softcap = problem.softcap ?? 0;
  let max = sink;
  for (let j = 0; j < seqlenK; j++) {
    if (!visible(problem, i, j)) {
      scores[j] = -Infinity;
      continue;
    }
    const kBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
    let dot = 0;
    for (let c = 0; c < d; c++) dot += q[qBase + c] * k[kBase + c];
    let score = scale * dot;
    if (softcap > 0) {
      const t = Math.tanh(score / softcap);
      score = softcap * t;
      capGrad[j] = 1 - t * t;
    }
    if (problem.alibiSlopes) {
      score -= problem.alibiSlopes[h] * Math.abs(i + seqlenK - seqlenQ - j);
    }
    if (problem.bias && strides) {
      score += problem.bias.values[
        b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]
      ];
    }
    scores[j] = score;
    if (score > max) max = score;
  }
  const probabilities = new Float64Array(seqlenK);
  if (max === -Infinity) {
    return { probabilities, dropScale: undefined, lse: -Infinity, capGrad, sinkProbability: 0 };
  }
  let sum = sink === -Infinity ? 0 : Math.exp(sink - max);
  for (let j = 0; j < seqlenK; j++) sum += probabilities[j] = Math.exp(scores[j] - max);
  for (let j = 0; j < seqlenK; j++) probabilities[j] /= sum;
  let dropScale: Float64Array | undefined;
  const dropout = problem.dropout;
  if (dropout && dropout.p > 0) {
    const keep = dropoutRow(
      dropout.seed,
      dropout.offset >>> 0,
      (b + (problem.firstSequence ?? 0)) * headsQ + h,
      i,
      seqlenK,
      dropoutThreshold(dropout.p),
    );
    dropScale = new Float64Array(seqlenK);
    for (let j = 0; j < seqlenK; j++) dropScale[j] = keep[j] ? 1 / (1 - dropout.p) : 0;
  }
  const lse = max + Math.log(sum);
  const sinkProbability = sink === -Infinity ? 0 : Math.exp(sink - lse);
  return { probabilities, dropScale, lse, capGrad, sinkProbability };
}

/**
 * out = softmax(softcap(scale q kᵀ) + bias + ALiBi, masked, with the sink) [dropout] v and
 * lse, in float64.
 */
export function referenceForward(problem: ReferenceProblem): ReferenceForward {
  const { v, batch, headsQ, headsKv, seqlenQ, seqlenK, headDim: d } = problem;
  const out = new Float64Array(batch * headsQ * seqlenQ * d);
  const lse = new Float64Array(batch * headsQ * seqlenQ);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < headsQ; h++) {
      const kvHead = Math.floor(h / (headsQ / headsKv));
      for (let i = 0; i < seqlenQ; i++) {
        const row = rowProbabilities(problem, b, h, i);
        const rowIndex = (b * headsQ + h) * seqlenQ + i;
        lse[rowIndex] = row.lse;
        for (let j = 0; j < seqlenK; j++) {
          const weight = row.probabilities[j] * (row.dropScale ? row.dropScale[j] : 1);
          if (weight === 0) continue;
          const vBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
          for (let c = 0; c < d; c++) out[rowIndex * d + c] += weight * v[vBase + c];
        }
      }
    }
  }
  return { out, lse };
}

/** dq, dk, dv (and dbias) of the forward above for upstream gradient `dout`, in float64. */
export function referenceBackward(
  problem: ReferenceProblem,
  dout: Float32Array,
): ReferenceBackward {
  const { q, k, v, batch, headsQ, headsKv, seqlenQ, seqlenK, headDim: d, scale } = problem;
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const bias = problem.bias;
  const dbias = bias ? new Float64Array(bias.values.length) : undefined;
  const strides = bias ? biasStrides(bias.shape) : undefined;
  const dsinks = problem.sinks ? new Float64Array(headsQ) : undefined;
  const dp = new Float64Array(seqlenK);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < headsQ; h++) {
      const kvHead = Math.floor(h / (headsQ / headsKv));
      for (let i = 0; i < seqlenQ; i++) {
        const row = rowProbabilities(problem, b, h, i);
        const { probabilities: p, dropScale, capGrad } = row;
        const rowBase = ((b * headsQ + h) * seqlenQ + i) * d;
        // dP = dO vᵀ (times the dropout scale); D = Σ_j P dP = dO · O.
        let rowDot = 0;
        for (let j = 0; j < seqlenK; j++) {
          const vBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
          let dot = 0;
          for (let c = 0; c < d; c++) dot += dout[rowBase + c] * v[vBase + c];
          dp[j] = dot * (dropScale ? dropScale[j] : 1);
          rowDot += p[j] * dp[j];
          const weight = p[j] * (dropScale ? dropScale[j] : 1);
          if (weight !== 0) {
            for (let c = 0; c < d; c++) dv[vBase + c] += weight * dout[rowBase + c];
          }
        }
        // The sink: d lse / d sink = its probability, and D = dO · O as for every row.
        if (dsinks) dsinks[h] -= row.sinkProbability * rowDot;
        for (let j = 0; j < seqlenK; j++) {
          const ds = p[j] * (dp[j] - rowDot);
          if (ds === 0) continue;
          const kBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
          const dx = ds * capGrad[j]; // through the softcap to scale q·k
          for (let c = 0; c < d; c++) {
            dq[rowBase + c] += scale * dx * k[kBase + c];
            dk[kBase + c] += scale * dx * q[rowBase + c];
          }
          if (dbias && strides) {
            dbias[b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]] += ds;
          }
        }
      }
    }
  }
  const result: ReferenceBackward = { dq, dk, dv };
  if (dbias) result.dbias = dbias;
  if (dsinks) result.dsinks = dsinks;
  return result;
}
