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
