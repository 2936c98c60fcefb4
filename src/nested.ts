/**
 * NestedBatch: sequences of different lengths packed along one axis, the variable-length
 * input of attention. No padding is stored or computed.
 * @module
 */

import type { Device } from "./device.ts";
import { disposedError, formatShape, invalidArgument } from "./errors.ts";
import { optionsObject } from "./options.ts";
import { allocateTensor, copyInto, shareTensor, Tensor } from "./tensor.ts";

/** Options of {@link NestedBatch.pack}. */
export interface PackOptions {
  /** Where the packed batch is created; default the first sequence's device. */
  device?: Device;
}

function prefixSums(seqlens: readonly number[]): Int32Array {
  const cu = new Int32Array(seqlens.length + 1);
  for (let i = 0; i < seqlens.length; i++) cu[i + 1] = cu[i] + seqlens[i];
  return cu;
}

function checkSeqlens(seqlens: readonly number[]): void {
  if (
    !Array.isArray(seqlens) || seqlens.length === 0 ||
    !seqlens.every((length) => Number.isSafeInteger(length) && length >= 0)
  ) {
    throw invalidArgument("seqlens", "expected a non-empty list of non-negative integer lengths");
  }
  if (seqlens.reduce((sum, length) => sum + length, 0) > 0x7fffffff) {
    throw invalidArgument("seqlens", "total length exceeds int32 cu_seqlens");
  }
}

// Module-private construction and liveness check, bound inside the class body.
let assemble: (data: Tensor, cuSeqlens: Tensor, seqlens: readonly number[]) => NestedBatch;
let liveBatch: (batch: NestedBatch, argument: string) => void;

/**
 * A batch of sequences of different lengths: `data` is `[total, H, D]` with sequence i in
 * rows `cuSeqlens[i] .. cuSeqlens[i + 1]`. `cuSeqlens` is an int32 tensor on the same
 * device; the lengths are also kept on the host (`seqlens`) so nothing is read back.
 *
 * @example
 * ```ts
 * using batch = NestedBatch.pack([seqA, seqB]); // each [S_i, H, D]
 * const { out, lse } = attention(batch, batch, batch, { causal: true });
 * ```
 */
export class NestedBatch implements Disposable {
  /** The packed rows, `[total, H, D]`. */
  readonly data: Tensor;
  /** int32 `[batch + 1]` prefix sums of the lengths, on the data's device. */
  readonly cuSeqlens: Tensor;
  /** Length of each sequence. */
  readonly seqlens: readonly number[];
  /** Number of sequences. */
  readonly batch: number;
  /** The longest sequence. */
  readonly maxSeqlen: number;
  /** Sum of the lengths (rows of `data`). */
  readonly total: number;
  /** Heads per row. */
  readonly heads: number;
  /** Head dimension. */
  readonly headDim: number;
  #disposed = false;

  static {
    assemble = (data, cuSeqlens, seqlens) => new NestedBatch(data, cuSeqlens, seqlens);
    liveBatch = (batch, argument) => {
      if (batch.#disposed) throw disposedError(argument, "nested batch");
    };
  }

  // Takes ownership of the references `data` and `cuSeqlens`.
  private constructor(data: Tensor, cuSeqlens: Tensor, seqlens: readonly number[]) {
    this.data = data;
    this.cuSeqlens = cuSeqlens;
    this.seqlens = Object.freeze([...seqlens]);
    this.batch = seqlens.length;
    this.maxSeqlen = seqlens.reduce((max, length) => Math.max(max, length), 0);
    this.total = data.shape[0];
    this.heads = data.shape[1];
    this.headDim = data.shape[2];
  }

  /** Whether {@link NestedBatch.dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Packs sequences `[S_i, H, D]` (any devices, one dtype) into one batch (copies). */
  static pack(seqs: readonly Tensor[], options: PackOptions = {}): NestedBatch {
    if (!Array.isArray(seqs) || seqs.length === 0) {
      throw invalidArgument("seqs", "expected a non-empty list of [S, H, D] tensors");
    }
    const [first] = seqs;
    seqs.forEach((seq, i) => {
      if (!(seq instanceof Tensor)) throw invalidArgument(`seqs`, `element ${i} is not a Tensor`);
      if (seq.disposed) throw disposedError("seqs");
      if (
        seq.shape.length !== 3 || seq.shape[1] !== first.shape[1] ||
        seq.shape[2] !== first.shape[2] || seq.dtype !== first.dtype
      ) {
        throw invalidArgument(
          "seqs",
          `expected [S, ${first.shape[1]}, ${first.shape[2]}] ${first.dtype} tensors, ` +
            `element ${i} is ${seq.dtype} ${formatShape(seq.shape)}`,
        );
      }
    });
    const seqlens = seqs.map((seq) => seq.shape[0]);
    checkSeqlens(seqlens);
    const device = optionsObject(options).device ?? first.device;
    const cu = prefixSums(seqlens);
    const shape = [cu[seqs.length], first.shape[1], first.shape[2]];
    const rowElements = first.shape[1] * first.shape[2];
    const data = allocateTensor(shape, first.dtype, device, "seqs");
    let cuSeqlens: Tensor | undefined;
    try {
      seqs.forEach((seq, i) => copyInto(data, cu[i] * rowElements, seq));
      cuSeqlens = Tensor.fromArray(cu, [cu.length], { dtype: "int32", device });
    } catch (error) {
      data.dispose();
      throw error;
    }
    return new NestedBatch(data, cuSeqlens, seqlens);
  }

  /**
   * Wraps already packed `data` `[total, H, D]` with sequence lengths summing to `total`.
   * The batch keeps its own reference to the data: dispose both independently.
   */
  static fromData(data: Tensor, seqlens: readonly number[]): NestedBatch {
    if (!(data instanceof Tensor)) throw invalidArgument("data", "expected a Tensor");
    if (data.disposed) throw disposedError("data");
    if (data.shape.length !== 3) {
      throw invalidArgument("data", `expected [total, H, D], got ${formatShape(data.shape)}`);
    }
    checkSeqlens(seqlens);
    const cu = prefixSums(seqlens);
    if (cu[seqlens.length] !== data.shape[0]) {
      throw invalidArgument(
        "seqlens",
        `lengths sum to ${cu[seqlens.length]}, data has ${data.shape[0]} rows`,
      );
    }
    const cuSeqlens = Tensor.fromArray(cu, [cu.length], { dtype: "int32", device: data.device });
    return new NestedBatch(shareTensor(data, "data"), cuSeqlens, seqlens);
  }

  /** Views `[S_i, H, D]` of each sequence, sharing storage (dispose each). */
  unpack(): Tensor[] {
    liveBatch(this, "batch");
    const cu = prefixSums(this.seqlens);
    return this.seqlens.map((_, i) => this.data.slice(0, cu[i], cu[i + 1]));
  }

  /** A copy of the batch on `device`. */
  to(device: Device): NestedBatch {
    liveBatch(this, "batch");
    const data = this.data.to(device);
    try {
      return new NestedBatch(data, this.cuSeqlens.to(device), this.seqlens);
    } catch (error) {
      data.dispose();
      throw error;
    }
  }

  /** Releases the data and cuSeqlens references (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.data.dispose();
    this.cuSeqlens.dispose();
  }

  /** Same as {@link NestedBatch.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * A batch from owned references to packed data and prefix sums (as attention returns its
 * outputs). Not part of the public API.
 */
export function nestedFromParts(
  data: Tensor,
  cuSeqlens: Tensor,
  seqlens: readonly number[],
): NestedBatch {
  return assemble(data, cuSeqlens, seqlens);
}

/** Throws "disposed" naming `argument` when the batch was disposed. Not public. */
export function checkNestedUsable(batch: NestedBatch, argument: string): void {
  if (!(batch instanceof NestedBatch)) throw invalidArgument(argument, "expected a NestedBatch");
  liveBatch(batch, argument);
}
