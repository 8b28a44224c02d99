// Extend mode: one head for the old and the new classes. The body is cut just before the old
// output layer; a new softmax layer covers old + new classes, with the old classes' weights
// copied from the old output layer, so before training it predicts the old classes as before.

import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { cutBody } from './cut.js';
import type { Grafted } from './graft.js';
import { attachHead, HEAD_DEFAULTS, type Head } from './head.js';
import type { LoadedModel } from './load.js';
import type { OldHead } from './multi-head.js';

export function mergeClassNames(oldNames: string[], newNames: string[]): string[] {
  return [...oldNames, ...newNames.filter((c) => !oldNames.includes(c))];
}

export function extendModel(base: LoadedModel, old: OldHead, newClassNames: string[]): { grafted: Grafted; classNames: string[] } {
  const out = base.model.getLayer(old.outputLayer);
  const feeder = (out.inboundNodes[0]?.inboundLayers[0] as { name: string } | undefined)?.name;
  if (!feeder) throw new GraftError('BAD_MODEL', `The old output layer "${old.outputLayer}" has no input layer to cut at.`);
  const classNames = mergeClassNames(old.classNames, newClassNames);
  if (classNames.length === old.classNames.length) {
    throw new GraftError('BAD_DATA', `The new data's classes (${newClassNames.join(', ')}) are all old classes; extend adds new classes.`, {
      fix: 'Use plain fine-tuning for the same classes, or give data with new classes.' });
  }
  const body = cutBody(base.model, feeder);
  const dense = tfl.layers.dense({ units: classNames.length, activation: 'softmax', name: 'extended_output' });
  const head: Head = { layers: [dense], options: { ...HEAD_DEFAULTS, hidden: [], dropout: 0, numClasses: classNames.length, name: 'extended' } };
  const { model, headModel } = attachHead(body, head);
  const [oldKernel, oldBias] = out.getWeights();
  const [kernel] = dense.getWeights();
  const k = old.classNames.length;
  const merged = tf.tidy(() => [
    tf.concat([oldKernel, tf.slice(kernel, [0, k], [-1, -1])], 1),
    tf.concat([oldBias, tf.zeros([classNames.length - k])], 0),
  ]);
  dense.setWeights(merged);
  tf.dispose(merged);
  return { grafted: { base: base.model, body, head, model, headModel }, classNames };
}
