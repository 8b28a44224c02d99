// The models `graft serve` offers: the zoo, and the model folders named when it started
// (--models DIR: a model folder, or a folder of model folders). Requests name a model, never a
// path or URL. Loaded models are cached for the diagram, a few at a time, and disposed when
// they drop out of the cache.

import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { GraftError, loadModel, ZOO, type LoadedModel } from '../index.js';
import { HttpError } from './guard.js';

export interface CatalogEntry {
  name: string;
  description: string;
  /** What loadModel reads: a zoo name or a folder. */
  source: string;
}

const hasModel = (dir: string) => stat(join(dir, 'model.json')).then((s) => s.isFile(), () => false);

export class Catalog {
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly cache = new Map<string, Promise<LoadedModel>>();

  constructor(private readonly cacheSize = 2) {
    for (const z of Object.values(ZOO)) this.entries.set(z.name, { name: z.name, description: z.description, source: z.name });
  }

  /** Adds a model folder, or every model folder inside `dir`. */
  async add(dir: string): Promise<void> {
    const path = resolve(dir);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isDirectory()) throw new GraftError('BAD_ARGUMENT', `--models ${JSON.stringify(dir)} is not a folder.`, { fix: 'Name a model folder (with model.json) or a folder of model folders.' });
    const found = (await hasModel(path)) ? [path] : [];
    if (!found.length) {
      for (const name of (await readdir(path)).sort()) if (await hasModel(join(path, name))) found.push(join(path, name));
    }
    if (!found.length) throw new GraftError('BAD_ARGUMENT', `--models ${JSON.stringify(dir)} holds no model (no model.json in it or in its sub-folders).`, { fix: 'Name a folder that graft train wrote, or one holding such folders.' });
    for (const p of found) {
      let name = basename(p);
      for (let i = 2; this.entries.has(name); i++) name = `${basename(p)}-${i}`;
      this.entries.set(name, { name, description: `local model ${p}`, source: p });
    }
  }

  list(): CatalogEntry[] {
    return [...this.entries.values()];
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): CatalogEntry {
    const e = this.entries.get(name);
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
