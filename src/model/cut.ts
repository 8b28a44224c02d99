// Cutting a network on the output side. The body keeps the original input node and ends at
// the cut layer's output; everything after the cut (the old head) is removed from the body
// but stays intact in the base model, which shares the body's layer objects.

import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { findLayer, isInputLayer, type Layer, type LayerRef } from './layers.js';

export interface Body {
  /** The original network, old head included; shares its layers with `model`. */
  base: tfl.LayersModel;
  /** From the original input to the cut layer's output. */
  model: tfl.LayersModel;
  cut: { layer: string; index: number };
  /** Kept layers in topological order, input layer excluded. */
  layers: Layer[];
  /** Layers of the base that the cut removes (the old head and anything else past the cut). */
  removed: Layer[];
}

export function cutBody(base: tfl.LayersModel, at: LayerRef): Body {
  if (base.inputs.length !== 1) {
    throw new GraftError('BAD_MODEL', `Model "${base.name}" has ${base.inputs.length} inputs; Graft cuts single-input models.`);
  }
  const { layer, index } = findLayer(base, at);
  if (isInputLayer(layer)) {
    throw new GraftError('EMPTY_CUT', `Cutting at "${layer.name}" (the input layer) leaves no pretrained layers.`, {
      fix: 'Cut at a later layer: `graft inspect <model>` lists them; a good cut is usually just before the classifier.' });
  }
  if (layer.inboundNodes.length !== 1) {
    throw new GraftError('BAD_MODEL', `Layer "${layer.name}" is used ${layer.inboundNodes.length} times in the model; cut at a layer used once.`);
  }
  const model = tfl.model({ inputs: base.inputs, outputs: layer.output as tfl.SymbolicTensor, name: `${base.name}_body` });
  const kept = new Set(model.layers.map((l) => l.name));
  return {
    base,
    model,
    cut: { layer: layer.name, index },
    layers: model.layers.filter((l) => !isInputLayer(l)),
    removed: base.layers.filter((l) => !kept.has(l.name)),
  };
}
