// Models whose body lives outside tfjs (graft.json `body`: an ONNX file): predict, evaluate
// and report run the body with onnxruntime first, then the tfjs head on its features.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraphBody } from '#internal/model/graph-body.js';
import { OnnxBody } from '#internal/model/onnx.js';
import { type Dataset, type GraftMeta, type Preprocessing } from 'graft';
import { type DataOptions } from '#internal/data/load.js';
import { dataOptions } from './data-args.js';

export function isOnnxPath(spec: string): boolean {
  return /\.onnx$/i.test(spec);
}

/** Data options for a saved model: image size from the ONNX body when there is one. */
export function savedDataOptions(values: Record<string, unknown>, model: tfl.LayersModel | (number | null)[], meta: GraftMeta, onFile?: DataOptions['onFile']): DataOptions {
  const o = dataOptions(values, model, meta.preprocessing, onFile);
  if (meta.body) {
    const [h, w, c] = meta.body.imageShape;
    return { ...o, image: { size: [h, w], channels: c === 1 ? 1 : 3, fit: o.image?.fit ?? meta.preprocessing.imageFit } };
  }
  return o;
}

/** What the tfjs model takes: the data itself, or the ONNX body's features of it. */
export async function modelInputs(meta: GraftMeta, data: Dataset): Promise<{ data: Dataset; preprocessing?: Preprocessing }> {
  if (!meta.body) return { data, preprocessing: meta.preprocessing };
  const b = meta.body;
  const body = b.kind === 'onnx' ? await OnnxBody.load(b.path, b.output, b.sha256) : await GraphBody.load(b.path, b.output, b.sha256);
  try {
    return { data: { ...(await body.features(data, meta.preprocessing)), source: data.source, skipped: data.skipped }, preprocessing: undefined };
  } finally {
    await body.dispose();
  }
}
