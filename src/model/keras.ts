// Keras models without Python: Keras 2 HDF5 files (model.save('x.h5'): a model_config
// attribute and a model_weights group) and Keras 3 .keras archives (a zip of config.json,
// metadata.json and model.weights.h5) become tfjs model artifacts. HDF5 is read by h5wasm,
// the HDF5 C library compiled to WebAssembly (every HDF5 feature Keras uses, gzip included,
// without a native build). Keras 3 configs are rewritten to the Keras 2 layout tfjs-layers reads.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { open, rm, stat, writeFile } from 'node:fs/promises';
import { assertRegularFile, READ_LIMITS, readBounded } from '../data/bounded-read.js';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import type * as tf from '@tensorflow/tfjs-core';
import { GraftError } from '../errors.js';
import { loadOptional, OPTIONAL } from '../optional.js';

const HDF5_MAGIC = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

export function isKerasPath(path: string): boolean {
  return /\.(h5|hdf5|keras)$/i.test(path);
}

type H5 = typeof import('h5wasm');
let h5: H5 | undefined;

async function h5wasm(): Promise<H5> {
  if (!h5) {
    const mod = await loadOptional<H5>(OPTIONAL.h5wasm, 'Reading Keras .h5 and .keras files', () => import('h5wasm/node'));
    await mod.ready;
    h5 = mod;
  }
  return h5;
}

/**
 * Runs synchronous h5wasm work with libhdf5's error stack ("HDF5-DIAG: ...", written straight
 * to file descriptor 2) silenced: Graft reports the error itself, in its own words.
 */
function quietly<T>(work: () => T): T {
  const write = fs.writeSync;
  (fs as { writeSync: unknown }).writeSync = function (fd: number, buffer: unknown, ...rest: unknown[]) {
    if (fd === 2) return typeof buffer === 'string' ? buffer.length : (rest[1] as number | undefined) ?? (buffer as Uint8Array).length;
    return (write as (...a: unknown[]) => number).call(fs, fd, buffer, ...rest);
  };
  try {
    return work();
  } finally {
    (fs as { writeSync: unknown }).writeSync = write;
  }
}

interface WeightEntry { name: string; shape: number[]; values: Float32Array }

function bad(where: string, what: string, fix = 'Save the model again with model.save() and copy the whole file.'): GraftError {
  return new GraftError('BAD_MODEL', `${where} ${what}`, { fix });
}

function toFloat32(value: unknown, dtype: unknown, where: string, name: string): Float32Array {
  if (value instanceof Float32Array) return value;
  if (value instanceof Float64Array) return Float32Array.from(value);
  if (value instanceof Uint16Array && String(dtype).includes('e')) {
    // float16 (numpy '<e'): widen.
    return Float32Array.from(value, (h) => {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const f = h & 0x3ff;
      if (e === 0) return s * 2 ** -14 * (f / 1024);
      if (e === 31) return f ? NaN : s * Infinity;
      return s * 2 ** (e - 15) * (1 + f / 1024);
    });
  }
  throw new GraftError('BAD_MODEL', `${where}: weight "${name}" has dtype ${JSON.stringify(dtype)}, which Graft does not import (float32, float64 and float16 are read).`, {
    fix: 'Cast the model to float32 in Keras (model.save after tf.keras.mixed_precision.set_global_policy("float32")).' });
}

function strings(value: unknown): string[] {
  if (value == null) return [];
  const arr = Array.isArray(value) ? value : [value];
  return arr.map((v) => (typeof v === 'string' ? v : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v))).map((s) => s.replace(/\0+$/, ''));
}

async function openH5(path: string, where: string) {
  const lib = await h5wasm();
  const head = Buffer.alloc(8);
  await assertRegularFile(path, { limit: READ_LIMITS.keras, what: 'The Keras file' });
  const fh = await open(path, 'r');
  try { await fh.read(head, 0, 8, 0); } finally { await fh.close(); }
  if (!head.equals(HDF5_MAGIC)) throw bad(where, 'is not an HDF5 file (its first bytes are not the HDF5 signature).', 'Give a Keras .h5 file written by model.save(), or a .keras archive.');
  let file: InstanceType<H5['File']>;
  try {
    file = quietly(() => new lib.File(path, 'r'));
  } catch (cause) {
    throw bad(where, `cannot be read as HDF5 (${(cause as Error).message}); it may be truncated.`);
  }
  return file;
}

type H5Group = { keys(): string[]; get(path: string): unknown; attrs: Record<string, { value: unknown }> };
type H5Dataset = { shape: number[] | null; dtype: unknown; value: unknown };

function isDataset(x: unknown): x is H5Dataset {
  return Boolean(x) && typeof x === 'object' && 'shape' in (x as object) && 'dtype' in (x as object);
}

function readDataset(node: unknown, where: string, name: string): { shape: number[]; values: Float32Array } {
  if (!isDataset(node)) throw bad(where, `lacks the weight dataset "${name}".`);
  let value: unknown;
  try {
    value = node.value;
  } catch (cause) {
    throw bad(where, `has a weight "${name}" that cannot be read (${(cause as Error).message}); the file may be truncated.`);
  }
  return { shape: node.shape ?? [], values: toFloat32(value, node.dtype, where, name) };
}

/** Keras 2 .h5: the topology from model_config, the weights by layer from model_weights. */
async function readH5Model(path: string, where: string): Promise<{ topology: object; weights: WeightEntry[]; kerasVersion?: string }> {
  const file = await openH5(path, where);
  try {
    return quietly(() => readH5Contents(file as unknown as H5Group, where));
  } catch (cause) {
    if (cause instanceof GraftError) throw cause;
    const m = (cause as Error).message;
    throw bad(where, /not defined|invalid|identifier/i.test(m)
      ? 'cannot be read: libhdf5 could not open its contents (the file is truncated or damaged).'
      : `cannot be read as a Keras model (${m}); the file may be truncated.`);
  } finally {
    quietly(() => file.close());
  }
}

function readH5Contents(file: H5Group, where: string): { topology: object; weights: WeightEntry[]; kerasVersion?: string } {
  {
    const configAttr = file.attrs.model_config?.value;
    if (configAttr == null) {
      throw bad(where, 'has no model_config attribute: it holds weights only (model.save_weights) or is not a Keras model file.',
        'Save the whole model with model.save("model.h5") (not save_weights).');
    }
    let topology: object;
    try {
      topology = JSON.parse(strings(configAttr)[0]);
    } catch {
      throw bad(where, 'has a model_config attribute that is not JSON.');
    }
    const root = (file.get('model_weights') ?? file) as H5Group;
    const layerNames = strings(root.attrs?.layer_names?.value);
    const weights: WeightEntry[] = [];
    for (const layer of layerNames) {
      const group = root.get(layer) as H5Group | null;
      if (!group) throw bad(where, `lists layer "${layer}" in model_weights but has no group for it.`);
      for (const wn of strings(group.attrs?.weight_names?.value)) {
        const { shape, values } = readDataset(group.get(wn), where, `${layer}/${wn}`);
        // "conv1/kernel:0" (or "model/conv1/kernel:0") -> tfjs "conv1/kernel".
        weights.push({ name: `${layer}/${wn.replace(/:\d+$/, '').split('/').pop()}`, shape, values });
      }
    }
    return { topology, weights, kerasVersion: strings(file.attrs.keras_version?.value)[0] };
  }
}

// ---- Keras 3 .keras archives ----

/** The files of a zip archive (stored or deflated entries), from its central directory. */
export function unzip(buf: Buffer, where: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) throw bad(where, 'is not a zip archive (no end-of-central-directory record); a .keras file is a zip, and this one may be truncated.');
  const entries = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let k = 0; k < entries; k++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) throw bad(where, 'has a damaged zip directory.');
    const method = buf.readUInt16LE(p + 10);
    const size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== 0x04034b50) throw bad(where, `has a damaged zip entry "${name}".`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    if (start + size > buf.length) throw bad(where, `ends inside its zip entry "${name}": the file is truncated.`);
    const data = buf.subarray(start, start + size);
    if (method === 0) files.set(name, data);
    else if (method === 8) files.set(name, inflateRawSync(data));
    else throw bad(where, `compresses "${name}" with zip method ${method}, which Graft does not read (stored and deflate are).`);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return files;
}

interface K3Layer { class_name: string; config: Record<string, unknown>; name?: string; module?: string; registered_name?: string | null; inbound_nodes?: unknown[] }

/** A Keras 3 inbound node ({args: [keras tensors]}) as a Keras 2 one ([[layer, node, tensor, {}], ...]). */
function k2Node(node: unknown): unknown[] {
  if (Array.isArray(node)) return node;
  const history: unknown[][] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as { class_name?: string; config?: { keras_history?: unknown[] } };
      if (o.class_name === '__keras_tensor__' && o.config?.keras_history) history.push([...o.config.keras_history, {}]);
      else Object.values(o).forEach(walk);
    }
  };
  walk((node as { args?: unknown }).args);
  return history;
}

/** Keras 3 config.json to the Keras 2 layout (what tfjs-layers deserialises). */
export function keras3ToKeras2(config: Record<string, unknown>, where: string): object {
  const c = config as { class_name?: string; config?: { name?: string; layers?: K3Layer[]; input_layers?: unknown; output_layers?: unknown } };
  if (!c.config?.layers) throw bad(where, `has a config.json without layers (class ${c.class_name ?? 'unknown'}).`, 'Save a Sequential or Functional Keras model.');
  const custom = c.config.layers.filter((l) => l.module && !String(l.module).startsWith('keras'));
  if (custom.length) {
    throw new GraftError('BAD_MODEL', `${where} uses custom layers: ${custom.map((l) => `${l.config.name ?? l.name} (${l.module}.${l.class_name})`).join(', ')}.`, {
      fix: 'Replace custom layers with built-in Keras layers before saving, or export the model as a tfjs LayersModel.' });
  }
  const layers = c.config.layers.map((l) => {
    const cfg: Record<string, unknown> = { ...l.config };
    if (cfg.batch_shape && !cfg.batch_input_shape) { cfg.batch_input_shape = cfg.batch_shape; delete cfg.batch_shape; }
    if (cfg.dtype && typeof cfg.dtype === 'object') cfg.dtype = (cfg.dtype as { config?: { name?: string } }).config?.name ?? 'float32';
    for (const key of Object.keys(cfg)) {
      const v = cfg[key] as { module?: string; class_name?: string; config?: unknown } | null;
      // Initializers and regularizers: drop Keras 3's module/registered_name wrappers.
      if (v && typeof v === 'object' && !Array.isArray(v) && 'class_name' in v && 'module' in v) cfg[key] = { class_name: v.class_name, config: v.config ?? {} };
    }
    return { class_name: l.class_name, name: l.name ?? cfg.name, config: cfg, inbound_nodes: (l.inbound_nodes ?? []).map(k2Node) };
  });
  const className = c.class_name === 'Sequential' ? 'Sequential' : 'Model';
  return { class_name: className, config: { ...c.config, layers } };
}

async function readKerasArchive(path: string, where: string): Promise<{ topology: object; weights: WeightEntry[]; kerasVersion?: string }> {
  const buf = await readBounded(path, { limit: READ_LIMITS.keras, what: 'The Keras file' });
  if (buf.length < 4 || buf.readUInt32LE(0) !== 0x04034b50) {
    throw bad(where, 'is not a .keras archive (a .keras file is a zip; this one does not start like one).', 'Give a file written by Keras 3 model.save("model.keras"), or a Keras 2 .h5 file.');
  }
  const files = unzip(buf, where);
  const configText = files.get('config.json');
  const weightsH5 = files.get('model.weights.h5');
  if (!configText || !weightsH5) throw bad(where, `lacks ${!configText ? 'config.json' : 'model.weights.h5'}.`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(configText.toString('utf8'));
  } catch {
    throw bad(where, 'has a config.json that is not JSON.');
  }
  const topology = keras3ToKeras2(config, where);
  let kerasVersion: string | undefined;
  try { kerasVersion = JSON.parse(files.get('metadata.json')?.toString('utf8') ?? '{}').keras_version; } catch { /* optional */ }
  const tmp = join(tmpdir(), `graft-keras-${randomUUID()}.h5`);
  await writeFile(tmp, weightsH5);
  try {
    const file = await openH5(tmp, `${where} (model.weights.h5)`);
    try {
      return quietly(() => {
        const weights: WeightEntry[] = [];
        const layersGroup = file.get('layers') as H5Group | null;
        for (const l of (topology as { config: { layers: { name: string; config: { name?: string } }[] } }).config.layers) {
          const name = l.config.name ?? l.name;
          const vars = layersGroup?.get(`${name}/vars`) as H5Group | null;
          if (!vars) continue;
          const keys = vars.keys().filter((k) => /^\d+$/.test(k)).sort((a, b) => Number(a) - Number(b));
          keys.forEach((k) => {
            const { shape, values } = readDataset(vars.get(k), where, `${name}/vars/${k}`);
            weights.push({ name: `${name}/#${k}`, shape, values });
          });
        }
        return { topology, weights, kerasVersion };
      });
    } catch (cause) {
      if (cause instanceof GraftError) throw cause;
      throw bad(where, `has a model.weights.h5 that cannot be read (${(cause as Error).message}).`);
    } finally {
      quietly(() => file.close());
    }
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Order of a layer's weights in tfjs-layers, for Keras 3 files (which number them 0, 1, ...). */
const WEIGHT_ORDER: Record<string, string[]> = {
  Dense: ['kernel', 'bias'], Conv2D: ['kernel', 'bias'], Conv1D: ['kernel', 'bias'], Conv2DTranspose: ['kernel', 'bias'],
  DepthwiseConv2D: ['depthwise_kernel', 'bias'], SeparableConv2D: ['depthwise_kernel', 'pointwise_kernel', 'bias'],
  BatchNormalization: ['gamma', 'beta', 'moving_mean', 'moving_variance'], LayerNormalization: ['gamma', 'beta'],
  Embedding: ['embeddings'], PReLU: ['alpha'],
};

function nameKeras3Weights(topology: object, weights: WeightEntry[], where: string): WeightEntry[] {
  const layers = (topology as { config: { layers: { class_name: string; name: string; config: Record<string, unknown> }[] } }).config.layers;
  const byLayer = new Map<string, { class_name: string; config: Record<string, unknown> }>(layers.map((l) => [String(l.config.name ?? l.name), l]));
  return weights.map((w) => {
    const [layer, idx] = w.name.split('/#');
    const l = byLayer.get(layer)!;
    let order = WEIGHT_ORDER[l.class_name];
    if (!order) throw new GraftError('BAD_MODEL', `${where}: layer "${layer}" (${l.class_name}) has weights Graft cannot name.`, { fix: 'Use built-in layers such as Dense, Conv2D, DepthwiseConv2D, BatchNormalization.' });
    if (l.class_name === 'BatchNormalization') order = order.filter((n) => (n !== 'gamma' || l.config.scale !== false) && (n !== 'beta' || l.config.center !== false));
    if (order.includes('bias') && l.config.use_bias === false) order = order.filter((n) => n !== 'bias');
    return { ...w, name: `${layer}/${order[Number(idx)] ?? `weight_${idx}`}` };
  });
}

/** Reads a Keras .h5 or .keras file as tfjs model artifacts (topology + named float32 weights). */
export async function readKerasModel(path: string): Promise<{ artifacts: tf.io.ModelArtifacts; kerasVersion?: string }> {
  const where = basename(path);
  try {
    await stat(path);
  } catch {
    throw new GraftError('MODEL_NOT_FOUND', `No model at "${path}".`, { fix: 'Check the path to the .h5 or .keras file.' });
  }
  const keras3 = /\.keras$/i.test(path);
  const read = keras3 ? await readKerasArchive(path, where) : await readH5Model(path, where);
  const weights = keras3 ? nameKeras3Weights(read.topology, read.weights, where) : read.weights;
  const total = weights.reduce((s, w) => s + w.values.length, 0);
  const data = new Float32Array(total);
  let at = 0;
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  for (const w of weights) {
    data.set(w.values, at);
    at += w.values.length;
    weightSpecs.push({ name: w.name, shape: w.shape, dtype: 'float32' });
  }
  return {
    artifacts: { modelTopology: read.topology, weightSpecs, weightData: data.buffer, format: keras3 ? 'keras-v3' : 'keras-h5', generatedBy: `keras ${read.kerasVersion ?? '?'}`, convertedBy: 'graft' },
    kerasVersion: read.kerasVersion,
  };
}
