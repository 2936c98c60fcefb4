/**
 * The host-side page allocator of a paged KV cache: a free list of page indices, the pages
 * each sequence holds (in row order) and a reference count per page, so pages shared by
 * several sequences (a common prefix) return to the free list when the last one lets go.
 * Pure bookkeeping: the cache uploads the block table after a change. Not public.
 * @module
 */

import { FlashAttentionError, invalidArgument } from "./errors.ts";

/** A seeded shuffle (mulberry32 draws, Fisher-Yates), so a test's page order is repeatable. */
function shuffled(items: number[], seed: number): number[] {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** What {@link PagePool.snapshot} saved, for undoing a tentative change. */
export interface PageSnapshot {
  readonly free: readonly number[];
  readonly pages: readonly (readonly number[])[];
  readonly references: Int32Array;
}

/** The pages of a paged cache and who holds them. */
export class PagePool {
  /** Pages in the cache. */
  readonly numPages: number;
  /** Block-table columns: the most pages one sequence may hold. */
  readonly maxPagesPerSeq: number;
  #free: number[];
  #pages: number[][];
  #references: Int32Array;

  /** All pages free, handed out in ascending order or shuffled with `shuffleSeed`. */
  constructor(batch: number, numPages: number, maxPagesPerSeq: number, shuffleSeed?: number) {
    this.numPages = numPages;
    this.maxPagesPerSeq = maxPagesPerSeq;
    const order = Array.from({ length: numPages }, (_, page) => page);
    this.#free = shuffleSeed === undefined ? order : shuffled(order, shuffleSeed);
    this.#pages = Array.from({ length: batch }, () => []);
    this.#references = new Int32Array(numPages);
  }

  /** Pages nobody holds. */
  get freeCount(): number {
    return this.#free.length;
  }

  /** The pages sequence `b` holds, in row order. */
  pagesOf(b: number): readonly number[] {
    return this.#pages[b];
  }

  /** A copy of the whole state. */
  snapshot(): PageSnapshot {
    return {
      free: [...this.#free],
      pages: this.#pages.map((pages) => [...pages]),
      references: this.#references.slice(),
    };
  }

  /** Puts back a state from {@link PagePool.snapshot}. */
  restore(snapshot: PageSnapshot): void {
    this.#free = [...snapshot.free];
    this.#pages = snapshot.pages.map((pages) => [...pages]);
    this.#references = snapshot.references.slice();
  }

  /**
   * Gives sequence `b` pages from the free list until it holds `count`; throws (changing
   * nothing) past the block table's width or when the free list runs out.
   */
  grow(b: number, count: number): void {
    const held = this.#pages[b];
    if (count <= held.length) return;
    if (count > this.maxPagesPerSeq) {
      throw invalidArgument(
        "cache_seqlens",
        `sequence ${b} needs ${count} pages, more than the ${this.maxPagesPerSeq} columns ` +
          `of the block table (maxPagesPerSeq)`,
      );
    }
    const missing = count - held.length;
    if (missing > this.#free.length) {
      throw new FlashAttentionError(
        "out_of_memory",
        `cache: sequence ${b} needs ${missing} more pages, only ${this.#free.length} of ` +
          `${this.numPages} are free (release() finished sequences)`,
        { argument: "cache" },
      );
    }
    for (const page of this.#free.splice(0, missing)) {
      this.#references[page]++;
      held.push(page);
    }
  }

  /** Sequence `b` lets go of every page it holds. */
  release(b: number): void {
    for (const page of this.#pages[b]) {
      if (--this.#references[page] === 0) this.#free.push(page);
    }
    this.#pages[b] = [];
  }

  /**
   * Sequence `b` holds exactly `pages` (in row order; pages may be shared with other
   * sequences, and are taken off the free list). Checked before anything changes.
   */
  assign(b: number, pages: readonly number[]): void {
    if (!Array.isArray(pages) || pages.length > this.maxPagesPerSeq) {
      throw invalidArgument(
        "block_table",
        `expected at most ${this.maxPagesPerSeq} page indices (maxPagesPerSeq) for sequence ${b}`,
      );
    }
    for (const page of pages) {
      if (!Number.isInteger(page) || page < 0 || page >= this.numPages) {
        throw invalidArgument(
          "block_table",
          `page index ${page} of sequence ${b} is outside [0, ${this.numPages}) (numPages)`,
        );
      }
    }
    if (new Set(pages).size !== pages.length) {
      throw invalidArgument("block_table", `sequence ${b} lists a page twice`);
    }
    this.release(b);
    for (const page of pages) {
      if (this.#references[page]++ === 0) this.#free.splice(this.#free.indexOf(page), 1);
    }
    this.#pages[b] = [...pages];
  }
}
