#!/usr/bin/env -S deno run --allow-ffi --allow-read --allow-env
/**
 * Command-line benchmark and self-check of flashattn: random inputs of a chosen shape,
 * time per call, TFLOP/s, and the largest error against a reference (the CPU backend for
 * GPU runs, a plain float64 computation for CPU runs). `--decode` times and checks
 * decoding over a KV cache instead (time per call or step, KV bytes read as GB/s).
 *
 * ```sh
 * deno run --allow-ffi --allow-read --allow-env jsr:@flashattn/flashattn/cli --causal --backward
 * deno run --allow-ffi --allow-read --allow-env jsr:@flashattn/flashattn/cli --decode --append
 * ```
 * @module
 */

import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type BackwardOptions,
  type Device,
  FlashAttentionError,
  Tensor,
  timeCuda,
  type TimingResult,
} from "./mod.ts";
import {
  checkByDefault,
  compareAll,
  cpuBackendValues,
  referenceValues,
  type Results,
} from "./src/cli/check.ts";
import {
  type Config,
  describeProblem,
  effectiveWindow,
  parseConfig,
  USAGE,
  UsageError,
} from "./src/cli/config.ts";
import { formatComparison } from "./src/cli/compare.ts";
import { runDecode } from "./src/cli/decode.ts";
import { backwardFlops, forwardFlops } from "./src/cli/flops.ts";
import { attentionOptions, makeInputs } from "./src/cli/inputs.ts";

function describeDevice(device: Device): string {
  if (device.kind === "cpu") return `cpu (${device.multiprocessors} threads, CPU backend)`;
  const [major, minor] = device.computeCapability ?? [0, 0];
  return `${device} sm_${major}${minor}, ${device.multiprocessors} SMs`;
}

function formatTiming(label: string, timing: TimingResult, flops: number, count: number) {
  const tflops = flops / (timing.medianMs * 1e-3) / 1e12;
  return `${label.padEnd(9)} ${timing.medianMs.toFixed(3)} ms/call (median of ${count}), ` +
    `${tflops.toFixed(tflops < 1 ? 3 : 1)} TFLOP/s`;
}

function run(config: Config): number {
  using stack = new DisposableStack();
  const { device } = config;
  console.log(`device:   ${describeDevice(device)}`);
  if (config.decode) return runDecode(config, config.decode);
  console.log(`problem:  ${describeProblem(config)}`);
  const inputs = makeInputs(config, stack);
  const options = attentionOptions(config, inputs);
  const { q, k, v, dout } = inputs;
  const flopShape = {
    batch: config.batch,
    headsQ: config.headsQ,
    seqlenQ: config.seqlenQ,
    seqlenK: config.seqlenK,
    headDim: config.headDim,
    window: effectiveWindow(config),
  };
  const timing = { device, warmup: config.warmup, iterations: config.iterations };

  // Outputs are allocated once, so that only the attention calls are timed.
  const out = stack.use(Tensor.empty(q.shape, q.dtype, device));
  const lse = stack.use(
    Tensor.empty([config.batch, config.headsQ, config.seqlenQ], "float32", device),
  );
  const forwardOptions: AttentionOptions = { ...options, out, lse };
  const forward = timeCuda(() => void attention(q, k, v, forwardOptions), timing);
  console.log(formatTiming("forward", forward, forwardFlops(flopShape), config.iterations));

  const results: Results = { out, lse };
  if (config.backward) {
    const grads = {
      dq: stack.use(Tensor.empty(q.shape, q.dtype, device)),
      dk: stack.use(Tensor.empty(k.shape, k.dtype, device)),
      dv: stack.use(Tensor.empty(v.shape, v.dtype, device)),
      dbias: options.computeDbias && inputs.bias
        ? stack.use(Tensor.empty(inputs.bias.shape, inputs.bias.dtype, device))
        : undefined,
      dsinks: inputs.sinks
        ? stack.use(Tensor.empty([config.headsQ], "float32", device))
        : undefined,
    };
    const backwardOptions: BackwardOptions = { ...options, ...grads };
    const backward = timeCuda(
      () => void attentionBackward(dout, q, k, v, out, lse, backwardOptions),
      timing,
    );
    console.log(formatTiming("backward", backward, backwardFlops(flopShape), config.iterations));
    results.grads = grads;
  }

  if (!(config.check ?? checkByDefault(config))) {
    const why = config.check === false ? "--no-check" : "large problem; pass --check to force";
    console.log(`check:    skipped (${why})`);
    return 0;
  }
  const started = performance.now();
  const onGpu = device.kind === "cuda";
  const expected = onGpu
    ? cpuBackendValues(config, inputs, options)
    : referenceValues(config, inputs);
  const comparisons = compareAll(config, results, expected);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `check:    against ${onGpu ? "the CPU backend" : "float64 reference"} (${seconds} s)`,
  );
  for (const c of comparisons) console.log(formatComparison(c));
  return comparisons.every((c) => c.ok) ? 0 : 1;
}

/** Runs the CLI with `args`; returns the exit code. */
export function main(args: string[]): number {
  try {
    const config = parseConfig(args);
    if (config === "help") {
      console.log(USAGE);
      return 0;
    }
    return run(config);
  } catch (error) {
    if (error instanceof FlashAttentionError) {
      console.error(`error: ${error.message}`);
      return 1;
    }
    if (error instanceof UsageError || isParseArgsError(error)) {
      console.error(`error: ${(error as Error).message}\n(see --help)`);
      return 2;
    }
    throw error;
  }
}

function isParseArgsError(error: unknown): boolean {
  return error instanceof Error && "code" in error &&
    String((error as { code: unknown }).code).startsWith("ERR_PARSE_ARGS");
}

if (import.meta.main) Deno.exit(main(Deno.args));
