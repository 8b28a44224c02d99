// A BatchNormalization that honours `trainable = false`.
// tfjs-layers' BatchNormalization normalises with batch statistics and updates its moving
// mean/variance whenever it is called with training=true, frozen or not. A frozen body must
// behave as in inference: this subclass turns training off for itself while it is frozen.
// It serialises under the same class name, so saved models load in plain tfjs.

import * as tfl from '@tensorflow/tfjs-layers';
import type * as tf from '@tensorflow/tfjs-core';
import type { Layer } from '@tensorflow/tfjs-layers/dist/engine/topology.js';

type Kwargs = { [key: string]: unknown };
type LayerCtor = new (args?: object) => Layer;

// The class itself is not exported by tfjs-layers' entry point; take it from an instance so
// that the one tfjs-layers module instance in the process is used.
const TfjsBatchNormalization = Object.getPrototypeOf(tfl.layers.batchNormalization({})).constructor as LayerCtor;

export class FreezableBatchNormalization extends TfjsBatchNormalization {
  static className = 'BatchNormalization';
  /** When true, the layer normalises with its moving statistics even while its gamma and beta train (Keras' fine-tuning advice). */
  keepStatistics = false;

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    return super.call(inputs, this.trainable && !this.keepStatistics ? kwargs : { ...kwargs, training: false });
  }
}

/** Custom objects for deserialising models so that their BatchNormalization layers can freeze. */
// tfjs-layers looks custom classes up as [class, fromConfig] pairs.
const fromConfig = (FreezableBatchNormalization as unknown as { fromConfig: unknown }).fromConfig;
export const GRAFT_CUSTOM_OBJECTS = { BatchNormalization: [FreezableBatchNormalization, fromConfig] } as unknown as tf.serialization.ConfigDict;

export function isBatchNorm(layer: Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}

/**
 * Returns a model whose BatchNormalization layers honour `trainable`: the same model when
 * it already has them (models loaded by Graft), else a rebuilt copy with the same weights.
 */
export async function adoptModel(model: tfl.LayersModel): Promise<tfl.LayersModel> {
  const plain = model.layers.some((l) => isBatchNorm(l) && !(l instanceof FreezableBatchNormalization));
  if (!plain) return model;
  const config = model.toJSON(null, false) as object;
  const copy = (await tfl.models.modelFromJSON(config as never, GRAFT_CUSTOM_OBJECTS as never)) as tfl.LayersModel;
  copy.setWeights(model.getWeights());
  return copy;
}
