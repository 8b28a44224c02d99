// Weights by stable keys ("<layer name>#<index>", unique within a model), for checkpoints and
// for the NaN guard's last good state.

import * as tf from '@tensorflow/tfjs-core';
import type { LayerVariable } from '@tensorflow/tfjs-layers';
import type { Layer } from '../model/layers.js';

export function variableKeys(layers: Layer[]): Map<LayerVariable, string> {
  const keys = new Map<LayerVariable, string>();
  for (const l of layers) l.weights.forEach((w, i) => keys.set(w, `${l.name}#${i}`));
  return keys;
}

export function variablesByKey(layers: Layer[]): Map<string, LayerVariable> {
  return new Map([...variableKeys(layers)].map(([v, k]) => [k, v]));
}

/** Copies of every weight (BatchNorm statistics included). Dispose with tf.dispose(values). */
export function snapshotWeights(layers: Layer[]): Map<string, tf.Tensor> {
  const snap = new Map<string, tf.Tensor>();
  for (const [v, k] of variableKeys(layers)) snap.set(k, tf.clone(v.read()));
  return snap;
}

export function restoreWeights(layers: Layer[], snap: Map<string, tf.Tensor>): void {
  for (const [v, k] of variableKeys(layers)) {
    const value = snap.get(k);
    if (value) v.write(value);
  }
}

/** Frees a snapshot's tensors (none given: nothing). */
export function disposeSnapshot(snap: Map<string, tf.Tensor> | undefined): void {
  if (snap) tf.dispose([...snap.values()]);
}

/** Unique layers of several models, in order (shared layers once). */
export function layersOf(...models: { layers: Layer[] }[]): Layer[] {
  return [...new Set(models.flatMap((m) => m.layers))];
}
