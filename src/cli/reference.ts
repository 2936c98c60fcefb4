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

/** Per (b, h, i): the normalized probabilities P (pre-dropout), the dropout scale Z, lse. */
function rowProbabilities(problem: ReferenceProblem, b: number, h: number, i: number) {
  const { q, k, headsQ, headsKv, seqlenQ, seqlenK, headDim: d, scale } = problem;
  const kvHead = Math.floor(h / (headsQ / headsKv));
  const qBase = ((b * headsQ + h) * seqlenQ + i) * d;
  const scores = new Float64Array(seqlenK);
  const strides = problem.bias ? biasStrides(problem.bias.shape) : undefined;
  let max = -Infinity;
  for (let j = 0; j < seqlenK; j++) {
    if (problem.causal && j > i + seqlenK - seqlenQ) {
      scores[j] = -Infinity;
      continue;
    }
    const kBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
    let dot = 0;
    for (let c = 0; c < d; c++) dot += q[qBase + c] * k[kBase + c];
    let score = scale * dot;
    if (problem.bias && strides) {
      score += problem.bias.values[
        b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]
      ];
    }
    scores[j] = score;
    if (score > max) max = score;
  }
  const probabilities = new Float64Array(seqlenK);
  if (max === -Infinity) return { probabilities, dropScale: undefined, lse: -Infinity };
  let sum = 0;
  for (let j = 0; j < seqlenK; j++) sum += probabilities[j] = Math.exp(scores[j] - max);
  for (let j = 0; j < seqlenK; j++) probabilities[j] /= sum;
  let dropScale: Float64Array | undefined;
  const dropout = problem.dropout;
  if (dropout && dropout.p > 0) {
    const keep = dropoutRow(
      dropout.seed,
      dropout.offset >>> 0,
      b * headsQ + h,
      i,
      seqlenK,
      dropoutThreshold(dropout.p),
    );
    dropScale = new Float64Array(seqlenK);
    for (let j = 0; j < seqlenK; j++) dropScale[j] = keep[j] ? 1 / (1 - dropout.p) : 0;
  }
  return { probabilities, dropScale, lse: max + Math.log(sum) };
}

/** out = softmax(scale q kᵀ + bias, masked) [dropout] v and lse, in float64. */
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
  const dp = new Float64Array(seqlenK);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < headsQ; h++) {
      const kvHead = Math.floor(h / (headsQ / headsKv));
      for (let i = 0; i < seqlenQ; i++) {
        const { probabilities: p, dropScale } = rowProbabilities(problem, b, h, i);
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
        for (let j = 0; j < seqlenK; j++) {
          const ds = p[j] * (dp[j] - rowDot);
          if (ds === 0) continue;
          const kBase = ((b * headsKv + kvHead) * seqlenK + j) * d;
          for (let c = 0; c < d; c++) {
            dq[rowBase + c] += scale * ds * k[kBase + c];
            dk[kBase + c] += scale * ds * q[rowBase + c];
          }
          if (dbias && strides) {
            dbias[b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3]] += ds;
          }
        }
      }
    }
  }
  return dbias ? { dq, dk, dv, dbias } : { dq, dk, dv };
}
