// The same sample twice: within a set, image folders skip repeats as they decode (images.ts);
// between sets, a validation or test image that is also a training image makes a held-out
// figure a training figure. Samples are compared by their values as the model sees them.

import { pixelHash } from './images.js';
import { count, sampleSize, subset, type Dataset, type SkippedFile } from './dataset.js';

/** One hash per sample of `d`, of its stored values (in memory or on disk). */
export function sampleHashes(d: Dataset): string[] {
  const per = sampleSize(d);
  return Array.from({ length: count(d) }, (_, i) => pixelHash(d.x.subarray(i * per, (i + 1) * per) as Uint8Array | Float32Array));
}

/** Indices of `d`'s samples that are also in `of` (the same values). */
export function copiesIn(of: Dataset, d: Dataset): number[] {
  if (sampleSize(of) !== sampleSize(d)) return [];
  const known = new Set(sampleHashes(of));
  return sampleHashes(d).flatMap((h, i) => (known.has(h) ? [i] : []));
}

/** Where sample i of d came from, for words: its file where the set has files, else its number. */
export function sampleName(d: Dataset, i: number): string {
  const files = (d as Dataset & { files?: string[] }).files;
  return files?.[i] ?? `${d.source} sample #${i}`;
}

/**
 * `d` without its samples that are copies of `train`'s, each listed in `skipped` with the reason:
 * a held-out set must not hold training images.
 */
export function withoutCopiesOf(train: Dataset, d: Dataset, what: string): Dataset {
  const copies = copiesIn(train, d);
  if (!copies.length) return d;
  const drop = new Set(copies);
  const keep = Array.from({ length: count(d) }, (_, i) => i).filter((i) => !drop.has(i));
  const skipped: SkippedFile[] = [...(d.skipped ?? []), ...copies.map((i) => ({ path: sampleName(d, i), reason: `the same image as one of the training data: left out of the ${what}` }))];
  const files = (d as Dataset & { files?: string[] }).files;
  return { ...subset(d, keep), skipped, ...(files ? { files: keep.map((i) => files[i]) } : {}) } as Dataset;
}
