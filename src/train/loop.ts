// One training epoch: shuffled batches, forward in training mode, the loss (cross-entropy, or a
// LossFn such as LwF distillation or EWC), gradients for the variables that are trainable at
// this step, and an AdamW update per layer group: per-op on tfjs, or one native call per batch
// when the model and the loss run natively (EpochRun.native, LossFn.native).

import { isBytes } from '../data/disk-samples.js';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { LayerVariable } from '@tensorflow/tfjs-layers';
import { distributed, shardRange } from '../engine/dist.js';
import { GraftError } from '../errors.js';
import { classCounts, count, indicesByClass, type Dataset } from '../data/dataset.js';
import { batchTensor, batchValues, type Preprocessing } from '../data/preprocess.js';
import { shuffle } from '../data/random.js';
import { augmentBatch, type AugmentOptions } from '../data/augment.js';
import type { Layer } from '../model/layers.js';
import type { AdamW } from './optimizer.js';
import type { NativeLossSpec, NativeNet } from '../engine/native.js';

export interface LayerGroup {
  layers: Layer[];
  /** This group's learning rate as a fraction of the phase's peak LR. */
  lrMult: number;
}

/** What a loss function sees for one batch: the model's outputs in training mode, the labels, the sample indices. */
export interface LossContext {
  outputs: tf.Tensor[];
  labels: tf.Tensor1D;
  indices: number[];
}

/**
 * A loss the native engine can also compute (then the phase runs natively): distillation
 * toward recorded old-head outputs, or an EWC penalty. Set on a LossFn as `native`.
 */
export type { NativeLossSpec } from '../engine/native.js';

export type LossFn = ((c: LossContext) => tf.Scalar) & { native?: NativeLossSpec };

export interface BatchProgress {
  batch: number;
  batches: number;
  loss: number;
  accuracy: number;
  learningRate: number;
}

export interface EpochRun {
  model: tfl.LayersModel;
  data: Dataset;
  preprocessing?: Preprocessing;
  groups: LayerGroup[];
  optimizer: AdamW;
  batchSize: number;
  rng: () => number;
  /** Peak-LR multiplier for a global step (the schedule). */
  lrAt: (step: number) => number;
  firstStep: number;
  /** Default: cross-entropy of the first output against the labels. */
  loss?: LossFn;
  onBatch?: (p: BatchProgress) => void | Promise<void>;
  /** Resume inside an epoch: skip the batches before this one (the order and dropout seeds still repeat). */
  start?: EpochPosition;
  /** Asked after every batch; true ends the epoch there (for Ctrl-C, or a time-based checkpoint). */
  pause?: () => boolean;
  /** Per-class loss weights for the default cross-entropy (class imbalance). */
  classWeights?: Float32Array;
  /** Label smoothing e of the default cross-entropy: targets (1 - e) one-hot + e / classes. */
  labelSmoothing?: number;
  /** Every class as often as the largest one per epoch (sampling with repeats). */
  balanced?: boolean;
  /** Image augmentation of each training batch (seeded from `rng`). */
  augment?: AugmentOptions;
  /**
   * The model copied into the native engine: each batch is then one native call (forward,
   * loss, backward, AdamW). Its weights stay native until the caller syncs them back.
   */
  native?: NativeNet;
}

/** The sample order of one epoch: a shuffle, or with `balanced` every class drawn as often as the largest. */
export function epochOrder(d: Dataset, rng: () => number, balanced = false): number[] {
  if (!balanced) return shuffle(Array.from({ length: count(d) }, (_, i) => i), rng);
  const by = indicesByClass(d);
  const most = Math.max(...by.map((b) => b.length));
  const order: number[] = [];
  for (const ix of by) {
    if (!ix.length) continue;
    const pool = shuffle(ix, rng);
    for (let k = 0; k < most; k++) order.push(pool[k % pool.length]);
  }
  return shuffle(order, rng);
}

export function epochLength(d: Dataset, balanced = false): number {
  if (!balanced) return count(d);
  const counts = classCounts(d);
  return Math.max(...counts) * counts.filter((c) => c > 0).length;
}

/** "Balanced" class weights n / (k * n_c): a class with half the samples weighs twice as much; the mean weight per sample is 1. */
export function balancedClassWeights(d: Dataset): Float32Array {
  const counts = classCounts(d);
  const present = counts.filter((c) => c > 0).length;
  return Float32Array.from(counts, (c) => (c ? count(d) / (present * c) : 0));
}

/** Where an epoch stands after `batch` batches, with its running sums. */
export interface EpochPosition {
  batch: number;
  lossSum: number;
  correct: number;
}

export interface EpochResult {
  loss: number;
  accuracy: number;
  steps: number;
  /** Set when `pause` ended the epoch early. */
  paused?: EpochPosition;
}

/** A non-finite loss: where it happened, for the NaN guard. */
export class DivergedError extends GraftError {
  constructor(readonly batch: number, readonly learningRate: number, loss: number) {
    super('TRAINING_DIVERGED', `The loss became ${loss} at batch ${batch} (learning rate ${learningRate.toExponential(2)}).`, {
      fix: 'Lower the learning rate (--lr; the lr option in the library), e.g. by 10x, or check the data for extreme or missing values.' });
  }
}

/** A backend running out of its heap (wasm aborts with a RuntimeError) as a GraftError that says what to do. */
export function asMemoryError(e: unknown, batchSize: number): unknown {
  const m = String((e as Error)?.message ?? e);
  if (!/memory access out of bounds|table index is out of bounds|Aborted\(|out of memory|Cannot enlarge memory|bad_alloc|can't allocate memory/i.test(m)) return e;
  const where = /graft-native/.test(m) ? 'native engine' : `${tf.getBackend()} backend`;
  return new GraftError('OUT_OF_MEMORY', `The ${where} ran out of memory in a training step of ${batchSize} samples (${m.split('\n')[0]}).`, {
    fix: `Use a smaller batch size (--batch-size, batchSize), a smaller input size (--input-size, inputSize), or unfreeze fewer layers (--unfreeze N, unfreeze: { top: N })${where === 'native engine' ? '' : '; the process must be restarted'}.`, cause: e });
}

/**
 * Mean cross-entropy of class probabilities against labels, with class weights per sample.
 * With labelSmoothing e the target is (1 - e) one-hot + e / k (Szegedy et al. 2016), as
 * Keras' and PyTorch's label_smoothing.
 */
export function crossEntropy(probs: tf.Tensor, labels: tf.Tensor, classWeights?: Float32Array, labelSmoothing = 0): tf.Scalar {
  const k = probs.shape[probs.shape.length - 1]!;
  let target = tf.oneHot(labels as tf.Tensor1D, k);
  if (labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / k);
  const perSample = tf.neg(tf.sum(tf.mul(target, tf.log(tf.clipByValue(probs, 1e-7, 1))), -1));
  if (!classWeights) return tf.mean(perSample) as tf.Scalar;
  return tf.mean(tf.mul(perSample, tf.gather(tf.tensor1d(classWeights), labels as tf.Tensor1D))) as tf.Scalar;
}

function trainableOf(group: LayerGroup): LayerVariable[] {
  return group.layers.filter((l) => l.trainable).flatMap((l) => l.trainableWeights);
}

function dropoutLayers(model: tfl.LayersModel): Array<Layer & { seed?: number }> {
  return model.layers.filter((l) => l.getClassName() === 'Dropout') as Array<Layer & { seed?: number }>;
}

/** Runs one epoch; returns mean loss and accuracy over its batches. */
export async function runEpoch(r: EpochRun): Promise<EpochResult> {
  const order = epochOrder(r.data, r.rng, r.balanced);
  const n = order.length;
  const batches = Math.ceil(n / r.batchSize);
  let lossSum = r.start?.lossSum ?? 0;
  let correct = r.start?.correct ?? 0;
  // Dropout masks come from seeds drawn here, so a run repeats with its seed (and on resume).
  const dropouts = dropoutLayers(r.model);
  const dist = r.native ? distributed() : undefined;
  const savedSeeds = dropouts.map((l) => l.seed);
  let lastYield = performance.now();
  try {
    for (let b = 0; b < batches; b++) {
      const seeds = dropouts.map(() => 1 + Math.floor(r.rng() * 2147483646));
      const augmentSeed = r.augment ? 1 + Math.floor(r.rng() * 2147483646) : 0;
      if (r.start && b < r.start.batch) continue;
      dropouts.forEach((l, i) => { l.seed = seeds[i]; });
      const ix = order.slice(b * r.batchSize, (b + 1) * r.batchSize);
      const lr = r.lrAt(r.firstStep + b);
      // In a data-parallel run every worker gets a share of the batch: a last batch smaller than
      // the number of workers is left out (on every worker alike).
      if (dist && ix.length < dist.worldSize) continue;
      // ... and they pause together, when any of them asks (a stop request, a checkpoint due).
      const wish = dist ? b + 1 < batches && Boolean(r.pause?.()) : false;
      const step = r.native ? nativeStep(r, r.native, ix, lr, augmentSeed, seeds[0] ?? 0, dist ? wish : undefined) : await tfjsStep(r, ix, lr, augmentSeed);
      if (!Number.isFinite(step.loss)) throw new DivergedError(b + 1, lr, step.loss);
      lossSum += step.loss * ix.length;
      correct += step.correct;
      const seen = Math.min(n, (b + 1) * r.batchSize);
      await r.onBatch?.({ batch: b + 1, batches, loss: lossSum / seen, accuracy: correct / seen, learningRate: lr });
      // Let the event loop run (signals such as Ctrl-C, HTTP requests of graft serve): the
      // backend's promises resolve as microtasks and would otherwise starve it for a whole epoch.
      // Every 20 ms at most: native steps on cached features take well under a millisecond.
      if (performance.now() - lastYield > 20) {
        await new Promise((resolve) => setImmediate(resolve));
        lastYield = performance.now();
      }
      if (b + 1 < batches && (dist ? step.pause : r.pause?.())) return { loss: lossSum / n, accuracy: correct / n, steps: b + 1, paused: { batch: b + 1, lossSum, correct } };
    }
  } finally {
    dropouts.forEach((l, i) => { l.seed = savedSeeds[i]; });
  }
  return { loss: lossSum / n, accuracy: correct / n, steps: batches };
}

function augmenter(r: EpochRun, augmentSeed: number) {
  const augment = r.augment;
  return augment && ((raw: Float32Array, k: number) => augmentBatch(raw, k, r.data.sampleShape, augment, augmentSeed, isBytes(r.data.x) ? 255 : Infinity));
}

const nothingTrainable = () => new GraftError('BAD_OPTION', 'Nothing is trainable: every layer is frozen.', { fix: 'Unfreeze the head or part of the body.' });

/** A training step's result on one batch: its mean loss and how many samples it got right. */
interface StepResult {
  loss: number;
  correct: number;
  /** In a data-parallel run: whether any worker asked to pause after this step. */
  pause?: boolean;
}

/** One step in the native engine: the same data, augmentation, loss and AdamW as tfjsStep, in one call. */
function nativeStep(r: EpochRun, net: NativeNet, batch: number[], lr: number, augmentSeed: number, dropoutSeed: number, pause?: boolean): StepResult {
  if (!net.trainable) throw nothingTrainable();
  // A worker of a data-parallel run trains its shard of the batch; loss and counts come back global.
  const dist = pause === undefined ? undefined : distributed();
  const ix = dist ? batch.slice(...shardRange(batch.length, dist.rank, dist.worldSize)) : batch;
  // Each worker draws its own augmentation (and, in the addon, dropout masks), as DDP's do.
  const x = batchValues(r.data, ix, r.preprocessing, augmenter(r, dist ? augmentSeed + 7919 * dist.rank : augmentSeed), net.batchBuffer(ix.length * r.data.sampleShape.reduce((a, b) => a * b, 1)));
  const y = Int32Array.from(ix, (i) => r.data.labels[i]);
  const lrs = Float64Array.from(r.groups, (g) => lr * g.lrMult);
  const spec = r.loss?.native;
  let targets: Float32Array | undefined;
  if (spec?.kind === 'lwf') {
    const k = spec.oldClasses;
    targets = new Float32Array(ix.length * k);
    ix.forEach((i, j) => targets!.set(spec.targets.subarray(i * k, (i + 1) * k), j * k));
  }
  try {
    // No update when the loss is not finite (runEpoch then stops with DivergedError).
    return net.trainStep(x, y, lrs, dropoutSeed, r.classWeights, targets, dist ? { globalN: batch.length, pause: Boolean(pause) } : undefined);
  } catch (e) {
    throw asMemoryError(e, ix.length);
  }
}

/** One step per-op on the tfjs backend: forward, loss, gradients, and AdamW unless the loss is not finite. */
async function tfjsStep(r: EpochRun, ix: number[], lr: number, augmentSeed: number): Promise<StepResult> {
  // Read the frozen state now: a freeze or unfreeze between steps applies at once.
  const perGroup = r.groups.map((g) => ({ vars: trainableOf(g), lr: lr * g.lrMult }));
  const vars = perGroup.flatMap((g) => g.vars);
  if (!vars.length) throw nothingTrainable();
  const x = batchTensor(r.data, ix, r.preprocessing, augmenter(r, augmentSeed));
  const y = tf.tensor1d(Int32Array.from(ix, (i) => r.data.labels[i]), 'int32') as tf.Tensor1D;
  let hits: tf.Tensor | undefined;
  let step: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    step = tf.variableGrads(() => {
      const out = r.model.apply(x, { training: true }) as tf.Tensor | tf.Tensor[];
      const outputs = Array.isArray(out) ? out : [out];
      hits = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(outputs[0], -1), y), 'float32')));
      return r.loss ? r.loss({ outputs, labels: y, indices: ix }) : crossEntropy(outputs[0], y, r.classWeights, r.labelSmoothing);
    }, vars.map((v) => v.read() as tf.Variable));
  } catch (e) {
    throw asMemoryError(e, ix.length);
  }
  const { value, grads } = step;
  const loss = (await value.data())[0];
  const correct = (await hits!.data())[0];
  if (Number.isFinite(loss)) {
    for (const g of perGroup) for (const v of g.vars) r.optimizer.update(v, grads[(v.read() as tf.Variable).name], g.lr);
  }
  tf.dispose([x, y, value, hits!, ...Object.values(grads)]);
  return { loss, correct };
}
