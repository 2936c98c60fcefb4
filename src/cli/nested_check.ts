/**
 * --check of the nested mode: the reference of every sequence on its own (float64 for CPU
 * runs, with the dropout mask of its place in the batch; the CPU backend's nested call on
 * copies for GPU runs), laid out packed like the outputs and compared with them.
 * @module
 */

import { attention, attentionBackward, type BackwardOptions } from "../attention.ts";
import { Device } from "../device.ts";
import type { NestedBatch } from "../nested.ts";
import type { Tensor } from "../tensor.ts";
import { compare, type Comparison, formatComparison } from "./compare.ts";
import type { Config } from "./config.ts";
import type { NestedInputs, NestedOutputs } from "./nested.ts";
import type { NestedConfig } from "./nested_config.ts";
import type { Progress } from "./progress.ts";
import { referenceBackward, referenceForward, type ReferenceProblem } from "./reference.ts";

/** Reference values by output name, packed like the outputs. */
type Expected = Map<string, Float64Array | Float32Array>;

/** Rows `[first, first + rows)` of packed `[total, heads, D]` values as `[1, heads, rows, D]`. */
function unpack(packed: Float32Array, first: number, rows: number, heads: number, d: number) {
  const values = new Float32Array(heads * rows * d);
  for (let i = 0; i < rows; i++) {
    for (let h = 0; h < heads; h++) {
      const from = ((first + i) * heads + h) * d;
      values.set(packed.subarray(from, from + d), (h * rows + i) * d);
    }
  }
  return values;
}

/** Writes `[1, heads, rows, D]` values into packed rows `[first, first + rows)`. */
function repack(
  target: Float64Array,
  values: Float64Array,
  first: number,
  rows: number,
  heads: number,
  d: number,
): void {
  for (let i = 0; i < rows; i++) {
    for (let h = 0; h < heads; h++) {
      const to = ((first + i) * heads + h) * d;
      target.set(values.subarray((h * rows + i) * d, (h * rows + i + 1) * d), to);
    }
  }
}

/** Whether the comparison runs when neither --check nor --no-check was given. */
function checkByDefault(config: Config, nested: NestedConfig): boolean {
  const scores = nested.seqlensQ.reduce((sum, q, s) => sum + q * nested.seqlensK[s], 0);
  const total = scores * config.headsQ;
  // As the dense mode: the float64 loops of a CPU run are slower than the CPU backend.
  return config.device.kind === "cuda" ? total <= 2 ** 26 : total * config.headDim <= 2 ** 27;
}

/** The float64 reference of every sequence, packed. */
function referenceValues(
  config: Config,
  nested: NestedConfig,
  inputs: NestedInputs,
  progress: Progress,
): Expected {
  const { headsQ, headsKv, headDim: d } = config;
  const [q, k, v, dout] = [inputs.q, inputs.k, inputs.v, inputs.dout].map((batch) =>
    batch.data.toFloat32()
  );
  const sinks = inputs.sinks?.toFloat32();
  const slopes = inputs.alibiSlopes?.toFloat32();
  const expected: Expected = new Map([
    ["out", new Float64Array(q.length)],
    ["lse", new Float64Array(inputs.q.total * headsQ)],
  ]);
  if (config.backward) {
    expected.set("dq", new Float64Array(q.length)).set("dk", new Float64Array(k.length));
    expected.set("dv", new Float64Array(v.length));
    if (sinks) expected.set("dsinks", new Float64Array(headsQ));
  }
  let firstQ = 0, firstK = 0;
  nested.seqlensQ.forEach((seqlenQ, s) => {
    progress.update(`sequence ${s + 1}/${nested.seqlensQ.length}`);
    const seqlenK = nested.seqlensK[s];
    const problem: ReferenceProblem = {
      q: unpack(q, firstQ, seqlenQ, headsQ, d),
      k: unpack(k, firstK, seqlenK, headsKv, d),
      v: unpack(v, firstK, seqlenK, headsKv, d),
      batch: 1,
      headsQ,
      headsKv,
      seqlenQ,
      seqlenK,
      headDim: d,
      scale: 1 / Math.sqrt(d),
      causal: config.causal,
      firstSequence: s,
    };
    if (config.dropout > 0) problem.dropout = { p: config.dropout, seed: config.seed, offset: 0 };
    if (config.window) problem.window = config.window;
    if (config.softcap > 0) problem.softcap = config.softcap;
    if (sinks) problem.sinks = sinks;
    if (slopes) problem.alibiSlopes = slopes;
    const forward = referenceForward(problem);
    repack(expected.get("out") as Float64Array, forward.out, firstQ, seqlenQ, headsQ, d);
    repack(expected.get("lse") as Float64Array, forward.lse, firstQ, seqlenQ, headsQ, 1);
    if (config.backward) {
      const grads = referenceBackward(problem, unpack(dout, firstQ, seqlenQ, headsQ, d));
      repack(expected.get("dq") as Float64Array, grads.dq, firstQ, seqlenQ, headsQ, d);
      repack(expected.get("dk") as Float64Array, grads.dk, firstK, seqlenK, headsKv, d);
      repack(expected.get("dv") as Float64Array, grads.dv, firstK, seqlenK, headsKv, d);
      const dsinks = expected.get("dsinks") as Float64Array | undefined;
      grads.dsinks?.forEach((value, h) => dsinks![h] += value);
    }
    firstQ += seqlenQ;
    firstK += seqlenK;
  });
  return expected;
}

/** The same nested calls on the CPU backend, from copies of the inputs. */
function cpuBackendValues(config: Config, inputs: NestedInputs, options: BackwardOptions) {
  using stack = new DisposableStack();
  const cpu = Device.cpu();
  const copy = (batch: NestedBatch) => stack.use(batch.to(cpu));
  const [q, k, v, dout] = [inputs.q, inputs.k, inputs.v, inputs.dout].map(copy);
  const cpuOptions: BackwardOptions = { ...options };
  if (inputs.sinks) cpuOptions.sinks = stack.use(inputs.sinks.to(cpu));
  if (inputs.alibiSlopes) cpuOptions.alibiSlopes = stack.use(inputs.alibiSlopes.to(cpu));
  const { out, lse } = attention(q, k, v, cpuOptions);
  stack.use(out);
  stack.use(lse);
  const expected: Expected = new Map([["out", out.data.toFloat32()], ["lse", lse.toFloat32()]]);
  if (config.backward) {
    const grads = attentionBackward(dout, q, k, v, out, lse, cpuOptions);
    for (const name of ["dq", "dk", "dv"] as const) {
      using batch = grads[name];
      expected.set(name, batch.data.toFloat32());
    }
    if (grads.dsinks) {
      using dsinks = grads.dsinks;
      expected.set("dsinks", dsinks.toFloat32());
    }
  }
  return expected;
}

/** Runs --check of a nested run (or says why not) and returns the exit code. */
export function checkNested(
  config: Config,
  nested: NestedConfig,
  inputs: NestedInputs,
  options: BackwardOptions,
  outputs: NestedOutputs,
  progress: Progress,
): number {
  if (!(config.check ?? checkByDefault(config, nested))) {
    const why = config.check === false ? "--no-check" : "large problem; pass --check to force";
    console.log(`check:    skipped (${why})`);
    return 0;
  }
  const started = performance.now();
  const onGpu = config.device.kind === "cuda";
  const reference = onGpu ? "the CPU backend" : "float64 reference per sequence";
  progress.start(`checking against ${reference}`);
  const expected = onGpu
    ? cpuBackendValues(config, inputs, options)
    : referenceValues(config, nested, inputs, progress);
  const comparisons: Comparison[] = [...outputs].map(([name, tensor]: [string, Tensor]) => {
    // As the dense mode: lse is float32; outputs pass one rounding, gradients several.
    const dtype = name === "lse" ? "float32" : config.dtype;
    return compare(name, tensor.toFloat32(), expected.get(name)!, dtype, name === "out" ? 4 : 8);
  });
  progress.end();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`check:    against ${reference} (${seconds} s)`);
  for (const c of comparisons) console.log(formatComparison(c));
  return comparisons.every((c) => c.ok) ? 0 : 1;
}
