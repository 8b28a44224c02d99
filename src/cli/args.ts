// Argument parsing shared by the commands (node's util.parseArgs), with errors in Graft's words.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GraftError } from '../index.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON: Options = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  backend: { type: 'string' },
};

export function parse(argv: string[], options: Options, usage: string) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (cause) {
    throw new GraftError('BAD_ARGUMENT', (cause as Error).message.replace(/\. To specify.*$/s, '.'), { fix: `Usage:\n${usage}`, cause });
  }
}

export function num(value: unknown, name: string, check: (n: number) => boolean = () => true): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || !check(n)) {
    throw new GraftError('BAD_ARGUMENT', `--${name} "${value}" is not a valid value.`, { fix: `Give --${name} a number in range.` });
  }
  return n;
}

export const intAtLeast = (min: number) => (n: number) => Number.isInteger(n) && n >= min;

export function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function percent(v: number | null | undefined): string {
  return v === null || v === undefined ? '-' : `${(100 * v).toFixed(2)}%`;
}
