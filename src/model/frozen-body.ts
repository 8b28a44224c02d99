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

/**
 * Runs `n` samples through a graph whose input fixes the batch to `b`: in chunks of b, the
 * last one padded with zeros and its padding dropped from the result.
 */
export async function inFixedBatches(run: RunBatch, x: Float32Array, n: number, b: number): ReturnType<RunBatch> {
  const per = x.length / n;
  const parts: Float32Array[] = [];
  let shape: number[] = [];
  for (let i = 0; i < n; i += b) {
    const m = Math.min(n, i + b) - i;
    const chunk = new Float32Array(b * per);
    chunk.set(x.subarray(i * per, (i + m) * per));
    const r = await run(chunk, b);
    shape = r.shape;
    parts.push(r.values.subarray(0, m * (r.values.length / b)));
  }
  const values = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) { values.set(p, at); at += p.length; }
  return { values, shape };
}
