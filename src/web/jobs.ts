// Training jobs of `graft serve`: each job has its own model and event log, runs on the
// server (one at a time, in order), and goes on when the browser tab that started it closes.
// Listeners (server-sent event streams) get the whole log on connect, then live events.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  GraftError, loadModel, parseUnfreeze, predictAll, saveModel, transfer, type Dataset, type GraftMeta, type LoadedModel, type Preprocessing,
} from '../index.js';

export interface JobRequest {
  base: string;
  cut?: string;
  /** Per class, images decoded by the browser: the file's first bytes (base64, for its type) and its pixels resized to the model input. */
  classes: { name: string; images: UploadedImage[] }[];
  warmupEpochs?: number;
  finetuneEpochs?: number;
  unfreeze?: string;
}

export interface UploadedImage {
  magic: string;
  pixels: number[];
}

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
  type: 'queued' | 'started' | 'phase' | 'batch' | 'epoch' | 'done' | 'error';
  data: unknown;
}

export interface Job {
  id: string;
  status: 'queued' | 'running' | 'done' | 'error';
  events: JobEvent[];
  listeners: Set<(e: JobEvent) => void>;
  classNames: string[];
  model?: LoadedModel['model'];
  meta?: GraftMeta;
  preprocessing?: Preprocessing;
  files?: Record<string, Uint8Array>;
}

export class JobRunner {
  private readonly jobs = new Map<string, Job>();
  private queue: Promise<void> = Promise.resolve();

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** Checks the request, registers the job and queues it; returns at once. */
  async submit(req: JobRequest): Promise<Job> {
    const base = await loadModel(req.base);
    const data = toDataset(req, base);
    const job: Job = { id: randomUUID(), status: 'queued', events: [], listeners: new Set(), classNames: data.classNames };
    this.jobs.set(job.id, job);
    emit(job, { type: 'queued', data: { classes: data.classNames, samples: data.labels.length } });
    this.queue = this.queue.then(() => run(job, base, data, req));
    return job;
  }

  idle(): Promise<void> {
    return this.queue;
  }
}

function emit(job: Job, e: JobEvent): void {
  job.events.push(e);
  for (const l of job.listeners) l(e);
}

function toDataset(req: JobRequest, base: LoadedModel): Dataset {
  const shape = base.model.inputs[0].shape.slice(1) as number[];
  const size = shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(req.classes) || req.classes.length < 2) {
    throw new GraftError('BAD_DATA', `Training needs at least 2 classes; got ${req.classes?.length ?? 0}.`, { fix: 'Add images for two or more classes.' });
  }
  const names = req.classes.map((c) => String(c.name ?? '').trim());
  if (names.some((n) => !n) || new Set(names).size !== names.length) {
    throw new GraftError('BAD_DATA', 'Every class needs a name, and names must differ.', { fix: 'Name each class.' });
  }
  const n = req.classes.reduce((a, c) => a + (c.images?.length ?? 0), 0);
  const x = new Float32Array(n * size);
  const labels = new Int32Array(n);
  let i = 0;
  req.classes.forEach((c, k) => {
    if (!c.images?.length) throw new GraftError('BAD_DATA', `Class "${names[k]}" has no images.`, { fix: 'Add images to every class, or remove it.' });
    for (const img of c.images) {
      if (!imageType(img?.magic)) {
        throw new GraftError('BAD_IMAGE', `A file in class "${names[k]}" is not a PNG, JPEG, GIF or WebP image.`, { fix: 'Upload image files only.' });
      }
      if (!Array.isArray(img.pixels) || img.pixels.length !== size) {
        throw new GraftError('SHAPE_MISMATCH', `An image of class "${names[k]}" has ${Array.isArray(img.pixels) ? img.pixels.length : 0} values; the model needs ${size} (${shape.join('x')}).`);
      }
      x.set(img.pixels, i * size);
      labels[i++] = k;
    }
  });
  return { x, sampleShape: shape, labels, classNames: names, source: 'uploaded images' };
}

async function run(job: Job, base: LoadedModel, data: Dataset, req: JobRequest): Promise<void> {
  job.status = 'running';
  emit(job, { type: 'started', data: {} });
  const dir = await mkdtemp(join(tmpdir(), 'graft-serve-'));
  try {
    const t = await transfer(base, data, {
      cut: req.cut || undefined,
      warmupEpochs: req.warmupEpochs, finetuneEpochs: req.finetuneEpochs,
      unfreeze: req.unfreeze ? parseUnfreeze(req.unfreeze) : undefined,
      validationSplit: data.labels.length >= 20 ? 0.1 : 0,
      callbacks: {
        onPhaseStart: (p) => emit(job, { type: 'phase', data: p }),
        onBatch: (p) => { if (p.batch === p.batches || p.batch % 5 === 0) emit(job, { type: 'batch', data: p }); },
        onEpochEnd: async (r) => { emit(job, { type: 'epoch', data: r }); await new Promise((res) => setImmediate(res)); },
      },
    });
    await saveModel(t.model, dir, t.meta);
    job.files = Object.fromEntries(await Promise.all(['model.json', 'weights.bin', 'graft.json'].map(async (f) => [f, await readFile(join(dir, f))])));
    job.model = t.grafted.model;
    job.meta = t.meta;
    job.preprocessing = t.preprocessing;
    job.status = 'done';
    emit(job, { type: 'done', data: { metrics: t.meta.metrics, classNames: t.classNames, history: t.meta.history } });
  } catch (e) {
    job.status = 'error';
    emit(job, { type: 'error', data: { message: (e as Error).message, code: (e as GraftError).code } });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function predictOne(job: Job, pixels: number[], topK = 3): Promise<{ className: string; probability: number }[]> {
  if (!job.model || !job.meta) throw new GraftError('BAD_OPTION', `Job ${job.id} has no trained model yet (status: ${job.status}).`, { fix: 'Wait for training to finish.' });
  const shape = job.model.inputs[0].shape.slice(1) as number[];
  const size = shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(pixels) || pixels.length !== size) throw new GraftError('SHAPE_MISMATCH', `The image has ${pixels?.length ?? 0} values; the model needs ${size}.`);
  const one: Dataset = { x: Float32Array.from(pixels), sampleShape: shape, labels: new Int32Array(1), classNames: job.classNames, source: 'uploaded image' };
  const { values } = await predictAll(job.model, one, job.preprocessing);
  return Array.from(values, (probability, c) => ({ className: job.classNames[c], probability })).sort((a, b) => b.probability - a.probability).slice(0, topK);
}
