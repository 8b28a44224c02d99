// Building a new head and grafting it onto a body: global pooling when the body's output is
// a feature map, optional hidden dense layers with dropout, and a dense softmax output.

import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { withDefaults } from '../options.js';
import type { Body } from './cut.js';
import type { Layer } from './layers.js';

export interface HeadOptions {
  numClasses: number;
  /** How a spatial feature map becomes a vector. */
  pooling?: 'avg' | 'max' | 'flatten';
  /** Units of hidden dense layers between the features and the output. */
  hidden?: number[];
  /** Dropout before each dense layer (0 disables). */
  dropout?: number;
  activation?: 'relu' | 'gelu' | 'tanh' | 'elu';
  /** Name prefix of the head's layers. */
  name?: string;
  /** Seed of the dense layers' initial weights (random when absent). */
  seed?: number;
}

export const HEAD_DEFAULTS = { pooling: 'avg', hidden: [] as number[], dropout: 0.2, activation: 'relu', name: 'head', seed: undefined as number | undefined } as const;

export interface Head {
  layers: Layer[];
  options: HeadOptions & { pooling: string; hidden: number[]; dropout: number };
}

export function buildHead(featureShape: (number | null)[], options: HeadOptions): Head {
  const o = withDefaults(HEAD_DEFAULTS, options) as Required<Omit<HeadOptions, "seed">> & { seed?: number };
  if (!Number.isInteger(o.numClasses) || o.numClasses < 2) {
    throw new GraftError('BAD_OPTION', `A classification head needs at least 2 classes; got ${o.numClasses}.`, {
      fix: 'Give data with two or more classes.' });
  }
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new GraftError('BAD_OPTION', `The head's dropout must be at least 0 and below 1; got ${o.dropout}.`, { fix: 'Use e.g. 0.2, or 0 for none.' });
  const layers: Layer[] = [];
  const init = (i: number) => (o.seed === undefined ? undefined : tfl.initializers.glorotUniform({ seed: o.seed + i }));
  const rank = featureShape.length; // batch dimension included
  if (rank === 4) {
    const pool = { avg: tfl.layers.globalAveragePooling2d, max: tfl.layers.globalMaxPooling2d, flatten: tfl.layers.flatten }[o.pooling];
    layers.push(pool({ name: o.pooling === 'flatten' ? `${o.name}_flatten` : `${o.name}_pool` }));
  } else if (rank !== 2) {
    throw new GraftError('HEAD_MISMATCH', `The body's output has shape [${featureShape.join(', ')}]; a head needs a feature vector [batch, n] or a feature map [batch, h, w, c].`, {
      fix: 'Cut at a convolutional or dense layer.' });
  }
  o.hidden.forEach((units, i) => {
    if (o.dropout > 0) layers.push(tfl.layers.dropout({ rate: o.dropout, name: `${o.name}_dropout_${i + 1}` }));
    layers.push(tfl.layers.dense({ units, activation: o.activation, name: `${o.name}_dense_${i + 1}`, kernelInitializer: init(i + 1) }));
  });
  if (o.dropout > 0) layers.push(tfl.layers.dropout({ rate: o.dropout, name: `${o.name}_dropout` }));
  layers.push(tfl.layers.dense({ units: o.numClasses, activation: 'softmax', name: `${o.name}_output`, kernelInitializer: init(0) }));
  return { layers, options: o };
}

function applyLayers(layers: Layer[], x: tfl.SymbolicTensor): tfl.SymbolicTensor {
  return layers.reduce((t, l) => l.apply(t) as tfl.SymbolicTensor, x);
}

/**
 * Grafts the head onto the body: one LayersModel from the original input to the head's
 * output. Also returns a head-only model on the feature shape, sharing the same layers,
 * so the warm-up can train on cached features.
 */
export function attachHead(body: Body, head: Head): { model: tfl.LayersModel; headModel: tfl.LayersModel } {
  const taken = new Set(body.base.layers.map((l) => l.name));
  const clash = head.layers.find((l) => taken.has(l.name));
  if (clash) {
    throw new GraftError('BAD_OPTION', `The head's layer name "${clash.name}" is already used by the base model.`, {
      fix: 'Give the head another name prefix (HeadOptions.name).' });
  }
  const featureShape = body.model.outputs[0].shape;
  let output: tfl.SymbolicTensor;
  try {
    output = applyLayers(head.layers, body.model.outputs[0]);
  } catch (cause) {
    throw new GraftError('HEAD_MISMATCH', `The head does not fit the body's output of shape [${featureShape.join(', ')}]: ${(cause as Error).message}`, {
      fix: 'Build the head for this feature shape (buildHead does), or cut at another layer.', cause });
  }
  const model = tfl.model({ inputs: body.model.inputs, outputs: output, name: 'grafted' });
  const featureInput = tfl.input({ shape: featureShape.slice(1) as number[], name: 'features' });
  const headModel = tfl.model({ inputs: featureInput, outputs: applyLayers(head.layers, featureInput), name: 'head' });
  return { model, headModel };
}
