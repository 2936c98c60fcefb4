/**
 * KVCache: the keys and values of a batch of sequences kept on a device between decoding
 * steps, dense or paged, with the lengths kept on the device (what the kernels read) and on
 * the host (what the TypeScript side checks against and allocates pages for).
 * @module
 */

import { Device } from "./device.ts";
import { disposedError, FlashAttentionError, formatShape, invalidArgument } from "./errors.ts";
import { PagePool, type PageSnapshot } from "./kvcache_pages.ts";
import { allocateTensor, checkUsable, copyInto, Tensor } from "./tensor.ts";

/** The dtypes a KV cache holds (those of attention's q, k and v). */
export type CacheDType = "float16" | "bfloat16";

/** What both kinds of cache are made of (the options shared by `dense` and `paged`). */
export interface CacheShapeOptions {
  /** Sequences in the batch (B). */
  batch: number;
  /** Key/value heads (Hkv); queries may have any multiple of it. */
  heads: number;
  /** Head dim (D), a multiple of 8 up to 256. */
  headDim: number;
  /** Element type of the keys and values. */
  dtype: CacheDType;
  /** Where the cache lives; default the host (CPU backend). */
  device?: Device;
}

/** Options of {@link KVCache.dense}. */
export interface DenseCacheOptions extends CacheShapeOptions {
  /** Rows each sequence can hold. */
  capacity: number;
}

/** Options of {@link KVCache.paged}. */
export interface PagedCacheOptions extends CacheShapeOptions {
  /** Rows per page, any size >= 1. */
  pageSize: number;
  /** Pages in the cache, shared by all sequences. */
  numPages: number;
  /** Block-table columns, the most pages one sequence may hold; default `numPages`. */
  maxPagesPerSeq?: number;
  /**
   * Hand out free pages in an order shuffled with this seed instead of ascending (tests of
   * scattered pages; the order is repeatable for a seed).
   */
  shufflePages?: number;
}

function positiveInteger(value: unknown, argument: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw invalidArgument(argument, `expected an integer >= 1, got ${String(value)}`);
  }
  return value;
}

function cacheDtype(dtype: unknown): CacheDType {
  if (dtype !== "float16" && dtype !== "bfloat16") {
    throw invalidArgument("dtype", `expected float16 or bfloat16, got ${String(dtype)}`);
  }
  return dtype;
}

/** A tentative change of a cache's pages, undone if the call it was made for fails. */
export type UndoPages = () => void;

// Module-private access for the attention call and graph replays, bound in the class body.
let reserveRows: (
  cache: KVCache,
  rows: readonly number[],
  argument: string,
) => UndoPages;
let advanceLengths: (cache: KVCache, rows: number) => void;

/**
 * The keys and values of `batch` sequences on one device, for {@link attentionWithKVCache}.
 *
 * - Dense (`KVCache.dense`): k and v `[B, capacity, Hkv, D]`, sequence b in rows
 *   `[0, capacity)` of batch entry b.
 * - Paged (`KVCache.paged`): k and v `[numPages, pageSize, Hkv, D]` shared by all
 *   sequences, and an int32 block table `[B, maxPagesPerSeq]` on the device: row r of
 *   sequence b lives in page `blockTable[b, r / pageSize]`. Pages are allocated on the host
 *   from a free list as a sequence grows (before each call that appends, and by
 *   `write`/`setLengths`/`reserve`); `release(b)` returns them; `setBlockTable` assigns
 *   pages by hand (shared pages, a common prefix, are read-only for the call).
 *
 * Lengths: int32 `seqlens` `[B]` on the device (what the kernels read) and a host copy
 * (`lengths`). A call that appends advances both by the new rows: the device copy in the
 * kernel, stream-ordered (`FA_FLAG_ADVANCE_SEQLENS`), the host copy when the call is made
 * (for a captured graph: when it is launched). Host-side edits (`setLengths`, `write`,
 * `reserve`, `release`, `setBlockTable`) are synchronous copies that are not ordered with
 * work queued on a stream: synchronize the stream first.
 *
 * @example
 * ```ts
 * using cache = KVCache.paged({
 *   batch: 4, heads: 2, headDim: 128, pageSize: 16, numPages: 256, dtype: "bfloat16", device,
 * });
 * const { out } = attentionWithKVCache(q, cache, { kNew, vNew, causal: true });
 * console.log(cache.lengths); // advanced by the new rows
 * ```
 */
export class KVCache implements Disposable {
  /** Sequences in the batch (B). */
  readonly batch: number;
  /** Key/value heads (Hkv). */
  readonly heads: number;
  /** Head dim (D). */
  readonly headDim: number;
  /** Element type of the keys and values. */
  readonly dtype: CacheDType;
  /** Where the cache lives. */
  readonly device: Device;
  /** Rows one sequence can hold (paged: `maxPagesPerSeq * pageSize`). */
  readonly capacity: number;
  /** Rows per page (dense: the capacity, one page per sequence). */
  readonly pageSize: number;
  readonly #k: Tensor;
  readonly #v: Tensor;
  readonly #seqlens: Tensor;
  readonly #table: Tensor | undefined;
  readonly #pool: PagePool | undefined;
  readonly #lengths: number[];
  #disposed = false;

  static {
    reserveRows = (cache, rows, argument) => cache.#reserve(rows, argument);
    advanceLengths = (cache, rows) => {
      cache.#live();
      for (let b = 0; b < cache.batch; b++) cache.#lengths[b] += rows;
    };
  }

  private constructor(
    shape: CacheShapeOptions,
    device: Device,
    rows: readonly [number, number],
    pool: PagePool | undefined,
  ) {
    this.batch = shape.batch;
    this.heads = shape.heads;
    this.headDim = shape.headDim;
    this.dtype = shape.dtype;
    this.device = device;
    const [pages, pageSize] = rows;
    this.pageSize = pageSize;
    this.capacity = pool === undefined ? pageSize : pool.maxPagesPerSeq * pageSize;
    this.#pool = pool;
    this.#lengths = new Array<number>(shape.batch).fill(0);
    const cacheShape = [pages, pageSize, shape.heads, shape.headDim];
    const made: Tensor[] = [];
    // The option that sized the cache is what a failed allocation names.
    const sizedBy = pool === undefined ? "capacity" : "numPages";
    try {
      made.push(this.#k = allocateTensor(cacheShape, shape.dtype, device, sizedBy, true));
      made.push(this.#v = allocateTensor(cacheShape, shape.dtype, device, sizedBy, true));
      made.push(this.#seqlens = Tensor.zeros([shape.batch], "int32", device));
      if (pool !== undefined) {
        this.#table = Tensor.zeros([shape.batch, pool.maxPagesPerSeq], "int32", device);
      }
    } catch (error) {
      for (const tensor of made) tensor.dispose();
      throw error;
    }
  }

  static #checkShape(options: CacheShapeOptions): CacheShapeOptions {
    if (typeof options !== "object" || options === null) {
      throw invalidArgument("options", "expected the cache's shape and dtype");
    }
    return {
      batch: positiveInteger(options.batch, "batch"),
      heads: positiveInteger(options.heads, "heads"),
      headDim: positiveInteger(options.headDim, "headDim"),
      dtype: cacheDtype(options.dtype),
      device: options.device,
    };
  }

  /** A dense cache: k and v `[batch, capacity, heads, headDim]`, zeroed, every length 0. */
  static dense(options: DenseCacheOptions): KVCache {
    const shape = KVCache.#checkShape(options);
    const capacity = positiveInteger(options.capacity, "capacity");
    return new KVCache(shape, KVCache.#device(shape), [shape.batch, capacity], undefined);
  }

  /**
   * A paged cache: k and v `[numPages, pageSize, heads, headDim]` (zeroed), a block table
   * `[batch, maxPagesPerSeq]`, every page free and every length 0.
   */
  static paged(options: PagedCacheOptions): KVCache {
    const shape = KVCache.#checkShape(options);
    const pageSize = positiveInteger(options.pageSize, "pageSize");
    const numPages = positiveInteger(options.numPages, "numPages");
    const columns = options.maxPagesPerSeq === undefined
      ? numPages
      : positiveInteger(options.maxPagesPerSeq, "maxPagesPerSeq");
    const seed = options.shufflePages;
    if (seed !== undefined && !Number.isInteger(seed)) {
      throw invalidArgument("shufflePages", `expected an integer seed, got ${String(seed)}`);
    }
    let pool: PagePool;
    try {
      pool = new PagePool(shape.batch, numPages, columns, seed);
    } catch (error) {
      // The host free list of numPages entries: the engine's RangeError when it cannot be made.
      if (!(error instanceof RangeError)) throw error;
      throw new FlashAttentionError(
        "out_of_memory",
        `numPages: out of host memory for the free list of ${numPages} pages`,
        { argument: "numPages", cause: error },
      );
    }
    return new KVCache(shape, KVCache.#device(shape), [numPages, pageSize], pool);
  }

  static #device(shape: CacheShapeOptions): Device {
    if (shape.device === undefined) return Device.cpu();
    if (!(shape.device instanceof Device)) throw invalidArgument("device", "expected a Device");
    return shape.device;
  }

  #live(): void {
    if (this.#disposed) throw disposedError("cache", "KV cache");
  }

  /** Whether the cache is paged (has a block table). */
  get paged(): boolean {
    return this.#pool !== undefined;
  }

  /** Keys: dense `[B, capacity, Hkv, D]`, paged `[numPages, pageSize, Hkv, D]`. */
  get k(): Tensor {
    this.#live();
    return this.#k;
  }

  /** Values, like {@link KVCache.k}. */
  get v(): Tensor {
    this.#live();
    return this.#v;
  }

  /** The lengths on the device, int32 `[B]` (what the kernels read and advance). */
  get seqlens(): Tensor {
    this.#live();
    return this.#seqlens;
  }

  /** Paged caches: the int32 block table `[B, maxPagesPerSeq]`; undefined for dense ones. */
  get blockTable(): Tensor | undefined {
    this.#live();
    return this.#table;
  }

  /** Pages in the cache (dense: one per sequence). */
  get numPages(): number {
    return this.#pool?.numPages ?? this.batch;
  }

  /** Pages no sequence holds (dense: 0). */
  get freePages(): number {
    return this.#pool?.freeCount ?? 0;
  }

  /** The host copy of the lengths: rows of each sequence in the cache. */
  get lengths(): readonly number[] {
    this.#live();
    return Object.freeze([...this.#lengths]);
  }

  /** The pages sequence `b` holds, in row order (dense: `[b]`). */
  pagesOf(b: number): readonly number[] {
    this.#live();
    const index = this.#sequence(b);
    return this.#pool === undefined ? [index] : [...this.#pool.pagesOf(index)];
  }

  #sequence(b: number, argument = "b"): number {
    if (!Number.isInteger(b) || b < 0 || b >= this.batch) {
      throw invalidArgument(argument, `expected a sequence index in [0, ${this.batch}), got ${b}`);
    }
    return b;
  }

  /**
   * Sets the lengths (one per sequence, or one for all), on the host and the device; a
   * paged cache first gives each sequence the pages its rows need. Rows keep their contents.
   */
  setLengths(lengths: readonly number[] | number): void {
    this.#live();
    const values = typeof lengths === "number" ? new Array(this.batch).fill(lengths) : lengths;
    if (!Array.isArray(values) || values.length !== this.batch) {
      throw invalidArgument("cache_seqlens", `expected ${this.batch} lengths (one per sequence)`);
    }
    for (const [b, length] of values.entries()) {
      if (!Number.isInteger(length) || length < 0 || length > this.capacity) {
        throw invalidArgument(
          "cache_seqlens",
          `expected lengths in [0, ${this.capacity}] (the capacity), got ${length} for ` +
            `sequence ${b}`,
        );
      }
    }
    const undo = this.#reserve(values, "cache_seqlens");
    try {
      this.#uploadLengths(values);
    } catch (error) {
      undo();
      throw error;
    }
  }

  /** Makes sure sequence `b` can hold `rows` rows (paged: allocates its pages now). */
  reserve(b: number, rows: number): void {
    this.#live();
    const index = this.#sequence(b);
    const needed = this.#lengths.map((length, i) => i === index ? Math.max(length, rows) : length);
    this.#reserve(needed, "rows");
  }

  /** Sequence `b` ends: its pages return to the free list and its length becomes 0. */
  release(b: number): void {
    this.#live();
    const index = this.#sequence(b);
    const lengths = this.#lengths.map((length, i) => i === index ? 0 : length);
    this.#uploadLengths(lengths);
    if (this.#pool !== undefined) {
      this.#pool.release(index);
      this.#uploadTable();
    }
  }

  /** Every sequence ends (see {@link KVCache.release}). */
  reset(): void {
    for (let b = 0; b < this.batch; b++) this.release(b);
  }

  /**
   * Paged caches: sequence `b` uses exactly `pages` (row order), taken off the free list;
   * its former pages are let go. Pages may be shared with other sequences (a common
   * prefix): the library refuses a call that would append into a shared row. The pages
   * must cover the sequence's current length.
   */
  setBlockTable(b: number, pages: readonly number[]): void {
    this.#live();
    const index = this.#sequence(b);
    const pool = this.#pool;
    if (pool === undefined) throw invalidArgument("block_table", "a dense cache has no pages");
    const needed = Math.ceil(this.#lengths[index] / this.pageSize);
    if (Array.isArray(pages) && pages.length < needed) {
      throw invalidArgument(
        "block_table",
        `sequence ${b} holds ${this.#lengths[index]} rows, which need ${needed} pages; ` +
          `got ${pages.length}`,
      );
    }
    const before = pool.snapshot();
    pool.assign(index, pages);
    this.#commitPages(before);
  }

  /**
   * Copies rows into sequence `b` starting at row `start`: `k` and `v` are
   * `[rows, Hkv, D]` tensors (any device, the cache's dtype). Lengths are unchanged (see
   * {@link KVCache.fill}); a paged cache allocates the pages the rows need.
   */
  write(b: number, start: number, k: Tensor, v: Tensor): void {
    this.#live();
    const index = this.#sequence(b);
    const rows = this.#checkRows(k, "k", undefined);
    this.#checkRows(v, "v", rows);
    if (!Number.isInteger(start) || start < 0 || start + rows > this.capacity) {
      throw invalidArgument(
        "start",
        `rows ${start}..${start + rows} do not fit the capacity ${this.capacity}`,
      );
    }
    const needed = this.#lengths.map((length, i) => i === index ? start + rows : length);
    this.#reserve(needed, "rows");
    this.#forEachChunk(index, start, start + rows, (element, from, count) => {
      for (const [target, source] of [[this.#k, k], [this.#v, v]] as const) {
        using chunk = source.slice(0, from - start, from - start + count);
        copyInto(target, element, chunk);
      }
    });
  }

  /** Sequence `b` holds exactly `k` and `v` (`[rows, Hkv, D]`): written from row 0, length `rows`. */
  fill(b: number, k: Tensor, v: Tensor): void {
    this.write(b, 0, k, v);
    this.#uploadLengths(this.#lengths.map((length, i) => i === b ? k.shape[0] : length));
  }

  /**
   * Rows `[start, end)` of sequence `b` (default: all its rows) as contiguous
   * `[rows, Hkv, D]` tensors on the cache's device.
   */
  read(b: number, start = 0, end?: number): { k: Tensor; v: Tensor } {
    this.#live();
    const index = this.#sequence(b);
    const last = end ?? this.#lengths[index];
    if (!Number.isInteger(start) || !Number.isInteger(last) || start < 0 || last < start) {
      throw invalidArgument("end", `expected 0 <= start <= end, got ${start}..${last}`);
    }
    const pages = this.#pool?.pagesOf(index).length ?? 1;
    if (last > Math.min(this.capacity, pages * this.pageSize)) {
      throw invalidArgument("end", `sequence ${b} has no row ${last - 1} (no page holds it)`);
    }
    const shape = [last - start, this.heads, this.headDim];
    const k = Tensor.empty(shape, this.dtype, this.device);
    const v = Tensor.empty(shape, this.dtype, this.device);
    try {
      const rowElements = this.heads * this.headDim;
      this.#forEachChunk(index, start, last, (element, from, count) => {
        for (const [target, source] of [[k, this.#k], [v, this.#v]] as const) {
          using flat = source.reshape([-1, this.heads, this.headDim]);
          const row = element / rowElements;
          using chunk = flat.slice(0, row, row + count);
          copyInto(target, (from - start) * rowElements, chunk);
        }
      });
    } catch (error) {
      k.dispose();
      v.dispose();
      throw error;
    }
    return { k, v };
  }

  /** Frees the device memory (idempotent); later use throws "disposed". */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const tensor of [this.#k, this.#v, this.#seqlens, this.#table]) tensor?.dispose();
  }

  /** Same as {@link KVCache.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** "KVCache(bfloat16 paged 256 x 16 rows, B 4, Hkv 2, D 128 on cuda:0 (...))". */
  toString(): string {
    const layout = this.paged ? `paged ${this.numPages} x ${this.pageSize} rows` : "dense";
    return `KVCache(${this.dtype} ${layout}, capacity ${this.capacity}, B ${this.batch}, ` +
      `Hkv ${this.heads}, D ${this.headDim} on ${this.device})`;
  }

  // [rows, Hkv, D] of the cache's dtype; returns rows.
  #checkRows(tensor: Tensor, argument: string, rows: number | undefined): number {
    checkUsable(tensor, argument);
    const expected = [rows ?? tensor.shape[0], this.heads, this.headDim];
    if (
      tensor.shape.length !== 3 || tensor.dtype !== this.dtype ||
      !tensor.shape.every((size, dim) => size === expected[dim])
    ) {
      throw invalidArgument(
        argument,
        `expected ${this.dtype} ${formatShape(expected)} rows, got ${tensor.dtype} ` +
          formatShape(tensor.shape),
      );
    }
    return expected[0];
  }

  // Calls `body(element offset in the cache tensors, first row, rows)` for each run of
  // rows [start, end) of sequence b that is contiguous in the cache (one per page).
  #forEachChunk(
    b: number,
    start: number,
    end: number,
    body: (element: number, from: number, count: number) => void,
  ): void {
    const rowElements = this.heads * this.headDim;
    for (let row = start; row < end;) {
      const page = this.#pool === undefined ? b : this.#pool.pagesOf(b)[row / this.pageSize | 0];
      const within = this.#pool === undefined ? row : row % this.pageSize;
      const count = Math.min(end - row, this.pageSize - within);
      body((page * this.pageSize + within) * rowElements, row, count);
      row += count;
    }
  }

  // Gives every sequence pages for rows[b] rows (after checking them against the capacity)
  // and uploads the block table if it changed; returns how to undo that.
  #reserve(rows: readonly number[], argument: string): UndoPages {
    rows.forEach((count, b) => {
      if (count > this.capacity) {
        throw invalidArgument(
          argument,
          `sequence ${b} would hold ${count} rows, more than the capacity ${this.capacity}`,
        );
      }
    });
    const pool = this.#pool;
    if (pool === undefined) return () => {};
    const before = pool.snapshot();
    try {
      rows.forEach((count, b) => pool.grow(b, Math.ceil(count / this.pageSize)));
    } catch (error) {
      pool.restore(before);
      throw error;
    }
    if (!this.#commitPages(before)) return () => {};
    return () => {
      pool.restore(before);
      this.#uploadTable();
    };
  }

  // Uploads the table when the pages differ from `before` (restoring them if that fails).
  #commitPages(before: PageSnapshot): boolean {
    const pool = this.#pool!;
    const changed = before.pages.some((pages, b) => {
      const now = pool.pagesOf(b);
      return pages.length !== now.length || pages.some((page, i) => page !== now[i]);
    });
    if (!changed) return false;
    try {
      this.#uploadTable();
    } catch (error) {
      pool.restore(before);
      throw error;
    }
    return true;
  }

  #uploadTable(): void {
    const pool = this.#pool!;
    const columns = pool.maxPagesPerSeq;
    // Unused entries hold page 0, a valid index: a kernel never reads past valid memory.
    const table = new Int32Array(this.batch * columns);
    for (let b = 0; b < this.batch; b++) table.set(pool.pagesOf(b), b * columns);
    using host = Tensor.fromArray(table, [this.batch, columns]);
    copyInto(this.#table!, 0, host);
    this.#landed();
  }

  #uploadLengths(lengths: readonly number[]): void {
    using host = Tensor.fromArray(Int32Array.from(lengths), [this.batch]);
    copyInto(this.#seqlens, 0, host);
    this.#landed();
    lengths.forEach((length, b) => this.#lengths[b] = length);
  }

  // An upload from pageable host memory may return before its DMA is done, and a kernel on
  // a non-blocking stream does not wait for it: wait here (uploads are rare: a new page
  // every pageSize rows, or a host edit), so the next call reads the new values.
  #landed(): void {
    this.device.synchronize();
  }
}

/**
 * Checks that each sequence can take `rows[b]` rows and gives paged sequences the pages
 * for them; returns how to undo it. Not public.
 */
export function reserveCacheRows(
  cache: KVCache,
  rows: readonly number[],
  argument: string,
): UndoPages {
  return reserveRows(cache, rows, argument);
}

/** Advances the host copy of every length by `rows` (the device's advanced itself). Not public. */
export function advanceHostLengths(cache: KVCache, rows: number): void {
  advanceLengths(cache, rows);
}
