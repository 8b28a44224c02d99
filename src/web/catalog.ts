// The models `graft serve` offers: the zoo, and the model folders named when it started
// (--models DIR: a model folder, or a folder of model folders). Requests name a model, never a
// path or URL. Loaded models are cached for the diagram, a few at a time, and disposed when
// they drop out of the cache.

import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { GraftError, loadModel, type LoadedModel, type Preprocessing } from 'graft';
import { graphModelJson } from '#internal/model/graph-body.js';
import { ZOO, ZOO_ALIASES } from '#internal/zoo/zoo.js';
import { OnnxUnsupported } from '#internal/model/onnx-layers.js';
import { preprocessPreset } from '#internal/data/preprocess.js';
import { HttpError } from './guard.js';

export interface CatalogEntry {
  name: string;
  description: string;
  /** What loadModel reads: a zoo name, a folder, an .onnx file or a GraphModel's model.json. */
  source: string;
  /** Pixel preprocessing for a base without graft.json (graft serve --preprocess). */
  preprocessing?: Preprocessing;
}

const hasModel = (dir: string) => stat(join(dir, 'model.json')).then((s) => s.isFile(), () => false);
const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);

export class Catalog {
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly cache = new Map<string, Promise<LoadedModel>>();

  constructor(private readonly cacheSize = 2) {
    for (const z of Object.values(ZOO)) this.entries.set(z.name, { name: z.name, description: z.description, source: z.name });
  }

  /**
   * Adds a model folder, an .onnx file or a tfjs GraphModel, or every one of those inside `dir`.
   * A graph (ONNX, GraphModel) is rebuilt as layers once here, so that one Graft cannot rebuild
   * whole is named at start instead of failing a job; `preprocess` says how pixels become its
   * inputs, as graft train --preprocess does.
   */
  async add(dir: string, preprocess?: string): Promise<void> {
    const path = resolve(dir);
    const info = await stat(path).catch(() => undefined);
    const graphFile = (p: string) => /\.onnx$/i.test(p) ? isFile(p) : graphModelJson(p).then(Boolean);
    if (!info) throw new GraftError('BAD_ARGUMENT', `--models ${JSON.stringify(dir)} does not exist.`, { fix: 'Name a model folder, an .onnx file, a GraphModel, or a folder of them.' });
    const found: string[] = [];
    if (info.isFile() ? await graphFile(path) : await hasModel(path)) found.push(path);
    else if (info.isDirectory()) {
      for (const name of (await readdir(path)).sort()) {
        const p = join(path, name);
        if ((await hasModel(p)) || (/\.onnx$/i.test(name) && await isFile(p))) found.push(p);
      }
    }
    if (!found.length) throw new GraftError('BAD_ARGUMENT', `--models ${JSON.stringify(dir)} holds no model (no model.json or .onnx file in it or in its sub-folders).`, { fix: 'Name a folder that graft train wrote, an .onnx file, a GraphModel, or a folder holding such.' });
    for (const p of found) {
      const graph = /\.onnx$/i.test(p) || Boolean(await graphModelJson(p));
      let description = `local model ${p}`;
      let preprocessing: Preprocessing | undefined;
      if (graph) {
        let loaded;
        try {
          loaded = await loadModel(p);
        } catch (e) {
          throw new GraftError('BAD_ARGUMENT', `--models ${JSON.stringify(p)}: ${(e as Error).message.split('\n')[0]}${e instanceof OnnxUnsupported ? ' (graft serve offers graphs Graft rebuilds whole; graft train --cut trains on the part before that node)' : ''}`, { fix: 'Leave it out of --models, or use it with graft train.', cause: e });
        }
        preprocessing = preprocessPreset(preprocess ?? 'none', loaded.model.inputs[0].shape);
        description = `${/\.onnx$/i.test(p) ? 'ONNX graph' : 'tfjs GraphModel'} ${p}, rebuilt as ${loaded.model.layers.length} layers; inputs: ${preprocessing?.description}`;
        loaded.model.dispose();
      }
      const stem = basename(p).replace(/\.onnx$/i, '').replace(/^model\.json$/i, basename(resolve(p, '..'))).replace(/\.json$/i, '');
      let name = stem;
      for (let i = 2; this.entries.has(name); i++) name = `${stem}-${i}`;
      this.entries.set(name, { name, description, source: p, ...(preprocessing ? { preprocessing } : {}) });
    }
  }

  list(): CatalogEntry[] {
    return [...this.entries.values()];
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): CatalogEntry {
    const e = this.entries.get(name) ?? this.entries.get(ZOO_ALIASES[name] ?? '');
    if (!e) throw new HttpError(400, `model: ${JSON.stringify(name.slice(0, 80))} is not a model this server offers; allowed: ${this.names().join(', ')}.`, 'BAD_REQUEST');
    return e;
  }

  /** A loaded model for reading (diagram, input size); do not train it. */
  async get(name: string): Promise<LoadedModel> {
    const e = this.entry(name);
    let p = this.cache.get(name);
    if (p) {
      this.cache.delete(name);
      this.cache.set(name, p);
      return p;
    }
    p = loadModel(e.source);
    this.cache.set(name, p);
    p.catch(() => this.cache.delete(name));
    while (this.cache.size > this.cacheSize) {
      const [oldest, old] = this.cache.entries().next().value as [string, Promise<LoadedModel>];
      this.cache.delete(oldest);
      old.then((m) => m.model.dispose(), () => undefined);
    }
    return p;
  }

  /** A fresh copy to train (training changes its weights). */
  load(name: string): Promise<LoadedModel> {
    return loadModel(this.entry(name).source);
  }

  dispose(): void {
    for (const p of this.cache.values()) p.then((m) => m.model.dispose(), () => undefined);
    this.cache.clear();
  }
}
