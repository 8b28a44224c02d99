// Training jobs of `graft serve`: each job has its own model and event log, runs on the
// server (one at a time, in order), and goes on when the browser tab that started it closes.
// Listeners (server-sent event streams) get the whole log on connect, then live events. The
// queue is bounded, a job can be cancelled (queued: dropped; running: stopped after its
// batch), and only the last few finished jobs keep their models.

import type { FineTuneResult } from '../train/fine-tune.js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  GraftError, parseUnfreeze, predictAll, saveModel, transfer, type Dataset, type GraftMeta, type LoadedModel, type Preprocessing,
} from '../index.js';
import type { Catalog } from './catalog.js';
import { HttpError } from './guard.js';
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
  type: 'queued' | 'started' | 'phase' | 'batch' | 'epoch' | 'done' | 'error' | 'cancelled';
  data: unknown;
}

export interface Job {
  id: string;
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
      if (t.result.interrupted || job.cancel) {
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
