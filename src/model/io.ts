// Loading and saving tfjs LayersModels without tfjs-node: Graft's own IO for local
// directories, model.json paths and http(s) URLs, and an atomic directory writer.

import { lstat, mkdir, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { isKerasPath, readKerasModel } from './keras.js';
import { GRAFT_CUSTOM_OBJECTS } from './batch-norm.js';
import { checkTopology } from './topology.js';
import { checkMeta } from './meta-check.js';
import { httpGet } from './http.js';
import { checkOutDir } from './out-dir.js';
import { readOnnxModel } from './onnx-read.js';
import { onnxArtifacts } from './onnx-layers.js';
import { graphArtifacts } from './graph-layers.js';
import { READ_LIMITS, readBounded } from '../data/bounded-read.js';
import type { GraftMeta } from './meta.js';

export interface ModelFiles {
  artifacts: tf.io.ModelArtifacts;
  meta?: GraftMeta;
  /** Where the model was read from, as the user gave it. */
  source: string;
  /** For an ONNX file rebuilt as layers: how its names map and what it takes. */
  imported?: ImportedGraph;
}

export interface ImportedGraph {
  format: 'onnx' | 'tfjs-graph';
  /** Node and value names of the graph -> layer names. */
  layerOf: Map<string, string>;
  /** Layer weight names -> the graph's initializer names. */
  weightSources: Map<string, string>;
  imageShape: [number, number, number];
  layout: 'NCHW' | 'NHWC';
  /** Why the graph was rebuilt only up to the cut, when it was. */
  truncated?: string;
}

interface ModelJson {
  modelTopology?: object;
  weightsManifest?: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function expectedBytes(spec: tf.io.WeightsManifestEntry): number {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const dtype = spec.quantization?.dtype ?? spec.dtype;
  const bytes = BYTES[dtype];
  if (bytes === undefined) throw new GraftError('BAD_MODEL', `Weight "${spec.name}" has unsupported dtype "${dtype}".`);
  return n * bytes;
}

function parseModelJson(text: string, where: string): ModelJson {
  let json: ModelJson;
  try {
    json = JSON.parse(text) as ModelJson;
  } catch (cause) {
    // The parser's message quotes the text; only its position goes in ours.
    const at = /position (\d+)/.exec((cause as Error).message);
    throw new GraftError('BAD_MODEL', `${where} is not valid JSON${at ? ` (at byte ${at[1]})` : ''}.`, {
      fix: 'Point at the model.json that tfjs (or tensorflowjs_converter) wrote.', cause });
  }
  if (!json || typeof json !== 'object' || !json.modelTopology || typeof json.modelTopology !== 'object') {
    throw new GraftError('BAD_MODEL', `${where} has no "modelTopology": it is not a tfjs LayersModel.`, {
      fix: 'Graph models and other formats are not LayersModels; save the model with model.save() from tfjs-layers or Keras.' });
  }
  if (!Array.isArray(json.weightsManifest)) {
    throw new GraftError('BAD_MODEL', `${where} has no "weightsManifest" array.`, { fix: 'Re-export the model with its weights.' });
  }
  json.weightsManifest.forEach((group, i) => {
    const bad = (what: string) => new GraftError('BAD_MODEL', `${where}: weightsManifest[${i}] ${what}.`, { fix: 'Re-export the model; the manifest is damaged.' });
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) throw bad('needs "paths" and "weights" arrays');
    for (const p of group.paths) {
      // Shards live beside model.json: no absolute paths, no climbing out of the directory.
      if (typeof p !== 'string' || p === '' || p.startsWith('/') || p.split(/[\\/]/).includes('..')) throw bad(`has a bad shard path ${JSON.stringify(p)}`);
    }
    for (const w of group.weights) {
      if (!w || typeof w.name !== 'string' || !Array.isArray(w.shape) || !w.shape.every((d: unknown) => Number.isInteger(d) && (d as number) >= 0) || typeof w.dtype !== 'string') {
        throw bad(`has a bad weight entry ${JSON.stringify(w).slice(0, 120)}`);
      }
    }
  });
  return json;
}

/** Reads model.json and its shards through `read`, checking shard sizes against the manifest. */
async function readArtifacts(where: string, text: string, read: (path: string, limit: number) => Promise<Uint8Array>): Promise<tf.io.ModelArtifacts> {
  const json = parseModelJson(text, where);
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: Uint8Array[] = [];
  for (const group of json.weightsManifest!) {
    // No shard can be larger than its group's weights: a longer one is refused before it is read.
    const want = group.weights.reduce((a, s) => a + expectedBytes(s), 0);
    const groupBuffers = await Promise.all(group.paths.map((p) => read(p, want)));
    const got = groupBuffers.reduce((a, b) => a + b.byteLength, 0);
    if (got !== want) {
      throw new GraftError('BAD_MODEL', `Weight files ${group.paths.join(', ')} of ${where} hold ${got} bytes; the manifest needs ${want}.`, {
        fix: 'The weights are truncated or belong to another model: copy the model directory again.' });
    }
    specs.push(...group.weights);
    buffers.push(...groupBuffers);
  }
  const all = Buffer.concat(buffers);
  return {
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy ?? undefined,
  };
}

/** A file-system error as one of Graft's, unless it is one already. */
const graftOr = (e: unknown, make: () => GraftError) => (e instanceof GraftError ? e : make());

function parseMeta(bytes: Buffer | undefined, where: string): GraftMeta | undefined {
  if (!bytes) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    const looksHtml = /^\s*</.test(bytes.subarray(0, 64).toString('utf8'));
    throw new GraftError('BAD_MODEL', `${where} is not valid JSON${looksHtml ? ' (it looks like an HTML page)' : ''}.`, {
      fix: looksHtml ? 'The server answered with a web page: check the URL points at the model folder.' : 'Restore graft.json from the run that wrote it, or remove it.', cause });
  }
  return checkMeta(raw, where);
}

async function readLocal(source: string, options: ReadOptions): Promise<ModelFiles> {
  const path = resolve(source);
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new GraftError('MODEL_NOT_FOUND', code === 'EACCES' ? `"${source}" cannot be read (permission denied).` : code === 'ENOTDIR' ? `No model at "${source}": a part of the path is a file.` : `No model at "${source}".`, {
      fix: 'Give a model directory, a model.json path, an http(s) URL, or a zoo name (graft inspect --help lists them).' });
  }
  if (!info.isDirectory() && isKerasPath(path)) {
    const { artifacts } = await readKerasModel(path);
    return { artifacts, source };
  }
  if (!info.isDirectory() && /\.onnx$/i.test(path)) return readOnnxLayers(path, source, options);
  const jsonPath = info.isDirectory() ? join(path, 'model.json') : path;
  const dir = dirname(jsonPath);
  let text: string;
  try {
    text = (await readBounded(jsonPath, { limit: READ_LIMITS.modelJson, what: 'The model file' })).toString('utf8');
  } catch (e) {
    throw graftOr(e, () => new GraftError('MODEL_NOT_FOUND', `"${source}" has no model.json${(e as NodeJS.ErrnoException).code === 'EACCES' ? ' that can be read (permission denied)' : ''}.`, { fix: 'Point at the directory that holds model.json.' }));
  }
  const artifacts = await readArtifacts(jsonPath, text, async (p, limit) => {
    try {
      return await readBounded(join(dir, p), { limit: Math.min(limit, READ_LIMITS.shard), what: 'The weight file' });
    } catch (e) {
      throw graftOr(e, () => new GraftError('BAD_MODEL', `Weight file "${p}" named in ${jsonPath} is ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable'}.`, { fix: 'Copy the whole model directory.' }));
    }
  });
  if (!options.raw && Array.isArray((artifacts.modelTopology as { node?: unknown })?.node)) {
    // A GraphModel: rebuilt as layers.
    const shown = ((artifacts.modelTopology as { node: { name: string; op: string }[] }).node).filter((n) => n.op !== 'Const');
    const byIndex = /^\d+$/.test(options.cut ?? '') ? shown[Number(options.cut)]?.name : undefined;
    const g = await graphArtifacts(artifacts, /^model\.json$/i.test(basename(jsonPath)) ? basename(dir) : basename(jsonPath).replace(/\.json$/i, ''), { upTo: byIndex ?? options.cut, inputSize: options.inputSize });
    if (byIndex && g.layerOf.has(byIndex)) g.layerOf.set(options.cut!, g.layerOf.get(byIndex)!);
    return { artifacts: g.artifacts, source, imported: { format: 'tfjs-graph', layerOf: g.layerOf, weightSources: new Map(), imageShape: g.imageShape, layout: 'NHWC', truncated: g.truncated } };
  }
  const metaPath = join(dir, 'graft.json');
  const metaBytes = await readBounded(metaPath, { limit: READ_LIMITS.graftJson, what: 'graft.json' }).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      return lstat(metaPath).then(() => {
        throw new GraftError('BAD_MODEL', `${metaPath} is a symbolic link to a file that does not exist.`, { fix: 'Remove the link, or put graft.json back.' });
      }, () => undefined);
    }
    throw graftOr(e, () => new GraftError('BAD_MODEL', `${metaPath} cannot be read (${(e as NodeJS.ErrnoException).code}).`, { fix: 'Check its permissions.' }));
  });
  return { artifacts, meta: parseMeta(metaBytes, metaPath), source };
}

async function readOnnxLayers(path: string, source: string, options: ReadOptions): Promise<ModelFiles> {
  const buf = await readBounded(path, { limit: READ_LIMITS.onnx, what: 'The ONNX model' });
  const where = basename(path);
  const g = readOnnxModel(buf, where);
  // A cut by index: the node of that number in graft inspect's list.
  const byIndex = /^\d+$/.test(options.cut ?? '') ? g.nodes[Number(options.cut)] : undefined;
  const cut = byIndex ? byIndex.name || byIndex.outputs[0] : options.cut;
  const imported = await onnxArtifacts(g, where, { upTo: cut, inputSize: options.inputSize });
  if (byIndex && cut && imported.layerOf.has(cut)) imported.layerOf.set(options.cut!, imported.layerOf.get(cut)!);
  return { artifacts: imported.artifacts, source, imported: { format: 'onnx', layerOf: imported.layerOf, weightSources: imported.weightSources, imageShape: imported.imageShape, layout: imported.layout, truncated: imported.truncated } };
}

async function readUrl(source: string, options: ReadOptions): Promise<ModelFiles> {
  const fetchBytes = async (url: string, maxBytes: number) => (await httpGet(url, { maxBytes, onProgress: options.onDownload && ((r, t) => options.onDownload!(url, r, t)) }))!;
  const jsonUrl = source.endsWith('.json') ? source : source.replace(/\/?$/, '/model.json');
  const text = Buffer.from(await fetchBytes(jsonUrl, READ_LIMITS.modelJson)).toString('utf8');
  const artifacts = await readArtifacts(jsonUrl, text, (p, limit) => fetchBytes(new URL(p, jsonUrl).href, Math.min(limit, READ_LIMITS.shard)));
  const metaUrl = new URL('graft.json', jsonUrl).href;
  const meta = parseMeta(await httpGet(metaUrl, { maxBytes: READ_LIMITS.graftJson, missingOk: true }), metaUrl);
  return { artifacts, meta, source };
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

export interface ReadOptions {
  /** Progress of each download from a URL (bytes so far, and the total when the server says). */
  onDownload?: (url: string, received: number, total: number | undefined) => void;
  /** An ONNX graph whose later nodes have no layer form is rebuilt up to this node or value. */
  cut?: string;
  /** The input height and width of an ONNX graph (needed when its size is not fixed). */
  inputSize?: [number, number];
  /** A GraphModel's own artifacts, not rebuilt as layers (for running it as it is). */
  raw?: boolean;
}

export async function readModelFiles(source: string, options: ReadOptions = {}): Promise<ModelFiles> {
  return isUrl(source) ? readUrl(source, options) : readLocal(source, options);
}

/** NaN or infinite float32 weights make every output NaN: name the first such weight. */
function checkFiniteWeights(artifacts: tf.io.ModelArtifacts, where: string): void {
  const data = artifacts.weightData;
  if (!data || !artifacts.weightSpecs) return;
  const buffer = tf.io.CompositeArrayBuffer.join(data);
  let offset = 0;
  for (const spec of artifacts.weightSpecs) {
    const bytes = expectedBytes(spec);
    if (spec.dtype === 'float32' && !spec.quantization && offset % 4 === 0) {
      const values = new Float32Array(buffer, offset, bytes / 4);
      const i = values.findIndex((v) => !Number.isFinite(v));
      if (i >= 0) {
        throw new GraftError('BAD_MODEL', `${where}: weight "${spec.name}" (layer ${spec.name.split('/').slice(0, -1).join('/') || spec.name}) holds ${values[i]} at index ${i}; a base with non-finite weights gives NaN for every input.`, {
          fix: 'The model is damaged or was saved after its training diverged: use an earlier copy of it.' });
      }
    }
    offset += bytes;
  }
}

/** Builds the LayersModel, with BatchNormalization layers that can be frozen. */
export async function modelFromArtifacts(artifacts: tf.io.ModelArtifacts, where: string): Promise<tfl.LayersModel> {
  checkTopology(artifacts.modelTopology, where);
  let model: tfl.LayersModel;
  try {
    model = (await tfl.models.modelFromJSON(artifacts.modelTopology as never, GRAFT_CUSTOM_OBJECTS as never)) as tfl.LayersModel;
  } catch (cause) {
    const m = /Unknown layer: (\w+)/.exec(String((cause as Error).message));
    throw new GraftError('BAD_MODEL', m
      ? `${where} uses the layer class "${m[1]}", which tfjs-layers does not know.`
      : `${where} has a model topology tfjs-layers cannot build: ${(cause as Error).message}`, {
      fix: m ? 'Replace the custom layer with built-in layers before export.' : 'Re-export the model from tfjs-layers or Keras.', cause });
  }
  checkFiniteWeights(artifacts, where);
  let weights: tf.NamedTensorMap;
  try {
    weights = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
  } catch (cause) {
    throw new GraftError('BAD_MODEL', `${where}: its weights cannot be decoded (${(cause as Error).message}).`, { fix: 'Re-export the model with its weights.', cause });
  }
  try {
    const byOriginal: tf.NamedTensorMap = {};
    for (const w of model.weights) {
      const value = weights[w.originalName];
      if (!value) throw new GraftError('BAD_MODEL', `${where} lacks weight "${w.originalName}".`, { fix: 'Re-export the model with its weights.' });
      byOriginal[w.originalName] = value;
    }
    try {
      model.loadWeights(byOriginal);
    } catch (cause) {
      throw new GraftError('BAD_MODEL', `${where}: its weights do not fit its layers (${(cause as Error).message}).`, { fix: 'The weights belong to another model: copy the model directory again.', cause });
    }
  } finally {
    tf.dispose(Object.values(weights));
  }
  return model;
}

/** Writes `files` into `dir` atomically: a temporary sibling directory, then a rename. */
export async function writeDirAtomic(dir: string, files: Record<string, string | Uint8Array>, options: { keep?: string[]; replace?: boolean } = {}): Promise<void> {
  const target = resolve(dir);
  const parent = dirname(target);
  // The folder is swapped whole, so it must be one this call may replace: never the current
  // folder or one above it (writeDirAtomic('.') emptied it), never a file, and, unless the
  // caller has checked it holds only what it wrote (replace: true, as saveModel does), only a
  // new or empty folder or one holding just the files written now and those kept.
  const cwd = process.cwd();
  if (dir.trim() === '' || target === cwd || cwd.startsWith(target.endsWith(sep) ? target : target + sep) || target === dirname(target)) {
    throw new GraftError('OUT_NOT_SAFE', `writeDirAtomic: ${JSON.stringify(dir)} is ${target === cwd || dir.trim() === '' ? 'the current folder' : 'a folder the current folder is inside'}; the folder is replaced whole, so its other files would be lost.`, { fix: 'Pass a new folder, e.g. ./model.' });
  }
  const here = await lstat(target).catch(() => undefined);
  if (here && !here.isDirectory()) throw new GraftError('OUT_NOT_SAFE', `writeDirAtomic: ${target} is a file, not a folder; nothing was written.`, { fix: 'Pass a new folder name.' });
  if (here && !options.replace) {
    const mine = new Set([...Object.keys(files), ...(options.keep ?? [])]);
    const foreign = (await readdir(target)).filter((n) => !mine.has(n));
    if (foreign.length) {
      throw new GraftError('OUT_NOT_SAFE', `writeDirAtomic: ${target} holds ${foreign.length} entr${foreign.length === 1 ? 'y' : 'ies'} this write does not (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}); the folder is replaced whole, so they would be lost. Nothing was written.`, {
        fix: 'Pass a new or empty folder, or list the entries to carry over in options.keep.' });
    }
  }
  const stamp = `${process.pid}-${Date.now()}`;
  const tmp = join(parent, `.${basename(target)}.tmp-${stamp}`);
  const old = join(parent, `.${basename(target)}.old-${stamp}`);
  // The marker says which hidden folders beside the target are this swap's: after a kill, the
  // repair (repairSwap, out-dir.ts) acts on those only, never on a folder that merely has such a
  // name (a user's .foreign.old-2023-12 was deleted).
  const marker = swapMarker(target, stamp);
  try {
    await mkdir(parent, { recursive: true });
    await writeFile(marker, JSON.stringify({ format: 'graft-swap/1', target: basename(target), tmp: basename(tmp), old: basename(old), pid: process.pid }));
    await mkdir(tmp);
    for (const [name, data] of Object.entries(files)) await writeFile(join(tmp, name), data);
  } catch (cause) {
    await rm(tmp, { recursive: true, force: true });
    await rm(marker, { force: true });
    throw new GraftError('WRITE_FAILED', `Could not write the model to ${target}: ${(cause as Error).message}. Nothing there was changed.`, {
      fix: 'Choose a writable output directory with free space (--out on the command line).', cause });
  }
  const existed = await stat(target).then(() => true, () => false);
  // Two renames: a kill between them leaves the complete new folder and the old one beside the
  // path, which repairSwap (out-dir.ts) puts right on the next start.
  if (existed) await rename(target, old);
  // Entries of the old directory to carry over (e.g. checkpoints), moved, not copied.
  for (const name of existed ? options.keep ?? [] : []) {
    await rename(join(old, name), join(tmp, name)).catch(() => undefined);
  }
  await rename(tmp, target);
  if (existed) await rm(old, { recursive: true, force: true });
  await rm(marker, { force: true });
}

/** The file beside `target` that records a writeDirAtomic swap in progress. */
export function swapMarker(target: string, stamp: string): string {
  return join(dirname(target), `.${basename(target)}.swap-${stamp}.json`);
}

/** Saves a model directory that plain `tf.loadLayersModel` loads, plus graft.json. */
export async function saveModel(model: tfl.LayersModel, dir: string, meta: GraftMeta, options: { keep?: string[] } = { keep: ['checkpoints'] }): Promise<void> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  const a = artifacts!;
  // The folder is replaced whole: only a new or empty folder, or one holding a Graft model and
  // nothing else, is written (the CLI checks the same before training, with its inputs too).
  await checkOutDir(dir, { flag: 'saveModel: the folder' });
  const data = new Uint8Array(tf.io.CompositeArrayBuffer.join(a.weightData!));
  const modelJson = {
    modelTopology: a.modelTopology,
    format: a.format ?? 'layers-model',
    generatedBy: a.generatedBy,
    convertedBy: `graft ${meta.versions.graft}`,
    weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
  };
  await writeDirAtomic(dir, {
    'model.json': JSON.stringify(modelJson),
    'weights.bin': data,
    'graft.json': JSON.stringify(meta, null, 2),
  }, { ...options, replace: true });
}

/**
 * Writes one file atomically (temporary sibling, then rename). An existing file is replaced only
 * with `replace: true`, where the caller knows it wrote it; a folder or link never is.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { replace?: boolean } = {}): Promise<void> {
  const target = resolve(path);
  const here = await lstat(target).catch(() => undefined);
  if (here && !here.isFile()) throw new GraftError('OUT_NOT_SAFE', `writeFileAtomic: ${target} is ${here.isDirectory() ? 'a folder' : here.isSymbolicLink() ? 'a link' : 'not a plain file'}; nothing was written.`, { fix: 'Pass the path of a new file.' });
  if (here && !options.replace) throw new GraftError('OUT_NOT_SAFE', `writeFileAtomic: ${target} exists; it is replaced only with { replace: true }, where the caller wrote it. Nothing was written.`, { fix: 'Pass the path of a new file, or { replace: true } for a file your program wrote.' });
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${Date.now()}`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, target);
  } catch (cause) {
    await rm(tmp, { force: true });
    throw new GraftError('WRITE_FAILED', `Could not write ${target}: ${(cause as Error).message}.`, { fix: 'Choose a writable path with free space.', cause });
  }
}

/**
 * Checks, before any work, that `dir` can be written (its parent exists or can be made, a file
 * can be created there) and that the disk has room for `bytes` more.
 */
export async function assertWritable(dir: string, bytes = 16 * 1024 * 1024): Promise<void> {
  const target = resolve(dir);
  const parent = dirname(target);
  const probe = join(parent, `.${basename(target)}.probe-${process.pid}`);
  try {
    await mkdir(parent, { recursive: true });
    await writeFile(probe, 'graft');
    await rm(probe, { force: true });
  } catch (cause) {
    throw new GraftError('WRITE_FAILED', `Cannot write in ${parent}: ${(cause as Error).message}.`, { fix: 'Choose a writable output directory (--out on the command line).', cause });
  }
  const fs = await statfs(parent).catch(() => undefined);
  if (fs && fs.bavail * fs.bsize < bytes) {
    throw new GraftError('WRITE_FAILED', `Only ${Math.round((fs.bavail * fs.bsize) / 1024)} KB are free in ${parent}; the model and its checkpoints need about ${Math.round(bytes / 1024)} KB.`, {
      fix: 'Free some space or choose another output directory (--out).' });
  }
}
