/**
 * Strict parsing of CLI option values: anything not a plain number is rejected with an error
 * naming the option (exit code 2), never silently turned into NaN or a default.
 */
import { badParam } from '../errors.js';

/** Parse a decimal (or 0x-prefixed hex) integer option. */
export function parseIntOption(name: string, raw: string): number {
  const s = raw.trim();
  if (!/^(0x[0-9a-f]+|[+-]?\d+)$/i.test(s)) throw badParam(name, `"${raw}" is not an integer`);
  return Number(s);
}

/** Parse a decimal number option. */
export function parseNumberOption(name: string, raw: string): number {
  const s = raw.trim();
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i.test(s)) throw badParam(name, `"${raw}" is not a number`);
  return Number(s);
}
