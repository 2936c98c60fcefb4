/**
 * The score features' benchmark rows (sliding window, softcap, sinks, ALiBi), bf16, forward
 * and backward, timed with CUDA events (median, L2 flushed before each call), each next to
 * the plain row it is judged against:
 *
 * - window: (1,16,16384,128) `window: [1024, 0]` and `[1024, 1024]` against the full causal
 *   row: ratio = ours / (visible fraction / causal visible fraction x ours causal), target
 *   <= 1.15 in both modes.
 * - softcap: (1,16,8192,128) causal and non-causal with softcap 30 against the same rows
 *   without: forward target <= +10%.
 * - sinks: the same rows with one sink logit per head: forward target <= +2%.
 * - alibi: (1,16,8192,128) causal with slopes 2^(-8(h+1)/H) (no target; overhead shown).
 *
 *   deno run --allow-ffi --allow-read --allow-env --allow-write bench/feature_rows.ts \
 *     [--json ours.json] [--rows window,softcap,sinks,alibi] [--iterations 30] [--list]
 *
 * `--list` prints the rows and their visible fractions without a GPU. The labels are the
 * keys of the JSON and must match bench/peers/flex_peers.py's.
 * @module
 */

import { parseArgs } from "node:util";
import { attention, attentionBackward, Device, Tensor, timeCuda } from "../mod.ts";
import { visibleScores } from "../src/cli/flops.ts";
import { randomTensor } from "./seed_inputs.ts";

const BATCH = 1, HEADS = 16, HEAD_DIM = 128;
const GROUPS = ["window", "softcap", "sinks", "alibi"] as const;
type Group = typeof GROUPS[number];
const MODES = ["fwd", "bwd"] as const;
type Mode = typeof MODES[number];

/** One benchmark row; `reference` names the row its target is measured against. */
export interface FeatureRow {
  label: string;
  groups: readonly Group[];
  seqlen: number;
  causal: boolean;
  window?: [number, number];
  softcap?: number;
  sinks?: boolean;
  alibi?: boolean;
  reference?: string;
  /** Largest allowed ours / reference time per mode (window: reference scaled by fraction). */
  targets?: Partial<Record<Mode, number>>;
}

const CAUSAL_16K = "(1,16,16384,128) causal";
const CAUSAL_8K = "(1,16,8192,128) causal";
const FULL_8K = "(1,16,8192,128) non-causal";

/** Every row, references first (the order they are timed and printed in). */
export const ROWS: readonly FeatureRow[] = [
  { label: CAUSAL_16K, groups: ["window"], seqlen: 16384, causal: true },
  {
    label: "(1,16,16384,128) window=[1024,0]",
    groups: ["window"],
    seqlen: 16384,
    causal: false, // right = 0 is the causal bound already
    window: [1024, 0],
    reference: CAUSAL_16K,
    targets: { fwd: 1.15, bwd: 1.15 },
  },
  {
    label: "(1,16,16384,128) window=[1024,1024]",
    groups: ["window"],
    seqlen: 16384,
    causal: false,
    window: [1024, 1024],
    reference: CAUSAL_16K,
    targets: { fwd: 1.15, bwd: 1.15 },
  },
  { label: CAUSAL_8K, groups: ["softcap", "sinks", "alibi"], seqlen: 8192, causal: true },
  { label: FULL_8K, groups: ["softcap", "sinks"], seqlen: 8192, causal: false },
  {
    label: "(1,16,8192,128) causal softcap=30",
    groups: ["softcap"],
    seqlen: 8192,
    causal: true,
    softcap: 30,
    reference: CAUSAL_8K,
    targets: { fwd: 1.10 },
  },
  {
    label: "(1,16,8192,128) non-causal softcap=30",
    groups: ["softcap"],
    seqlen: 8192,
    causal: false,
    softcap: 30,
    reference: FULL_8K,
    targets: { fwd: 1.10 },
  },
  {
    label: "(1,16,8192,128) causal sinks",
    groups: ["sinks"],
    seqlen: 8192,
    causal: true,
    sinks: true,
    reference: CAUSAL_8K,
    targets: { fwd: 1.02 },
  },
  {
    label: "(1,16,8192,128) non-causal sinks",
    groups: ["sinks"],
    seqlen: 8192,
    causal: false,
    sinks: true,
    reference: FULL_8K,
    targets: { fwd: 1.02 },
  },
  {
    label: "(1,16,8192,128) causal alibi",
    groups: ["alibi"],
    seqlen: 8192,
    causal: true,
    alibi: true,
    reference: CAUSAL_8K,
  },
];

/** The row's window as [left, right] (-1 unbounded), causal folded in as right = 0. */
export function effectiveWindow(row: FeatureRow): [number, number] {
  const [left, right] = row.window ?? [-1, -1];
  return [left, row.causal ? (right < 0 ? 0 : Math.min(right, 0)) : right];
}

/** Visible fraction of Sq * Sk under a window (src/cli/flops.ts counts the pairs). */
export function visibleFraction(sq: number, sk: number, window: [number, number]): number {
  return visibleScores(sq, sk, window) / (sq * sk);
}

/** Sink logits per head, spread over [-1, 1] (flex_peers.py uses the same values). */
export function sinkValues(heads: number): Float32Array {
  return Float32Array.from({ length: heads }, (_, h) => (h % 5) * 0.5 - 1);
}

/** ALiBi slopes 2^(-8(h+1)/H). */
export function alibiSlopeValues(heads: number): Float32Array {
  return Float32Array.from({ length: heads }, (_, h) => 2 ** (-8 * (h + 1) / heads));
}

type Times = Partial<Record<Mode, number>> & { error?: string };

function timeRow(device: Device, row: FeatureRow, iterations: number): Times {
  const shape = [BATCH, HEADS, row.seqlen, HEAD_DIM];
  using q = randomTensor(shape, "bfloat16", device, 1);
  using k = randomTensor(shape, "bfloat16", device, 2);
  using v = randomTensor(shape, "bfloat16", device, 3);
  using dout = randomTensor(shape, "bfloat16", device, 4);
  using sinks = row.sinks
    ? Tensor.fromArray(sinkValues(HEADS), [HEADS], { dtype: "float32", device })
    : undefined;
  using alibiSlopes = row.alibi
    ? Tensor.fromArray(alibiSlopeValues(HEADS), [HEADS], { dtype: "float32", device })
    : undefined;
  const options = {
    causal: row.causal,
    window: row.window,
    softcap: row.softcap,
    sinks,
    alibiSlopes,
  };
  const time = (fn: () => void) =>
    timeCuda(fn, { device, warmup: 3, iterations, flushL2: true }).medianMs * 1e3;
  const { out, lse } = attention(q, k, v, options);
  using _out = out;
  using _lse = lse;
  const times: Times = { fwd: time(() => void attention(q, k, v, { ...options, out, lse })) };
  // The forward's time stands even where the backward fails.
  try {
    const grads = attentionBackward(dout, q, k, v, out, lse, options);
    using dq = grads.dq;
    using dk = grads.dk;
    using dv = grads.dv;
    using _dsinks = grads.dsinks;
    // dsinks is made by each call; freeing it inside the timed loop would synchronize
    // (cudaFree), so the copies are released after timing.
    using later = new DisposableStack();
    times.bwd = time(() => {
      const result = attentionBackward(dout, q, k, v, out, lse, { ...options, dq, dk, dv });
      if (result.dsinks !== undefined) later.use(result.dsinks);
    });
  } catch (error) {
    times.error = `bwd: ${messageOf(error)}`;
    console.error(`${row.label}: backward: ${error}`);
  }
  return times;
}

function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0].slice(0, 200);
}

/** ours / (reference scaled to the row's visible work), per mode, where the row has one. */
export function derivedRatio(
  row: FeatureRow,
  mode: Mode,
  times: Record<string, Times>,
): { ratio: number; referenceUs: number } | undefined {
  if (row.reference === undefined) return undefined;
  const reference = ROWS.find((r) => r.label === row.reference)!;
  const mine = times[row.label]?.[mode], base = times[reference.label]?.[mode];
  if (mine === undefined || base === undefined) return undefined;
  // Only the window rows change the visible work; the others compare like for like.
  const scale = row.window === undefined ? 1 : fractionOf(row) / fractionOf(reference);
  return { ratio: mine / (scale * base), referenceUs: scale * base };
}

function fractionOf(row: FeatureRow): number {
  return visibleFraction(row.seqlen, row.seqlen, effectiveWindow(row));
}

function selectRows(names: string): FeatureRow[] {
  const groups = names.split(",").map((name) => {
    const group = GROUPS.find((g) => g === name);
    if (group === undefined) throw new Error(`--rows: expected some of ${GROUPS}, got ${name}`);
    return group;
  });
  return ROWS.filter((row) => row.groups.some((g) => groups.includes(g)));
}

function printSummary(rows: readonly FeatureRow[], times: Record<string, Times>): void {
  console.log("\nrow | mode | ours us | reference us | ours/reference | target | met");
  for (const row of rows) {
    for (const mode of MODES) {
      const mine = times[row.label]?.[mode];
      const derived = derivedRatio(row, mode, times);
      const target = row.targets?.[mode];
      const cells = [
        row.label,
        mode,
        mine?.toFixed(1) ?? "",
        derived?.referenceUs.toFixed(1) ?? "",
        derived?.ratio.toFixed(3) ?? "",
        target?.toFixed(2) ?? "",
        target !== undefined && derived !== undefined
          ? (derived.ratio <= target ? "yes" : "NO")
          : "",
      ];
      console.log(cells.join(" | "));
    }
  }
  const windows = rows.filter((row) => row.window !== undefined);
  for (const row of windows) {
    const reference = ROWS.find((r) => r.label === row.reference)!;
    console.log(
      `${row.label}: visible fraction ${fractionOf(row).toFixed(6)}, ` +
        `${reference.label}: ${fractionOf(reference).toFixed(6)}`,
    );
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "string" },
      rows: { type: "string", default: GROUPS.join(",") },
      iterations: { type: "string", default: "30" },
      list: { type: "boolean", default: false },
    },
  });
  const rows = selectRows(values.rows);
  if (values.list) {
    for (const row of rows) console.log(`${row.label}\t${fractionOf(row).toFixed(6)}`);
    Deno.exit(0);
  }
  const device = Device.default();
  if (device.kind !== "cuda") {
    console.error("feature_rows: no CUDA device; these rows are a GPU benchmark");
    Deno.exit(1);
  }
  console.log(`device: ${device}`);
  const times: Record<string, Times> = {};
  for (const row of rows) {
    // A row the library refuses (or fails on) is recorded and the rest still run.
    try {
      times[row.label] = timeRow(device, row, Number(values.iterations));
    } catch (error) {
      console.error(`${row.label}: ${error}`);
      times[row.label] = { error: messageOf(error) };
    }
    console.log(`${row.label}: ${JSON.stringify(times[row.label])}`);
  }
  printSummary(rows, times);
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(times, null, 1));
}
