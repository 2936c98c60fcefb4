/**
 * Timing of repeated calls: CUDA events on a GPU, `performance.now()` on the host.
 * @module
 */

import { Device } from "./device.ts";
import { invalidArgument } from "./errors.ts";
import { booleanOption, optionsObject } from "./options.ts";
import { Storage } from "./storage.ts";
import { CudaEvent, type Stream } from "./stream.ts";

// Larger than any current L2 (H100: 50 MB, H200: 60 MB) several times over.
const L2_FLUSH_BYTES = 256 * 1024 * 1024;

/** Options of {@link timeCuda}. */
export interface TimingOptions {
  /** The device the work runs on; the host is timed with `performance.now()`. Default: cpu. */
  device?: Device;
  /** Untimed calls first (default 1). */
  warmup?: number;
  /** Timed calls (default 10). */
  iterations?: number;
  /** The stream the work is queued on (default: the legacy default stream). */
  stream?: Stream;
  /**
   * Overwrite a 256 MiB scratch buffer before each call, outside the timed region, so every
   * call starts with a cold L2 cache as in peers' harnesses (CUDA devices only).
   */
  flushL2?: boolean;
}

/** Per-call times of {@link timeCuda}, in milliseconds. */
export interface TimingResult {
  /** The median call. */
  medianMs: number;
  /** The mean call. */
  meanMs: number;
  /** The fastest call. */
  minMs: number;
  /** The slowest call. */
  maxMs: number;
  /** Every timed call, in order. */
  samplesMs: number[];
}

function countOption(value: number | undefined, fallback: number, name: string, min: number) {
  const count = value ?? fallback;
  if (!Number.isInteger(count) || count < min) {
    throw invalidArgument(name, `expected an integer >= ${min}, got ${value}`);
  }
  return count;
}

/** Median, mean, min and max of samples. */
export function summarize(samplesMs: number[]): TimingResult {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const medianMs = sorted.length % 2 === 1
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
  return {
    medianMs,
    meanMs: samplesMs.reduce((sum, ms) => sum + ms, 0) / samplesMs.length,
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
    samplesMs,
  };
}

/**
 * Times `fn` per call. On a CUDA device each call is bracketed by two events on the stream
 * and the calls are enqueued back to back, the host waiting only once at the end: while the
 * GPU runs one call, the host prepares the next, so its launch overhead falls outside the
 * brackets whenever a call takes the GPU longer than the host (`fn` may return before the
 * GPU is done). On the host each call is timed by `performance.now()`.
 *
 * @example
 * ```ts
 * const { medianMs } = timeCuda(() => attention(q, k, v, { out, lse }), {
 *   device: q.device,
 *   iterations: 20,
 * });
 * ```
 */
export function timeCuda(fn: () => void, givenOptions?: TimingOptions): TimingResult {
  const options = optionsObject(givenOptions);
  const device = options.device ?? Device.cpu();
  const flushL2 = booleanOption(options.flushL2, "flushL2");
  const warmup = countOption(options.warmup, 1, "warmup", 0);
  const iterations = countOption(options.iterations, 10, "iterations", 1);
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  if (device.kind === "cpu") {
    for (let i = 0; i < iterations; i++) {
      const start = performance.now();
      fn();
      samples.push(performance.now() - start);
    }
    return summarize(samples);
  }
  // No synchronization between calls: a start event recorded on an idle GPU would put the
  // host's preparation of the call (tens of microseconds) inside its bracket. The warm-up
  // calls above are still running when the first bracket opens.
  using events = new DisposableStack();
  const brackets = Array.from({ length: iterations }, () => ({
    start: events.use(CudaEvent.create(device)),
    end: events.use(CudaEvent.create(device)),
  }));
  const scratch = flushL2 ? Storage.allocate(device, L2_FLUSH_BYTES, "flushL2") : undefined;
  try {
    for (const { start, end } of brackets) {
      scratch?.fillZero();
      start.record(options.stream);
      fn();
      end.record(options.stream);
    }
    brackets[iterations - 1].end.synchronize();
  } finally {
    scratch?.release();
  }
  return summarize(brackets.map(({ start, end }) => start.elapsedMs(end)));
}
