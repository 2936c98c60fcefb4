/**
 * Storage: the memory behind tensors, shared by all views of it and reference counted.
 * Host storage is an ArrayBuffer (data at a 16-byte aligned address where the address can
 * be read); device storage is memory from `fa_malloc`, freed when the last reference goes.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import { hostAddress } from "../ffi/pointers.ts";
import type { Device } from "./device.ts";
import { FlashAttentionError, invalidArgument } from "./errors.ts";

const ALIGNMENT = 16;

/**
 * Throws "invalid_argument" naming `argument` unless `byteLength` is a safe integer: past
 * 2^53 the arithmetic that produced it is no longer exact (and no host could hold it).
 */
function checkByteLength(byteLength: number, argument: string): void {
  if (!Number.isSafeInteger(byteLength) || byteLength < 0) {
    throw invalidArgument(
      argument,
      `a tensor of ${byteLength} bytes is past 2^53, the largest exact size`,
    );
  }
}

/** An "out_of_memory" error naming `argument`, for `byteLength` bytes on `where`. */
function outOfMemory(argument: string, byteLength: number, where: string, cause?: unknown) {
  return new FlashAttentionError(
    "out_of_memory",
    `${argument}: out of memory allocating ${byteLength} bytes on ${where}`,
    { argument, cause },
  );
}

/**
 * `byteLength` zeroed host bytes; a failed allocation (the engine's RangeError) becomes
 * "out_of_memory" naming `argument`, an impossible size "invalid_argument".
 */
export function hostBytes(byteLength: number, argument: string): Uint8Array<ArrayBuffer> {
  checkByteLength(byteLength, argument);
  try {
    return new Uint8Array(byteLength);
  } catch (error) {
    throw hostFailure(error, argument, byteLength);
  }
}

// The engine reports a host allocation it cannot make as a RangeError.
function hostFailure(error: unknown, argument: string, byteLength: number): unknown {
  return error instanceof RangeError ? outOfMemory(argument, byteLength, "the host", error) : error;
}

/** Bytes to skip so that data starts 16-byte aligned; 0 where addresses are not readable. */
function alignmentPadding(buffer: ArrayBuffer): number {
  try {
    const misalignment = Number(hostAddress(new Uint8Array(buffer)) % BigInt(ALIGNMENT));
    return (ALIGNMENT - misalignment) % ALIGNMENT;
  } catch {
    return 0; // no --allow-ffi: malloc'd backing stores are aligned anyway
  }
}

// Safety net for storage that is dropped without dispose(): device memory is returned when
// the Storage object is collected. Explicit dispose() unregisters it.
const leakedDeviceMemory = new FinalizationRegistry<{ device: number; pointer: bigint }>(
  ({ device, pointer }) => {
    try {
      ffi().fa_free(device, pointer);
    } catch {
      // Nothing to report to from a finalizer.
    }
  },
);

/** A block of memory on one device, shared by the tensors viewing it. */
export class Storage {
  /** Where the memory lives. */
  readonly device: Device;
  /** Usable size in bytes. */
  readonly byteLength: number;
  #references = 1;
  readonly #host: Uint8Array<ArrayBuffer> | undefined;
  readonly #pointer: bigint;

  private constructor(
    device: Device,
    byteLength: number,
    host: Uint8Array<ArrayBuffer> | undefined,
    pointer: bigint,
  ) {
    this.device = device;
    this.byteLength = byteLength;
    this.#host = host;
    this.#pointer = pointer;
  }

  /**
   * Allocates `byteLength` bytes on `device` with one reference (host memory is zeroed).
   * Failures name `argument`: "out_of_memory" when the memory is not there (host or
   * device), "invalid_argument" for a size past 2^53.
   */
  static allocate(device: Device, byteLength: number, argument = "tensor"): Storage {
    checkByteLength(byteLength, argument);
    if (device.kind === "cpu") {
      // The margin keeps the buffer non-empty (a real address) and leaves room to align.
      let buffer: ArrayBuffer;
      try {
        buffer = new ArrayBuffer(byteLength + ALIGNMENT);
      } catch (error) {
        throw hostFailure(error, argument, byteLength);
      }
      const host = new Uint8Array(buffer, alignmentPadding(buffer), byteLength);
      return new Storage(device, byteLength, host, 0n);
    }
    const pointer = new BigUint64Array(1);
    // At least a few bytes, so an empty tensor still has a non-zero ("present") address.
    const bytes = BigInt(Math.max(byteLength, ALIGNMENT));
    try {
      check(ffi().fa_malloc(device.index, bytes, pointer), argument);
    } catch (error) {
      // The library names its own parameter ("bytes"); the caller knows which tensor it was.
      if (error instanceof FlashAttentionError && error.code === "out_of_memory") {
        throw outOfMemory(argument, byteLength, String(device), error);
      }
      throw error;
    }
    const storage = new Storage(device, byteLength, undefined, pointer[0]);
    leakedDeviceMemory.register(storage, { device: device.index, pointer: pointer[0] }, storage);
    return storage;
  }

  /** Whether the last reference was released. */
  get released(): boolean {
    return this.#references === 0;
  }

  /** Adds a reference (a new view). */
  retain(): void {
    if (this.#references === 0) throw new FlashAttentionError("disposed", "tensor: was disposed");
    this.#references++;
  }

  /** Drops a reference; the last one frees device memory. */
  release(): void {
    if (this.#references === 0) return;
    this.#references--;
    if (this.#references > 0 || this.device.kind === "cpu") return;
    leakedDeviceMemory.unregister(this);
    check(ffi().fa_free(this.device.index, this.#pointer), "tensor");
  }

  /** The host bytes (host storage only). */
  hostBytes(): Uint8Array<ArrayBuffer> {
    if (this.#host === undefined) throw new Error("Storage.hostBytes: device storage");
    return this.#host;
  }

  /** Address of byte 0, host or device. */
  address(): bigint {
    return this.#host === undefined ? this.#pointer : hostAddress(this.#host);
  }

  /** Copies `src` to byte `byteOffset` of this storage. */
  write(byteOffset: number, src: Uint8Array): void {
    if (src.byteLength === 0) return;
    if (this.#host !== undefined) {
      this.#host.set(src, byteOffset);
      return;
    }
    const status = ffi().fa_memcpy_htod(
      this.device.index,
      this.#pointer + BigInt(byteOffset),
      src as Uint8Array<ArrayBuffer>,
      BigInt(src.byteLength),
    );
    check(status, "tensor");
  }

  /** Copies `dst.byteLength` bytes from byte `byteOffset` of this storage into `dst`. */
  read(byteOffset: number, dst: Uint8Array): void {
    if (dst.byteLength === 0) return;
    if (this.#host !== undefined) {
      dst.set(this.#host.subarray(byteOffset, byteOffset + dst.byteLength));
      return;
    }
    const status = ffi().fa_memcpy_dtoh(
      this.device.index,
      dst as Uint8Array<ArrayBuffer>,
      this.#pointer + BigInt(byteOffset),
      BigInt(dst.byteLength),
    );
    check(status, "tensor");
  }

  /** Copies `byteLength` bytes from `src` (any device) into this storage. */
  copyFrom(byteOffset: number, src: Storage, srcByteOffset: number, byteLength: number): void {
    if (byteLength === 0) return;
    if (src.#host !== undefined) {
      this.write(byteOffset, src.#host.subarray(srcByteOffset, srcByteOffset + byteLength));
    } else if (this.#host !== undefined) {
      src.read(srcByteOffset, this.#host.subarray(byteOffset, byteOffset + byteLength));
    } else if (src.device.equals(this.device)) {
      const status = ffi().fa_memcpy_dtod(
        this.device.index,
        this.#pointer + BigInt(byteOffset),
        src.#pointer + BigInt(srcByteOffset),
        BigInt(byteLength),
      );
      check(status, "tensor");
    } else {
      // Between GPUs: through the host, which works without peer access.
      const staging = hostBytes(byteLength, "tensor");
      src.read(srcByteOffset, staging);
      this.write(byteOffset, staging);
    }
  }

  /** Sets every byte to zero. */
  fillZero(): void {
    if (this.#host !== undefined) {
      this.#host.fill(0);
      return;
    }
    const status = ffi().fa_memset(this.device.index, this.#pointer, 0, BigInt(this.byteLength));
    check(status, "tensor");
  }
}
