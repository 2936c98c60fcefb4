/**
 * CUDA streams and events. On the host everything runs synchronously, so a host Stream is
 * a no-op handle (0) that lets the same code run on both.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import type { Device } from "./device.ts";
import { disposedError, invalidArgument } from "./errors.ts";

// Module-private access to the raw handles, bound inside the class bodies.
let streamHandle: (stream: Stream, argument: string) => bigint;

/**
 * A CUDA stream: work queued on it runs in order. Pass it to `attention` through
 * `options.stream`. Destroyed by `dispose()` (or `using`).
 */
export class Stream implements Disposable {
  /** The device the stream belongs to. */
  readonly device: Device;
  readonly #handle: bigint;
  #disposed = false;

  static {
    streamHandle = (stream, argument) => {
      if (stream.#disposed) throw disposedError(argument, "stream");
      return stream.#handle;
    };
  }

  private constructor(device: Device, handle: bigint) {
    this.device = device;
    this.#handle = handle;
  }

  /** A new stream on `device` (on the host: a no-op stream). */
  static create(device: Device): Stream {
    if (device.kind === "cpu") return new Stream(device, 0n);
    const handle = new BigUint64Array(1);
    check(ffi().fa_stream_create(device.index, handle), "stream");
    return new Stream(device, handle[0]);
  }

  /** Waits until all work queued on the stream has finished. */
  synchronize(): void {
    const handle = streamHandle(this, "stream");
    if (this.device.kind === "cuda") {
      check(ffi().fa_stream_synchronize(this.device.index, handle), "stream");
    }
  }

  /** Destroys the stream (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.device.kind === "cuda") {
      check(ffi().fa_stream_destroy(this.device.index, this.#handle), "stream");
    }
  }

  /** Same as {@link Stream.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * The `cudaStream_t` of a stream for the ABI (0 = the legacy default stream when absent).
 * Throws "invalid_argument" when the stream belongs to another device. Not public.
 */
export function streamFor(stream: Stream | undefined, device: Device): bigint {
  if (stream === undefined) return 0n;
  if (!(stream instanceof Stream)) throw invalidArgument("stream", "expected a Stream");
  const handle = streamHandle(stream, "stream");
  if (!stream.device.equals(device)) {
    throw invalidArgument("stream", `expected a stream on ${device}, got one on ${stream.device}`);
  }
  return handle;
}

/**
 * A CUDA event, for timing work on a stream: record a start and an end event around the
 * work, synchronize on the end, then read `start.elapsedMs(end)`.
 */
export class CudaEvent implements Disposable {
  /** The device the event belongs to. */
  readonly device: Device;
  readonly #handle: bigint;
  #disposed = false;

  private constructor(device: Device, handle: bigint) {
    this.device = device;
    this.#handle = handle;
  }

  /** A new event on a CUDA `device` ("invalid_argument" for the host). */
  static create(device: Device): CudaEvent {
    if (device.kind !== "cuda") {
      throw invalidArgument("device", `CudaEvent needs a CUDA device, got ${device}`);
    }
    const handle = new BigUint64Array(1);
    check(ffi().fa_event_create(device.index, handle), "event");
    return new CudaEvent(device, handle[0]);
  }

  #live(argument: string): bigint {
    if (this.#disposed) throw disposedError(argument, "event");
    return this.#handle;
  }

  /** Records the event on `stream` (default: the legacy default stream). */
  record(stream?: Stream): void {
    const event = this.#live("event");
    check(ffi().fa_event_record(this.device.index, event, streamFor(stream, this.device)), "event");
  }

  /** Waits until the work recorded before the event has finished. */
  synchronize(): void {
    check(ffi().fa_event_synchronize(this.device.index, this.#live("event")), "event");
  }

  /** Milliseconds between this event and a later recorded `end` event. */
  elapsedMs(end: CudaEvent): number {
    const ms = new Float32Array(1);
    const status = ffi().fa_event_elapsed_ms(
      this.device.index,
      this.#live("start"),
      end.#live("end"),
      ms,
    );
    check(status, "event");
    return ms[0];
  }

  /** Destroys the event (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    check(ffi().fa_event_destroy(this.device.index, this.#handle), "event");
  }

  /** Same as {@link CudaEvent.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
