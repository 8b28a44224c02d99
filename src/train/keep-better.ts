// Fine-tuning has to earn its place: its result is compared with the warm-up head's, and the
// better one is kept. With a validation set, on it; on small data without one, by k-fold
// cross-validation on the training set: each fold fits the head on the fold's training part,
// scores it on the held-out part, fine-tunes from there and scores again.

import type * as tfl from '@tensorflow/tfjs-layers';
import { count, subset, type Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import type { Grafted } from '../model/graft.js';
import type { Layer } from '../model/layers.js';
import { fitLinearHead } from './head-fit.js';
import { foldCount, stratifiedFolds } from './logistic.js';
import { predictAll } from './predict.js';
import { stopTogether } from '../engine/dist.js';
import { scoreProbabilities } from './score.js';
import { restoreWeights, snapshotWeights } from './weights.js';
import * as tf from '@tensorflow/tfjs-core';

export interface FineTuneCheck {
  method: 'validation' | 'cross-validation';
  folds?: number;
  warmUpAccuracy: number;
  fineTuneAccuracy: number;
  /** Per fold, with cross-validation. */
  warmUpFolds?: number[];
  fineTuneFolds?: number[];
  /** With cross-validation: the standard error of the per-fold differences. */
  standardError?: number;
  /** What fine-tuning must win by: with cross-validation tCritical90(folds - 1) standard errors; on a validation set McNemar's (pairedValidation). */
  margin?: number;
  /** On a validation set: the images only the fine-tuned model gets right, and only the warm-up head. */
  onlyFineTune?: number;
  onlyWarmUp?: number;
  kept: 'fine-tune' | 'warm-up';
  words: string;
}

export const KEEP_BETTER_DEFAULTS = { folds: 3 };

export async function accuracyOf(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined): Promise<number> {
  const { values } = await predictAll(model, d, p);
  return scoreProbabilities(values, d.labels, d.classNames).accuracy;
}

const pct = (a: number) => `${(100 * a).toFixed(1)}%`;
const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / Math.max(1, a.length);

/**
 * One-sided 90% quantiles of Student's t for `df` degrees of freedom. Cross-validation's margin
 * is this many standard errors of the per-fold differences: a paired t-test that fine-tuning is
 * better, at 90%. One standard error (the earlier rule, about 76% with 2 degrees of freedom) let
 * a lucky 3-fold win replace the head: on an independent photo set, seed 1 kept a fine-tune
 * that won by 1.7 standard errors and lost 5.6 points on the test photos.
 */
export function tCritical90(df: number): number {
  const table = [3.078, 1.886, 1.638, 1.533, 1.476, 1.440, 1.415, 1.397, 1.383, 1.372];
  return df >= 1 && df <= table.length ? table[Math.floor(df) - 1] : 1.282 + 0.9 / Math.max(df, 1);
}

/**
 * Fine-tuning is kept when it beats the warm-up head by more than `margin` (on a validation set
 * McNemar's, pairedValidation; with cross-validation, tCritical90(folds - 1) standard errors of
 * the per-fold differences: on a few dozen images a fold is a handful of images, and a win
 * within that noise is no evidence).
 */
export function verdict(method: FineTuneCheck['method'], warmUp: number, fineTune: number, folds?: number, margin = 0): Pick<FineTuneCheck, 'kept' | 'words'> {
  const on = method === 'validation' ? 'on the validation set' : `by ${folds}-fold cross-validation on the training set`;
  const noise = margin > 0 ? `, more than the ${(100 * margin).toFixed(1)}-point margin the per-fold differences' noise asks for (paired t-test, one-sided 10%)` : '';
  if (fineTune - warmUp > margin) return { kept: 'fine-tune', words: `fine-tuning beat the warm-up head ${on} (${pct(fineTune)} vs ${pct(warmUp)}${noise}); kept the fine-tuned model` };
  const within = margin > 0 && fineTune > warmUp ? `: a gain within the ${(100 * margin).toFixed(1)}-point margin the per-fold differences' noise asks for (paired t-test, one-sided 10%)` : '';
  return { kept: 'warm-up', words: `fine-tuning did not beat the warm-up head ${on} (${pct(fineTune)} vs ${pct(warmUp)}${within}); kept the warm-up head` };
}

/** Per image of d, whether the model's top class is its label (1) or not (0). */
export async function rightOn(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined): Promise<Uint8Array> {
  const { values } = await predictAll(model, d, p);
  const k = d.classNames.length;
  return Uint8Array.from(d.labels, (y, i) => {
    let best = 0;
    for (let c = 1; c < k; c++) if (values[i * k + c] > values[i * k + best]) best = c;
    return best === y ? 1 : 0;
  });
}

/**
 * McNemar's exact test of the warm-up head against the fine-tuned model on the same validation
 * images (warm, tuned: per image, right or not): of the images only one of them gets right,
 * fine-tuning must have so many more that a coin would give as many with probability 10% or
 * less (one-sided, as the cross-validation's t-test). Returns the accuracies and the margin
 * fine-tuning must win by, as an accuracy. A margin of 0 on 100 validation images let a
 * one-image win decide: Fashion-MNIST seed 1 kept the fine-tune in fp32 and the head in bf16.
 */
export function pairedValidation(warm: Uint8Array, tuned: Uint8Array): { warmUpAccuracy: number; fineTuneAccuracy: number; onlyFineTune: number; onlyWarmUp: number; needed: number; margin: number } {
  const n = warm.length;
  let b = 0, c = 0, w = 0, t = 0;
  for (let i = 0; i < n; i++) {
    w += warm[i];
    t += tuned[i];
    if (tuned[i] && !warm[i]) b++;
    if (warm[i] && !tuned[i]) c++;
  }
  const m = b + c;
  // The smallest count of fine-tune-only images whose upper tail under Binomial(m, 1/2) is <= 10%.
  let need = m + 1;
  let logPmf = -m * Math.LN2;  // P(X = m)
  let tail = 0;
  for (let k = m; k >= 0; k--) {
    tail += Math.exp(logPmf);
    if (tail > 0.1) break;
    need = k;
    logPmf += Math.log(k) - Math.log(m - k + 1);  // P(X = k - 1)
  }
  // Kept when b - c >= 2 * need - m, that is when the accuracy gain exceeds this margin.
  return { warmUpAccuracy: w / Math.max(1, n), fineTuneAccuracy: t / Math.max(1, n), onlyFineTune: b, onlyWarmUp: c, needed: need, margin: (2 * need - m - 0.5) / Math.max(1, n) };
}

/** The keep-better decision on a validation set (pairedValidation's counts), in words that give the counts and the test. */
export function pairedVerdict(v: ReturnType<typeof pairedValidation>): Pick<FineTuneCheck, 'kept' | 'words'> {
  const b = v.onlyFineTune, c = v.onlyWarmUp, m = b + c;
  const acc = `${pct(v.fineTuneAccuracy)} vs ${pct(v.warmUpAccuracy)}`;
  const test = 'McNemar\'s test, one-sided 10%';
  if (m === 0) return { kept: 'warm-up', words: `fine-tuning and the warm-up head got the same images right on the validation set (${pct(v.fineTuneAccuracy)}); kept the warm-up head` };
  const counts = `of the ${m} validation image${m === 1 ? '' : 's'} only one of them got right, fine-tuning got ${b} and the head ${c}`;
  if (b >= v.needed) return { kept: 'fine-tune', words: `fine-tuning beat the warm-up head on the validation set (${acc}): ${counts}, more than chance gives (${test}); kept the fine-tuned model` };
  const why = b > c ? `, and McNemar's test (one-sided, 10%) needs ${v.needed > m ? `more than ${m} disagreements` : `${v.needed} of ${m}`} before a gain is more than chance` : '';
  return { kept: 'warm-up', words: `fine-tuning did not beat the warm-up head by more than chance on the validation set (${acc}): ${counts}${why}; kept the warm-up head` };
}

/** Standard error of the mean of the paired differences b - a. */
export function pairedStandardError(a: number[], b: number[]): number {
  const d = b.map((x, i) => x - a[i]);
  const m = mean(d);
  return Math.sqrt(d.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, d.length - 1) / Math.max(1, d.length));
}

/**
 * Cross-validates fine-tuning against the warm-up head. `fineTune(train)` runs the fine-tune
 * phase on the given images from the current weights. Puts back the weights it found.
 */
export async function crossValidateFineTune(a: {
  g: Grafted; layers: Layer[]; train: Dataset; trainFeatures: Dataset; preprocessing?: Preprocessing; seed: number;
  classWeights?: Float32Array; fineTune: (train: Dataset) => Promise<void>; onFold?: (fold: number, folds: number) => void | Promise<void>;
  /** A stop request (Ctrl-C) ends the check without a decision; the caller's fine-tune then stops with a checkpoint. */
  shouldStop?: () => boolean;
}): Promise<FineTuneCheck | undefined> {
  const n = count(a.train);
  const k = a.train.classNames.length;
  const folds = foldCount(a.train.labels, k, KEEP_BETTER_DEFAULTS.folds);
  if (folds < 2) return undefined;
  const views = count(a.trainFeatures) / n;
  const fold = stratifiedFolds(a.train.labels, k, folds, a.seed + 7);
  const start = snapshotWeights(a.layers);
  const warm: number[] = [];
  const tuned: number[] = [];
  try {
    for (let f = 0; f < folds; f++) {
      if (stopTogether(Boolean(a.shouldStop?.()))) return undefined;
      await a.onFold?.(f + 1, folds);
      const tr: number[] = [];
      const te: number[] = [];
      fold.forEach((g, i) => (g === f ? te : tr).push(i));
      restoreWeights(a.layers, start);
      const featureRows = Array.from({ length: views }, (_, v) => tr.map((i) => v * n + i)).flat();
      fitLinearHead(a.g, subset(a.trainFeatures, featureRows), undefined, { seed: a.seed, classWeights: a.classWeights });
      const held = subset(a.train, te);
      warm.push(await accuracyOf(a.g.headModel, subset(a.trainFeatures, te), undefined));
      await a.fineTune(subset(a.train, tr));
      if (stopTogether(Boolean(a.shouldStop?.()))) return undefined;
      tuned.push(await accuracyOf(a.g.model, held, a.preprocessing));
    }
  } finally {
    restoreWeights(a.layers, start);
    tf.dispose([...start.values()]);
  }
  const w = mean(warm);
  const t = mean(tuned);
  const se = pairedStandardError(warm, tuned);
  const margin = tCritical90(warm.length - 1) * se;
  return { method: 'cross-validation', folds, warmUpAccuracy: w, fineTuneAccuracy: t, warmUpFolds: warm, fineTuneFolds: tuned, standardError: se, margin, ...verdict('cross-validation', w, t, folds, margin) };
}
