// loadModel: a zoo name, a local directory or model.json, or an http(s) URL, to a
// LayersModel (with freezable BatchNorm) and its graft.json when it has one.

import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { zooEntry } from '../zoo/zoo.js';
import { fetchRemoteModel, remoteModel } from '../zoo/remote.js';
import { backendInfo, initBackend } from '../engine/backend.js';
import { adoptModel } from './batch-norm.js';
import { modelFromArtifacts, readModelFiles, type ImportedGraph } from './io.js';
import type { GraftMeta } from './meta.js';
import { checkMetaAgainstModel } from './meta-check.js';

export interface LoadedModel {
  model: tfl.LayersModel;
  meta?: GraftMeta;
  /** The source as given (zoo name, path or URL). */
  source: string;
  /** With LoadOptions.inputSize: the layer after which the network was dropped to run at that size. */
  truncatedAt?: string;
  /** An ONNX graph rebuilt as layers: its names, input and layout. */
  imported?: ImportedGraph;
}

export interface LoadOptions {
  /** Progress of downloads, for a model given by URL. */
  onDownload?: (url: string, received: number, total: number | undefined) => void;
  /**
   * Build the network for another input height and width (a fully convolutional body such as
   * MobileNetV2 runs at any size; 96x96 is ~5x cheaper than 224x224). The weights are the same.
   */
  inputSize?: [number, number];
  /**
   * With inputSize: when the whole network cannot run at that size (an old head fixed to the
   * original size, e.g. a 7x7 average pool), keep the layers up to this one (default: the zoo's
   * suggested cut) and drop the rest.
   */
  keepUpTo?: string;
  /**
   * For an ONNX graph: the node or value the body is cut at. When a node after it has no
   * layer form, the graph is rebuilt up to it.
   */
  cut?: string;
  /** Words about a named model's download (onnx-zoo:...). */
  log?: (line: string) => void;
}

interface TopologyLayer { name?: string; config?: { name?: string }; inbound_nodes?: unknown[][] }

/** Drops every layer the output of `layer` does not depend on; that layer becomes the output. */
function truncateTopology(topology: unknown, layer: string): boolean {
  const top = topology as { model_config?: unknown; config?: unknown };
  const model = (top.model_config ?? top) as { config?: { layers?: TopologyLayer[]; output_layers?: unknown } };
  const layers = model.config?.layers;
  if (!layers || !model.config?.output_layers) return false;
  const nameOf = (l: TopologyLayer) => l.name ?? l.config?.name ?? '';
  const byName = new Map(layers.map((l) => [nameOf(l), l]));
  if (!byName.has(layer)) return false;
  const keep = new Set<string>();
  const stack = [layer];
  while (stack.length) {
    const n = stack.pop()!;
    if (keep.has(n) || !byName.has(n)) continue;
    keep.add(n);
    for (const node of byName.get(n)!.inbound_nodes ?? []) for (const inbound of node as unknown[]) if (Array.isArray(inbound)) stack.push(String(inbound[0]));
  }
  model.config.layers = layers.filter((l) => keep.has(nameOf(l)));
  model.config.output_layers = [[layer, 0, 0]];
  return true;
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
  if (source instanceof tfl.LayersModel) return { model: await adoptModel(source), source: source.name };
  if (typeof source !== 'string') {
    throw new GraftError('BAD_ARGUMENT', `loadModel takes a model name, path or URL (a string) or a tfjs LayersModel; got ${source === null ? 'null' : typeof source}.`, {
      fix: "Give e.g. 'digits-cnn', './my-model' or 'https://.../model.json'." });
  }
  const loaded = await loadFrom(source, options);
  if (loaded.meta) {
    try {
      checkMetaAgainstModel(loaded.meta, loaded.model, `graft.json of ${source}`, { truncated: Boolean(loaded.truncatedAt) });
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  }
  return loaded;
}

async function loadFrom(source: string, options: LoadOptions): Promise<LoadedModel> {
  const zoo = zooEntry(source);
  const remote = remoteModel(source);
  const path = remote ? await fetchRemoteModel(remote, { onProgress: options.onDownload, log: options.log }) : zoo ? zoo.dir : source;
  const files = await readModelFiles(path, { onDownload: options.onDownload, cut: options.cut, inputSize: options.inputSize });
  const imported = files.imported;
  const size = options.inputSize;
  if (size) {
    if (!size.every((v) => Number.isInteger(v) && v >= 8)) {
      throw new GraftError('BAD_OPTION', `An input size must be whole numbers of at least 8; got ${size.join('x')}.`, { fix: 'Use e.g. 96x96 (--input-size 96; inputSize: [96, 96] in the library).' });
    }
    const topology = JSON.parse(JSON.stringify(files.artifacts.modelTopology));
    if (!resizeInputs(topology, size)) {
      throw new GraftError('BAD_OPTION', `${source} has no image input [height, width, channels] to resize.`, { fix: 'Leave out the input size (--input-size, inputSize).' });
    }
    const meta = files.meta && { ...files.meta, preprocessing: { ...files.meta.preprocessing, inputShape: [size[0], size[1], ...files.meta.preprocessing.inputShape.slice(2)] } };
    try {
      const model = await modelFromArtifacts({ ...files.artifacts, modelTopology: topology }, source);
      return { model, meta, source, imported };
    } catch (whole) {
      // The layers after the cut may be tied to the original size; the body up to the cut is not.
      const keep = options.keepUpTo ?? files.meta?.zoo?.suggestedCuts?.[0];
      let cause: unknown = whole;
      if (keep && truncateTopology(topology, keep)) {
        try {
          const model = await modelFromArtifacts({ ...files.artifacts, modelTopology: topology }, source);
          const zoo = meta?.zoo && { ...meta.zoo, suggestedCuts: meta.zoo.suggestedCuts.filter((c) => model.layers.some((l) => l.name === c)) };
          return { model, meta: meta && { ...meta, zoo }, source, truncatedAt: keep, imported };
        } catch (e) {
          cause = e;
        }
      }
      throw new GraftError('BAD_OPTION', `${source} cannot run at ${size.join('x')}${keep ? ` (even cut at ${keep})` : ''}: ${(cause as Error).message}`, {
        fix: 'Only fully convolutional networks (no Flatten or Reshape before the cut) change input size; leave out the input size (--input-size, inputSize) or pick a size the network allows.', cause });
    }
  }
  const model = await modelFromArtifacts(files.artifacts, source);
  return { model, meta: files.meta, source, imported };
}
