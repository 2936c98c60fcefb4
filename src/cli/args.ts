/**
 * Small pieces of the CLI's argument parsing shared by its modes: the usage error and the
 * integer options.
 * @module
 */

/** A command-line mistake: reported with a pointer to --help, exit code 2. */
export class UsageError extends Error {}

/** `--name value` as an integer >= `min`; `fallback` when the option is absent. */
export function integerOption(
  value: string | undefined,
  name: string,
  fallback: number,
  min = 1,
): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < min) {
    throw new UsageError(`--${name}: expected an integer >= ${min}, got ${value}`);
  }
  return number;
}

/** `--name a,b,c` as integers >= `min` (one or more). */
export function integerList(value: string, name: string, min: number): number[] {
  const items = value.split(",");
  const numbers = items.map(Number);
  if (!items.every((item, i) => item.trim() !== "" && Number.isSafeInteger(numbers[i]))) {
    throw new UsageError(
      `--${name}: expected integers >= ${min} separated by commas, got ${value}`,
    );
  }
  if (numbers.some((number) => number < min)) {
    throw new UsageError(`--${name}: expected integers >= ${min}, got ${value}`);
  }
  return numbers;
}

const U64 = 1n << 64n;

/**
 * `--seed N` as the u64 the library takes: an integer in [-2^63, 2^64). A negative seed is
 * its two's complement (-1 = 2^64 - 1), as `torch.manual_seed` maps them.
 */
export function seedOption(value: string | undefined): bigint {
  if (value === undefined) return 0n;
  if (!/^-?\d+$/.test(value.trim())) {
    throw new UsageError(`--seed: expected an integer in [-2^63, 2^64), got ${value}`);
  }
  const seed = BigInt(value.trim());
  if (seed < -(U64 >> 1n) || seed >= U64) {
    throw new UsageError(`--seed: expected an integer in [-2^63, 2^64), got ${value}`);
  }
  return seed < 0n ? seed + U64 : seed;
}

/**
 * `--name -1` as `--name=-1` for the options that take a value: parseArgs refuses a value
 * that starts with a dash as ambiguous, but seeds, sink logits and window edges are
 * negative numbers.
 */
export function joinNegativeValues(args: readonly string[], valued: ReadonlySet<string>): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i], next = args[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : "";
    if (valued.has(name) && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}
