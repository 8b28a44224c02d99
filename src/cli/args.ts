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
  let parsed;
  try {
    parsed = parseArgs({ args, options: all, allowPositionals: true, strict: true, tokens: true });
  } catch (cause) {
    const message = (cause as Error).message;
    const missing = /^Option '--([\w-]+)(?: <value>)?' argument (?:missing|is ambiguous)/.exec(message);
    if (missing) {
      const help = optionHelp(usage, missing[1]);
      throw new GraftError('BAD_ARGUMENT', `--${missing[1]} needs a value${/ambiguous/.test(message) ? ', and what follows it is another option' : ''}.`, { fix: help ? `Give it one:\n${help}` : `Give it one; the command's --help lists the options.`, cause });
    }
    const unknown = /^Unknown option '(-{1,2}[^']+)'/.exec(message);
    if (unknown) {
      const near = nearest(unknown[1].replace(/^-+/, '').split('=')[0], [...Object.keys(all), 'precision']);
      throw new GraftError('BAD_ARGUMENT', `${unknown[1]} is not an option of this command.`, { fix: `${near ? `Did you mean --${near}?\n${optionHelp(usage, near) ?? ''}`.trimEnd() : 'The command\'s --help lists its options.'}`, cause });
    }
    throw new GraftError('BAD_ARGUMENT', message.replace(/\. To specify.*$/s, '.'), { fix: `Usage:\n${usage}`, cause });
  }
  // node keeps the last of a repeated option: `--precision bf16 ... --precision fp32` would run
  // in fp32 without a word. The same value twice is harmless; two different ones are refused.
  const seen = new Map<string, string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || all[t.name]?.type !== 'string' || all[t.name]?.multiple || t.value === undefined) continue;
    const before = seen.get(t.name);
    if (before !== undefined && before !== t.value) throw givenTwice(t.name, before, t.value, optionHelp(usage, t.name));
    seen.set(t.name, t.value);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

/** The error for an option given twice with two values; `help` is what the option takes. */
export function givenTwice(name: string, before: string, value: string, help?: string): GraftError {
  return new GraftError('BAD_ARGUMENT', `--${name} is given twice, as ${JSON.stringify(before)} and as ${JSON.stringify(value)}.`, {
    fix: `Give it once, with the value you mean.${help ? `\n${help}` : ''}` });
}

/** The lines of `usage` that describe --name (its line and the more indented lines under it). */
function optionHelp(usage: string, name: string): string | undefined {
  const lines = usage.split('\n');
  const at = lines.findIndex((l) => new RegExp(`^\\s*--${name.replace(/[-]/g, '\\-')}(\\s|=|$)`).test(l));
  if (at < 0) return undefined;
  const indent = (l: string) => l.length - l.trimStart().length;
  const out = [lines[at]];
  for (let i = at + 1; i < lines.length && lines[i].trim() && indent(lines[i]) > indent(lines[at]) && !/^\s*--/.test(lines[i]); i++) out.push(lines[i]);
  return out.join('\n');
}

/** The option name nearest `given` by edit distance, when near enough to be a typo. */
function nearest(given: string, names: string[]): string | undefined {
  const d = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]++;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length];
  };
  let best: string | undefined, bestD = Infinity;
  for (const n of names) { const x = d(given, n); if (x < bestD) { bestD = x; best = n; } }
  return bestD <= Math.max(1, Math.floor(given.length / 3)) ? best : undefined;
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
