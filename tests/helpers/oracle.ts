/**
 * An independent float64 attention oracle and an independent Philox4x32-10.
 *
 * Written plainly from the definitions in DESIGN.md and cuda/common/philox.h: no tiling, no
 * online softmax, every score materialized. Nothing here imports the library.
 * @module
 */

/** A dense problem: q [B, Hq, Sq, D], k and v [B, Hkv, Sk, D], row-major. */
export interface OracleProblem {
  batch: number;
  headsQ: number;
  headsKv: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  /** Default 1 / sqrt(D). */
  scale?: number;
  /** Bottom-right aligned: row i sees key j iff j <= i + Sk - Sq. */
  causal?: boolean;
  /** Materialized additive bias [B, Hq, Sq, Sk] (may hold -Infinity). */
  bias?: Float64Array;
  /** Dropout keep mask [B, Hq, Sq, Sk], 1 = kept; needs dropoutP. */
  keep?: Uint8Array;
  /** Dropout probability used for the 1 / (1 - p) scaling of kept entries. */
  dropoutP?: number;
  /**
   * Sliding window [left, right], -1 = unbounded: row i sees key j iff
   * i + Sk - Sq - left <= j <= i + Sk - Sq + right (on top of `causal`).
   */
  window?: readonly [number, number];
  /** Logit softcap c > 0: x = c * tanh(scale * q.k / c), before bias and ALiBi. */
  softcap?: number;
  /** One sink logit per query head [Hq]: joins each row's denominator, carries no value. */
  sinks?: Float64Array;
  /** ALiBi slopes, [Hq] or [B * Hq]: adds -slope * |i + Sk - Sq - j| after bias. */
  alibiSlopes?: Float64Array;
}

/**
 * Forward results: out [B, Hq, Sq, D], natural-log lse [B, Hq, Sq], and outMag: the output's
 * sum over absolute values of its terms, sum_j P_ij drop_ij |v_jd| (the scale that rounding of
 * the probabilities before the P.V product is proportional to).
 */
export interface OracleForward {
  out: Float64Array;
  lse: Float64Array;
  outMag: Float64Array;
}

/** Whether row i sees key j: causal and the window, both relative to the diagonal i + Sk - Sq. */
export function oracleVisible(p: OracleProblem, i: number, j: number): boolean {
  const diagonal = i + p.seqK - p.seqQ;
  if (p.causal && j > diagonal) return false;
  const [left, right] = p.window ?? [-1, -1];
  if (left >= 0 && j < diagonal - left) return false;
  if (right >= 0 && j > diagonal + right) return false;
  return true;
}

/**
 * Gradients: dq like q, dk/dv like k/v, dbias materialized [B, Hq, Sq, Sk]; each with a
 * magnitude array (`...Mag`): the same sum taken over absolute values of its terms, the scale
 * that rounding errors of an implementation's intermediate products are proportional to.
 */
export interface OracleGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dbias: Float64Array;
  dqMag: Float64Array;
  dkMag: Float64Array;
  dvMag: Float64Array;
  dbiasMag: Float64Array;
  /** Gradient of the sinks [Hq] (zeros without sinks) and its magnitude. */
  dsinks: Float64Array;
  dsinksMag: Float64Array;
}

/**
 * Floor of the softcap derivative in the gradient magnitudes: (u + 1e-4) * 1e-3 >= 5e-7 for
 * u >= 2^-11, above the float32 error of 1 - t^2.
 */
const CAP_GRAD_FLOOR = 1e-3;

interface RowScores {
  /** Softmax probabilities before dropout; all 0 for a row that sees no key. */
  probs: Float64Array;
  /** Dropout multiplier per key: keep / (1 - p), or 1 without dropout. */
  dropMul: Float64Array;
  lse: number;
  /** d(capped score)/d(scale * q.k) per key: 1 - tanh^2 with a softcap, else 1. */
  capGrad: Float64Array;
  /** The sink's share of the row's denominator, exp(sink - lse); 0 without a sink. */
  sinkProb: number;
}

function checkProblem(p: OracleProblem): void {
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = p;
  if (Hq % Hkv !== 0) throw new Error("oracle: Hq % Hkv != 0");
  if (p.q.length !== B * Hq * Sq * D) throw new Error("oracle: q length");
  if (p.k.length !== B * Hkv * Sk * D) throw new Error("oracle: k length");
  if (p.v.length !== B * Hkv * Sk * D) throw new Error("oracle: v length");
  if (p.bias && p.bias.length !== B * Hq * Sq * Sk) throw new Error("oracle: bias length");
  if (p.keep) {
    if (p.keep.length !== B * Hq * Sq * Sk) throw new Error("oracle: keep length");
    if (p.dropoutP === undefined) throw new Error("oracle: keep without dropoutP");
  }
  if (p.sinks && p.sinks.length !== Hq) throw new Error("oracle: sinks length");
  if (p.alibiSlopes && p.alibiSlopes.length !== Hq && p.alibiSlopes.length !== B * Hq) {
    throw new Error("oracle: alibiSlopes length");
  }
}

/** Scores, softmax and dropout multipliers of one query row, written out directly. */
function rowScores(p: OracleProblem, b: number, h: number, i: number): RowScores {
  const { headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = p;
  const scale = p.scale ?? 1 / Math.sqrt(D);
  const kvh = Math.floor(h / (Hq / Hkv));
  const qBase = ((b * Hq + h) * Sq + i) * D;
  const rowBase = ((b * Hq + h) * Sq + i) * Sk;
  const s = new Float64Array(Sk);
  const capGrad = new Float64Array(Sk).fill(1);
  const slopes = p.alibiSlopes;
  const slope = slopes ? slopes[slopes.length === Hq ? h : b * Hq + h] : 0;
  const sink = p.sinks ? p.sinks[h] : -Infinity;
  let m = sink;
  for (let j = 0; j < Sk; j++) {
    const kBase = ((b * Hkv + kvh) * Sk + j) * D;
    let dot = 0;
    for (let d = 0; d < D; d++) dot += p.q[qBase + d] * p.k[kBase + d];
    let x = scale * dot;
    if (p.softcap) {
      const t = Math.tanh(x / p.softcap);
      x = p.softcap * t;
      capGrad[j] = 1 - t * t;
    }
    if (p.bias) x += p.bias[rowBase + j];
    if (slopes) x -= slope * Math.abs(i + Sk - Sq - j);
    if (!oracleVisible(p, i, j)) x = -Infinity;
    s[j] = x;
    if (x > m) m = x;
  }
  const probs = new Float64Array(Sk);
  const dropMul = new Float64Array(Sk).fill(1);
  if (p.keep) {
    const inv = 1 / (1 - (p.dropoutP as number));
    for (let j = 0; j < Sk; j++) dropMul[j] = p.keep[rowBase + j] ? inv : 0;
  }
  if (m === -Infinity) return { probs, dropMul, lse: -Infinity, capGrad, sinkProb: 0 };
  let sum = sink === -Infinity ? 0 : Math.exp(sink - m);
  for (let j = 0; j < Sk; j++) {
    const e = s[j] === -Infinity ? 0 : Math.exp(s[j] - m);
    probs[j] = e;
    sum += e;
  }
  for (let j = 0; j < Sk; j++) probs[j] /= sum;
  const lse = m + Math.log(sum);
  return { probs, dropMul, lse, capGrad, sinkProb: sink === -Infinity ? 0 : Math.exp(sink - lse) };
}

/** out = softmax(scale q k^T + bias, masked) [dropout] v; lse = logsumexp of the scores. */
export function oracleForward(p: OracleProblem): OracleForward {
  checkProblem(p);
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = p;
  const out = new Float64Array(B * Hq * Sq * D);
  const outMag = new Float64Array(B * Hq * Sq * D);
  const lse = new Float64Array(B * Hq * Sq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < Sq; i++) {
        const row = rowScores(p, b, h, i);
        lse[(b * Hq + h) * Sq + i] = row.lse;
        const oBase = ((b * Hq + h) * Sq + i) * D;
        for (let j = 0; j < Sk; j++) {
          const w = row.probs[j] * row.dropMul[j];
          if (w === 0) continue;
          const vBase = ((b * Hkv + kvh) * Sk + j) * D;
          for (let d = 0; d < D; d++) {
            out[oBase + d] += w * p.v[vBase + d];
            outMag[oBase + d] += w * Math.abs(p.v[vBase + d]);
          }
        }
      }
    }
  }
  return { out, lse, outMag };
}

/**
 * Exact gradients of L = sum(out * dout).
 *
 * dS_ij = P_ij (dP_ij - delta_i) with dP_ij = drop_ij (dO_i . v_j) and
 * delta_i = sum_j P_ij dP_ij (= dO_i . O_i); dbias = dS, while dq and dk take dS times the
 * softcap's derivative. dsinks_h = -sum_i sinkProb_i delta_i. When `outForDelta` is given, delta_i is taken as
 * dO_i . outForDelta_i instead: that is the out tensor the library's backward receives (rounded
 * to the storage dtype), the same quantity the API contract feeds the backend.
 */
export function oracleBackward(
  p: OracleProblem,
  dout: Float64Array,
  outForDelta?: ArrayLike<number>,
): OracleGrads {
  checkProblem(p);
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = p;
  if (dout.length !== B * Hq * Sq * D) throw new Error("oracle: dout length");
  const scale = p.scale ?? 1 / Math.sqrt(D);
  const dq = new Float64Array(p.q.length);
  const dk = new Float64Array(p.k.length);
  const dv = new Float64Array(p.v.length);
  const dbias = new Float64Array(B * Hq * Sq * Sk);
  const dqMag = new Float64Array(p.q.length);
  const dkMag = new Float64Array(p.k.length);
  const dvMag = new Float64Array(p.v.length);
  const dbiasMag = new Float64Array(B * Hq * Sq * Sk);
  const dsinks = new Float64Array(Hq);
  const dsinksMag = new Float64Array(Hq);
  const dP = new Float64Array(Sk);
  const dPMag = new Float64Array(Sk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < Sq; i++) {
        const row = rowScores(p, b, h, i);
        if (row.lse === -Infinity) continue; // no visible key: every gradient of the row is 0
        const qBase = ((b * Hq + h) * Sq + i) * D;
        const rowBase = ((b * Hq + h) * Sq + i) * Sk;
        let delta = 0;
        for (let j = 0; j < Sk; j++) {
          const vBase = ((b * Hkv + kvh) * Sk + j) * D;
          let dot = 0, mag = 0;
          for (let d = 0; d < D; d++) {
            dot += dout[qBase + d] * p.v[vBase + d];
            mag += Math.abs(dout[qBase + d] * p.v[vBase + d]);
          }
          dP[j] = row.dropMul[j] * dot;
          dPMag[j] = row.dropMul[j] * mag;
          delta += row.probs[j] * dP[j];
        }
        let deltaMag = Math.abs(delta);
        if (outForDelta) {
          delta = 0;
          deltaMag = 0;
          for (let d = 0; d < D; d++) {
            delta += dout[qBase + d] * outForDelta[qBase + d];
            deltaMag += Math.abs(dout[qBase + d] * outForDelta[qBase + d]);
          }
        }
        dsinks[h] -= row.sinkProb * delta;
        dsinksMag[h] += row.sinkProb * deltaMag;
        for (let j = 0; j < Sk; j++) {
          const pij = row.probs[j];
          if (pij === 0) continue;
          const kBase = ((b * Hkv + kvh) * Sk + j) * D;
          const w = pij * row.dropMul[j];
          for (let d = 0; d < D; d++) {
            dv[kBase + d] += w * dout[qBase + d];
            dvMag[kBase + d] += w * Math.abs(dout[qBase + d]);
          }
          const ds = pij * (dP[j] - delta);
          const dsMag = pij * (dPMag[j] + deltaMag);
          dbias[rowBase + j] = ds;
          dbiasMag[rowBase + j] = dsMag;
          // An implementation evaluates the softcap's derivative in float32 from the capped
          // score, 1 - t^2 (common/score.h), with an absolute error of a few 1e-7 that is not
          // proportional to it (cancellation as |t| -> 1); the magnitude carries that as a
          // floor of CAP_GRAD_FLOOR on the derivative (values stay exact).
          const dx = ds * row.capGrad[j];
          const dxMag = dsMag * (p.softcap ? row.capGrad[j] + CAP_GRAD_FLOOR : 1);
          for (let d = 0; d < D; d++) {
            dq[qBase + d] += scale * dx * p.k[kBase + d];
            dk[kBase + d] += scale * dx * p.q[qBase + d];
            dqMag[qBase + d] += scale * dxMag * Math.abs(p.k[kBase + d]);
            dkMag[kBase + d] += scale * dxMag * Math.abs(p.q[qBase + d]);
          }
        }
      }
    }
  }
  return { dq, dk, dv, dbias, dqMag, dkMag, dvMag, dbiasMag, dsinks, dsinksMag };
}

// ---------------------------------------------------------------------------------------------
// Broadcasting and layout helpers (plain index arithmetic).

/** numpy broadcast of `values` (row-major, `shape`, rank <= 4) to the 4-d `target`. */
export function broadcastTo(
  values: ArrayLike<number>,
  shape: readonly number[],
  target: readonly number[],
): Float64Array {
  const s4 = [...Array(4 - shape.length).fill(1), ...shape];
  for (let a = 0; a < 4; a++) {
    if (s4[a] !== 1 && s4[a] !== target[a]) throw new Error(`broadcast ${shape} -> ${target}`);
  }
  const [T0, T1, T2, T3] = target;
  const out = new Float64Array(T0 * T1 * T2 * T3);
  for (let a = 0; a < T0; a++) {
    for (let b = 0; b < T1; b++) {
      for (let c = 0; c < T2; c++) {
        for (let d = 0; d < T3; d++) {
          const src = (((s4[0] === 1 ? 0 : a) * s4[1] + (s4[1] === 1 ? 0 : b)) * s4[2] +
                (s4[2] === 1 ? 0 : c)) * s4[3] + (s4[3] === 1 ? 0 : d);
          out[((a * T1 + b) * T2 + c) * T3 + d] = values[src];
        }
      }
    }
  }
  return out;
}

/** Sum a full 4-d `source` of shape `full` down to the broadcast `shape` (inverse of broadcastTo). */
export function reduceTo(
  source: ArrayLike<number>,
  full: readonly number[],
  shape: readonly number[],
): Float64Array {
  const s4 = [...Array(4 - shape.length).fill(1), ...shape];
  const out = new Float64Array(s4[0] * s4[1] * s4[2] * s4[3]);
  const [T0, T1, T2, T3] = full;
  for (let a = 0; a < T0; a++) {
    for (let b = 0; b < T1; b++) {
      for (let c = 0; c < T2; c++) {
        for (let d = 0; d < T3; d++) {
          const dst = (((s4[0] === 1 ? 0 : a) * s4[1] + (s4[1] === 1 ? 0 : b)) * s4[2] +
                (s4[2] === 1 ? 0 : c)) * s4[3] + (s4[3] === 1 ? 0 : d);
          out[dst] += source[((a * T1 + b) * T2 + c) * T3 + d];
        }
      }
    }
  }
  return out;
}

/** Swap axes 1 and 2 of a row-major 4-d array: [A, B, C, D] -> [A, C, B, D]. */
export function swapAxes12<T extends Float32Array | Float64Array>(
  src: T,
  shape: readonly number[],
): T {
  const [A, B, C, D] = shape;
  const out = new (src.constructor as { new (n: number): T })(src.length);
  for (let a = 0; a < A; a++) {
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        const from = ((a * B + b) * C + c) * D;
        const to = ((a * C + c) * B + b) * D;
        for (let d = 0; d < D; d++) out[to + d] = src[from + d];
      }
    }
  }
  return out;
}

/** Repeat each kv head `groups` times along axis 1: [B, Hkv, S, D] -> [B, Hkv*groups, S, D]. */
export function repeatHeads(
  src: Float32Array,
  shape: readonly number[],
  groups: number,
): Float32Array {
  const [B, H, S, D] = shape;
  const out = new Float32Array(B * H * groups * S * D);
  const block = S * D;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H * groups; h++) {
      const from = (b * H + Math.floor(h / groups)) * block;
      out.set(src.subarray(from, from + block), (b * H * groups + h) * block);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3").

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32, from 16-bit limbs (exact in doubles). */
export function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16;
  const bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl; // < 2^32
  const lh = al * bh;
  const hl = ah * bl;
  const hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff); // < 3 * 2^16
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-10 of a 4-word counter under a 2-word key, with Number arithmetic. */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  let [x, y, z, w] = counter.map((c) => c >>> 0);
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi32(M0, x), lo0 = Math.imul(M0, x) >>> 0;
    const hi1 = mulhi32(M1, z), lo1 = Math.imul(M1, z) >>> 0;
    const nx = (hi1 ^ y ^ k0) >>> 0;
    const nz = (hi0 ^ w ^ k1) >>> 0;
    x = nx;
    y = lo1;
    z = nz;
    w = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [x, y, z, w];
}

/** The same generator with BigInt products: a second, slower implementation to cross-check. */
export function philox4x32BigInt(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  const mask = 0xffffffffn;
  let [x, y, z, w] = counter.map((c) => BigInt(c >>> 0));
  let k0 = BigInt(key[0] >>> 0), k1 = BigInt(key[1] >>> 0);
  for (let round = 0; round < 10; round++) {
    const p0 = BigInt(M0) * x;
    const p1 = BigInt(M1) * z;
    const nx = (p1 >> 32n) ^ y ^ k0;
    const nz = (p0 >> 32n) ^ w ^ k1;
    x = nx & mask;
    y = p1 & mask;
    z = nz & mask;
    w = p0 & mask;
    k0 = (k0 + BigInt(W0)) & mask;
    k1 = (k1 + BigInt(W1)) & mask;
  }
  return [Number(x), Number(y), Number(z), Number(w)];
}

/** The Philox key words (seed lo, seed hi) of a 64-bit seed given as bigint or number. */
export function seedKey(seed: bigint | number): [number, number] {
  const s = BigInt.asUintN(64, BigInt(seed));
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/** round(p * 65536) with p as the float32 the ABI carries: draws at or above it are kept. */
export function dropoutThreshold(p: number): number {
  return Math.floor(Math.fround(p) * 65536 + 0.5);
}

/**
 * Keep mask [Sq, Sk] of one (batch, head) pair: counter (j / 8, i, batchHead, offset), key
 * (seed lo, seed hi); column j uses word (j % 8) / 2, low half for even j, high half for odd.
 */
export function dropoutMaskRows(
  seed: bigint | number,
  offset: number,
  batchHead: number,
  seqQ: number,
  seqK: number,
  p: number,
): Uint8Array {
  const key = seedKey(seed);
  const threshold = dropoutThreshold(p);
  const off = Number(BigInt.asUintN(32, BigInt(offset)));
  const mask = new Uint8Array(seqQ * seqK);
  for (let i = 0; i < seqQ; i++) {
    for (let g = 0; g * 8 < seqK; g++) {
      const words = philox4x32([g, i, batchHead, off], key);
      for (let t = 0; t < 8 && g * 8 + t < seqK; t++) {
        const word = words[t >> 1];
        const draw = (t & 1) ? word >>> 16 : word & 0xffff;
        mask[i * seqK + g * 8 + t] = draw >= threshold ? 1 : 0;
      }
    }
  }
  return mask;
}

/** Dense keep mask [B, Hq, Sq, Sk] with batchHead = b * Hq + h. */
export function dropoutMask(
  seed: bigint | number,
  offset: number,
  batch: number,
  headsQ: number,
  seqQ: number,
  seqK: number,
  p: number,
): Uint8Array {
  const mask = new Uint8Array(batch * headsQ * seqQ * seqK);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < headsQ; h++) {
      mask.set(
        dropoutMaskRows(seed, offset, b * headsQ + h, seqQ, seqK, p),
        (b * headsQ + h) * seqQ * seqK,
      );
    }
  }
  return mask;
}
