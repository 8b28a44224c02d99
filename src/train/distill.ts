// Distillation losses for keeping an old task (Learning without Forgetting, Li & Hoiem 2016):
// the old head's outputs on the new data are recorded before training, and training adds
// lambda * cross-entropy between the recorded and the current outputs, both softened with
// temperature T. Heads end in softmax, so softening works on probabilities:
// softmax(logits / T) = normalise(p ^ (1 / T)).

import * as tf from '@tensorflow/tfjs-core';
import { crossEntropy, type LossFn } from './loop.js';

export interface DistillOptions {
  /** Recorded old-head probabilities, [n, oldClasses], aligned with the training set. */
  targets: Float32Array;
  oldClasses: number;
  temperature: number;
  lambda: number;
  /** Where the current old-task outputs are: a second model output, or the first oldClasses columns of the one head. */
  from: 'second-output' | 'old-columns';
}

export const DISTILL_DEFAULTS = { temperature: 2, lambda: 1 };

/**
 * log softmax(logits / T) from probabilities. The floor is tiny on purpose: a floor like
 * cross-entropy's 1e-7 cuts the gradient of a confidently wrong head, which then never
 * comes back (seen in tests: the old head collapsed).
 */
export function logSoften(probs: tf.Tensor, temperature: number): tf.Tensor {
  return tf.logSoftmax(tf.div(tf.log(tf.maximum(probs, 1e-30)), temperature));
}

export function soften(probs: tf.Tensor, temperature: number): tf.Tensor {
  return tf.exp(logSoften(probs, temperature));
}

/** -mean over the batch of sum_c soft(target)_c * log soft(current)_c. */
export function distillationLoss(current: tf.Tensor, target: tf.Tensor, temperature: number): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(soften(target, temperature), logSoften(current, temperature)), -1))) as tf.Scalar;
}

function batchTargets(d: DistillOptions, indices: number[]): tf.Tensor {
  const k = d.oldClasses;
  const buf = new Float32Array(indices.length * k);
  indices.forEach((i, j) => buf.set(d.targets.subarray(i * k, (i + 1) * k), j * k));
  return tf.tensor2d(buf, [indices.length, k]);
}

/** New-task cross-entropy plus lambda times distillation toward the recorded old outputs. */
export function lwfLoss(d: DistillOptions): LossFn {
  const loss: LossFn = ({ outputs, labels, indices }) => {
    const ce = crossEntropy(outputs[0], labels);
    let current: tf.Tensor;
    if (d.from === 'second-output') current = outputs[1];
    else {
      const old = tf.slice(outputs[0], [0, 0], [-1, d.oldClasses]);
      current = tf.div(old, tf.sum(old, -1, true));
    }
    return tf.add(ce, tf.mul(distillationLoss(current, batchTargets(d, indices), d.temperature), d.lambda)) as tf.Scalar;
  };
  // The same loss in the native engine (graft_native.cc, trainStep).
  loss.native = { kind: 'lwf', targets: d.targets, oldClasses: d.oldClasses, temperature: d.temperature, lambda: d.lambda, from: d.from };
  return loss;
}
