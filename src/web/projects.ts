// The projects of `graft serve`: each one a folder under the projects directory (--projects,
// default $XDG_DATA_HOME/graft/projects), holding project.json (name, base, cut, settings,
// classes and their samples, the last job and its result), samples/ (the uploaded files as
// they came, named by Graft) and model/ (the last trained model). Requests name projects,
// classes and samples by the ids Graft gave them, checked against a pattern and looked up in
// project.json, never by a path. Graft deletes only the files it wrote: a project's folder is
// removed file by file and then with rmdir, which fails on anything it does not know.

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeImage, shortReason } from '#internal/data/images.js';
import { HttpError } from './guard.js';

export const PROJECT_LIMITS = {
  projects: 200,
  name: 100,
  classes: 50,
  samplesPerClass: 5000,
  samples: 20000,
  /** Bytes of one uploaded file. */
  fileBytes: 32 * 1024 * 1024,
  fileName: 255,
};

export interface Sample {
  id: string;
  /** The file's name as the user had it (shown, never used as a path). */
  name: string;
  ext: 'png' | 'jpg' | 'gif' | 'webp';
  bytes: number;
}

export interface ProjectClass {
  id: string;
  name: string;
  samples: Sample[];
}

/** Training settings; unset ones take graft train's defaults. */
export interface Settings {
  warmupEpochs?: number;
  finetuneEpochs?: number;
  batchSize?: number;
  lr?: number;
  /** Run the learning-rate finder after the warm-up and fine-tune at its suggestion (graft train --lr auto). */
  findLr?: boolean;
  unfreeze?: string;
  augment?: boolean;
  /** Fraction of each class held out to test the trained model (per-class accuracy, confusion matrix). */
  holdOut?: number;
  seed?: number;
}

export interface ProjectResult {
  jobId: string;
  finished: string;
  classNames: string[];
  metrics: Record<string, unknown>;
  words: string[];
  history: unknown[];
  /** On the held-out images, when there were any. */
  test?: { accuracy: number; count: number; wilson95: [number, number]; perClass: { className: string; accuracy: number | null; count: number }[]; confusion: number[][] };
  trainedOn: number;
  skipped: { name: string; reason: string }[];
}

export interface Project {
  id: string;
  name: string;
  created: string;
  updated: string;
  base: string;
  cut?: string;
  settings: Settings;
  classes: ProjectClass[];
  job?: { id: string; status: string };
  result?: ProjectResult;
  /** A run stopped with a checkpoint, which Resume goes on from. */
  stopped?: { jobId: string; phase: string; epochsDone: number; batch: number; at: string; checkPending?: boolean };
}

export const DEFAULT_SETTINGS: Required<Pick<Settings, 'holdOut' | 'augment' | 'seed'>> = { holdOut: 0.15, augment: true, seed: 42 };

const ID = /^[0-9a-f]{16}$/;
const newId = () => randomBytes(8).toString('hex');

/** The projects directory: the one given, else $XDG_DATA_HOME/graft/projects (~/.local/share/graft/projects). */
export function projectsDir(given?: string): string {
  if (given) return resolve(given);
  const data = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(data, 'graft', 'projects');
}

const SIGNATURES: Array<[Sample['ext'], (b: Buffer) => boolean]> = [
  ['png', (b) => b.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))],
  ['jpg', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ['gif', (b) => b.subarray(0, 4).toString('latin1') === 'GIF8'],
  ['webp', (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP'],
];

/** PNG, JPEG, GIF or WebP from a file's first bytes; undefined for anything else. */
export function imageKind(bytes: Buffer): Sample['ext'] | undefined {
  return SIGNATURES.find(([, test]) => test(bytes))?.[0];
}

const bad = (message: string, code = 'BAD_REQUEST') => new HttpError(400, message, code);

function cleanName(v: unknown, what: string): string {
  if (typeof v !== 'string') throw bad(`${what}: must be a string of 1 to ${PROJECT_LIMITS.name} characters.`);
  const name = v.trim();
  if (!name || name.length > PROJECT_LIMITS.name) throw bad(`${what}: must be 1 to ${PROJECT_LIMITS.name} characters; got ${name.length}.`);
  if (/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(name)) throw bad(`${what}: must not hold control characters or text-direction overrides.`);
  return name;
}

export class ProjectStore {
  private readonly cache = new Map<string, Project>();
  /** One change at a time per project (parallel uploads would otherwise lose samples). */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {}

  private dir(id: string): string {
    if (!ID.test(id)) throw new HttpError(404, 'No such project.', 'NOT_FOUND');
    return join(this.root, id);
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.locks.set(id, next.catch(() => undefined));
    return next;
  }

  async list(): Promise<{ id: string; name: string; updated: string; classes: number; samples: number }[]> {
    const names = await readdir(this.root).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return [] as string[]; throw e; });
    const out = [];
    for (const id of names.filter((n) => ID.test(n))) {
      const p = await this.get(id).catch(() => undefined);
      if (p) out.push({ id: p.id, name: p.name, updated: p.updated, classes: p.classes.length, samples: p.classes.reduce((n, c) => n + c.samples.length, 0) });
    }
    return out.sort((a, b) => b.updated.localeCompare(a.updated));
  }

  async get(id: string): Promise<Project> {
    const dir = this.dir(id);
    const hit = this.cache.get(id);
    if (hit) return hit;
    let text: string;
    try {
      text = await readFile(join(dir, 'project.json'), 'utf8');
    } catch {
      throw new HttpError(404, 'No such project.', 'NOT_FOUND');
    }
    let p: Project;
    try {
      p = JSON.parse(text) as Project;
    } catch {
      throw new HttpError(500, `project.json of project ${id} is not valid JSON; nothing was changed.`, 'BAD_PROJECT');
    }
    if (p?.id !== id) throw new HttpError(500, 'project.json does not match its folder.', 'BAD_PROJECT');
    // Every id read from disk is checked as strictly as one from a request: ids become file
    // names, and a copied project.json with "../../victim" made "delete project" unlink outside.
    const bad = projectProblem(p);
    if (bad) throw new HttpError(500, `project.json of project ${id} is damaged (${bad}); nothing was changed. Graft writes only 16-hex-digit ids and png, jpg, gif or webp files.`, 'BAD_PROJECT');
    // A job that was running when the server stopped is not running any more.
    if (p.job && (p.job.status === 'queued' || p.job.status === 'running')) p.job.status = 'interrupted';
    this.cache.set(id, p);
    return p;
  }

  private async write(p: Project): Promise<void> {
    p.updated = new Date().toISOString();
    const dir = this.dir(p.id);
    const tmp = join(dir, `project.json.${process.pid}.tmp`);
    await writeFile(tmp, JSON.stringify(p, null, 1));
    await rename(tmp, join(dir, 'project.json'));
    this.cache.set(p.id, p);
  }

  async create(name: unknown, base: string): Promise<Project> {
    const clean = cleanName(name ?? 'Untitled project', 'name');
    if ((await this.list()).length >= PROJECT_LIMITS.projects) throw bad(`There are ${PROJECT_LIMITS.projects} projects already; delete one first.`, 'TOO_MANY');
    const id = newId();
    await mkdir(join(this.root, id, 'samples'), { recursive: true, mode: 0o700 });
    const now = new Date().toISOString();
    const p: Project = { id, name: clean, created: now, updated: now, base, settings: {}, classes: [] };
    await this.write(p);
    return p;
  }

  update(id: string, change: (p: Project) => void | Promise<void>): Promise<Project> {
    return this.locked(id, async () => {
      const p = await this.get(id);
      await change(p);
      await this.write(p);
      return p;
    });
  }

  rename(id: string, name: unknown): Promise<Project> {
    const clean = cleanName(name, 'name');
    return this.update(id, (p) => { p.name = clean; });
  }

  /**
   * Removes the project's files one by one (only those Graft wrote), then its folders; when its
   * folder holds anything else, nothing at all (it deleted the images and the model, then
   * answered 500 and left a broken project).
   */
  delete(id: string): Promise<void> {
    return this.locked(id, async () => {
      const p = await this.get(id);
      const dir = this.dir(id);
      const foreign = await foreignEntries(dir, p);
      if (foreign.length) {
        throw new HttpError(409, `The project was not deleted: its folder ${dir} holds ${foreign.length} file(s) Graft did not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}). Move them out, then delete the project again.`, 'FOREIGN_FILES');
      }
      for (const c of p.classes) for (const s of c.samples) await unlink(join(dir, 'samples', `${s.id}.${s.ext}`)).catch(ignoreMissing);
      await removeModel(join(dir, 'model'));
      await removeCheckpoints(join(dir, 'checkpoints'));
      await unlink(join(dir, 'project.json'));
      this.cache.delete(id);
      for (const sub of ['samples', '']) {
        await rmdir(join(dir, sub)).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOTEMPTY' || e.code === 'EEXIST') throw new HttpError(409, `The project is deleted, but its folder ${join(dir, sub)} holds files Graft did not write; they were left there.`, 'FOREIGN_FILES');
          if (e.code !== 'ENOENT') throw e;
        });
      }
    });
  }

  addClass(id: string, name: unknown): Promise<{ project: Project; cls: ProjectClass }> {
    const clean = cleanName(name, 'class name');
    let cls: ProjectClass;
    return this.update(id, (p) => {
      if (p.classes.length >= PROJECT_LIMITS.classes) throw bad(`A project holds at most ${PROJECT_LIMITS.classes} classes.`, 'TOO_MANY');
      if (p.classes.some((c) => c.name === clean)) throw bad(`There is a class "${clean}" already; give each class its own name.`, 'DUPLICATE');
      cls = { id: newId(), name: clean, samples: [] };
      p.classes.push(cls);
    }).then((project) => ({ project, cls }));
  }

  renameClass(id: string, classId: string, name: unknown): Promise<Project> {
    const clean = cleanName(name, 'class name');
    return this.update(id, (p) => {
      const c = findClass(p, classId);
      if (p.classes.some((o) => o !== c && o.name === clean)) throw bad(`There is a class "${clean}" already; give each class its own name.`, 'DUPLICATE');
      c.name = clean;
    });
  }

  deleteClass(id: string, classId: string): Promise<Project> {
    return this.update(id, async (p) => {
      const c = findClass(p, classId);
      for (const s of c.samples) await unlink(join(this.dir(id), 'samples', `${s.id}.${s.ext}`)).catch(ignoreMissing);
      p.classes = p.classes.filter((o) => o !== c);
    });
  }

  /**
   * Adds one uploaded file to a class: it must be a PNG, JPEG, GIF or WebP that decodes; it is
   * kept as it came. Errors name the file.
   */
  async addSample(id: string, classId: string, bytes: Buffer, fileName: string): Promise<Sample> {
    const name = fileName.slice(0, PROJECT_LIMITS.fileName) || 'unnamed image';
    const ext = imageKind(bytes);
    if (!ext) throw bad(`"${name}" is not a PNG, JPEG, GIF or WebP image${bytes.length ? '' : ' (it is empty)'}.`, 'BAD_IMAGE');
    try {
      await decodeImage(bytes, { size: [8, 8] });
    } catch (e) {
      throw bad(`"${name}" looks like a ${ext.toUpperCase()} file but is damaged or cut off, so it cannot be decoded (${shortReason(e)}); export it again or leave it out.`, 'BAD_IMAGE');
    }
    const sample: Sample = { id: newId(), name, ext, bytes: bytes.length };
    const dir = this.dir(id);
    await this.update(id, async (p) => {
      const c = findClass(p, classId);
      if (c.samples.length >= PROJECT_LIMITS.samplesPerClass) throw bad(`Class "${c.name}" holds ${PROJECT_LIMITS.samplesPerClass} images already, the most a class may hold.`, 'TOO_MANY');
      if (p.classes.reduce((n, o) => n + o.samples.length, 0) >= PROJECT_LIMITS.samples) throw bad(`The project holds ${PROJECT_LIMITS.samples} images already, the most a project may hold.`, 'TOO_MANY');
      await writeFile(join(dir, 'samples', `${sample.id}.${ext}`), bytes, { flag: 'wx', mode: 0o600 });
      c.samples.push(sample);
    });
    return sample;
  }

  deleteSample(id: string, sampleId: string): Promise<Project> {
    return this.update(id, async (p) => {
      for (const c of p.classes) {
        const s = c.samples.find((x) => x.id === sampleId);
        if (!s) continue;
        await unlink(join(this.dir(id), 'samples', `${s.id}.${s.ext}`)).catch(ignoreMissing);
        c.samples = c.samples.filter((x) => x !== s);
        return;
      }
      throw new HttpError(404, 'No such image in this project.', 'NOT_FOUND');
    });
  }

  /** Where a sample's file is (from project.json, not from a request). */
  async samplePath(id: string, sampleId: string): Promise<{ path: string; sample: Sample; cls: ProjectClass }> {
    const p = await this.get(id);
    for (const c of p.classes) {
      const s = c.samples.find((x) => x.id === sampleId);
      if (s) return { path: join(this.dir(id), 'samples', `${s.id}.${s.ext}`), sample: s, cls: c };
    }
    throw new HttpError(404, 'No such image in this project.', 'NOT_FOUND');
  }

  /** Every sample as a file with its class index, each class's files in name order (as graft train reads a folder). */
  async trainingFiles(id: string): Promise<{ classNames: string[]; files: { path: string; label: number; name: string }[] }> {
    const p = await this.get(id);
    const files = p.classes.flatMap((c, label) => c.samples
      .map((s) => ({ path: join(this.dir(id), 'samples', `${s.id}.${s.ext}`), label, name: s.name }))
      .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })));
    return { classNames: p.classes.map((c) => c.name), files };
  }

  modelDir(id: string): string {
    return join(this.dir(id), 'model');
  }

  checkpointDir(id: string): string {
    return join(this.dir(id), 'checkpoints');
  }
}

const EXTS = new Set(['png', 'jpg', 'gif', 'webp']);

/** What is wrong with a project read from disk, or undefined: ids and extensions are used in file names. */
export function projectProblem(p: Project): string | undefined {
  if (!Array.isArray(p.classes)) return 'no list of classes';
  for (const c of p.classes) {
    if (!c || typeof c.id !== 'string' || !ID.test(c.id)) return `class id ${JSON.stringify(String(c?.id).slice(0, 40))}`;
    if (!Array.isArray(c.samples)) return `class ${c.id} has no list of images`;
    for (const x of c.samples) {
      if (!x || typeof x.id !== 'string' || !ID.test(x.id)) return `image id ${JSON.stringify(String(x?.id).slice(0, 40))}`;
      if (!EXTS.has(x.ext)) return `image ${x.id} has the file type ${JSON.stringify(String(x.ext).slice(0, 10))}`;
    }
  }
  return undefined;
}

function findClass(p: Project, classId: string): ProjectClass {
  const c = ID.test(classId) ? p.classes.find((x) => x.id === classId) : undefined;
  if (!c) throw new HttpError(404, 'No such class in this project.', 'NOT_FOUND');
  return c;
}

const ignoreMissing = (e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; };

/** A checkpoint folder writeCheckpoint makes, or the temporary and old ones of its swap (writeDirAtomic). */
const CKPT = /^(ckpt-\d{6}|\.ckpt-\d{6}\.(tmp|old)-\d+-\d+)$/;
const CKPT_MARKER = /^\.ckpt-\d{6}\.swap-\d+-\d+\.json$/;

/** Entries of a project folder that Graft did not write, as paths relative to it. */
async function foreignEntries(dir: string, p: Project): Promise<string[]> {
  const list = async (d: string) => readdir(d, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return []; throw e; });
  const out: string[] = [];
  const samples = new Set(p.classes.flatMap((c) => c.samples.map((x) => `${x.id}.${x.ext}`)));
  for (const e of await list(dir)) {
    if (e.name === 'project.json' && e.isFile()) continue;
    if (/^project\.json\.\d+\.tmp$/.test(e.name) && e.isFile()) continue;
    if (e.name === 'samples' && e.isDirectory()) {
      for (const f of await list(join(dir, 'samples'))) if (!f.isFile() || !samples.has(f.name)) out.push(`samples/${f.name}`);
      continue;
    }
    if (e.name === 'model' && e.isDirectory()) {
      for (const f of await list(join(dir, 'model'))) if (!f.isFile() || !MODEL_FILES.includes(f.name)) out.push(`model/${f.name}`);
      continue;
    }
    if (e.name === 'checkpoints' && e.isDirectory()) {
      for (const c of await list(join(dir, 'checkpoints'))) {
        if (c.isFile() && CKPT_MARKER.test(c.name)) continue;
        if (!c.isDirectory() || !CKPT.test(c.name)) { out.push(`checkpoints/${c.name}`); continue; }
        for (const f of await list(join(dir, 'checkpoints', c.name))) if (!f.isFile() || !['checkpoint.json', 'weights.bin'].includes(f.name)) out.push(`checkpoints/${c.name}/${f.name}`);
      }
      continue;
    }
    out.push(e.name);
  }
  return out;
}

/** The files saveModel writes; a model folder is removed only as those. */
export const MODEL_FILES = ['model.json', 'weights.bin', 'graft.json'];

export async function removeModel(dir: string): Promise<void> {
  for (const f of MODEL_FILES) await unlink(join(dir, f)).catch(ignoreMissing);
  await rmdir(dir).catch(ignoreMissing);
}

/** Removes the checkpoints writeCheckpoint wrote (ckpt-NNNNNN/checkpoint.json, weights.bin and their temporary folders), then the folder. */
export async function removeCheckpoints(dir: string): Promise<void> {
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return [] as string[]; throw e; });
  for (const n of names.filter((x) => CKPT_MARKER.test(x))) await unlink(join(dir, n)).catch(ignoreMissing);
  for (const n of names.filter((x) => CKPT.test(x))) {
    for (const f of ['checkpoint.json', 'weights.bin']) await unlink(join(dir, n, f)).catch(ignoreMissing);
    await rmdir(join(dir, n)).catch(ignoreMissing);
  }
  await rmdir(dir).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT' && e.code !== 'ENOTEMPTY') throw e; });
}

/**
 * A file's name as shown: control characters and text-direction overrides become "?", so a name
 * cannot break a line or reverse what follows it.
 */
export function displayName(raw: string): string {
  return raw.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '?').slice(0, PROJECT_LIMITS.fileName);
}
