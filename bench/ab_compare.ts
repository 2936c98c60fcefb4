/**
 * A/B of two libraries on the same rows: reads `seed_table.ts --json` (or
 * `feature_rows.ts --json`) outputs of library A and of library B, each possibly run more
 * than once in the same device call (interleaved A, B, A, B, so drift hits both), keeps the
 * fastest median per row and mode, and prints B / A with a verdict against a tolerance.
 *
 *   deno run --allow-read bench/ab_compare.ts --a a1.json,a2.json --b b1.json,b2.json \
 *     [--tolerance 0.03] [--md out.md]
 * @module
 */

import { parseArgs } from "node:util";

/** Row label -> mode -> median microseconds. */
type Timings = Record<string, Record<string, number>>;

/** The fastest median of each (row, mode) over several runs of one library. */
export function fastest(runs: readonly Timings[]): Timings {
  const best: Timings = {};
  for (const run of runs) {
    for (const [row, modes] of Object.entries(run)) {
      best[row] ??= {};
      for (const [mode, us] of Object.entries(modes)) {
        const known = best[row][mode];
        if (Number.isFinite(us) && (known === undefined || us < known)) best[row][mode] = us;
      }
    }
  }
  return best;
}

/** One markdown table of A, B and B / A per row and mode, and the worst ratio. */
export function compare(a: Timings, b: Timings, tolerance: number): { md: string; worst: number } {
  const lines = [
    "| row | mode | A us | B us | B / A | within |",
    "|---|---|---|---|---|---|",
  ];
  let worst = 0;
  for (const [row, modes] of Object.entries(a)) {
    for (const [mode, usA] of Object.entries(modes)) {
      const usB = b[row]?.[mode];
      if (usB === undefined) continue;
      const ratio = usB / usA;
      worst = Math.max(worst, ratio);
      const ok = ratio <= 1 + tolerance ? "yes" : "**no**";
      lines.push(
        `| ${row} | ${mode} | ${usA.toFixed(1)} | ${usB.toFixed(1)} | ${
          ratio.toFixed(3)
        } | ${ok} |`,
      );
    }
  }
  lines.push("", `worst B / A: ${worst.toFixed(3)} (tolerance ${1 + tolerance})`);
  return { md: lines.join("\n"), worst };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      a: { type: "string" },
      b: { type: "string" },
      tolerance: { type: "string", default: "0.03" },
      md: { type: "string" },
    },
  });
  if (values.a === undefined || values.b === undefined) {
    console.error("usage: ab_compare.ts --a a1.json[,a2.json] --b b1.json[,b2.json]");
    Deno.exit(2);
  }
  const load = async (list: string) =>
    fastest(
      await Promise.all(
        list.split(",").map(async (path) => JSON.parse(await Deno.readTextFile(path)) as Timings),
      ),
    );
  const { md, worst } = compare(
    await load(values.a),
    await load(values.b),
    Number(values.tolerance),
  );
  console.log(md);
  if (values.md) await Deno.writeTextFile(values.md, md + "\n");
  if (!(worst > 0)) Deno.exit(1);
}
