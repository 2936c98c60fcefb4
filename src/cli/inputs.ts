/**
 * The CLI's random inputs and the attention options they are run with.
 * @module
 */

import type { BackwardOptions } from "../attention.ts";
import { Tensor } from "../tensor.ts";
import type { Config } from "./config.ts";
import { inputSeed, SeededRandom } from "./random.ts";

/** The random inputs of one run, all owned by `stack`. */
export interface Inputs {
  /** Queries, in the configured layout. */
  q: Tensor;
  /** Keys. */
  k: Tensor;
  /** Values. */
  v: Tensor;
  /** Upstream gradient for the backward pass, like q. */
  dout: Tensor;
  /** The bias, when one was asked for. */
  bias?: Tensor;
  /** float32 [Hq] sink logits, when asked for. */
  sinks?: Tensor;
  /** float32 [Hq] ALiBi slopes, when asked for. */
  alibiSlopes?: Tensor;
}

/** The standard ALiBi slopes of `heads` heads: 2^(-8h/heads) for h = 1..heads. */
export function alibiSlopes(heads: number): Float32Array {
  return Float32Array.from({ length: heads }, (_, h) => 2 ** ((-8 * (h + 1)) / heads));
}

/** Shape of a q/k/v-like operand in the configured layout. */
function operandShape(config: Config, heads: number, seqlen: number): number[] {
  return config.layout === "bshd"
    ? [config.batch, seqlen, heads, config.headDim]
    : [config.batch, heads, seqlen, config.headDim];
}

/** Bias values and shape: N(0, 1) for "full", 0 / -Infinity for "key-padding". */
function biasValues(config: Config, random: SeededRandom): [Float32Array, number[]] | undefined {
  const { batch, headsQ, seqlenQ, seqlenK } = config;
  if (config.bias === "full") {
    const shape = [batch, headsQ, seqlenQ, seqlenK];
    return [random.normals(batch * headsQ * seqlenQ * seqlenK), shape];
  }
  if (config.bias === "key-padding") {
    // Sequence b keeps its first keys and masks the last (b + 1) / (4 B) of them.
    const values = new Float32Array(batch * seqlenK);
    for (let b = 0; b < batch; b++) {
      const valid = Math.max(1, seqlenK - Math.floor(((b + 1) * seqlenK) / (4 * batch)));
      values.fill(-Infinity, b * seqlenK + valid, (b + 1) * seqlenK);
    }
    return [values, [batch, 1, 1, seqlenK]];
  }
  return undefined;
}

/** Seeded random q, k, v, dout (~N(0, 1)) and bias on the run's device, owned by `stack`. */
export function makeInputs(config: Config, stack: DisposableStack): Inputs {
  const random = new SeededRandom(inputSeed(config.seed));
  const tensor = (values: Float32Array, shape: number[]) =>
    stack.use(Tensor.fromArray(values, shape, { dtype: config.dtype, device: config.device }));
  const random4 = (shape: number[]) =>
    tensor(random.normals(shape.reduce((a, b) => a * b, 1)), shape);
  const qShape = operandShape(config, config.headsQ, config.seqlenQ);
  const kvShape = operandShape(config, config.headsKv, config.seqlenK);
  const inputs: Inputs = {
    q: random4(qShape),
    k: random4(kvShape),
    v: random4(kvShape),
    dout: random4(qShape),
  };
  const bias = biasValues(config, random);
  if (bias !== undefined) inputs.bias = tensor(...bias);
  const float32 = (values: Float32Array) =>
    stack.use(
      Tensor.fromArray(values, [config.headsQ], { dtype: "float32", device: config.device }),
    );
  if (config.sinks !== "none") {
    const value = config.sinks;
    const sinks = value === "random"
      ? random.normals(config.headsQ)
      : new Float32Array(config.headsQ).fill(value);
    inputs.sinks = float32(sinks);
  }
  if (config.alibi) inputs.alibiSlopes = float32(alibiSlopes(config.headsQ));
  return inputs;
}

/** The options every call of the run passes (outputs are added by the caller). */
export function attentionOptions(config: Config, inputs: Inputs): BackwardOptions {
  const options: BackwardOptions = {
    causal: config.causal,
    layout: config.layout,
    deterministic: config.deterministic,
    computeDbias: config.bias === "full",
  };
  if (config.dropout > 0) options.dropout = { p: config.dropout, seed: config.seed };
  if (inputs.bias !== undefined) options.bias = inputs.bias;
  if (config.window !== undefined) options.window = config.window;
  if (config.softcap > 0) options.softcap = config.softcap;
  if (inputs.sinks !== undefined) options.sinks = inputs.sinks;
  if (inputs.alibiSlopes !== undefined) options.alibiSlopes = inputs.alibiSlopes;
  return options;
}
