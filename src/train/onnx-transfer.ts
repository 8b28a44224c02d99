// Transfer with a frozen body that tfjs cannot train (an ONNX file run by onnxruntime, or a
// tfjs GraphModel): its features are computed once, the head trains on them in tfjs (the
// warm-up phase alone), and the saved model is the head, whose input is the body's features,
// plus graft.json's `body`: path, content hash and cut, so predict runs the body, then the head.

import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { assertTrainable, count, stratifiedSplit, type Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { adoptModel } from '../model/batch-norm.js';
import { graft } from '../model/graft.js';
import type { HeadOptions } from '../model/head.js';
import { headsMeta } from '../model/multi-head.js';
import { OnnxBody } from '../model/onnx.js';
import type { GraphBody } from '../model/graph-body.js';

/** A frozen body run outside tfjs-layers. */
export type FrozenBody = OnnxBody | GraphBody;
import { versions, type GraftMeta } from '../model/meta.js';
import { DEFAULTS } from './defaults.js';
import { fineTune, type FineTuneOptions, type FineTuneResult } from './fine-tune.js';
import type { Grafted } from '../model/graft.js';

export interface OnnxTransferOptions extends Omit<FineTuneOptions, 'preprocessing' | 'finetuneEpochs' | 'unfreeze'> {
  cut?: string;
  head?: Omit<HeadOptions, 'numClasses'>;
  /** Pixel preprocessing for the ONNX body (it has no graft.json). */
  preprocessing?: Preprocessing;
  validationSplit?: number;
}

export interface OnnxTransfer {
  body: FrozenBody;
  grafted: Grafted;
  result: FineTuneResult;
  meta: GraftMeta;
  featureSeconds: number;
}

export async function transferOnnx(source: string | FrozenBody, data: Dataset, o: OnnxTransferOptions = {}): Promise<OnnxTransfer> {
  assertTrainable(data);
  const body = typeof source === 'string' ? await OnnxBody.load(source, o.cut) : source;
  const path = body.info.path;
  const [h, w, c] = body.info.imageShape;
  if (data.sampleShape.join() !== [h, w, c].join()) {
    throw new GraftError('SHAPE_MISMATCH', `${data.source} has samples of shape [${data.sampleShape.join(', ')}]; the body takes [${h}, ${w}, ${c}].`, {
      fix: 'Give images (they are resized to the body\'s input), or data of that shape.' });
  }
  const seed = o.seed ?? DEFAULTS.seed;
  let train = data;
  let validation = o.validation;
  const split = o.validationSplit ?? DEFAULTS.validationSplit;
  if (!validation && split > 0) ({ rest: train, split: validation } = stratifiedSplit(data, split, seed));
  const t0 = Date.now();
  const trainFeatures = await body.features(train, o.preprocessing);
  const valFeatures = validation && await body.features(validation, o.preprocessing);
  const featureSeconds = (Date.now() - t0) / 1000;
  // A weightless "body" over the features, so that the head is grafted, trained and saved as usual.
  const input = tfl.input({ shape: body.info.featureShape, name: 'onnx_features' });
  const passThrough = tfl.layers.activation({ activation: 'linear', name: 'features' }).apply(input) as tfl.SymbolicTensor;
  const base = await adoptModel(tfl.model({ inputs: input, outputs: passThrough, name: 'onnx_body' }));
  const grafted = graft(base, { cut: 'features', head: { seed, ...o.head, numClasses: data.classNames.length } });
  const result = await fineTune(grafted, trainFeatures, { ...o, validation: valFeatures, preprocessing: undefined, finetuneEpochs: 0, cachedFeatures: { train: trainFeatures, validation: valFeatures } });
  const meta: GraftMeta = {
    format: 'graft/1',
    classNames: data.classNames,
    preprocessing: o.preprocessing ?? { inputShape: [h, w, c], description: 'none: raw values' },
    base: { source: path, cut: { layer: body.info.output, index: body.cutIndex() } },
    body: body.info,
    heads: headsMeta(grafted, data.classNames),
    frozen: [body.info.kind === 'onnx' ? `${path} (ONNX body, run by onnxruntime)` : `${path} (tfjs GraphModel body)`],
    metrics: { validationAccuracy: result.validation?.accuracy ?? null, validationLoss: result.validation?.loss ?? null, trainSamples: count(train), featureSeconds },
    history: result.history,
    recipe: { ...result.recipe, head: grafted.head.options, body: `${body.info.kind} (frozen; warm-up only)` },
    versions: versions(),
    createdAt: new Date().toISOString(),
  };
  return { body, grafted, result, meta, featureSeconds };
}
