/**
 * Devices: the host (CPU backend) and the CUDA GPUs the library sees.
 * @module
 */

import { check, ffi } from "../ffi/library.ts";
import {
  DEVICE_CPU,
  DEVICE_INFO_BYTES,
  type DeviceInfo,
  unpackDeviceInfo,
} from "../ffi/structs.ts";
import { FlashAttentionError, invalidArgument } from "./errors.ts";
import { hardwareThreads, hostMemory } from "./host.ts";

/** Reads `fa_device_info` of a CUDA ordinal. */
function deviceInfo(index: number): DeviceInfo {
  const bytes = new Uint8Array(DEVICE_INFO_BYTES);
  check(ffi().fa_device_info_get(index, bytes), "device");
  return unpackDeviceInfo(bytes);
}

let cpuDevice: Device | undefined;
const cudaDevices = new Map<number, Device>();

/**
 * Where tensors live and attention runs: the host ("cpu", the reference backend) or one
 * CUDA GPU. Devices are compared with {@link Device.equals}.
 *
 * @example
 * ```ts
 * const device = Device.default(); // cuda:0 when present, else cpu
 * console.log(device.toString());
 * ```
 */
export class Device {
  /** "cpu" for the host, "cuda" for a GPU. */
  readonly kind: "cpu" | "cuda";
  /** The CUDA ordinal, or -1 for the host. */
  readonly index: number;
  /** "cpu", or the GPU's name ("NVIDIA H100 80GB HBM3"). */
  readonly name: string;
  /** The GPU's compute capability [major, minor]; null for the host. */
  readonly computeCapability: readonly [number, number] | null;
  /** Streaming multiprocessors of the GPU, or hardware threads of the host. */
  readonly multiprocessors: number;
  /** Memory in bytes (host: physical memory; 0 without `--allow-sys`). */
  readonly totalMemory: number;

  private constructor(
    kind: "cpu" | "cuda",
    index: number,
    name: string,
    computeCapability: readonly [number, number] | null,
    multiprocessors: number,
    totalMemory: number,
  ) {
    this.kind = kind;
    this.index = index;
    this.name = name;
    this.computeCapability = computeCapability;
    this.multiprocessors = multiprocessors;
    this.totalMemory = totalMemory;
  }

  /** The host: tensors in host memory, attention on the CPU reference backend. */
  static cpu(): Device {
    cpuDevice ??= new Device("cpu", DEVICE_CPU, "cpu", null, hardwareThreads(), hostMemory().total);
    return cpuDevice;
  }

  /** CUDA device `index` (default 0); throws "no_device" when there is no such GPU. */
  static cuda(index = 0): Device {
    if (!Number.isInteger(index) || index < 0) {
      throw invalidArgument("device", `expected a CUDA ordinal >= 0, got ${index}`);
    }
    const known = cudaDevices.get(index);
    if (known !== undefined) return known;
    const count = Device.cudaCount();
    if (index >= count) {
      throw new FlashAttentionError(
        "no_device",
        `device: cuda:${index} does not exist (${count} CUDA device${count === 1 ? "" : "s"})`,
      );
    }
    const info = deviceInfo(index);
    const device = new Device(
      "cuda",
      index,
      info.name,
      [info.major, info.minor],
      info.multiprocessors,
      info.totalMemory,
    );
    cudaDevices.set(index, device);
    return device;
  }

  /** Number of CUDA devices; 0 where there is no driver or no GPU (that never throws). */
  static cudaCount(): number {
    const count = new Int32Array(1);
    // The library answers 0 with FA_OK where there is no driver or no GPU.
    check(ffi().fa_device_count(count), "device");
    return count[0];
  }

  /** The host first, then every CUDA device. */
  static list(): Device[] {
    const devices = [Device.cpu()];
    const count = Device.cudaCount();
    for (let index = 0; index < count; index++) devices.push(Device.cuda(index));
    return devices;
  }

  /** cuda:0 when a GPU is present, else the host. */
  static default(): Device {
    return Device.cudaCount() > 0 ? Device.cuda(0) : Device.cpu();
  }

  /** Free memory in bytes now (host: available memory; 0 without `--allow-sys`). */
  freeMemory(): number {
    return this.kind === "cpu" ? hostMemory().available : deviceInfo(this.index).freeMemory;
  }

  /** Waits until all work queued on the device has finished (no-op for the host). */
  synchronize(): void {
    if (this.kind === "cuda") check(ffi().fa_device_synchronize(this.index), "device");
  }

  /** Whether both name the same device. */
  equals(other: Device): boolean {
    return this.kind === other.kind && this.index === other.index;
  }

  /** "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)". */
  toString(): string {
    return this.kind === "cpu" ? "cpu" : `cuda:${this.index} (${this.name})`;
  }
}
