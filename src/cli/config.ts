/**
 * The CLI's options: usage text, parsing and validation.
 * @module
 */

import { parseArgs } from "node:util";
import { Device } from "../device.ts";
import { integerOption, joinNegativeValues, seedOption, UsageError } from "./args.ts";
import {
  DECODE_OPTIONS,
  DECODE_USAGE,
  type DecodeConfig,
  parseDecode,
  rejectDecodeOptions,
  rejectForwardOptions,
} from "./decode_config.ts";

import { NESTED_OPTIONS, NESTED_USAGE, type NestedConfig, parseNested } from "./nested_config.ts";

export { UsageError } from "./args.ts";

/** The --help text. */
export const USAGE = `flashattn: benchmark and check exact fused attention.

Usage: deno run --allow-ffi --allow-read --allow-env cli.ts [options]

Shape (defaults: cpu B=1 H=4 S=512 D=64; GPU B=1 H=12 S=4096 D=128):
  --batch N          batch size B
  --heads N          query heads Hq
  --kv-heads N       key/value heads Hkv, dividing Hq (default Hq)
  --seqlen-q N       query length Sq
  --seqlen-k N       key length Sk (default Sq)
  --head-dim N       head dimension D (multiple of 8, up to 256)
  --dtype T          bf16 (default) or fp16
  --layout L         bhsd (default) or bshd

Attention:
  --causal           causal mask, bottom-right aligned
  --dropout P        dropout probability in [0, 1)
  --seed N           seed of the inputs and of the dropout mask, an integer in
                     [-2^63, 2^64); negative seeds wrap: -1 = 2^64 - 1 (default 0)
  --bias KIND        none (default), full ([B, Hq, Sq, Sk]) or key-padding ([B, 1, 1, Sk])
  --window L,R       sliding window: row i sees keys i+Sk-Sq-L .. i+Sk-Sq+R (-1 = unbounded)
  --softcap C        logit softcap C > 0: scores become C tanh(score / C)
  --sinks [V]        attention sinks: random N(0, 1) logits per head, or V for every head
  --alibi            ALiBi with the standard slopes 2^(-8h/Hq), h = 1..Hq
  --backward         also time the backward pass
  --deterministic    deterministic backward

Run:
  --device D         auto (default), cpu, cuda or cuda:N
  --iterations N     timed calls (default: 3 on cpu, 20 on GPU)
  --warmup N         untimed calls first (default: 1 on cpu, 3 on GPU)
  --check            compare with a reference: the CPU backend for GPU runs, float64 for
                     CPU runs (default on when the problem is small)
  --no-check         skip the comparison
  -h, --help         show this help

${NESTED_USAGE}

${DECODE_USAGE}

Exit status: 0 done (and every check passed), 1 a check failed or the library refused or
failed, 2 a usage mistake or a missing permission flag (nothing ran).`;

/** Which bias the run adds: none, a full [B, Hq, Sq, Sk] one, or a [B, 1, 1, Sk] key mask. */
export type BiasKind = "none" | "full" | "key-padding";

/** Attention sinks of a run: none, random N(0, 1) logits per head, or one value for all. */
export type SinksKind = "none" | "random" | number;

/** One run of the CLI, parsed and with defaults filled in. */
export interface Config {
  /** Where everything runs. */
  device: Device;
  /** B. */
  batch: number;
  /** Hq. */
  headsQ: number;
  /** Hkv. */
  headsKv: number;
  /** Sq. */
  seqlenQ: number;
  /** Sk. */
  seqlenK: number;
  /** D. */
  headDim: number;
  /** Element type of q, k, v and the bias. */
  dtype: "bfloat16" | "float16";
  /** How q, k, v are shaped. */
  layout: "bhsd" | "bshd";
  /** Causal mask. */
  causal: boolean;
  /** Dropout probability (0 = none). */
  dropout: number;
  /** Seed of the inputs and of the dropout mask, the u64 the library takes. */
  seed: bigint;
  /** Which bias to add. */
  bias: BiasKind;
  /** Sliding window [left, right] (undefined = none). */
  window: [number, number] | undefined;
  /** Logit softcap (0 = off). */
  softcap: number;
  /** Attention sinks. */
  sinks: SinksKind;
  /** ALiBi with the standard geometric slopes. */
  alibi: boolean;
  /** Also run the backward pass. */
  backward: boolean;
  /** Deterministic backward. */
  deterministic: boolean;
  /** Timed calls. */
  iterations: number;
  /** Untimed calls first. */
  warmup: number;
  /** --check (true), --no-check (false), or neither (undefined: decide by size). */
  check: boolean | undefined;
  /**
   * The decode mode's options (--decode); undefined for one attention call. In decode mode
   * `seqlenQ` is Snew and `seqlenK` the longest cache length plus the appended rows.
   */
  decode: DecodeConfig | undefined;
  /**
   * The nested mode's lengths (--seqlens); undefined for a dense batch. In nested mode
   * `batch` is the number of sequences and `seqlenQ`, `seqlenK` the longest lengths.
   */
  nested: NestedConfig | undefined;
}

function choice<T extends string>(value: string, name: string, choices: Record<string, T>): T {
  const picked = choices[value];
  if (picked === undefined) {
    throw new UsageError(`--${name}: expected one of ${Object.keys(choices).join(", ")}`);
  }
  return picked;
}

function pickDevice(name: string): Device {
  if (name === "auto") return Device.default();
  if (name === "cpu") return Device.cpu();
  const match = /^cuda(?::(\d+))?$/.exec(name);
  if (match === null) throw new UsageError(`--device: expected auto, cpu, cuda or cuda:N`);
  return Device.cuda(Number(match[1] ?? 0));
}

function parseWindow(value: string | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const edges = value.split(",").map(Number);
  if (edges.length !== 2 || !edges.every((edge) => Number.isSafeInteger(edge) && edge >= -1)) {
    throw new UsageError(`--window: expected L,R, two integers >= -1, got ${value}`);
  }
  return [edges[0], edges[1]];
}

function parseSoftcap(value: string | undefined): number {
  if (value === undefined) return 0;
  const softcap = Number(value);
  if (!(Number.isFinite(softcap) && softcap > 0)) {
    throw new UsageError(`--softcap: expected a finite number > 0, got ${value}`);
  }
  return softcap;
}

function parseSinks(value: string | undefined): SinksKind {
  if (value === undefined) return "none";
  if (value === "random") return "random";
  const sink = Number(value);
  if (value.trim() === "" || Number.isNaN(sink)) {
    throw new UsageError(`--sinks: expected random or a number, got ${value}`);
  }
  return sink;
}

/** `--sinks` without a value means random sinks: give parseArgs the value it needs. */
function withSinksValue(args: string[]): string[] {
  return args.flatMap((arg, i) => {
    if (arg !== "--sinks") return [arg];
    const next = args[i + 1];
    return next === undefined || next.startsWith("--") ? ["--sinks=random"] : [arg];
  });
}

/** The parseArgs options of the CLI. */
const OPTIONS = {
  batch: { type: "string" },
  heads: { type: "string" },
  "kv-heads": { type: "string" },
  "seqlen-q": { type: "string" },
  "seqlen-k": { type: "string" },
  "head-dim": { type: "string" },
  dtype: { type: "string", default: "bf16" },
  layout: { type: "string", default: "bhsd" },
  causal: { type: "boolean", default: false },
  dropout: { type: "string", default: "0" },
  seed: { type: "string", default: "0" },
  bias: { type: "string", default: "none" },
  window: { type: "string" },
  softcap: { type: "string" },
  sinks: { type: "string" },
  alibi: { type: "boolean", default: false },
  backward: { type: "boolean", default: false },
  deterministic: { type: "boolean", default: false },
  device: { type: "string", default: "auto" },
  iterations: { type: "string" },
  warmup: { type: "string" },
  check: { type: "boolean" },
  "no-check": { type: "boolean" },
  help: { type: "boolean", short: "h", default: false },
  ...DECODE_OPTIONS,
  ...NESTED_OPTIONS,
} as const;

/** Options that take a value (which may be a negative number). */
const VALUED: ReadonlySet<string> = new Set(
  Object.entries(OPTIONS).filter(([, option]) => option.type === "string").map(([name]) => name),
);

/** Whether `args` ask for --help (which needs no permission and no library). */
export function asksForHelp(args: readonly string[]): boolean {
  return args.some((arg) => arg === "--help" || arg === "-h");
}

/** Parses the command line; "help" when --help was asked for. */
export function parseConfig(args: string[]): Config | "help" {
  const { values } = parseArgs({
    args: joinNegativeValues(withSinksValue(args), VALUED),
    strict: true,
    options: OPTIONS,
  });
  if (values.help) return "help";
  if (values.decode) rejectForwardOptions(values);
  else rejectDecodeOptions(values);
  const dtype = choice(
    values.dtype,
    "dtype",
    {
      bf16: "bfloat16",
      bfloat16: "bfloat16",
      fp16: "float16",
      float16: "float16",
    } as const,
  );
  const layout = choice(values.layout, "layout", { bhsd: "bhsd", bshd: "bshd" } as const);
  const bias = choice(
    values.bias,
    "bias",
    {
      none: "none",
      full: "full",
      "key-padding": "key-padding",
    } as const,
  );
  const dropout = Number(values.dropout);
  if (!(dropout >= 0 && dropout < 1)) {
    throw new UsageError(`--dropout: expected a probability in [0, 1), got ${values.dropout}`);
  }
  const device = pickDevice(values.device);
  const gpu = device.kind === "cuda";
  const decode = values.decode
    ? parseDecode(values, values.batch, gpu, values.iterations)
    : undefined;
  const headsQ = integerOption(values.heads, "heads", gpu ? (decode ? 32 : 12) : 4);
  const headsKv = integerOption(
    values["kv-heads"],
    "kv-heads",
    gpu && decode && values.heads === undefined ? 8 : headsQ,
  );
  const nested = parseNested(values);
  const seqlenQ = decode
    ? decode.newRows
    : nested
    ? Math.max(...nested.seqlensQ)
    : integerOption(values["seqlen-q"], "seqlen-q", gpu ? 4096 : 512);
  const seqlenK = decode
    ? Math.max(...decode.cacheLengths) + (decode.append ? decode.newRows : 0)
    : nested
    ? Math.max(...nested.seqlensK)
    : integerOption(values["seqlen-k"], "seqlen-k", seqlenQ);
  const batch = decode
    ? decode.cacheLengths.length
    : nested
    ? nested.seqlensQ.length
    : integerOption(values.batch, "batch", 1);
  return {
    device,
    batch,
    headsQ,
    headsKv,
    seqlenQ,
    seqlenK,
    headDim: integerOption(values["head-dim"], "head-dim", gpu ? 128 : 64),
    dtype,
    layout,
    causal: values.causal,
    dropout,
    seed: seedOption(values.seed),
    bias,
    window: parseWindow(values.window),
    softcap: parseSoftcap(values.softcap),
    sinks: parseSinks(values.sinks),
    alibi: values.alibi,
    backward: values.backward,
    deterministic: values.deterministic,
    iterations: integerOption(values.iterations, "iterations", gpu ? 20 : 3),
    warmup: integerOption(values.warmup, "warmup", gpu ? 3 : 1, 0),
    check: values["no-check"] ? false : values.check,
    decode,
    nested,
  };
}

/** The window the problem attends through: `--window`, with `--causal` as its right side 0. */
export function effectiveWindow(config: Config): [number, number] {
  const [left, right] = config.window ?? [-1, -1];
  return config.causal ? [left, 0] : [left, right];
}

/** One line describing the problem: sizes, dtype, layout and every option given or defaulted. */
export function describeProblem(config: Config): string {
  if (config.decode) return describeDecode(config, config.decode);
  const nested = config.nested;
  const sizes = nested
    ? [
      `nested B=${config.batch} Hq=${config.headsQ} Hkv=${config.headsKv}`,
      `Sq=${nested.seqlensQ.join(",")} Sk=${nested.seqlensK.join(",")} D=${config.headDim}`,
    ]
    : [
      `B=${config.batch} Hq=${config.headsQ} Hkv=${config.headsKv}`,
      `Sq=${config.seqlenQ} Sk=${config.seqlenK} D=${config.headDim}`,
    ];
  const parts = [
    ...sizes,
    `${config.dtype} ${nested ? "packed" : config.layout}`,
    `seed=${config.seed}`,
    ...scoreParts(config),
    ...(config.backward ? ["backward"] : []),
    ...(config.deterministic ? ["deterministic"] : []),
    ...runParts(config),
  ];
  return parts.join(" ");
}

/** How the calls are timed: warm-up and timed calls (decode steps count themselves). */
function runParts(config: Config): string[] {
  const timed = config.decode && config.decode.steps > 0 ? [] : [`iterations=${config.iterations}`];
  return [`warmup=${config.warmup}`, ...timed];
}

/** The decode problem: every decode option, then the score options that are on. */
function describeDecode(config: Config, decode: DecodeConfig): string {
  const lengths = decode.cacheLengths;
  const same = lengths.every((length) => length === lengths[0]);
  const parts = [
    `decode B=${config.batch} Hq=${config.headsQ} Hkv=${config.headsKv} D=${config.headDim}`,
    `L=${same ? lengths[0] : lengths.join(",")} Snew=${decode.newRows}`,
    `${config.dtype} ${config.layout}`,
    decode.pageSize === undefined ? "cache=dense" : `cache=paged:${decode.pageSize}`,
    decode.append ? "append" : "no-append",
    `rotary=${decode.rotaryDim > 0 ? decode.rotaryDim : "off"}`,
    `splits=${decode.numSplits > 0 ? decode.numSplits : "auto"}`,
    decode.steps > 0 ? `steps=${decode.steps}` : "steps=off",
    `graph=${decode.graph ? "on" : "off"}`,
    `seed=${config.seed}`,
    ...scoreParts(config),
    ...runParts(config),
  ];
  return parts.join(" ");
}

/** The score options that are on, as `name=value` words. */
function scoreParts(config: Config): string[] {
  const parts: string[] = [];
  if (config.causal) parts.push("causal");
  if (config.dropout > 0) parts.push(`dropout=${config.dropout}`);
  if (config.bias !== "none") parts.push(`bias=${config.bias}`);
  if (config.window) parts.push(`window=${config.window.join(",")}`);
  if (config.softcap > 0) parts.push(`softcap=${config.softcap}`);
  if (config.sinks !== "none") parts.push(`sinks=${config.sinks}`);
  if (config.alibi) parts.push("alibi");
  return parts;
}
