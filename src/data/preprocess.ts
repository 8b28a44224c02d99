// Preprocessing belongs to the model: raw values in, model inputs out. It is stored in
// graft.json so that predict and evaluate do exactly what training did.

import { inMemory } from './disk-samples.js';
import * as tf from '@tensorflow/tfjs-core';
import type { Preprocessing } from '../model/meta.js';
import { count, sampleSize, type Dataset } from './dataset.js';
import { GraftError } from '../errors.js';

export type { Preprocessing };

export function preprocessInPlace(values: Float32Array, p: Preprocessing | undefined): Float32Array {
  if (!p) return values;
  const scale = p.scale ?? 1;
  const offset = p.offset ?? 0;
  const { mean, std } = p;
  const c = mean?.length ?? 1;
  for (let i = 0; i < values.length; i++) {
    let v = values[i] * scale + offset;
    if (mean && std) v = (v - mean[i % c]) / std[i % c];
    values[i] = v;
  }
  return values;
}

/** Mean and standard deviation per feature (last axis), from training data only. */
export function standardization(d: Dataset): Preprocessing {
  const c = d.sampleShape[d.sampleShape.length - 1];
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  const x = inMemory(d.x);
  for (let i = 0; i < x.length; i++) { sum[i % c] += x[i]; sq[i % c] += x[i] * x[i]; }
  const n = x.length / c;
  const mean = Array.from(sum, (s) => s / n);
  const std = Array.from(sq, (s, i) => Math.sqrt(Math.max(s / n - mean[i] ** 2, 0)) || 1);
  return { inputShape: d.sampleShape, mean, std, description: 'each feature standardised with the training split\'s mean and standard deviation' };
}

export function assertShape(d: Dataset, p: Preprocessing | undefined, modelShape: (number | null)[]): void {
  const want = modelShape.slice(1);
  const got = d.sampleShape;
  if (want.length !== got.length || want.some((w, i) => w !== null && w !== got[i])) {
    throw new GraftError('SHAPE_MISMATCH', `${d.source} has samples of shape [${got.join(', ')}]; the model expects [${want.map((w) => w ?? 'any').join(', ')}].`, {
      fix: p ? 'Use data of the size the base model was trained on.' : 'Choose a base model whose input matches the data.' });
  }
}

/**
 * The preprocessed samples at `indices`, row-major; `transform` sees the raw values first
 * (augmentation). With `reuse` large enough, the batch is written into it (a view of it is
 * returned): a training loop then allocates one batch buffer, not one per batch.
 */
export function batchValues(d: Dataset, indices: ArrayLike<number>, p: Preprocessing | undefined, transform?: (raw: Float32Array, n: number) => void, reuse?: Float32Array): Float32Array {
  const s = sampleSize(d);
  const buf = reuse && reuse.length >= indices.length * s ? reuse.subarray(0, indices.length * s) : new Float32Array(indices.length * s);
  for (let i = 0; i < indices.length; i++) buf.set(d.x.subarray(indices[i] * s, (indices[i] + 1) * s), i * s);
  transform?.(buf, indices.length);
  return preprocessInPlace(buf, p);
}

/** A batch tensor [b, ...sampleShape] of preprocessed samples at `indices`. */
export function batchTensor(d: Dataset, indices: ArrayLike<number>, p: Preprocessing | undefined, transform?: (raw: Float32Array, n: number) => void): tf.Tensor {
  return tf.tensor(batchValues(d, indices, p, transform), [indices.length, ...d.sampleShape]);
}

/** Consecutive index ranges [start, end) covering the dataset in batches. */
export function* batchRanges(d: Dataset, batchSize: number): Generator<Int32Array> {
  const n = count(d);
  for (let i = 0; i < n; i += batchSize) {
    const end = Math.min(n, i + batchSize);
    yield Int32Array.from({ length: end - i }, (_, k) => i + k);
  }
}

/** The named preprocessings (graft train --preprocess): none, unit, symmetric, imagenet. */
export function preprocessPreset(name: string, inputShape: (number | null)[]): Preprocessing | undefined {
  const shape = inputShape.slice(1).map((d) => d ?? 0);
  switch (name) {
    case 'none': return { inputShape: shape, description: 'raw values' };
    case 'unit': return { inputShape: shape, scale: 1 / 255, description: 'pixels 0-255 divided by 255' };
    case 'symmetric': return { inputShape: shape, scale: 1 / 127.5, offset: -1, description: 'pixels 0-255 mapped to -1..1' };
    case 'imagenet': return { inputShape: shape, scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], description: 'pixels divided by 255, then ImageNet mean and std per channel' };
    default: return undefined;
  }
}
