// The wasm backend's heap ends at 4 GB (wasm32), and a training step keeps every forward
// activation for the backward pass: MobileNetV2 at 96x96 needs roughly 60 MB per image, so a
// batch of 64 overflows it and wasm aborts. Before a phase trains the body, one step on two
// samples measures the memory per sample, and the batch is made small enough to fit.

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { subset, type Dataset } from '../data/dataset.js';
import { batchTensor, type Preprocessing } from '../data/preprocess.js';

export const MEMORY_DEFAULTS = {
  /** Bytes a training step may use on a backend with a fixed heap (wasm: 4 GB in all). */
  wasmStepBudget: 2.5 * 1024 ** 3,
};

/** Peak bytes one training step (forward in training mode, gradients of every trainable weight) allocates per sample. */
export async function stepBytesPerSample(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined): Promise<number> {
  const n = Math.min(2, d.labels.length);
  const probe = subset(d, Array.from({ length: n }, (_, i) => i));
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  if (!vars.length) return 0;
  // A training-mode step moves BatchNorm moving averages: put them back afterwards.
  const saved = model.nonTrainableWeights.map((w) => tf.clone(w.read()));
  const before = tf.memory().numBytes;
  const info = await tf.profile(() => {
    const x = batchTensor(probe, Array.from({ length: n }, (_, i) => i), p);
    const { value, grads } = tf.variableGrads(() => {
      const out = model.apply(x, { training: true }) as tf.Tensor | tf.Tensor[];
      return tf.mean(Array.isArray(out) ? out[0] : out) as tf.Scalar;
    }, vars);
    tf.dispose([x, value, ...Object.values(grads)]);
  });
  model.nonTrainableWeights.forEach((w, i) => w.write(saved[i]));
  tf.dispose(saved);
  return Math.max(0, info.peakBytes - before) / n;
}

/** The batch size to use: the requested one, or the largest that fits the backend's heap. */
export async function fitBatchSize(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, requested: number): Promise<{ batchSize: number; bytesPerSample: number }> {
  if (tf.getBackend() !== 'wasm') return { batchSize: requested, bytesPerSample: 0 };
  const per = await stepBytesPerSample(model, d, p);
  if (per <= 0) return { batchSize: requested, bytesPerSample: per };
  const fits = Math.max(1, Math.floor(MEMORY_DEFAULTS.wasmStepBudget / per));
  return { batchSize: Math.min(requested, fits), bytesPerSample: per };
}
