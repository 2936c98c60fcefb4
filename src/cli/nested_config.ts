/**
 * The CLI's nested mode (`--seqlens`): variable-length sequences packed into one
 * NestedBatch per operand instead of a dense [B, H, S, D] batch. Its options and parsing.
 * @module
 */

import { integerList, UsageError } from "./args.ts";

/** The --help section of the nested mode. */
export const NESTED_USAGE = `Nested (variable-length sequences, NestedBatch):
  --seqlens L1,L2,...    one query sequence of each length, packed without padding
                         (then B = their count); takes the shape, attention and run
                         options except --seqlen-q, --seqlen-k, --bias and --layout
  --seqlens-k L1,L2,...  the key lengths, one per sequence (default: --seqlens)`;

/** The nested mode's options of a run. */
export interface NestedConfig {
  /** Query rows of each sequence. */
  seqlensQ: number[];
  /** Key rows of each sequence (as many as `seqlensQ`). */
  seqlensK: number[];
}

/** The parseArgs options of the nested mode. */
export const NESTED_OPTIONS = {
  seqlens: { type: "string" },
  "seqlens-k": { type: "string" },
} as const;

/** What parseArgs gives for {@link NESTED_OPTIONS} and the options they rule out. */
export interface NestedValues {
  /** --seqlens. */
  seqlens?: string;
  /** --seqlens-k. */
  "seqlens-k"?: string;
  /** --batch. */
  batch?: string;
  /** --seqlen-q. */
  "seqlen-q"?: string;
  /** --seqlen-k. */
  "seqlen-k"?: string;
  /** --bias (default "none"). */
  bias: string;
  /** --layout (default "bhsd"). */
  layout: string;
  /** --decode. */
  decode: boolean;
}

function lengths(value: string, name: string): number[] {
  const list = integerList(value, name, 0);
  if (list.every((length) => length === 0)) {
    throw new UsageError(`--${name}: every sequence is empty; give at least one row`);
  }
  return list;
}

/** The nested options, or undefined without --seqlens; refuses what does not go with it. */
export function parseNested(values: NestedValues): NestedConfig | undefined {
  if (values.seqlens === undefined) {
    if (values["seqlens-k"] !== undefined) throw new UsageError("--seqlens-k: only with --seqlens");
    return undefined;
  }
  const refused = [
    values.decode && "decode",
    values["seqlen-q"] !== undefined && "seqlen-q",
    values["seqlen-k"] !== undefined && "seqlen-k",
    values.bias !== "none" && "bias",
    values.layout !== "bhsd" && "layout",
  ].find((name) => name !== false);
  if (refused) {
    const hint = refused.startsWith("seqlen-") ? " (the lengths are --seqlens, --seqlens-k)" : "";
    throw new UsageError(`--${refused}: not with --seqlens${hint}`);
  }
  const seqlensQ = lengths(values.seqlens, "seqlens");
  const given = values["seqlens-k"];
  const seqlensK = given === undefined ? seqlensQ : lengths(given, "seqlens-k");
  if (seqlensK.length !== seqlensQ.length) {
    throw new UsageError(
      `--seqlens-k: ${seqlensK.length} lengths for ${seqlensQ.length} sequences of --seqlens`,
    );
  }
  if (values.batch !== undefined && Number(values.batch) !== seqlensQ.length) {
    throw new UsageError(
      `--batch: ${values.batch} for ${seqlensQ.length} sequences of --seqlens (one per length)`,
    );
  }
  return { seqlensQ, seqlensK };
}
