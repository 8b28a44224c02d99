// loadModel: a zoo name, a local directory or model.json, or an http(s) URL, to a
// LayersModel (with freezable BatchNorm) and its graft.json when it has one.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { zooEntry } from '../zoo/zoo.js';
import { backendInfo, initBackend } from '../engine/backend.js';
import { adoptModel } from './batch-norm.js';
import { modelFromArtifacts, readModelFiles } from './io.js';
import type { GraftMeta } from './meta.js';

export interface LoadedModel {
  model: tfl.LayersModel;
  meta?: GraftMeta;
  /** The source as given (zoo name, path or URL). */
  source: string;
}

export interface LoadOptions {
  /**
   * Build the network for another input height and width (a fully convolutional body such as
   * MobileNetV2 runs at any size; 96x96 is ~5x cheaper than 224x224). The weights are the same.
   */
  inputSize?: [number, number];
}

/** Sets every 4-d batch_input_shape in a topology to [null, h, w, c]; returns how many it changed. */
function resizeInputs(node: unknown, size: [number, number]): number {
  if (!node || typeof node !== 'object') return 0;
  let n = 0;
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if ((k === 'batch_input_shape' || k === 'batch_shape') && Array.isArray(v) && v.length === 4) {
      (node as Record<string, unknown>)[k] = [v[0], size[0], size[1], v[3]];
      n++;
    } else n += resizeInputs(v, size);
  }
  return n;
}

export async function loadModel(source: string | tfl.LayersModel, options: LoadOptions = {}): Promise<LoadedModel> {
  // Building a model needs a ready backend; pick one if the caller has not.
  if (!backendInfo()) await initBackend();
  if (typeof source !== 'string') return { model: await adoptModel(source), source: source.name };
  const zoo = zooEntry(source);
  const files = await readModelFiles(zoo ? zoo.dir : source);
  const size = options.inputSize;
  if (size) {
    if (!size.every((v) => Number.isInteger(v) && v >= 8)) {
      throw new GraftError('BAD_OPTION', `An input size must be whole numbers of at least 8; got ${size.join('x')}.`, { fix: 'Use e.g. --input-size 96.' });
    }
    const topology = JSON.parse(JSON.stringify(files.artifacts.modelTopology));
    if (!resizeInputs(topology, size)) {
      throw new GraftError('BAD_OPTION', `${source} has no image input [height, width, channels] to resize.`, { fix: 'Leave out --input-size.' });
    }
    try {
      const model = await modelFromArtifacts({ ...files.artifacts, modelTopology: topology }, source);
      const meta = files.meta && { ...files.meta, preprocessing: { ...files.meta.preprocessing, inputShape: [size[0], size[1], ...files.meta.preprocessing.inputShape.slice(2)] } };
      return { model, meta, source };
    } catch (cause) {
      throw new GraftError('BAD_OPTION', `${source} cannot run at ${size.join('x')}: ${(cause as Error).message}`, {
        fix: 'Only fully convolutional networks (no Flatten or Reshape before the cut) change input size; leave out --input-size or pick a size the network allows.', cause });
    }
  }
  const model = await modelFromArtifacts(files.artifacts, source);
  return { model, meta: files.meta, source };
}
