// loadModel: a zoo name, a local directory or model.json, or an http(s) URL, to a
// LayersModel (with freezable BatchNorm) and its graft.json when it has one.

import type * as tfl from '@tensorflow/tfjs-layers';
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

export async function loadModel(source: string | tfl.LayersModel): Promise<LoadedModel> {
  // Building a model needs a ready backend; pick one if the caller has not.
  if (!backendInfo()) await initBackend();
  if (typeof source !== 'string') return { model: await adoptModel(source), source: source.name };
  const zoo = zooEntry(source);
  const files = await readModelFiles(zoo ? zoo.dir : source);
  const model = await modelFromArtifacts(files.artifacts, source);
  return { model, meta: files.meta, source };
}
