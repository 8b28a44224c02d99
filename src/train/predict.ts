// Running a model over a dataset in batches: class probabilities, and the features of a
// body (what the warm-up trains on).

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../data/dataset.js';
import { batchRanges, batchTensor, batchValues, type Preprocessing } from '../data/preprocess.js';
import { NativeNet, nativeStatus, NativeUnsupported, resolvePrecision, type Precision } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { allgatherRows, distributed, shardRange } from '../engine/dist.js';
import { subset } from '../data/dataset.js';

/** The model in the native engine for inference, when the engine is built and knows every layer. */
function nativePredictor(model: tfl.LayersModel, precision?: Precision): NativeNet | undefined {
  if (!nativeStatus().available) return undefined;
  try {
    return new NativeNet(nativePlan(model), { precision: resolvePrecision(precision).precision });
  } catch (e) {
    if (e instanceof NativeUnsupported) return undefined;
    throw e;
  }
}

/**
 * Outputs of `model` for every sample, as one Float32Array [n, ...outputShape]. `precision`
 * applies to the native engine (default: the one in force, defaultPrecision()).
 */
export async function predictAll(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, batchSize = 128, precision?: Precision): Promise<{ values: Float32Array; shape: number[] }> {
  const outShape = (model.outputs[0].shape.slice(1) as number[]);
  const per = outShape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(d.labels.length * per);
  const net = nativePredictor(model, precision);
  if (net) {
    try {
      for (const ix of batchRanges(d, batchSize)) {
        values.set(net.predict(batchValues(d, ix, p), ix.length), ix[0] * per);
        // One native call per batch blocks the event loop; let signals and requests in between.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      net.dispose();
    }
    return { values, shape: outShape };
  }
  for (const ix of batchRanges(d, batchSize)) {
    const out = tf.tidy(() => model.predict(batchTensor(d, ix, p)) as tf.Tensor);
    values.set(await out.data() as Float32Array, ix[0] * per);
    out.dispose();
  }
  return { values, shape: outShape };
}

/** The body's features as a dataset with the same labels, for training a head on them. */
export async function featureDataset(body: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, batchSize = 128): Promise<Dataset> {
  const dist = distributed();
  let { values, shape } = dist ? { values: new Float32Array(0), shape: [] as number[] } : await predictAll(body, d, p, batchSize);
  if (dist) {
    // A data-parallel run: each worker computes its rows, and all of them get every row.
    const [s, e] = shardRange(d.labels.length, dist.rank, dist.worldSize);
    ({ values, shape } = await predictAll(body, subset(d, Int32Array.from({ length: e - s }, (_, i) => s + i)), p, batchSize));
    values = allgatherRows(values, d.labels.length, shape.reduce((a, b) => a * b, 1));
  }
  return { x: values, sampleShape: shape, labels: d.labels, classNames: d.classNames, source: `features of ${d.source}` };
}
