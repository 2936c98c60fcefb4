/**
 * The CLI's decode mode: new rows of every sequence attend over a KV cache
 * (`attentionWithKVCache`), one call repeated or `--steps` decode steps (optionally one
 * step captured in a CUDA graph and replayed), timed per call with the KV bytes read as
 * GB/s, and checked against a reference (decode_check.ts).
 * @module
 */

import { dtypeBytes } from "../dtype.ts";
import { CudaGraph } from "../graph.ts";
import {
  attentionWithKVCache,
  type KVCacheAttentionOptions,
  kvcacheWorkspaceSize,
} from "../kvcache_attention.ts";
import { Stream } from "../stream.ts";
import { Tensor } from "../tensor.ts";
import { timeCuda, type TimingResult } from "../timing.ts";
import { formatComparison } from "./compare.ts";
import { type Progress, trackCalls } from "./progress.ts";
import { type Config, describeProblem, effectiveWindow } from "./config.ts";
import type { DecodeConfig } from "./decode_config.ts";
import { checkDecode, decodeCheckByDefault, type DecodeResults } from "./decode_check.ts";
import {
  type DecodePlan,
  decodePlan,
  type DecodeSetup,
  makeDecodeData,
  makeDecodeSetup,
} from "./decode_inputs.ts";

/**
 * Keys of a sequence that its `rows` new rows see through the window, out of `keys`: the
 * union of the rows' ranges (bottom-right aligned, so row i's diagonal is i + keys - rows).
 */
export function visibleKeys(rows: number, keys: number, [left]: readonly [number, number]): number {
  // The last row's diagonal is the last key: a right edge (-1 or >= 0) never cuts a key.
  const first = left < 0 ? 0 : Math.max(0, keys - rows - left);
  return Math.max(0, keys - first);
}

/** Bytes of keys and values one call reads, averaged over the timed calls. */
function kvBytesPerCall(config: Config, decode: DecodeConfig, plan: DecodePlan): number {
  const window = effectiveWindow(config);
  const appended = decode.append ? decode.newRows : 0;
  // Timed steps come after the warm-up ones; a repeated call always sees the same rows.
  const timed = plan.stepCalls > 0 ? decode.steps : 1;
  const firstTimed = plan.stepCalls > 0 ? config.warmup : 0;
  let rows = 0;
  for (let call = firstTimed; call < firstTimed + timed; call++) {
    for (const length of decode.cacheLengths) {
      const keys = length + appended * (plan.stepCalls > 0 ? call : 0) + appended;
      rows += visibleKeys(decode.newRows, keys, window);
    }
  }
  return (rows / timed) * 2 * config.headsKv * config.headDim * dtypeBytes(config.dtype);
}

/** The call's outputs and workspace on the run's device (owned by `stack`). */
function callOptions(
  config: Config,
  decode: DecodeConfig,
  setup: DecodeSetup,
  stack: DisposableStack,
): KVCacheAttentionOptions {
  const { device } = config;
  const { q, cache } = setup;
  const options: KVCacheAttentionOptions = {
    ...setup.options,
    out: stack.use(Tensor.empty(q.shape, q.dtype, device)),
    lse: stack.use(Tensor.empty([config.batch, config.headsQ, decode.newRows], "float32", device)),
  };
  // A repeated call writes the same rows every time; steps advance the lengths.
  if (decode.steps === 0) options.advanceSeqlens = false;
  const bytes = kvcacheWorkspaceSize(q, cache, options);
  if (bytes > 0) {
    options.workspace = stack.use(Tensor.empty([Math.ceil(bytes / 4)], "int32", device));
  }
  return options;
}

/** Times the calls: the repeated call, each step, or each launch of the captured step. */
function timeDecode(
  config: Config,
  decode: DecodeConfig,
  setup: DecodeSetup,
  options: KVCacheAttentionOptions,
  stack: DisposableStack,
  progress: Progress,
): TimingResult {
  const { device } = config;
  const { q, cache } = setup;
  // Calls and launches go to the legacy default stream, as timeCuda's L2 flush does (a
  // stream of Stream.create would not wait for it); a graph is captured on a new stream.
  let step: () => void = () => void attentionWithKVCache(q, cache, options);
  if (decode.graph) {
    // On the CPU device the capture refuses ("unsupported"): there is nothing to capture.
    const stream = stack.use(Stream.create(device));
    const graph = stack.use(CudaGraph.capture(stream, () => {
      attentionWithKVCache(q, cache, { ...options, stream });
    }));
    step = () => graph.launch();
  }
  const iterations = decode.steps > 0 ? decode.steps : config.iterations;
  // The library checks the arguments at the first call: the problem line follows it.
  const problem = () => progress.log(`problem:  ${describeProblem(config)}`);
  const tracked = trackCalls(step, config.warmup + iterations, progress, problem);
  // A cold L2 for every call on CUDA, as a decoding step of a whole model sees it.
  const flushL2 = device.kind === "cuda";
  progress.start(`running decode on ${device}`);
  const timing = timeCuda(tracked, { device, warmup: config.warmup, iterations, flushL2 });
  progress.end();
  return timing;
}

/** "decode    0.041 ms/step (median of 20, cold L2), 1640.2 GB/s KV read (67.11 MB/step)". */
function describeTiming(config: Config, decode: DecodeConfig, timing: TimingResult, bytes: number) {
  const per = decode.steps > 0 ? "step" : "call";
  const count = decode.steps > 0 ? decode.steps : config.iterations;
  const cold = config.device.kind === "cuda" ? ", cold L2" : "";
  const gbps = bytes / (timing.medianMs * 1e-3) / 1e9;
  return `decode    ${timing.medianMs.toFixed(3)} ms/${per} (median of ${count}${cold}), ` +
    `${gbps.toFixed(gbps < 10 ? 2 : 1)} GB/s KV read (${(bytes / 1e6).toFixed(2)} MB/${per})`;
}

/** "7,9,40", or "4096 x8" when every sequence has the same length. */
function formatLengths(lengths: readonly number[]): string {
  const same = lengths.length > 1 && lengths.every((length) => length === lengths[0]);
  return same ? `${lengths[0]} x${lengths.length}` : lengths.join(",");
}

/** Runs the decode mode of `config`; returns the exit code. */
export function runDecode(config: Config, decode: DecodeConfig, progress: Progress): number {
  using stack = new DisposableStack();
  const plan = decodePlan(config, decode);
  const data = makeDecodeData(config, decode, plan);
  const setup = makeDecodeSetup(config, decode, plan, data, stack);
  const options = callOptions(config, decode, setup, stack);
  const timing = timeDecode(config, decode, setup, options, stack, progress);
  console.log(describeTiming(config, decode, timing, kvBytesPerCall(config, decode, plan)));

  if (!(config.check ?? decodeCheckByDefault(config, plan))) {
    const why = config.check === false ? "--no-check" : "large problem; pass --check to force";
    console.log(`check:    skipped (${why})`);
    return 0;
  }
  const started = performance.now();
  progress.start("checking");
  config.device.synchronize();
  const results: DecodeResults = { out: options.out!, lse: options.lse!, cache: setup.cache };
  const check = checkDecode(config, decode, plan, data, results);
  progress.end();
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`check:    against ${check.reference} (${seconds} s)`);
  for (const comparison of check.comparisons) console.log(formatComparison(comparison));
  const { host, device, expected, ok } = check.lengths;
  console.log(
    `  ${"length".padEnd(6)} host ${formatLengths(host)} device ${formatLengths(device)}` +
      ` (expected ${formatLengths(expected)})  ${ok ? "ok" : "FAIL"}`,
  );
  return check.comparisons.every((c) => c.ok) && ok ? 0 : 1;
}
