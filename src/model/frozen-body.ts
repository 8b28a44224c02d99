// What the frozen bodies run outside tfjs-layers (ONNX, GraphModel) share: their features of
// a dataset, batch by batch, the model's preprocessing applied on the way in.

import { sampleSize, type Dataset } from '../data/dataset.js';
import { preprocessInPlace, type Preprocessing } from '../data/preprocess.js';

export type RunBatch = (nhwc: Float32Array, n: number) => Promise<{ values: Float32Array; shape: number[] }>;

export async function featuresInBatches(run: RunBatch, featureShape: number[], d: Dataset, p: Preprocessing | undefined, batchSize = 32): Promise<Dataset> {
  const per = featureShape.reduce((a, b) => a * b, 1);
  const s = sampleSize(d);
  const n = d.labels.length;
  const x = new Float32Array(n * per);
  for (let i = 0; i < n; i += batchSize) {
    const k = Math.min(batchSize, n - i);
    const batch = new Float32Array(k * s);
    batch.set(d.x.subarray(i * s, (i + k) * s));
    x.set((await run(preprocessInPlace(batch, p), k)).values, i * per);
  }
  return { x, sampleShape: featureShape, labels: d.labels, classNames: d.classNames, source: `features of ${d.source}` };
}
