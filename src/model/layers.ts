// Small helpers over tfjs-layers' Layer objects: finding a layer by name or index,
// counting parameters, reading shapes.

import type * as tfl from '@tensorflow/tfjs-layers';
import type { Layer } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import { GraftError, closeNames } from '../errors.js';

export type { Layer };
export type LayerRef = string | number;

/** Number of values in a weight shape (unknown dimensions count as 1). */
export function sizeOf(shape: (number | null)[]): number {
  return shape.reduce((a: number, b) => a * (b ?? 1), 1);
}

/** Number of values in a list of weights. */
export function weightCount(weights: { shape: (number | null)[] }[]): number {
  return weights.reduce((n, w) => n + sizeOf(w.shape), 0);
}

export function paramCount(layer: Layer): number {
  return weightCount(layer.weights);
}

export function outputShapeOf(layer: Layer): (number | null)[] {
  const shape = layer.outputShape as (number | null)[] | (number | null)[][];
  return (Array.isArray(shape[0]) ? shape[0] : shape) as (number | null)[];
}

export function isInputLayer(layer: Layer): boolean {
  return layer.getClassName() === 'InputLayer';
}

/** Finds a layer by name or by index in `model.layers`; a numeric string counts as an index. */
export function findLayer(model: tfl.LayersModel, ref: LayerRef): { layer: Layer; index: number } {
  const asIndex = typeof ref === 'number' ? ref : /^-?\d+$/.test(ref) ? Number(ref) : undefined;
  if (asIndex !== undefined) {
    const index = asIndex < 0 ? model.layers.length + asIndex : asIndex;
    if (index < 0 || index >= model.layers.length) {
      throw new GraftError('LAYER_NOT_FOUND', `Layer index ${ref} is out of range: the model has layers 0 to ${model.layers.length - 1}.`, {
        fix: 'Run `graft inspect <model>` to see the layer indices.' });
    }
    return { layer: model.layers[index], index };
  }
  const index = model.layers.findIndex((l) => l.name === ref);
  if (index < 0) {
    const close = closeNames(String(ref), model.layers.map((l) => l.name));
    throw new GraftError('LAYER_NOT_FOUND', `No layer named "${ref}" in model "${model.name}". Close names: ${close.join(', ')}.`, {
      fix: 'Use a name or index from `graft inspect <model>`.' });
  }
  return { layer: model.layers[index], index };
}
