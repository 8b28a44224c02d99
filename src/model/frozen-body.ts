// What the frozen bodies run outside tfjs-layers (ONNX, GraphModel) share: their features of
// a dataset, batch by batch, the model's preprocessing applied on the way in.

import type { Dataset } from '../data/dataset.js';
import { batchRanges, batchValues, type Preprocessing } from '../data/preprocess.js';

export type RunBatch = (nhwc: Float32Array, n: number) => Promise<{ values: Float32Array; shape: number[] }>;

export async function featuresInBatches(run: RunBatch, featureShape: number[], d: Dataset, p: Preprocessing | undefined, batchSize = 32): Promise<Dataset> {
  const per = featureShape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(d.labels.length * per);
  for (const ix of batchRanges(d, batchSize)) x.set((await run(batchValues(d, ix, p), ix.length)).values, ix[0] * per);
  return { x, sampleShape: featureShape, labels: d.labels, classNames: d.classNames, source: `features of ${d.source}` };
}
