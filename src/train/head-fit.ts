// The warm-up of a linear head, fitted instead of trained: the body's features are pooled as
// the head pools them, standardised with the training set's statistics, and a multinomial
// logistic regression is fitted to convergence by L-BFGS. The L2 strength is chosen by
// stratified k-fold cross-validation on small data (or on the validation set when there is a
// large one), and the standardisation is folded into the head's dense layer, so the saved
// model is a plain tfjs model that predicts right without Graft.

import * as tf from '@tensorflow/tfjs-core';
import { count, sampleSize, type Dataset } from '../data/dataset.js';
import type { Grafted } from '../model/graft.js';
import { argmaxRow } from './score.js';
import {
  crossValidateL2, fitSoftmax, foldCount, foldStandardization, LOGISTIC_DEFAULTS, predictSoftmax, standardization, standardize,
  type CvScore, type Problem,
} from './logistic.js';

export interface HeadFitReport {
  method: 'l-bfgs';
  l2: number;
  /** How the L2 strength was chosen. */
  chosenBy: 'cross-validation' | 'validation' | 'default';
  /** Whether the fit weighted the classes (for imbalance), and why. */
  classWeights: 'yes' | 'no' | 'by cross-validation' | 'not: cross-validation preferred none';
  folds?: number;
  /** Cross-validated accuracy at the chosen strength, mean and standard deviation over folds. */
  cvAccuracy?: number;
  cvAccuracyStd?: number;
  /** Every strength tried, with its score. */
  scores?: { l2: number; accuracy: number; accuracyStd?: number; loss: number }[];
  iterations: number;
  converged: boolean;
  /** Largest entry of the objective's gradient at the end (the convergence test). */
  gradientNorm: number;
  trainLoss: number;
  trainAccuracy: number;
  seconds: number;
}

export const HEAD_FIT_DEFAULTS = {
  /** Below this many training samples in the smallest class, the L2 strength is cross-validated. */
  smallDataPerClass: 100,
  /** A validation set this large or larger chooses the L2 strength on large data. */
  minValidation: 200,
};

/** The head's input vectors: each sample's feature map pooled as the head's first layer pools it. */
export function pooledFeatures(features: Dataset, pooling: string): { x: Float32Array; d: number } {
  const n = count(features);
  const shape = features.sampleShape;
  const s = sampleSize(features);
  if (shape.length !== 3 || pooling === 'flatten') {
    const x = new Float32Array(n * s);
    for (let i = 0; i < n; i++) x.set(features.x.subarray(i * s, (i + 1) * s), i * s);
    return { x, d: s };
  }
  const [h, w, c] = shape;
  const x = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    const row = features.x.subarray(i * s, (i + 1) * s);
    const out = x.subarray(i * c, (i + 1) * c);
    if (pooling === 'max') out.fill(-Infinity);
    for (let p = 0; p < h * w; p++) {
      for (let j = 0; j < c; j++) out[j] = pooling === 'max' ? Math.max(out[j], row[p * c + j]) : out[j] + row[p * c + j];
    }
    if (pooling !== 'max') for (let j = 0; j < c; j++) out[j] /= h * w;
  }
  return { x, d: c };
}

/**
 * A fitted head trains on without dropout (fitLinearHead says why); a run resumed after the fit
 * switches it off again, as the fit did (it trained on with dropout, and ended elsewhere).
 */
export function headDropoutOff(g: Grafted): void {
  for (const l of g.head.layers) if (l.getClassName() === 'Dropout') (l as unknown as { rate: number }).rate = 0;
  g.head.options.dropout = 0;
}

/** True when the head is pooling (or nothing), dropout and one dense softmax layer. */
export function isLinearHead(g: Grafted): boolean {
  return g.head.options.hidden.length === 0;
}

function problem(f: Dataset, pooling: string, weights?: Float32Array): Problem & { x: Float32Array } {
  const { x, d } = pooledFeatures(f, pooling);
  return { x, n: count(f), d, k: f.classNames.length, labels: f.labels, weights: weights && Float64Array.from(f.labels, (y) => weights[y]) };
}

function score(probs: Float64Array, labels: Int32Array, k: number): { accuracy: number; loss: number } {
  let hits = 0;
  let loss = 0;
  for (let i = 0; i < labels.length; i++) {
    if (argmaxRow(probs, i, k) === labels[i]) hits++;
    loss -= Math.log(Math.max(probs[i * k + labels[i]], 1e-12));
  }
  return { accuracy: hits / Math.max(1, labels.length), loss: loss / Math.max(1, labels.length) };
}

/**
 * Fits the grafted model's linear head on body features (cached by the caller) and writes the
 * weights into its dense layer. `validation` features choose the L2 strength when there are
 * enough of them and the training set is not small.
 */
export function fitLinearHead(g: Grafted, train: Dataset, validation: Dataset | undefined, options: { seed: number; classWeights?: Float32Array; weightsByCv?: boolean }): HeadFitReport {
  const t0 = Date.now();
  const pooling = g.head.options.pooling;
  let p = problem(train, pooling, options.classWeights);
  const counts = new Array<number>(p.k).fill(0);
  p.labels.forEach((y) => counts[y]++);
  const smallest = Math.min(...counts.filter((c) => c > 0));
  const folds = foldCount(p.labels, p.k, LOGISTIC_DEFAULTS.folds);
  let l2 = LOGISTIC_DEFAULTS.l2;
  let chosenBy: HeadFitReport['chosenBy'] = 'default';
  let cv: { folds: number; best: CvScore; scores: CvScore[] } | undefined;
  let valScores: { l2: number; accuracy: number; loss: number }[] | undefined;
  const s = standardization(p.x, p.d);
  const all: Problem = { ...p, x: standardize(p.x, p.d, s) };
  let weighted = Boolean(p.weights);
  const useVal = validation && count(validation) >= HEAD_FIT_DEFAULTS.minValidation && smallest >= HEAD_FIT_DEFAULTS.smallDataPerClass;
  if (useVal) {
    const v = problem(validation, pooling);
    const vx = standardize(v.x, v.d, s);
    let init: Float64Array | undefined;
    valScores = [...LOGISTIC_DEFAULTS.l2Grid].sort((a, b) => b - a).map((strength) => {
      const fit = fitSoftmax(all, strength, init);
      init = new Float64Array([...fit.kernel, ...fit.bias]);
      return { l2: strength, ...score(predictSoftmax(fit, vx, v.n, v.d), v.labels, v.k) };
    });
    l2 = valScores.reduce((b, x) => (x.accuracy > b.accuracy + 1e-9 || (Math.abs(x.accuracy - b.accuracy) <= 1e-9 && x.loss < b.loss) ? x : b)).l2;
    chosenBy = 'validation';
  } else if (folds >= 2) {
    cv = crossValidateL2(p, { folds, seed: options.seed });
    if (options.weightsByCv && p.weights) {
      // Class weights (chosen for the imbalance) against none, by the same folds: whichever
      // held-out accuracy is higher (measured: on 79 photos of 5 classes, 8 to 24 a class,
      // weighting cost 3 points of test accuracy; the choice is the data's, not a rule's).
      const plain = crossValidateL2({ ...p, weights: undefined }, { folds, seed: options.seed });
      weighted = plain.best.accuracy > cv.best.accuracy + 1e-9 || (Math.abs(plain.best.accuracy - cv.best.accuracy) <= 1e-9 && plain.best.loss < cv.best.loss) ? false : true;
      if (!weighted) { cv = plain; p = { ...p, weights: undefined }; }
    }
    l2 = cv.best.l2;
    chosenBy = 'cross-validation';
  }
  if (!weighted) all.weights = undefined;
  const fit = fitSoftmax(all, l2);
  const trained = score(predictSoftmax(fit, all.x, all.n, all.d), p.labels, p.k);
  const { kernel, bias } = foldStandardization(fit, s);
  // The fitted head is regularised by its L2 strength; dropout before it would, in training
  // (the fine-tune, the learning-rate finder), drop raw features whose means the folded bias
  // cancels, and its noise would swamp the fit (loss 4.8 instead of 0.1 at the first step of a
  // sweep on the tiny test net). So the head's dropout is switched off.
  headDropoutOff(g);
  const dense = g.head.layers[g.head.layers.length - 1];
  const tensors = [tf.tensor2d(kernel, [p.d, p.k]), tf.tensor1d(bias)];
  dense.setWeights(tensors);
  tf.dispose(tensors);
  return {
    method: 'l-bfgs', l2, chosenBy, classWeights: weighted ? (options.weightsByCv ? 'by cross-validation' : 'yes') : options.weightsByCv && options.classWeights ? 'not: cross-validation preferred none' : 'no',
    ...(cv ? { folds: cv.folds, cvAccuracy: cv.best.accuracy, cvAccuracyStd: cv.best.accuracyStd, scores: cv.scores.map(({ foldAccuracies: _, ...r }) => r) } : {}),
    ...(valScores ? { scores: valScores.sort((a, b) => a.l2 - b.l2) } : {}),
    iterations: fit.optimizer.iterations, converged: fit.optimizer.converged, gradientNorm: fit.optimizer.gradientNorm,
    trainLoss: trained.loss, trainAccuracy: trained.accuracy, seconds: (Date.now() - t0) / 1000,
  };
}
