/**
 * The CLI's nested mode (`--seqlens`): seeded random sequences of different lengths packed
 * into NestedBatches, the forward (and backward) timed over the whole batch, and --check
 * against a reference computed per sequence (float64 for CPU runs, the CPU backend's nested
 * call for GPU runs).
 * @module
 */

import { attention, attentionBackward, type BackwardOptions } from "../attention.ts";
import { NestedBatch } from "../nested.ts";
import { Tensor } from "../tensor.ts";
import { timeCuda, type TimingResult } from "../timing.ts";
import { type Config, describeProblem, effectiveWindow } from "./config.ts";
import { backwardFlops, forwardFlops } from "./flops.ts";
import { alibiSlopes } from "./inputs.ts";
import type { NestedConfig } from "./nested_config.ts";
import { type Progress, trackCalls } from "./progress.ts";
import { inputSeed, SeededRandom } from "./random.ts";
import { checkNested } from "./nested_check.ts";

/** The packed inputs of a nested run, owned by a stack. */
export interface NestedInputs {
  /** Queries, packed [totalQ, Hq, D]. */
  q: NestedBatch;
  /** Keys, packed [totalK, Hkv, D]. */
  k: NestedBatch;
  /** Values, like k. */
  v: NestedBatch;
  /** Upstream gradient of the backward, like q. */
  dout: NestedBatch;
  /** float32 [Hq] sink logits, when asked for. */
  sinks?: Tensor;
  /** float32 [Hq] ALiBi slopes, when asked for. */
  alibiSlopes?: Tensor;
}

function makeInputs(config: Config, nested: NestedConfig, stack: DisposableStack): NestedInputs {
  const random = new SeededRandom(inputSeed(config.seed));
  const { dtype, device, headDim } = config;
  const batch = (lengths: number[], heads: number) => {
    const total = lengths.reduce((a, b) => a + b, 0);
    const shape = [total, heads, headDim];
    using data = Tensor.fromArray(random.normals(total * heads * headDim), shape, {
      dtype,
      device,
    });
    return stack.use(NestedBatch.fromData(data, lengths));
  };
  const inputs: NestedInputs = {
    q: batch(nested.seqlensQ, config.headsQ),
    k: batch(nested.seqlensK, config.headsKv),
    v: batch(nested.seqlensK, config.headsKv),
    dout: batch(nested.seqlensQ, config.headsQ),
  };
  const float32 = (values: Float32Array) =>
    stack.use(Tensor.fromArray(values, [config.headsQ], { dtype: "float32", device }));
  if (config.sinks !== "none") {
    const value = config.sinks;
    inputs.sinks = float32(
      value === "random"
        ? random.normals(config.headsQ)
        : new Float32Array(config.headsQ).fill(value),
    );
  }
  if (config.alibi) inputs.alibiSlopes = float32(alibiSlopes(config.headsQ));
  return inputs;
}

function callOptions(config: Config, inputs: NestedInputs): BackwardOptions {
  const options: BackwardOptions = { causal: config.causal, deterministic: config.deterministic };
  if (config.dropout > 0) options.dropout = { p: config.dropout, seed: config.seed };
  if (config.window !== undefined) options.window = config.window;
  if (config.softcap > 0) options.softcap = config.softcap;
  if (inputs.sinks !== undefined) options.sinks = inputs.sinks;
  if (inputs.alibiSlopes !== undefined) options.alibiSlopes = inputs.alibiSlopes;
  return options;
}

/** Flops of the batch (`count`: forwardFlops or backwardFlops): the sum over its sequences. */
function nestedFlops(config: Config, nested: NestedConfig, count: typeof forwardFlops): number {
  const window = effectiveWindow(config);
  const { headsQ, headDim } = config;
  return nested.seqlensQ.reduce((sum, seqlenQ, s) => {
    const seqlenK = nested.seqlensK[s];
    return sum + count({ batch: 1, headsQ, seqlenQ, seqlenK, headDim, window });
  }, 0);
}

function formatTiming(label: string, timing: TimingResult, flops: number, count: number) {
  const tflops = flops / (timing.medianMs * 1e-3) / 1e12;
  return `${label.padEnd(9)} ${timing.medianMs.toFixed(3)} ms/call (median of ${count}), ` +
    `${tflops.toFixed(tflops < 1 ? 3 : 1)} TFLOP/s`;
}

/** Outputs of the timed calls by name: packed out, lse [totalQ, Hq], gradients, dsinks. */
export type NestedOutputs = Map<string, Tensor>;

/** Runs the nested mode of `config`; returns the exit code. */
export function runNested(config: Config, nested: NestedConfig, progress: Progress): number {
  using stack = new DisposableStack();
  const { device } = config;
  const inputs = makeInputs(config, nested, stack);
  const options = callOptions(config, inputs);
  const { q, k, v, dout } = inputs;
  const empty = (like: Tensor) => stack.use(Tensor.empty(like.shape, like.dtype, device));
  const outputs: NestedOutputs = new Map([
    ["out", empty(q.data)],
    ["lse", stack.use(Tensor.empty([q.total, config.headsQ], "float32", device))],
  ]);
  const timing = { device, warmup: config.warmup, iterations: config.iterations };
  const calls = config.warmup + config.iterations;
  const problem = () => progress.log(`problem:  ${describeProblem(config)}`);
  const forwardOptions = { ...options, out: outputs.get("out"), lse: outputs.get("lse") };
  // Each call returns a batch holding its own reference to the passed out: dropped at once.
  const forwardCall = () => attention(q, k, v, forwardOptions).out.dispose();
  progress.start(`running forward on ${device}`);
  const forward = timeCuda(trackCalls(forwardCall, calls, progress, problem), timing);
  progress.end();
  const flops = nestedFlops(config, nested, forwardFlops);
  console.log(formatTiming("forward", forward, flops, config.iterations));

  const out = stack.use(NestedBatch.fromData(outputs.get("out")!, nested.seqlensQ));
  if (config.backward) {
    outputs.set("dq", empty(q.data)).set("dk", empty(k.data)).set("dv", empty(v.data));
    if (inputs.sinks) {
      outputs.set("dsinks", stack.use(Tensor.empty([config.headsQ], "float32", device)));
    }
    const backwardOptions: BackwardOptions = {
      ...options,
      dq: outputs.get("dq"),
      dk: outputs.get("dk"),
      dv: outputs.get("dv"),
      dsinks: outputs.get("dsinks"),
    };
    const lse = outputs.get("lse")!;
    const backwardCall = () => {
      const grads = attentionBackward(dout, q, k, v, out, lse, backwardOptions);
      for (const batch of [grads.dq, grads.dk, grads.dv]) batch.dispose();
    };
    progress.start(`running backward on ${device}`);
    const backward = timeCuda(trackCalls(backwardCall, calls, progress, () => {}), timing);
    progress.end();
    const backwardCount = nestedFlops(config, nested, backwardFlops);
    console.log(formatTiming("backward", backward, backwardCount, config.iterations));
  }
  return checkNested(config, nested, inputs, options, outputs, progress);
}
