/**
 * The CLI's decode mode (`--decode`): its options, usage text and parsing. New query rows
 * attend over a KV cache (`attentionWithKVCache`) instead of one attention call.
 * @module
 */

import { integerList, integerOption, UsageError } from "./args.ts";

/** The --help section of the decode mode. */
export const DECODE_USAGE =
  `Decode (defaults: cpu B=2 H=4 L=256 D=64; GPU B=4 Hq=32 Hkv=8 L=4096 D=128,
Hkv = Hq when --heads is given):
  --decode           new rows attend over a KV cache (attentionWithKVCache); takes the
                     shape and run options, --layout, --causal, --window, --softcap,
                     --sinks and --alibi
  --cache-len L      rows already in each sequence's cache: one L for all, or L1,L2,...
                     one per sequence (then B = their count); --cache-lens is the same
  --new-rows N       new query rows per sequence and call, Snew (default 1)
  --page-size P      paged cache with P rows per page, pages in shuffled order
                     (default: a dense cache)
  --append           append Snew new key/value rows in the call (before attending)
  --rotary DIM       rotary embedding of q and the new keys over the first DIM dims
  --splits N         split-KV parts, numSplits (default 0: the library decides)
  --steps N          N decode steps in a loop, each advancing the lengths by Snew when
                     appending (default: one call repeated, the lengths unchanged)
  --graph            with --steps: capture one step in a CUDA graph and replay it`;

/** The decode mode's options of a run, parsed and with defaults filled in. */
export interface DecodeConfig {
  /** L_b: rows already in each sequence's cache, one per sequence (B of them). */
  cacheLengths: number[];
  /** Snew: new query rows per sequence and call. */
  newRows: number;
  /** Rows per page of a paged cache; undefined for a dense cache. */
  pageSize: number | undefined;
  /** Append Snew new key/value rows in each call. */
  append: boolean;
  /** Rotary embedding over the first `rotaryDim` dims of q and the new keys (0 = off). */
  rotaryDim: number;
  /** Split-KV parts (0 = the library decides). */
  numSplits: number;
  /** Decode steps in a loop, each advancing the lengths (0 = one call repeated). */
  steps: number;
  /** Capture one step in a CUDA graph and replay it. */
  graph: boolean;
}

/** The parseArgs options of the decode mode. */
export const DECODE_OPTIONS = {
  decode: { type: "boolean", default: false },
  "cache-len": { type: "string" },
  "cache-lens": { type: "string" },
  "new-rows": { type: "string" },
  "page-size": { type: "string" },
  append: { type: "boolean", default: false },
  rotary: { type: "string" },
  splits: { type: "string" },
  steps: { type: "string" },
  graph: { type: "boolean", default: false },
} as const;

/** What parseArgs gives for {@link DECODE_OPTIONS}. */
export interface DecodeValues {
  /** --decode. */
  decode: boolean;
  /** --cache-len. */
  "cache-len"?: string;
  /** --cache-lens (the same as --cache-len). */
  "cache-lens"?: string;
  /** --new-rows. */
  "new-rows"?: string;
  /** --page-size. */
  "page-size"?: string;
  /** --append. */
  append: boolean;
  /** --rotary. */
  rotary?: string;
  /** --splits. */
  splits?: string;
  /** --steps. */
  steps?: string;
  /** --graph. */
  graph: boolean;
}

/** Options of the single attention call that the decode mode does not take. */
export interface ForwardOnlyValues {
  /** --seqlen-q. */
  "seqlen-q"?: string;
  /** --seqlen-k. */
  "seqlen-k"?: string;
  /** --bias (default "none"). */
  bias: string;
  /** --dropout (default "0"). */
  dropout: string;
  /** --backward. */
  backward: boolean;
  /** --deterministic. */
  deterministic: boolean;
}

/** Refuses decode options without --decode. */
export function rejectDecodeOptions(values: DecodeValues): void {
  const given = Object.keys(DECODE_OPTIONS).find((name) => {
    const value = values[name as keyof DecodeValues];
    return name !== "decode" && value !== undefined && value !== false;
  });
  if (given !== undefined) throw new UsageError(`--${given}: only with --decode`);
}

/** Refuses options of the single attention call with --decode. */
export function rejectForwardOptions(values: ForwardOnlyValues): void {
  const given = [
    values["seqlen-q"] !== undefined && "seqlen-q",
    values["seqlen-k"] !== undefined && "seqlen-k",
    values.bias !== "none" && "bias",
    Number(values.dropout) !== 0 && "dropout",
    values.backward && "backward",
    values.deterministic && "deterministic",
  ].find((name) => name !== false);
  if (given) {
    const hint = given.startsWith("seqlen") ? " (use --cache-len and --new-rows)" : "";
    throw new UsageError(`--${given}: not with --decode${hint}`);
  }
}

/** The cache lengths, one per sequence: `batch` (when given) copies of one L, or a list. */
function cacheLengths(values: DecodeValues, batch: string | undefined, gpu: boolean): number[] {
  if (values["cache-len"] !== undefined && values["cache-lens"] !== undefined) {
    throw new UsageError("--cache-lens: the same as --cache-len; give one of them");
  }
  const name = values["cache-lens"] !== undefined ? "cache-lens" : "cache-len";
  const given = values[name];
  const lengths = given === undefined ? [gpu ? 4096 : 256] : integerList(given, name, 0);
  if (lengths.length === 1) {
    return new Array(integerOption(batch, "batch", gpu ? 4 : 2)).fill(lengths[0]);
  }
  const count = integerOption(batch, "batch", lengths.length);
  if (count !== lengths.length) {
    throw new UsageError(
      `--${name}: ${lengths.length} lengths for --batch ${count} (one per sequence)`,
    );
  }
  return lengths;
}

/** The decode options; `batch` is --batch as given, `gpu` whether the run is on CUDA. */
export function parseDecode(
  values: DecodeValues,
  batch: string | undefined,
  gpu: boolean,
  iterations: string | undefined,
): DecodeConfig {
  const pageSize = values["page-size"];
  const rotaryDim = integerOption(values.rotary, "rotary", 0, 2);
  if (rotaryDim % 2 !== 0) {
    throw new UsageError(`--rotary: expected an even dim (pairs of dims rotate), got ${rotaryDim}`);
  }
  const steps = integerOption(values.steps, "steps", 0);
  if (values.graph && steps === 0) {
    throw new UsageError("--graph: needs --steps N (one step is captured and replayed N times)");
  }
  if (steps > 0 && iterations !== undefined) {
    throw new UsageError("--iterations: not with --steps (each of the N steps is timed)");
  }
  return {
    cacheLengths: cacheLengths(values, batch, gpu),
    newRows: integerOption(values["new-rows"], "new-rows", 1),
    pageSize: pageSize === undefined ? undefined : integerOption(pageSize, "page-size", 1),
    append: values.append,
    rotaryDim,
    numSplits: integerOption(values.splits, "splits", 0, 0),
    steps,
    graph: values.graph,
  };
}
