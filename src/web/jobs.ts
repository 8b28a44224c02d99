// Training jobs of `graft serve`: each job has its own model and event log, runs on the
// server (one at a time, in order), and goes on when the browser tab that started it closes.
// Listeners (server-sent event streams) get the whole log on connect, then live events. The
// queue is bounded, a job can be cancelled (queued: dropped; running: stopped after its
// batch), and only the last few finished jobs keep their models.

import type { FineTuneResult } from '../train/fine-tune.js';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  AUGMENT_DEFAULTS, decodeImage, evaluate, GraftError, imageInput, loadLabeledImages, loadModel, parseUnfreeze, predictAll, saveModel, stratifiedSplit, transfer,
  type Dataset, type GraftMeta, type LoadedModel, type PhaseInfo, type Preprocessing,
} from '../index.js';
import { wilson } from '../eval/interval.js';
import { readLatestCheckpoint, type Checkpoint } from '../train/checkpoint.js';
import { dataPrint, runChanges } from '../train/resume-check.js';
import type { Catalog } from './catalog.js';
import { HttpError } from './guard.js';
import { DEFAULT_SETTINGS, removeCheckpoints, removeModel, type ProjectResult, type ProjectStore } from './projects.js';
import type { JobRequest } from './schema.js';

export type { JobRequest, UploadedImage } from './schema.js';

export const JOB_LIMITS = { queued: 4, finishedKept: 8 };

const SIGNATURES: Array<[string, (b: Buffer) => boolean]> = [
  ['PNG', (b) => b.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))],
  ['JPEG', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ['GIF', (b) => b.subarray(0, 4).toString('latin1') === 'GIF8'],
  ['WebP', (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP'],
];

/** The image type from a file's first bytes, or undefined when it is not PNG, JPEG, GIF or WebP. */
export function imageType(magicBase64: string): string | undefined {
  const b = Buffer.from(String(magicBase64 ?? ''), 'base64');
  return SIGNATURES.find(([, test]) => test(b))?.[0];
}

export interface JobEvent {
  type: 'queued' | 'started' | 'phase' | 'decoded' | 'batch' | 'epoch' | 'done' | 'error' | 'cancelled';
  data: unknown;
}

export interface Job {
  id: string;
  /** The project whose images it trains on (project jobs). */
  projectId?: string;
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
    try {
      const p = await store.get(pid);
      const s = { ...DEFAULT_SETTINGS, ...p.settings };
      const base = await this.catalog.load(p.base);
      const image = imageInput(base.model.inputs[0].shape);
      if (!image) throw new GraftError('BAD_MODEL', `${p.base} does not take images.`, { fix: 'Choose an image model.' });
      const { classNames, files } = await store.trainingFiles(pid);
      const names = new Map(files.map((f) => [f.path, f.name]));
      emit(job, { type: 'phase', data: { phase: 'decoding', samples: files.length } });
      const all = await loadLabeledImages(files, classNames, { ...image, fit: base.meta?.preprocessing?.imageFit, stream: 'auto' }, `project "${p.name}"`);
      const skipped = (all.skipped ?? []).map((x) => ({ name: names.get(x.path) ?? 'an image', reason: x.reason }));
      emit(job, { type: 'decoded', data: { samples: all.labels.length, skipped } });
      const { rest: train, split: test } = s.holdOut > 0 ? stratifiedSplit(all, s.holdOut, s.seed) : { rest: all, split: undefined };
      // Stop writes a checkpoint; Resume goes on from it when the images and settings are the same.
      const ckDir = store.checkpointDir(pid);
      const run = { data: dataPrint(train), options: { ...s, base: p.base, cut: p.cut ?? null } };
      let resumeFrom: Checkpoint | undefined;
      if (resume) {
        resumeFrom = await readLatestCheckpoint(ckDir);
        if (!resumeFrom) throw new GraftError('RESUME_MISMATCH', 'The stopped run left no readable checkpoint.', { fix: 'Train afresh.' });
        const changes = runChanges(resumeFrom, run.data, run.options);
        if (changes.length) throw new GraftError('RESUME_MISMATCH', `The stopped run cannot go on as it was: ${changes.join('; ')}.`, { fix: 'Train afresh (Train), or put the images and settings back as they were.' });
        emit(job, { type: 'phase', data: { phase: 'resuming', from: resumeFrom.state.phase, epochsDone: resumeFrom.state.epochsDone } });
      } else await removeCheckpoints(ckDir);
      const t = await transfer(base, train, {
        resumeFrom, checkpoints: { dir: ckDir, run, keep: 1, everyMinutes: 2 },
        cut: p.cut, warmupEpochs: s.warmupEpochs, finetuneEpochs: s.finetuneEpochs, batchSize: s.batchSize, lr: s.lr, seed: s.seed,
        unfreeze: s.unfreeze ? parseUnfreeze(s.unfreeze) : undefined,
        augment: s.augment ? { ...AUGMENT_DEFAULTS } : undefined, diskCache: true, cacheLabel: `${p.base} (graft serve project)`,
        shouldStop: () => job.cancel,
        callbacks: {
          onPhaseStart: (ph: PhaseInfo) => emit(job, { type: 'phase', data: ph }),
          onBatch: (b) => { if (b.batch === b.batches || b.batch % 5 === 0) emit(job, { type: 'batch', data: b }); },
          onEpochEnd: async (r) => { emit(job, { type: 'epoch', data: r }); await new Promise((res) => setImmediate(res)); },
        },
        onFineTuneFold: (fold, folds) => emit(job, { type: 'phase', data: { phase: 'fine-tune check', fold, folds } }),
      });
      // A stop that came after the last batch does not throw away a finished run.
      if (t.result.interrupted) {
        t.grafted.model.dispose();
        const st = t.result.interrupted;
        if (st) await store.update(pid, (q) => { q.stopped = { jobId: job.id, phase: st.phase, epochsDone: st.epochsDone, batch: st.position?.batch ?? 0, at: new Date().toISOString() }; });
        finish(job, 'cancelled', {
          reason: st ? `stopped in the ${st.phase} phase after ${st.epochsDone} epoch(s)${st.position ? ` and ${st.position.batch} batches` : ''}; a checkpoint was written: Resume goes on from there, Train starts afresh; the last trained model (if any) is kept`
            : 'stopped before training began; the last trained model (if any) is kept',
          resumable: Boolean(st) });
        return this.projectStatus(store, job);
      }
      await removeCheckpoints(ckDir);
      let testResult: ProjectResult['test'];
      if (test && test.labels.length) {
        const ev = await evaluate(t.grafted.model, test, t.preprocessing);
        const w = wilson(Math.round(ev.accuracy * ev.count), ev.count);
        testResult = { accuracy: ev.accuracy, count: ev.count, wilson95: [w.low, w.high], perClass: ev.perClass, confusion: ev.confusion };
        t.meta.metrics = { ...t.meta.metrics, testAccuracy: ev.accuracy, testLoss: ev.loss, testSamples: ev.count };
        t.meta.evaluation = { ...ev, on: `${ev.count} held-out images of the project` };
      }
      // Saved beside the old model, then swapped in: a failed save leaves the old one.
      const fresh = `${store.modelDir(pid)}-${job.id.slice(0, 8)}`;
      await saveModel(t.model, fresh, t.meta);
      await removeModel(store.modelDir(pid));
      await rename(fresh, store.modelDir(pid));
      // The project's model is served from this.models (predict) and its folder (download).
      this.models.set(pid, Promise.resolve({ model: t.grafted.model, meta: t.meta } as LoadedModel));
      const result: ProjectResult = {
        jobId: job.id, finished: new Date().toISOString(), classNames: t.classNames, metrics: t.meta.metrics as Record<string, unknown>, words: resultWords(t.result),
        history: t.meta.history as unknown[], test: testResult, trainedOn: train.labels.length, skipped,
      };
      await store.update(pid, (q) => { q.result = result; delete q.stopped; });
      finish(job, 'done', { ...result, history: undefined });
    } catch (e) {
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
        cut: req.cut, warmupEpochs: req.warmupEpochs, finetuneEpochs: req.finetuneEpochs,
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
  return Array.from(values, (probability, c) => ({ className: job.classNames[c], probability })).sort((a, b) => b.probability - a.probability).slice(0, topK);
}

/** What the recipe decided, in the words graft train prints. */
function resultWords(r: FineTuneResult): string[] {
  const out: string[] = [];
  const f = r.headFit;
  if (f?.chosenBy === 'cross-validation') out.push(`Cross-validated accuracy of the warm-up head ${(100 * f.cvAccuracy!).toFixed(1)}% +- ${(100 * f.cvAccuracyStd!).toFixed(1)} points (${f.folds} folds)`);
  if (r.fineTuneCheck) out.push(r.fineTuneCheck.words.replace(/^./, (c) => c.toUpperCase()));
  return out;
}
