// Test-time augmentation: an image's class probabilities averaged over the image and its
// mirror image (left-right), as fastai's tta does with its flip. Only for images ([h, w, c]);
// other data is predicted as it is.

import type * as tfl from '@tensorflow/tfjs-layers';
import { count, sampleSize, type Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { predictAll } from '../train/predict.js';

/** The dataset with every image mirrored left-right (in memory, same type as the source). */
export function mirrored(d: Dataset): Dataset {
  const [h, w, c] = d.sampleShape;
  const s = sampleSize(d);
  const n = count(d);
  const src = d.x;
  const out = src instanceof Uint8Array ? new Uint8Array(n * s) : new Float32Array(n * s);
  for (let i = 0; i < n; i++) {
    const row = src.subarray(i * s, (i + 1) * s);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) out[i * s + (y * w + x) * c + k] = row[(y * w + (w - 1 - x)) * c + k];
  }
  return { ...d, x: out, source: `${d.source} (mirrored)` };
}

/** Probabilities [n, k]; with `tta` on image data, the mean over the image and its mirror. */
export async function predictWithTta(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, tta: boolean): Promise<Float32Array> {
  const { values } = await predictAll(model, d, p);
  if (!tta || d.sampleShape.length !== 3) return values;
  const flipped = (await predictAll(model, mirrored(d), p)).values;
  for (let i = 0; i < values.length; i++) values[i] = (values[i] + flipped[i]) / 2;
  return values;
}
