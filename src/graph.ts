/**
 * CUDA graphs: the work of a decoding step captured once on a stream and replayed with one
 * launch, so a step costs one host call instead of one per kernel (`fa_graph_*`).
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import type { Device } from "./device.ts";
import { disposedError, FlashAttentionError, invalidArgument } from "./errors.ts";
import { advanceHostLengths, type KVCache, reserveCacheRows } from "./kvcache.ts";
import { Stream, streamFor } from "./stream.ts";

/**
 * One captured KV-cache call that advances its cache: at each launch the cache's host
 * lengths must leave room for `rows` more within `bound`, and advance by `rows` after.
 */
interface ReplayStep {
  readonly cache: KVCache;
  /** Snew: the rows the step adds to each sequence. */
  readonly rows: number;
  /** Whether the step appends (its rows need pages) or only advances the lengths. */
  readonly appends: boolean;
  /** The step's trusted max_seqlen_k: no sequence may pass it. */
  readonly bound: number;
}

/** What a capture in progress collects from the calls queued on its stream. Not public. */
export interface CaptureRecord {
  /** The stream being captured. */
  readonly stream: Stream;
  /** References the graph holds, so the memory its kernels address outlives it. */
  readonly owners: Disposable[];
  /** Calls that advance a cache's lengths, in capture order. */
  readonly steps: ReplayStep[];
}

const captures = new Map<Stream, CaptureRecord>();

/** The capture in progress on `stream`, if any. Not public. */
export function captureOn(stream: Stream | undefined): CaptureRecord | undefined {
  return stream === undefined ? undefined : captures.get(stream);
}

/** Records a captured KV-cache call that advances `cache` (see {@link CudaGraph.launch}). */
export function recordReplayStep(
  capture: CaptureRecord,
  cache: KVCache,
  rows: number,
  appends: boolean,
  bound: number,
): void {
  capture.steps.push({ cache, rows, appends, bound });
}

function releaseAll(owners: readonly Disposable[]): void {
  for (const owner of owners) owner[Symbol.dispose]();
}

/**
 * An executable CUDA graph: the kernels queued on a stream during {@link CudaGraph.capture},
 * replayed by {@link CudaGraph.launch} with the same arguments (the same addresses, so
 * inputs are refreshed in place, e.g. by writing the next token's q into the same tensor).
 *
 * KV-cache calls can be captured in their trusted, synchronization-free form only:
 * `maxSeqlenK > 0`, preallocated `out`, `lse` and (when splitting needs one) `workspace`,
 * and, to move forward by themselves, `advanceSeqlens` (the default when appending): each
 * replay then appends at the device's current lengths and advances them in the kernel.
 * The caches' host lengths stay in step because the graph records those calls: every
 * `launch` first checks that each sequence has room (capacity, `maxSeqlenK`) and
 * allocates the pages of a paged cache for the rows the replay writes, then advances the
 * host lengths. Edit a cache between launches only through its methods.
 *
 * The graph holds references to every tensor it addresses until it is disposed. On the
 * CPU device there is nothing to capture: `capture` throws "unsupported".
 *
 * @example
 * ```ts
 * using stream = Stream.create(device);
 * using graph = CudaGraph.capture(stream, () => {
 *   attentionWithKVCache(q, cache, { kNew, vNew, out, lse, workspace, maxSeqlenK, stream });
 * });
 * for (let step = 0; step < 16; step++) {
 *   // write the step's q, kNew, vNew into their tensors, then:
 *   graph.launch(stream);
 * }
 * stream.synchronize();
 * ```
 */
export class CudaGraph implements Disposable {
  /** The device the graph runs on. */
  readonly device: Device;
  readonly #handle: bigint;
  readonly #record: CaptureRecord;
  #disposed = false;

  private constructor(device: Device, handle: bigint, record: CaptureRecord) {
    this.device = device;
    this.#handle = handle;
    this.#record = record;
  }

  /**
   * Captures the work `body` queues on `stream` (a CUDA stream made by `Stream.create`;
   * the legacy default stream cannot be captured) into a graph. Nothing runs during the
   * capture. If `body` throws, the capture is ended and discarded and the error rethrown.
   */
  static capture(stream: Stream, body: () => void): CudaGraph {
    if (!(stream instanceof Stream)) throw invalidArgument("stream", "expected a Stream");
    const handle = streamFor(stream, stream.device);
    const device = stream.device;
    if (device.kind !== "cuda") {
      throw new FlashAttentionError(
        "unsupported",
        "stream: CUDA graphs need a CUDA stream; the CPU backend runs each call at once, " +
          "so there is nothing to capture (call the step directly)",
        { argument: "stream" },
      );
    }
    if (captures.has(stream)) throw invalidArgument("stream", "is already being captured");
    check(ffi().fa_graph_begin_capture(device.index, handle), "stream");
    const record: CaptureRecord = { stream, owners: [], steps: [] };
    captures.set(stream, record);
    const graph = new BigUint64Array(1);
    try {
      body();
    } catch (error) {
      captures.delete(stream);
      // End the capture so the stream is usable again; its graph (if any) is discarded.
      if (ffi().fa_graph_end_capture(device.index, handle, graph) === 0 && graph[0] !== 0n) {
        ffi().fa_graph_destroy(device.index, graph[0]);
      }
      releaseAll(record.owners);
      throw error;
    }
    captures.delete(stream);
    try {
      check(ffi().fa_graph_end_capture(device.index, handle, graph), "stream");
    } catch (error) {
      releaseAll(record.owners);
      throw error;
    }
    return new CudaGraph(device, graph[0], record);
  }

  /**
   * Replays the graph on `stream` (default: the legacy default stream). Checks first that
   * every captured KV-cache step has room in its cache and allocates the pages it writes;
   * then advances the caches' host lengths as the replay will on the device.
   */
  launch(stream?: Stream): void {
    if (this.#disposed) throw disposedError("graph", "graph");
    const handle = streamFor(stream, this.device);
    const undo: (() => void)[] = [];
    try {
      const ahead = new Map<KVCache, number>(); // rows earlier steps of this launch add
      for (const step of this.#record.steps) {
        const before = ahead.get(step.cache) ?? 0;
        const rows = step.cache.lengths.map((length) => length + before + step.rows);
        const longest = Math.max(...rows);
        if (longest > step.bound) {
          throw invalidArgument(
            "max_seqlen_k",
            `a replay would take a sequence to ${longest} rows, past the captured ` +
              `maxSeqlenK ${step.bound} (capture a graph with a larger bound)`,
          );
        }
        const needed = step.appends ? rows : rows.map((count) => count - step.rows);
        undo.push(reserveCacheRows(step.cache, needed, "cache_seqlens"));
        ahead.set(step.cache, before + step.rows);
      }
      check(ffi().fa_graph_launch(this.device.index, this.#handle, handle), "graph");
    } catch (error) {
      for (const revert of undo.reverse()) revert();
      throw error;
    }
    for (const step of this.#record.steps) advanceHostLengths(step.cache, step.rows);
  }

  /** Destroys the graph and drops its references (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    try {
      check(ffi().fa_graph_destroy(this.device.index, this.#handle), "graph");
    } finally {
      releaseAll(this.#record.owners);
    }
  }

  /** Same as {@link CudaGraph.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
