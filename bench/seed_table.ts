/**
 * The seed's benchmark table: (1, 12, {2048, 4096, 8192}, 128) x dropout {0, 0.1} x bias {0, 1}
 * x causal {0, 1}, bf16, forward / backward / forward+backward, timed with CUDA events
 * (median, L2 flushed before each call), printed in the seed's format with TFLOP/s added.
 *
 *   deno run --allow-ffi --allow-read --allow-env --allow-write bench/seed_table.ts \
 *     [--json ours.json] [--seqlens 2048,4096,8192] [--iterations 30] [--modes fwd,bwd,fwd+bwd]
 *     [--bias 0,1] [--dropout 0,0.1]
 *
 * Bias is a dense [1, H, N, N] bf16 tensor; causal + bias uses the causal flag with the bias.
 * @module
 */

import { parseArgs } from "node:util";
import { attention, attentionBackward, Device, timeCuda } from "../mod.ts";
import { randomTensor } from "./seed_inputs.ts";

const BATCH = 1, HEADS = 12, HEAD_DIM = 128;
const MODES = ["fwd", "bwd", "fwd+bwd"] as const;
type Mode = typeof MODES[number];

/** Row label in the seed's format. */
export function rowLabel(n: number, p: number, bias: boolean, causal: boolean): string {
  return `(${BATCH},${HEADS},${n},${HEAD_DIM}) p=${p.toFixed(1)} bias=${+bias} causal=${+causal}`;
}

function flops(n: number, causal: boolean, mode: Mode): number {
  const forward = 4 * BATCH * HEADS * n * n * HEAD_DIM / (causal ? 2 : 1);
  return { "fwd": forward, "bwd": 2.5 * forward, "fwd+bwd": 3.5 * forward }[mode];
}

function timeRow(
  device: Device,
  n: number,
  p: number,
  withBias: boolean,
  causal: boolean,
  iterations: number,
  modes: readonly Mode[],
): Partial<Record<Mode, number>> {
  const shape = [BATCH, HEADS, n, HEAD_DIM];
  using q = randomTensor(shape, "bfloat16", device, 1);
  using k = randomTensor(shape, "bfloat16", device, 2);
  using v = randomTensor(shape, "bfloat16", device, 3);
  using dout = randomTensor(shape, "bfloat16", device, 4);
  using bias = withBias ? randomTensor([1, HEADS, n, n], "bfloat16", device, 5) : undefined;
  const options = { causal, dropout: p > 0 ? { p, seed: 7 } : undefined, bias };
  const { out, lse } = attention(q, k, v, options);
  using _out = out;
  using _lse = lse;
  const grads = attentionBackward(dout, q, k, v, out, lse, options);
  using dq = grads.dq;
  using dk = grads.dk;
  using dv = grads.dv;
  const outputs = { out, lse, dq, dk, dv };
  const time = (fn: () => void) =>
    timeCuda(fn, { device, warmup: 3, iterations, flushL2: true }).medianMs * 1e3;
  const forward = () => void attention(q, k, v, { ...options, out: outputs.out, lse });
  const backward = () =>
    void attentionBackward(dout, q, k, v, out, lse, { ...options, dq, dk, dv });
  const run: Record<Mode, () => void> = {
    "fwd": forward,
    "bwd": backward,
    "fwd+bwd": () => {
      forward();
      backward();
    },
  };
  return Object.fromEntries(modes.map((mode) => [mode, time(run[mode])]));
}

function printTable(mode: Mode, rows: Map<string, Partial<Record<Mode, number>>>): void {
  const width = 48;
  console.log(`[${"-".repeat(20)} ${mode} ${"-".repeat(20)}]`);
  console.log(`${" ".repeat(width)}|  flashattn  |  TFLOP/s`);
  for (const [label, times] of rows) {
    const [n, causal] = [Number(label.split(",")[2]), label.endsWith("causal=1")];
    const us = times[mode] ?? NaN;
    const tflops = flops(n, causal, mode) / (us * 1e-6) / 1e12;
    console.log(
      `${label.padStart(width - 2)}  |${us.toFixed(1).padStart(10)}   |` +
        `${tflops.toFixed(0).padStart(8)}`,
    );
  }
  console.log("\nTimes are in microseconds (us).\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "string" },
      seqlens: { type: "string", default: "2048,4096,8192" },
      iterations: { type: "string", default: "30" },
      modes: { type: "string", default: MODES.join(",") },
      bias: { type: "string", default: "0,1" },
      dropout: { type: "string", default: "0,0.1" },
    },
  });
  const device = Device.default();
  if (device.kind !== "cuda") {
    console.error("seed_table: no CUDA device; the seed table is a GPU benchmark");
    Deno.exit(1);
  }
  const modes = values.modes.split(",").map((name) => {
    const mode = MODES.find((m) => m === name);
    if (mode === undefined) throw new Error(`--modes: expected some of ${MODES}, got ${name}`);
    return mode;
  });
  console.log(`device: ${device}`);
  const rows = new Map<string, Partial<Record<Mode, number>>>();
  for (const n of values.seqlens.split(",").map(Number)) {
    for (const bias of values.bias.split(",").map((b) => b === "1")) {
      for (const p of values.dropout.split(",").map(Number)) {
        for (const causal of [false, true]) {
          const label = rowLabel(n, p, bias, causal);
          rows.set(label, timeRow(device, n, p, bias, causal, Number(values.iterations), modes));
        }
      }
    }
  }
  for (const mode of modes) printTable(mode, rows);
  if (values.json) {
    await Deno.writeTextFile(values.json, JSON.stringify(Object.fromEntries(rows), null, 1));
  }
}
