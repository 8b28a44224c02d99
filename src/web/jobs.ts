// Training jobs of `graft serve`: each job has its own model and event log, runs one at a time
// in order (a project's job in its own process, project-job.ts), and goes on when the browser
// tab that started it closes.
// Listeners (server-sent event streams) get the whole log on connect, then live events. The
// queue is bounded, a job can be cancelled (queued: dropped; running: stopped after its
// batch), and only the last few finished jobs keep their models.

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { GraftError, loadModel, predictAll, saveModel, transfer, type Dataset, type GraftMeta, type LoadedModel, type Preprocessing } from 'graft';
import { parseUnfreeze } from '#internal/model/freeze.js';
import { resultWords, type ProjectJobInput, type ProjectJobMessage } from './project-job.js';
import type { Catalog } from './catalog.js';
import { HttpError } from './guard.js';
import { DEFAULT_SETTINGS, imageKind, removeModel, type ProjectStore } from './projects.js';
import type { JobRequest } from './schema.js';

export type { JobRequest, UploadedImage } from './schema.js';

export const JOB_LIMITS = { queued: 4, finishedKept: 8 };

/** The image type from a file's first bytes (projects.ts' imageKind), or undefined when it is not PNG, JPEG, GIF or WebP. */
export function imageType(magicBase64: string): string | undefined {
  return imageKind(Buffer.from(String(magicBase64 ?? ''), 'base64'));
}

/** The k most probable classes, most probable first. */
export function topClasses(probs: ArrayLike<number>, classNames: string[], k: number): { className: string; probability: number }[] {
  return Array.from(probs, (probability, c) => ({ className: classNames[c] ?? `class ${c}`, probability })).sort((a, b) => b.probability - a.probability).slice(0, k);
}

export interface JobEvent {
  type: 'queued' | 'started' | 'phase' | 'decoded' | 'batch' | 'epoch' | 'done' | 'error' | 'cancelled';
  data: unknown;
}

export interface Job {
  id: string;
  /** The project whose images it trains on (project jobs). */
  projectId?: string;
  /** The process training it (project jobs, while running). */
  child?: ChildProcess;
  status: 'queued' | 'running' | 'done' | 'error' | 'cancelled';
  events: JobEvent[];
  listeners: Set<(e: JobEvent) => void>;
  classNames: string[];
  cancel: boolean;
  model?: LoadedModel['model'];
  meta?: GraftMeta;
  preprocessing?: Preprocessing;
  files?: Record<string, Uint8Array>;
}

export class JobRunner {
  private readonly jobs = new Map<string, Job>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly catalog: Catalog) {}

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Jobs queued or running that were submitted before this one (its place in the queue). */
  ahead(job: Job): number {
    if (job.status !== 'queued') return 0;
    let n = 0;
    for (const j of this.jobs.values()) {
      if (j === job) break;
      if (j.status === 'queued' || j.status === 'running') n++;
    }
    return n;
  }

  /** The running or queued job of a project, if any. */
  activeFor(projectId: string): Job | undefined {
    return [...this.jobs.values()].find((j) => j.projectId === projectId && (j.status === 'queued' || j.status === 'running'));
  }

  /**
   * Trains on a project's images, decoded by graft train's pipeline; the model and the result
   * go into the project's folder.
   */
  async submitProject(store: ProjectStore, projectId: string, resume = false): Promise<Job> {
    const p = await store.get(projectId);
    if (resume && !p.stopped) throw new HttpError(409, 'There is no stopped run of this project to resume; train it.', 'NOT_STOPPED');
    if (this.activeFor(projectId)) throw new HttpError(409, 'This project is training already; wait for it, or stop it.', 'BUSY');
    const empty = p.classes.filter((c) => c.samples.length === 0);
    if (p.classes.length < 2) throw new HttpError(400, `Training needs at least 2 classes; the project has ${p.classes.length}.`, 'BAD_DATA');
    if (empty.length) throw new HttpError(400, `Class${empty.length > 1 ? 'es' : ''} ${empty.map((c) => `"${c.name}"`).join(', ')} ha${empty.length > 1 ? 've' : 's'} no images; add images or delete ${empty.length > 1 ? 'them' : 'it'}.`, 'BAD_DATA');
    if (this.pending() >= JOB_LIMITS.queued) {
      throw new HttpError(429, `${JOB_LIMITS.queued} jobs are queued or running already; wait for one to finish, or cancel one.`, 'QUEUE_FULL');
    }
    const job: Job = { id: randomUUID(), projectId, status: 'queued', events: [], listeners: new Set(), classNames: p.classes.map((c) => c.name), cancel: false };
    this.jobs.set(job.id, job);
    this.dropModel(projectId);
    await store.update(projectId, (q) => { q.job = { id: job.id, status: 'queued' }; });
    emit(job, { type: 'queued', data: { classes: job.classNames, samples: p.classes.reduce((n, c) => n + c.samples.length, 0), ahead: this.ahead(job) } });
    this.queue = this.queue.then(() => this.runProject(job, store, resume)).then(() => this.forgetOld());
    return job;
  }

  private readonly models = new Map<string, Promise<LoadedModel>>();

  /** Forgets a project's cached model (a new one is coming, or the project is gone). */
  dropModel(projectId: string): void {
    const m = this.models.get(projectId);
    this.models.delete(projectId);
    m?.then((x) => x.model.dispose(), () => undefined);
  }

  /** A project's trained model: the one in memory, else the one in its folder. */
  projectModel(store: ProjectStore, projectId: string): Promise<LoadedModel> {
    let m = this.models.get(projectId);
    if (!m) {
      m = loadModel(store.modelDir(projectId)).catch(() => { throw new HttpError(409, 'This project has no trained model yet: train it first.', 'NOT_READY'); });
      this.models.set(projectId, m);
      m.catch(() => this.models.delete(projectId));
      while (this.models.size > 2) {
        const [oldest, old] = this.models.entries().next().value as [string, Promise<LoadedModel>];
        this.models.delete(oldest);
        old.then((x) => x.model.dispose(), () => undefined);
      }
    }
    return m;
  }

  private async runProject(job: Job, store: ProjectStore, resume: boolean): Promise<void> {
    if (job.cancel) return this.projectStatus(store, job);
    job.status = 'running';
    const pid = job.projectId!;
    await this.projectStatus(store, job);
    emit(job, { type: 'started', data: {} });
    const fresh = `${store.modelDir(pid)}-${job.id.slice(0, 8)}`;
    try {
      const p = await store.get(pid);
      const { classNames, files } = await store.trainingFiles(pid);
      const input: ProjectJobInput = {
        jobId: job.id, projectName: p.name, base: this.catalog.entry(p.base).source, baseName: p.base, cut: p.cut, settings: { ...DEFAULT_SETTINGS, ...p.settings },
        preprocessing: this.catalog.entry(p.base).preprocessing,
        classNames, files, checkpointDir: store.checkpointDir(pid), modelOut: fresh, resume,
      };
      // Training runs in its own process: its native steps and fits would hold up this server's
      // requests (the page, Stop, other projects) for seconds at a time.
      const end = await runInChild(input, job, (e) => emit(job, e));
      if (end.type === 'stopped') {
        await store.update(pid, (q) => { q.stopped = end.stopped; });
        finish(job, 'cancelled', { reason: end.reason, resumable: true });
      } else if (end.type === 'done') {
        await removeModel(store.modelDir(pid));
        await rename(fresh, store.modelDir(pid));
        this.dropModel(pid);
        await store.update(pid, (q) => { q.result = end.result; delete q.stopped; });
        finish(job, 'done', { ...end.result, history: undefined });
      } else {
        await removeModel(fresh);
        finish(job, 'error', { message: end.message, code: end.code });
      }
    } catch (e) {
      await removeModel(fresh).catch(() => undefined);
      finish(job, 'error', { message: e instanceof GraftError ? e.detail : e instanceof HttpError ? e.message : 'Training failed (see the server\'s terminal).', code: (e as GraftError).code ?? 'INTERNAL' });
      if (!(e instanceof GraftError) && !(e instanceof HttpError)) console.error(e);
    }
    await this.projectStatus(store, job);
  }

  private async projectStatus(store: ProjectStore, job: Job): Promise<void> {
    await store.update(job.projectId!, (q) => { if (q.job?.id === job.id) q.job.status = job.status; }).catch(() => undefined);
  }

  private pending(): number {
    return [...this.jobs.values()].filter((j) => j.status === 'queued' || j.status === 'running').length;
  }

  /** Checks the images, registers the job and queues it; returns at once. */
  async submit(req: JobRequest): Promise<Job> {
    const shape = (await this.catalog.get(req.base)).model.inputs[0].shape.slice(1) as number[];
    const data = toDataset(req, shape);
    if (this.pending() >= JOB_LIMITS.queued) {
      throw new HttpError(429, `${JOB_LIMITS.queued} jobs are queued or running already; wait for one to finish, or cancel one.`, 'QUEUE_FULL');
    }
    const job: Job = { id: randomUUID(), status: 'queued', events: [], listeners: new Set(), classNames: data.classNames, cancel: false };
    this.jobs.set(job.id, job);
    emit(job, { type: 'queued', data: { classes: data.classNames, samples: data.labels.length } });
    this.queue = this.queue.then(() => this.run(job, data, req)).then(() => this.forgetOld());
    return job;
  }

  /** Queued: dropped at once; running: stops after its current batch. */
  cancel(id: string): Job | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    job.cancel = true;
    job.child?.send({ type: 'stop' });
    if (job.status === 'queued') finish(job, 'cancelled', { reason: 'cancelled before it started' });
    return job;
  }

  /** Cancels every job; resolves when the running one has stopped. */
  stopAll(): Promise<void> {
    for (const id of this.jobs.keys()) this.cancel(id);
    return this.queue;
  }

  idle(): Promise<void> {
    return this.queue;
  }

  private async run(job: Job, data: Dataset, req: JobRequest): Promise<void> {
    if (job.cancel) return;
    job.status = 'running';
    emit(job, { type: 'started', data: {} });
    const dir = await mkdtemp(join(tmpdir(), 'graft-serve-'));
    try {
      const base = await this.catalog.load(req.base);
      const t = await transfer(base, data, {
        preprocessing: this.catalog.entry(req.base).preprocessing, cut: req.cut, warmupEpochs: req.warmupEpochs, finetuneEpochs: req.finetuneEpochs,
        unfreeze: req.unfreeze ? parseUnfreeze(req.unfreeze) : undefined,
        // Same recipe as graft train: no validation split on small data (cross-validation decides), 10% above.
        shouldStop: () => job.cancel,
        callbacks: {
          onPhaseStart: (p) => emit(job, { type: 'phase', data: p }),
          onBatch: (p) => { if (p.batch === p.batches || p.batch % 5 === 0) emit(job, { type: 'batch', data: p }); },
          onEpochEnd: async (r) => { emit(job, { type: 'epoch', data: r }); await new Promise((res) => setImmediate(res)); },
        },
      });
      // A stop that came after the last batch does not throw away a finished run.
      if (t.result.interrupted) {
        t.grafted.model.dispose();
        return finish(job, 'cancelled', { reason: 'cancelled while training' });
      }
      await saveModel(t.model, dir, t.meta);
      job.files = Object.fromEntries(await Promise.all(['model.json', 'weights.bin', 'graft.json'].map(async (f) => [f, await readFile(join(dir, f))])));
      job.model = t.grafted.model;
      job.meta = t.meta;
      job.preprocessing = t.preprocessing;
      finish(job, 'done', { metrics: t.meta.metrics, classNames: t.classNames, history: t.meta.history, words: resultWords(t.result) });
    } catch (e) {
      finish(job, 'error', { message: e instanceof GraftError ? e.detail : 'Training failed (see the server\'s terminal).', code: (e as GraftError).code ?? 'INTERNAL' });
      if (!(e instanceof GraftError)) console.error(e);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Finished jobs beyond the last few give up their models (and then their logs). */
  private forgetOld(): void {
    const finished = [...this.jobs.values()].filter((j) => j.status !== 'queued' && j.status !== 'running');
    for (const job of finished.slice(0, Math.max(0, finished.length - JOB_LIMITS.finishedKept))) {
      job.model?.dispose();
      this.jobs.delete(job.id);
    }
  }
}

function emit(job: Job, e: JobEvent): void {
  job.events.push(e);
  for (const l of job.listeners) l(e);
}

function finish(job: Job, status: 'done' | 'error' | 'cancelled', data: unknown): void {
  job.status = status;
  emit(job, { type: status, data });
}

function toDataset(req: JobRequest, shape: number[]): Dataset {
  const size = shape.reduce((a, b) => a * b, 1);
  const names = req.classes.map((c) => c.name);
  if (new Set(names).size !== names.length) {
    throw new GraftError('BAD_DATA', 'Class names must differ.', { fix: 'Give each class its own name.' });
  }
  const n = req.classes.reduce((a, c) => a + c.images.length, 0);
  const x = new Float32Array(n * size);
  const labels = new Int32Array(n);
  let i = 0;
  req.classes.forEach((c, k) => {
    for (const img of c.images) {
      if (!imageType(img.magic)) {
        throw new GraftError('BAD_IMAGE', `A file in class "${names[k]}" is not a PNG, JPEG, GIF or WebP image.`, { fix: 'Upload image files only.' });
      }
      x.set(img.pixels, i * size);
      labels[i++] = k;
    }
  });
  return { x, sampleShape: shape, labels, classNames: names, source: 'uploaded images' };
}

export async function predictOne(job: Job, pixels: number[], topK = 3): Promise<{ className: string; probability: number }[]> {
  if (!job.model || !job.meta) throw new GraftError('BAD_OPTION', `Job ${job.id} has no trained model (status: ${job.status}).`, { fix: 'Wait for training to finish.' });
  const shape = job.model.inputs[0].shape.slice(1) as number[];
  const one: Dataset = { x: Float32Array.from(pixels), sampleShape: shape, labels: new Int32Array(1), classNames: job.classNames, source: 'uploaded image' };
  const { values } = await predictAll(job.model, one, job.preprocessing);
  return topClasses(values, job.classNames, topK);
}


const CHILD = fileURLToPath(new URL('./job-child.js', import.meta.url));

/** Runs a project job in a child process; resolves with its last message (or an error when it died). */
function runInChild(input: ProjectJobInput, job: Job, onEvent: (e: JobEvent) => void): Promise<Exclude<ProjectJobMessage, { type: 'event' }>> {
  return new Promise((resolve) => {
    const child = fork(CHILD, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    job.child = child;
    let end: Exclude<ProjectJobMessage, { type: 'event' }> | undefined;
    child.on('message', (m: ProjectJobMessage) => {
      if (m.type === 'event') onEvent(m.event);
      else end = m;
    });
    child.on('exit', (code, signal) => {
      job.child = undefined;
      resolve(end ?? { type: 'error', message: `The training process ended without a result (${signal ?? `exit code ${code}`}); see the server's terminal.`, code: 'INTERNAL' });
    });
    child.send({ type: 'start', input });
    if (job.cancel) child.send({ type: 'stop' });
  });
}
