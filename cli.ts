#!/usr/bin/env -S deno run --allow-ffi --allow-read --allow-env
/**
 * Command-line benchmark and self-check of flashattn: random inputs of a chosen shape,
 * time per call, TFLOP/s, and the largest error against a reference (the CPU backend for
 * GPU runs, a plain float64 computation for CPU runs). `--seqlens` runs a nested batch of
 * sequences of different lengths; `--decode` times and checks decoding over a KV cache
 * instead (time per call or step, KV bytes read as GB/s).
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
  asksForHelp,
  type Config,
  describeProblem,
  effectiveWindow,
  parseConfig,
  USAGE,
} from "./src/cli/config.ts";
import { missingFfi, reportFailure } from "./src/cli/failures.ts";
import { formatComparison } from "./src/cli/compare.ts";
import { runDecode } from "./src/cli/decode.ts";
import { backwardFlops, forwardFlops } from "./src/cli/flops.ts";
import { attentionOptions, makeInputs } from "./src/cli/inputs.ts";
import { runNested } from "./src/cli/nested.ts";
import { Progress, trackCalls } from "./src/cli/progress.ts";

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
  const progress = new Progress();
  if (config.decode) return runDecode(config, config.decode, progress);
  if (config.nested) return runNested(config, config.nested, progress);
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
  const calls = config.warmup + config.iterations;
  // The library checks the arguments at the first call: the problem line follows it.
  const problem = () => progress.log(`problem:  ${describeProblem(config)}`);

  // Outputs are allocated once, so that only the attention calls are timed.
  const out = stack.use(Tensor.empty(q.shape, q.dtype, device));
  const lse = stack.use(
    Tensor.empty([config.batch, config.headsQ, config.seqlenQ], "float32", device),
  );
  const forwardOptions: AttentionOptions = { ...options, out, lse };
  progress.start(`running forward on ${device}`);
  const forward = timeCuda(
    trackCalls(() => void attention(q, k, v, forwardOptions), calls, progress, problem),
    timing,
  );
  progress.end();
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
    progress.start(`running backward on ${device}`);
    const backward = timeCuda(
      trackCalls(
        () => void attentionBackward(dout, q, k, v, out, lse, backwardOptions),
        calls,
        progress,
        () => {},
      ),
      timing,
    );
    progress.end();
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
  const reference = onGpu ? "the CPU backend" : "float64 reference";
  progress.start(`checking against ${reference}`);
  const expected = onGpu
    ? cpuBackendValues(config, inputs, options)
    : referenceValues(config, inputs);
  const comparisons = compareAll(config, results, expected);
  progress.end();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`check:    against ${reference} (${seconds} s)`);
  for (const c of comparisons) console.log(formatComparison(c));
  return comparisons.every((c) => c.ok) ? 0 : 1;
}

/** Bytes of the run's largest host array (float32 q or k), for an allocation that failed. */
function describeHostBytes(config: Config): string {
  const rows = Math.max(config.headsQ * config.seqlenQ, config.headsKv * config.seqlenK);
  const bytes = config.batch * rows * config.headDim * 4;
  return `the inputs are generated on the host as float32, ${(bytes / 1e9).toFixed(1)} GB ` +
    `for the largest of q, k, v`;
}

/** Runs the CLI with `args`; returns the exit code. */
export function main(args: string[]): number {
  let config: Config | "help" | undefined;
  try {
    const ffi = asksForHelp(args) ? undefined : missingFfi();
    if (ffi !== undefined) {
      console.error(ffi);
      return 2;
    }
    config = parseConfig(args);
    if (config === "help") {
      console.log(USAGE);
      return 0;
    }
    return run(config);
  } catch (error) {
    const parsed = typeof config === "object" ? config : undefined;
    const code = reportFailure(error, parsed && (() => describeHostBytes(parsed)));
    if (code === undefined) throw error;
    return code;
  }
}

if (import.meta.main) Deno.exit(main(Deno.args));
