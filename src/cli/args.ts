// Argument parsing shared by the commands (node's util.parseArgs), with errors in Graft's words.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GraftError } from 'graft';

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON: Options = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  backend: { type: 'string' },
};

export function parse(argv: string[], options: Options, usage: string) {
  const all = { ...COMMON, ...options };
  // `--opt -1`: node's parser takes -1 for an option; as the value of a string option it is meant.
  const args = argv.flatMap((a, i) => {
    const prev = argv[i - 1];
    const isValue = /^-\d/.test(a) && prev?.startsWith('--') && !prev.includes('=') && all[prev.slice(2)]?.type === 'string';
    return isValue ? [] : i + 1 < argv.length && /^-\d/.test(argv[i + 1]) && a.startsWith('--') && !a.includes('=') && all[a.slice(2)]?.type === 'string' ? [`${a}=${argv[i + 1]}`] : [a];
  });
  try {
    return parseArgs({ args, options: all, allowPositionals: true, strict: true });
  } catch (cause) {
    throw new GraftError('BAD_ARGUMENT', (cause as Error).message.replace(/\. To specify.*$/s, '.'), { fix: `Usage:\n${usage}`, cause });
  }
}

/** A check on a number; `range` says in words what it accepts. */
export type Check = ((n: number) => boolean) & { range?: string };

export function num(value: unknown, name: string, check: Check = () => true): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || !check(n)) {
    throw new GraftError('BAD_ARGUMENT', `--${name} "${value}" is not a valid value.`, { fix: `Give --${name} ${check.range ?? 'a number in range'}.` });
  }
  return n;
}

export const intAtLeast = (min: number): Check => Object.assign((n: number) => Number.isInteger(n) && n >= min, { range: `a whole number of at least ${min}` });

export function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function percent(v: number | null | undefined): string {
  return v === null || v === undefined ? '-' : `${(100 * v).toFixed(2)}%`;
}
