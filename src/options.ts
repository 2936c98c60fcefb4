/**
 * The checks every options bag gets, whatever function it is passed to: an object (or
 * nothing), and boolean flags that really are booleans. Not public.
 * @module
 */

import { invalidArgument } from "./errors.ts";

/**
 * `options` itself when it is an object, `{}` when undefined; anything else (null, a
 * number, a string) is refused naming `argument`, where it would otherwise be ignored or
 * fail later as a TypeError.
 */
export function optionsObject<T extends object>(options: T | undefined, argument = "options"): T {
  if (options === undefined) return {} as T;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw invalidArgument(argument, `expected an options object, got ${describeValue(options)}`);
  }
  return options;
}

/**
 * A boolean option: `fallback` when undefined, refused naming `argument` unless a boolean
 * (so `causal: "no"` is an error rather than a truthy string meaning true).
 */
export function booleanOption(value: unknown, argument: string, fallback = false): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw invalidArgument(argument, `expected true or false, got ${describeValue(value)}`);
  }
  return value;
}

/** A short description of a value of any type for messages: `"no"`, `[1, 2]`, `Float64Array`. */
export function describeValue(value: unknown): string {
  if (Array.isArray(value)) {
    const shown = value.slice(0, 8).map((item) => describeValue(item)).join(", ");
    return `[${shown}${value.length > 8 ? ", ..." : ""}]`;
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value !== "object" || value === null) return String(value);
  return value.constructor?.name ?? "an object";
}
