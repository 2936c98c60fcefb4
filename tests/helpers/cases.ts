/**
 * Random attention problems shared by the CPU and GPU suites: one description (`CaseConfig`)
 * turns into quantized host data, the float64 oracle problem and library tensors.
 * @module
 */

import { Device, type DType, Tensor } from "../../mod.ts";
import { broadcastTo, dropoutMask, type OracleProblem } from "./oracle.ts";
import { type HalfDType, maxAbs, quantize, Rng, toF64, unitRoundoff } from "./random.ts";

/** The dtypes a bias may have. */
export type BiasDType = "float16" | "bfloat16" | "float32";

/** An additive bias: its (broadcastable) shape, dtype and which entries are -inf. */
export interface BiasSpec {
  dtype: BiasDType;
  /** numpy-broadcastable to [B, Hq, Sq, Sk], e.g. [B, 1, 1, Sk]. */
  shape: number[];
  /** Fraction of entries set to -Infinity (random). */
  negInf?: number;
  /** Set every entry of the bias's first row (index 0 along the query dim) to -Infinity. */
  maskFirstRow?: boolean;
}

/** One random dense attention problem. */
export interface CaseConfig {
  dtype: HalfDType;
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  Sk: number;
  D: number;
  causal?: boolean;
  scale?: number;
  bias?: BiasSpec;
  dropout?: number;
  dropoutSeed?: bigint;
  dropoutOffset?: number;
  /** Standard deviation of q (default 1): larger values give peaked softmax rows. */
  qStd?: number;
  /** Sliding window [left, right], -1 = unbounded. */
  window?: [number, number];
  /** Logit softcap > 0. */
  softcap?: number;
  /** Random sink logits N(mean, 1) per query head; `negInfHead0` sets head 0's to -inf. */
  sinks?: { mean: number; negInfHead0?: boolean };
  /** ALiBi slopes, uniform in [0, 0.5): one per head ("heads", [Hq]) or per (b, h) ([B, Hq]). */
  alibi?: "heads" | "batch";
  /** Seed of the data. */
  seed: number;
}

/** Seeded random configurations drawn from the whole feature space. */
export function randomConfigs(count: number, seed: number, maxMacs: number): CaseConfig[] {
  const rng = new Rng(seed);
  const configs: CaseConfig[] = [];
  while (configs.length < count) {
    const dtype = rng.pick(["float16", "bfloat16"] as const);
    const [Hq, Hkv] = rng.pick([[1, 1], [2, 2], [4, 2], [4, 1], [3, 1], [6, 3]] as const);
    const B = rng.pick([1, 2]);
    const Sq = rng.pick([1, 7, 33, 129]);
    const Sk = rng.pick([1, 7, 33, 129, 200]);
    const D = rng.pick([8, 40, 64, 128, 256]);
    if (B * Hq * Sq * Sk * D > maxMacs) continue; // keep the float64 oracle quick
    const c: CaseConfig = { dtype, B, Hq, Hkv, Sq, Sk, D, seed: rng.int(1, 1_000_000) };
    if (rng.uniform() < 0.5) c.causal = true;
    if (rng.uniform() < 0.25) c.scale = rng.pick([0.05, 0.5, 2]);
    if (rng.uniform() < 0.5) {
      const shape = rng.pick([[B, 1, 1, Sk], [1, Hq, Sq, Sk], [B, Hq, Sq, Sk], [Sq, Sk], [Sk]]);
      c.bias = {
        dtype: rng.pick(["float16", "bfloat16", "float32"] as const),
        shape,
        negInf: rng.pick([0, 0, 0.1]),
      };
    }
    if (rng.uniform() < 0.4) {
      c.dropout = rng.pick([0.1, 0.25, 0.6]);
      c.dropoutSeed = BigInt(rng.nextU32()) * 4294967296n + BigInt(rng.nextU32());
      c.dropoutOffset = rng.int(0, 1000);
    }
    configs.push(c);
  }
  return configs;
}

/**
 * Seeded random configurations with the score features (window, softcap, sinks, ALiBi) on
 * top of {@link randomConfigs}' space: each feature independently, so every combination
 * with causal, bias, dropout, GQA and both dtypes comes up.
 */
export function randomFeatureConfigs(count: number, seed: number, maxMacs: number): CaseConfig[] {
  const rng = new Rng(seed);
  return randomConfigs(count, seed + 1, maxMacs).map((c) => {
    const f: CaseConfig = { ...c };
    if (rng.uniform() < 0.5) {
      const left = rng.pick([-1, 0, 3, 17]);
      const right = c.causal ? rng.pick([-1, 0]) : rng.pick([-1, 0, 2, 9]);
      f.window = [left, right];
    }
    if (rng.uniform() < 0.5) f.softcap = rng.pick([0.5, 2, 30]);
    if (rng.uniform() < 0.5) {
      f.sinks = { mean: rng.pick([-2, 0, 2]), negInfHead0: rng.uniform() < 0.3 };
    }
    if (rng.uniform() < 0.5) f.alibi = rng.pick(["heads", "batch"] as const);
    return f;
  });
}

/** A readable one-line description, used in test names. */
export function describeCase(c: CaseConfig): string {
  const parts = [
    c.dtype,
    `B${c.B}`,
    c.Hq === c.Hkv ? `H${c.Hq}` : `Hq${c.Hq}/Hkv${c.Hkv}`,
    `Sq${c.Sq}`,
    `Sk${c.Sk}`,
    `D${c.D}`,
  ];
  if (c.causal) parts.push("causal");
  if (c.scale !== undefined) parts.push(`scale=${c.scale}`);
  if (c.bias) {
    parts.push(
      `bias:${c.bias.dtype}[${c.bias.shape.join(",")}]` +
        (c.bias.negInf ? `-inf${c.bias.negInf}` : "") + (c.bias.maskFirstRow ? "+maskedrow" : ""),
    );
  }
  if (c.dropout !== undefined) {
    parts.push(`dropout=${c.dropout}`);
    if (c.dropoutSeed !== undefined) parts.push(`dseed=${c.dropoutSeed}`);
    if (c.dropoutOffset !== undefined) parts.push(`doff=${c.dropoutOffset}`);
  }
  if (c.qStd !== undefined) parts.push(`qstd=${c.qStd}`);
  if (c.window) parts.push(`window=${c.window.join(",")}`);
  if (c.softcap !== undefined) parts.push(`softcap=${c.softcap}`);
  if (c.sinks) parts.push(`sinks~${c.sinks.mean}${c.sinks.negInfHead0 ? "(h0:-inf)" : ""}`);
  if (c.alibi) parts.push(`alibi:${c.alibi === "heads" ? "[Hq]" : "[B,Hq]"}`);
  parts.push(`seed=${c.seed}`);
  return parts.join(" ");
}

/** Host data of a case, already representable in its dtypes, plus the oracle problem. */
export interface CaseData {
  config: CaseConfig;
  qShape: number[];
  kvShape: number[];
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** Bias values in their own (broadcast) shape, quantized to the bias dtype. */
  bias?: Float32Array;
  /** Random upstream gradient for the backward, quantized to dtype. */
  dout: Float32Array;
  keep?: Uint8Array;
  /** float32 sink logits [Hq]. */
  sinks?: Float32Array;
  /** float32 ALiBi slopes, [Hq] or [B, Hq] (`alibiShape`). */
  alibiSlopes?: Float32Array;
  alibiShape?: number[];
  problem: OracleProblem;
}

/** Draws the case's data from its seed. */
export function makeCase(c: CaseConfig): CaseData {
  const rng = new Rng(c.seed);
  const qShape = [c.B, c.Hq, c.Sq, c.D];
  const kvShape = [c.B, c.Hkv, c.Sk, c.D];
  const nq = c.B * c.Hq * c.Sq * c.D;
  const nkv = c.B * c.Hkv * c.Sk * c.D;
  const q = quantize(rng.normalArray(nq, c.qStd ?? 1), c.dtype);
  const k = quantize(rng.normalArray(nkv), c.dtype);
  const v = quantize(rng.normalArray(nkv), c.dtype);
  const dout = quantize(rng.normalArray(nq), c.dtype);
  const full = [c.B, c.Hq, c.Sq, c.Sk];
  let bias: Float32Array | undefined;
  let biasFull: Float64Array | undefined;
  if (c.bias) {
    const n = c.bias.shape.reduce((a, b) => a * b, 1);
    const raw = rng.normalArray(n);
    if (c.bias.negInf) {
      for (let i = 0; i < n; i++) if (rng.uniform() < c.bias.negInf) raw[i] = -Infinity;
    }
    if (c.bias.maskFirstRow) {
      const s4 = [...Array(4 - c.bias.shape.length).fill(1), ...c.bias.shape];
      const sk = s4[3];
      const rowsPerQ = s4[2];
      // Every (b, h) block's row 0 along the query axis.
      for (let blk = 0; blk < s4[0] * s4[1]; blk++) {
        const base = blk * rowsPerQ * sk;
        for (let j = 0; j < sk; j++) raw[base + j] = -Infinity;
      }
    }
    bias = quantize(raw, c.bias.dtype);
    biasFull = broadcastTo(bias, c.bias.shape, full);
  }
  let keep: Uint8Array | undefined;
  if (c.dropout !== undefined && c.dropout > 0) {
    keep = dropoutMask(
      c.dropoutSeed ?? 0n,
      c.dropoutOffset ?? 0,
      c.B,
      c.Hq,
      c.Sq,
      c.Sk,
      c.dropout,
    );
  }
  // Drawn after everything else, so cases without these features keep their data.
  let sinks: Float32Array | undefined;
  if (c.sinks) {
    sinks = Float32Array.from(rng.normalArray(c.Hq), (x) => x + c.sinks!.mean);
    if (c.sinks.negInfHead0) sinks[0] = -Infinity;
  }
  let alibiSlopes: Float32Array | undefined, alibiShape: number[] | undefined;
  if (c.alibi) {
    alibiShape = c.alibi === "heads" ? [c.Hq] : [c.B, c.Hq];
    const n = alibiShape.reduce((a, b) => a * b, 1);
    alibiSlopes = Float32Array.from({ length: n }, () => 0.5 * rng.uniform());
  }
  const problem: OracleProblem = {
    batch: c.B,
    headsQ: c.Hq,
    headsKv: c.Hkv,
    seqQ: c.Sq,
    seqK: c.Sk,
    headDim: c.D,
    q: toF64(q),
    k: toF64(k),
    v: toF64(v),
    scale: c.scale,
    causal: c.causal,
    bias: biasFull,
    keep,
    dropoutP: keep ? c.dropout : undefined,
    window: c.window,
    softcap: c.softcap,
    sinks: sinks && toF64(sinks),
    alibiSlopes: alibiSlopes && toF64(alibiSlopes),
  };
  return {
    config: c,
    qShape,
    kvShape,
    q,
    k,
    v,
    bias,
    dout,
    keep,
    sinks,
    alibiSlopes,
    alibiShape,
    problem,
  };
}

/** Library tensors of a case on `device`. Dispose with disposeAll. */
export interface CaseTensors {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  dout: Tensor;
  bias?: Tensor;
  sinks?: Tensor;
  alibiSlopes?: Tensor;
}

/** Uploads a case's data. */
export function caseTensors(data: CaseData, device: Device = Device.cpu()): CaseTensors {
  const dt: DType = data.config.dtype;
  const t: CaseTensors = {
    q: Tensor.fromArray(data.q, data.qShape, { dtype: dt, device }),
    k: Tensor.fromArray(data.k, data.kvShape, { dtype: dt, device }),
    v: Tensor.fromArray(data.v, data.kvShape, { dtype: dt, device }),
    dout: Tensor.fromArray(data.dout, data.qShape, { dtype: dt, device }),
  };
  if (data.bias && data.config.bias) {
    t.bias = Tensor.fromArray(data.bias, data.config.bias.shape, {
      dtype: data.config.bias.dtype,
      device,
    });
  }
  if (data.sinks) {
    t.sinks = Tensor.fromArray(data.sinks, [data.config.Hq], { dtype: "float32", device });
  }
  if (data.alibiSlopes && data.alibiShape) {
    t.alibiSlopes = Tensor.fromArray(data.alibiSlopes, data.alibiShape, {
      dtype: "float32",
      device,
    });
  }
  return t;
}

/** The tensor options of a case's uploaded data: bias, sinks and ALiBi slopes. */
export function caseTensorOptions(
  t: CaseTensors,
): { bias?: Tensor; sinks?: Tensor; alibiSlopes?: Tensor } {
  return { bias: t.bias, sinks: t.sinks, alibiSlopes: t.alibiSlopes };
}

/** The attention options of a case (without out/lse/bias tensors). */
export interface CaseOptions {
  causal?: boolean;
  scale?: number;
  dropout?: { p: number; seed: bigint; offset: number };
  window?: [number, number];
  softcap?: number;
}

/** Options matching the case's oracle problem. */
export function caseOptions(c: CaseConfig): CaseOptions {
  const o: CaseOptions = {};
  if (c.causal) o.causal = true;
  if (c.scale !== undefined) o.scale = c.scale;
  if (c.dropout !== undefined) {
    o.dropout = { p: c.dropout, seed: c.dropoutSeed ?? 0n, offset: c.dropoutOffset ?? 0 };
  }
  if (c.window) o.window = c.window;
  if (c.softcap !== undefined) o.softcap = c.softcap;
  return o;
}

/** Disposes every tensor-like value of an object (skips undefined). */
export function disposeAll(...items: (Disposable | undefined | null)[]): void {
  for (const item of items) item?.[Symbol.dispose]();
}

/** Disposes every Tensor found as a property of the given objects. */
export function disposeTensors(...objects: object[]): void {
  for (const o of objects) {
    for (const value of Object.values(o)) {
      if (value instanceof Tensor && !value.disposed) value.dispose();
    }
  }
}

/** A poison value far outside any attention output, exactly representable in every dtype. */
export const POISON = 4096;

/** A poisoned output tensor (every element must be overwritten). */
export function poisoned(shape: readonly number[], dtype: DType, device?: Device): Tensor {
  return Tensor.full(shape, POISON, dtype, device);
}

/**
 * Per-element forward tolerance against the float64 oracle computed from the same quantized
 * inputs. Error sources, for unit roundoff u of the dtype (2^-11 float16, 2^-8 bfloat16):
 * - the output is rounded to the dtype once: <= u * |out_i|;
 * - kernels may round the probabilities P to the dtype before the P.V product (the GPU
 *   kernels must: tensor cores take 16-bit operands): <= u * sum_j P_ij drop_ij |v_j|, which
 *   is the oracle's `outMag`;
 * - float32 accumulation and exp: about 1e-6 relative, covered by 1e-5 * outMag;
 * - an absolute floor of 1e-5 * max(outMag) for probabilities that underflow to subnormals.
 */
export function forwardTolerance(
  dtype: HalfDType,
  ref: Float64Array,
  mag: Float64Array,
): (i: number) => number {
  const u = unitRoundoff(dtype);
  const floor = 1e-5 * maxAbs(mag);
  return (i: number) => u * Math.abs(ref[i]) + (u + 1e-5) * mag[i] + floor;
}

/**
 * LSE tolerance (float32 output, float32 accumulation): the scores carry a few float32
 * roundings (D-term dot products, scale, bias) and exp/log add a few ulps, so the error is
 * tens of float32 ulps of |lse| + 1 at most; 5e-6 * (|lse| + 1) (about 80 ulps) holds with
 * margin for D <= 256 and the input scales used here, and is far below what any mistake in
 * masking, scale or bias moves lse by (1e-3 or more).
 */
export function lseTolerance(ref: number): number {
  return 5e-6 * (Math.abs(ref) + 1);
}
