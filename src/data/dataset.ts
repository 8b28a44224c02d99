// A labelled dataset: raw sample values (before the model's preprocessing; in memory, or on
// disk and read per batch for sets bigger than memory), integer labels, class names. Splits and subsets keep class balance and repeat with a seed.

import { GraftError } from '../errors.js';
import { makeRng, shuffle } from './random.js';
import { DiskSamples, inMemory, type Samples } from './disk-samples.js';

export interface Dataset {
  /**
   * Sample values, row-major, n * product(sampleShape); images are kept as bytes, in memory or
   * (streamed datasets) on disk, read per batch.
   */
  x: Samples;
  sampleShape: number[];
  /** Class index of each sample, 0 .. classNames.length - 1. */
  labels: Int32Array;
  classNames: string[];
  /** Where it came from, for messages. */
  source: string;
  /** Files left out, with the reason (unreadable, not an image, a copy of another; image folders). */
  skipped?: SkippedFile[];
}

export interface SkippedFile {
  path: string;
  reason: string;
}

function like(x: Samples, n: number): Float32Array | Uint8Array {
  return x instanceof Float32Array ? new Float32Array(n) : new Uint8Array(n);
}

export function sampleSize(d: Dataset): number {
  return d.sampleShape.reduce((a, b) => a * b, 1);
}

export function count(d: Dataset): number {
  return d.labels.length;
}

export function subset(d: Dataset, indices: ArrayLike<number>): Dataset {
  const s = sampleSize(d);
  if (d.x instanceof DiskSamples) return { ...d, x: d.x.pick(indices), labels: Int32Array.from(indices, (j) => d.labels[j]) };
  const x = like(d.x, indices.length * s);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i];
    x.set(d.x.subarray(j * s, (j + 1) * s), i * s);
    labels[i] = d.labels[j];
  }
  return { ...d, x, labels };
}

/** The samples of `a` then those of `b` (same sample shape and class names). */
export function concat(a: Dataset, b: Dataset): Dataset {
  const same = a.x instanceof DiskSamples && b.x instanceof DiskSamples ? a.x.concat(b.x) : undefined;
  const x = same ?? (a.x instanceof Float32Array || b.x instanceof Float32Array ? new Float32Array(a.x.length + b.x.length) : new Uint8Array(a.x.length + b.x.length));
  if (!same) {
    (x as Float32Array | Uint8Array).set(inMemory(a.x));
    (x as Float32Array | Uint8Array).set(inMemory(b.x), a.x.length);
  }
  const labels = new Int32Array(a.labels.length + b.labels.length);
  labels.set(a.labels);
  labels.set(b.labels, a.labels.length);
  return { ...a, x, labels, source: `${a.source} + ${b.source}` };
}

/** The sample indices of each class, in class order, ascending. */
export function indicesByClass(d: Dataset): number[][] {
  const by: number[][] = d.classNames.map(() => []);
  d.labels.forEach((y, i) => by[y].push(i));
  return by;
}

export function classCounts(d: Dataset): number[] {
  return indicesByClass(d).map((ix) => ix.length);
}

/** Largest class size over smallest, among the classes that have samples (1 when none do). */
export function classImbalance(d: Dataset): number {
  const present = classCounts(d).filter((c) => c > 0);
  return present.length ? Math.max(...present) / Math.min(...present) : 1;
}

/** Splits off `fraction` of each class (at least one sample per class when it has two or more). */
export function stratifiedSplit(d: Dataset, fraction: number, seed: number): { rest: Dataset; split: Dataset } {
  if (!(fraction > 0 && fraction < 1)) {
    throw new GraftError('BAD_OPTION', `A split fraction must be between 0 and 1; got ${fraction}.`, { fix: 'Use e.g. 0.1 for 10%.' });
  }
  const rng = makeRng(seed);
  const rest: number[] = [];
  const split: number[] = [];
  for (const ix of indicesByClass(d)) {
    shuffle(ix, rng);
    const k = ix.length < 2 ? 0 : Math.max(1, Math.round(ix.length * fraction));
    split.push(...ix.slice(0, k));
    rest.push(...ix.slice(k));
  }
  return { rest: subset(d, rest.sort((a, b) => a - b)), split: subset(d, split.sort((a, b) => a - b)) };
}

/** At most `n` samples of each class, chosen with the seed. */
export function takePerClass(d: Dataset, n: number, seed: number): Dataset {
  if (!(Number.isInteger(n) && n >= 1)) throw new GraftError('BAD_OPTION', `takePerClass: the number per class must be a whole number of at least 1; got ${n}.`);
  const rng = makeRng(seed);
  const keep = indicesByClass(d).flatMap((ix) => shuffle(ix, rng).slice(0, n));
  return subset(d, keep.sort((a, b) => a - b));
}

/** Checks a dataset is usable for training a classifier before any work starts. */
export function assertTrainable(d: Dataset, options: { allowEmpty?: boolean } = {}): void {
  if (count(d) === 0) throw new GraftError('BAD_DATA', `${d.source} holds no samples.`, { fix: 'Check the path and the file.' });
  const counts = classCounts(d);
  const present = counts.filter((c) => c > 0).length;
  const empty = d.classNames.filter((_, i) => counts[i] === 0);
  if (present < 2) {
    const withSamples = d.classNames.filter((_, i) => counts[i] > 0);
    throw new GraftError('BAD_DATA', `${d.source} has samples of ${present} class only (${withSamples.join(', ')}); a classifier needs at least 2.${empty.length ? ` Classes without samples: ${empty.join(', ')}.` : ''}`, {
      fix: 'Add samples of at least one more class.' });
  }
  if (empty.length && !options.allowEmpty) {
    throw new GraftError('BAD_DATA', `${d.source}: classes without samples: ${empty.join(', ')}.`, { fix: 'Remove the empty classes or add samples.' });
  }
}
