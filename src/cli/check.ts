/**
 * The CLI's --check: reference values (float64 for CPU runs, the CPU backend for GPU runs)
 * and their comparison with the run's outputs.
 * @module
 */

import { attention, attentionBackward, type BackwardOptions } from "../attention.ts";
import { Device } from "../device.ts";
import type { Tensor } from "../tensor.ts";
import { compare, type Comparison } from "./compare.ts";
import type { Config } from "./config.ts";
import type { Inputs } from "./inputs.ts";
import { referenceBackward, referenceForward, type ReferenceProblem } from "./reference.ts";

/** Values of a q-like tensor in [B, H, S, D] order, whatever the layout. */
function bhsdValues(tensor: Tensor, layout: Config["layout"]): Float32Array {
  if (layout === "bhsd") return tensor.toFloat32();
  using view = tensor.permute([0, 2, 1, 3]);
  return view.toFloat32();
}

/** Whether the comparison runs when neither --check nor --no-check was given. */
export function checkByDefault(config: Config): boolean {
  const scores = config.batch * config.headsQ * config.seqlenQ * config.seqlenK;
  // The GPU is checked against the CPU backend; the CPU against float64 TypeScript loops,
  // which are slower, hence the smaller limit.
  return config.device.kind === "cuda" ? scores <= 2 ** 26 : scores * config.headDim <= 2 ** 27;
}

/** The outputs of the timed run. */
export interface Results {
  /** Attention output, in the run's layout. */
  out: Tensor;
  /** Log-sum-exp [B, Hq, Sq]. */
  lse: Tensor;
  /** Gradients, when the backward pass ran. */
  grads?: { dq: Tensor; dk: Tensor; dv: Tensor; dbias?: Tensor; dsinks?: Tensor };
}

/** Reference values by output name ("out", "lse", "dq", ...), in [B, H, S, D] order. */
export type Expected = Map<string, ArrayLike<number>>;

/** The float64 reference of the run (CPU runs). */
export function referenceValues(config: Config, inputs: Inputs): Expected {
  const problem: ReferenceProblem = {
    q: bhsdValues(inputs.q, config.layout),
    k: bhsdValues(inputs.k, config.layout),
    v: bhsdValues(inputs.v, config.layout),
    batch: config.batch,
    headsQ: config.headsQ,
    headsKv: config.headsKv,
    seqlenQ: config.seqlenQ,
    seqlenK: config.seqlenK,
    headDim: config.headDim,
    scale: 1 / Math.sqrt(config.headDim),
    causal: config.causal,
  };
  if (inputs.bias) problem.bias = { values: inputs.bias.toFloat32(), shape: inputs.bias.shape };
  if (config.dropout > 0) {
    problem.dropout = { p: config.dropout, seed: config.seed, offset: 0 };
  }
  if (config.window) problem.window = config.window;
  if (config.softcap > 0) problem.softcap = config.softcap;
  if (inputs.sinks) problem.sinks = inputs.sinks.toFloat32();
  if (inputs.alibiSlopes) problem.alibiSlopes = inputs.alibiSlopes.toFloat32();
  const forward = referenceForward(problem);
  const expected: Expected = new Map([["out", forward.out], ["lse", forward.lse]]);
  if (config.backward) {
    const grads = referenceBackward(problem, bhsdValues(inputs.dout, config.layout));
    expected.set("dq", grads.dq).set("dk", grads.dk).set("dv", grads.dv);
    if (grads.dbias && config.bias === "full") expected.set("dbias", grads.dbias);
    if (grads.dsinks) expected.set("dsinks", grads.dsinks);
  }
  return expected;
}

/** The same run on the CPU backend, from copies of the inputs. */
export function cpuBackendValues(
  config: Config,
  inputs: Inputs,
  options: BackwardOptions,
): Expected {
  using stack = new DisposableStack();
  const cpu = Device.cpu();
  const copy = (tensor: Tensor) => stack.use(tensor.to(cpu));
  const [q, k, v, dout] = [copy(inputs.q), copy(inputs.k), copy(inputs.v), copy(inputs.dout)];
  const cpuOptions: BackwardOptions = { ...options };
  if (inputs.bias) cpuOptions.bias = copy(inputs.bias);
  if (inputs.sinks) cpuOptions.sinks = copy(inputs.sinks);
  if (inputs.alibiSlopes) cpuOptions.alibiSlopes = copy(inputs.alibiSlopes);
  const { out, lse } = attention(q, k, v, cpuOptions);
  stack.use(out);
  stack.use(lse);
  const expected: Expected = new Map();
  expected.set("out", bhsdValues(out, config.layout)).set("lse", lse.toFloat32());
  if (config.backward) {
    const grads = attentionBackward(dout, q, k, v, out, lse, cpuOptions);
    for (const [name, tensor] of Object.entries(grads)) {
      using owned = tensor;
      const flat = name === "dbias" || name === "dsinks";
      expected.set(name, flat ? owned.toFloat32() : bhsdValues(owned, config.layout));
    }
  }
  return expected;
}

/** Compares every output of the run with its reference value. */
export function compareAll(config: Config, results: Results, expected: Expected): Comparison[] {
  const actual: [string, Tensor][] = [["out", results.out], ["lse", results.lse]];
  if (results.grads) {
    const { dq, dk, dv, dbias, dsinks } = results.grads;
    actual.push(["dq", dq], ["dk", dk], ["dv", dv]);
    if (dbias) actual.push(["dbias", dbias]);
    if (dsinks) actual.push(["dsinks", dsinks]);
  }
  return actual.flatMap(([name, tensor]) => {
    const reference = expected.get(name);
    if (reference === undefined) return [];
    const values = name === "lse" || name === "dbias" || name === "dsinks"
      ? tensor.toFloat32()
      : bhsdValues(tensor, config.layout);
    // lse is float32 throughout; outputs pass one rounding to the dtype; gradients add up
    // many rounded terms (dsinks too: a float32 sum over rows of the rounded out).
    const dtype = name === "lse" ? "float32" : config.dtype;
    const slack = name === "out" ? 4 : 8;
    return [compare(name, values, reference, dtype, slack)];
  });
}
