// The request bodies `graft serve` accepts, checked field by field: a body that does not fit is
// a 400 naming the field and what is allowed, before any work.

import { HttpError } from './guard.js';

export const LIMITS = {
  classes: { min: 2, max: 50 },
  className: 100,
  imagesPerClass: 5000,
  imagesInAll: 20000,
  epochs: 50,
  cut: 200,
  topK: 100,
};

export interface UploadedImage {
  magic: string;
  pixels: number[];
}

export interface JobRequest {
  base: string;
  cut?: string;
  classes: { name: string; images: UploadedImage[] }[];
  warmupEpochs?: number;
  finetuneEpochs?: number;
  unfreeze?: string;
}

export interface PredictRequest {
  pixels: number[];
  topK?: number;
}

const bad = (field: string, allowed: string, got?: unknown) =>
  new HttpError(400, `${field}: ${allowed}${got === undefined ? '' : `; got ${describe(got)}`}.`, 'BAD_REQUEST');

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v).slice(0, 40)}`;
}

export function object(v: unknown, field: string, keys: string[]): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'must be a JSON object', v);
  const extra = Object.keys(v).filter((k) => !keys.includes(k));
  if (extra.length) throw bad(field, `unknown field ${JSON.stringify(extra[0].slice(0, 40))}; allowed: ${keys.join(', ') || 'none'}`);
  return v as Record<string, unknown>;
}

function string(v: unknown, field: string, max: number, optional = false): string | undefined {
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string' || v.length > max) throw bad(field, `must be a string of at most ${max} characters`, v);
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `must be a whole number from ${min} to ${max}`, v);
  return v;
}

function pixels(v: unknown, field: string, size: number): number[] {
  if (!Array.isArray(v) || v.length !== size) throw bad(field, `must be an array of ${size} numbers (the model's input)`, v);
  for (let i = 0; i < v.length; i++) {
    const p = v[i];
    if (typeof p !== 'number' || !(p >= 0 && p <= 255)) throw bad(`${field}[${i}]`, 'must be a number from 0 to 255', p);
  }
  return v as number[];
}

/** Checks a training request; `models` are the names this server offers, `size` the base's input size. */
export function parseJobRequest(body: unknown, models: string[], inputSize: (base: string) => number): JobRequest {
  const o = object(body, 'body', ['base', 'cut', 'classes', 'warmupEpochs', 'finetuneEpochs', 'unfreeze']);
  const base = string(o.base, 'base', 200)!;
  if (!models.includes(base)) throw bad('base', `must be one of the models this server offers (${models.join(', ')})`, base);
  const cut = string(o.cut ?? undefined, 'cut', LIMITS.cut, true) || undefined;
  const unfreeze = string(o.unfreeze ?? undefined, 'unfreeze', LIMITS.cut, true) || undefined;
  if (unfreeze !== undefined && !/^(all|none|[1-9]\d{0,3}|from:.+)$/.test(unfreeze)) throw bad('unfreeze', 'must be all, none, a number of layers (1-9999) or from:<layer>', unfreeze);
  const warmupEpochs = int(o.warmupEpochs, 'warmupEpochs', 0, LIMITS.epochs);
  const finetuneEpochs = int(o.finetuneEpochs, 'finetuneEpochs', 0, LIMITS.epochs);
  const { min, max } = LIMITS.classes;
  if (!Array.isArray(o.classes) || o.classes.length < min || o.classes.length > max) throw bad('classes', `must be an array of ${min} to ${max} classes`, o.classes);
  const size = inputSize(base);
  let total = 0;
  const classes = o.classes.map((c, k) => {
    const field = `classes[${k}]`;
    const co = object(c, field, ['name', 'images']);
    const name = string(co.name, `${field}.name`, LIMITS.className)!.trim();
    if (!name) throw bad(`${field}.name`, 'must not be empty');
    if (!Array.isArray(co.images) || co.images.length < 1 || co.images.length > LIMITS.imagesPerClass) throw bad(`${field}.images`, `must be an array of 1 to ${LIMITS.imagesPerClass} images`, co.images);
    total += co.images.length;
    if (total > LIMITS.imagesInAll) throw bad('classes', `may hold at most ${LIMITS.imagesInAll} images in all`);
    const images = co.images.map((img, i) => {
      const io = object(img, `${field}.images[${i}]`, ['magic', 'pixels']);
      return { magic: string(io.magic, `${field}.images[${i}].magic`, 64)!, pixels: pixels(io.pixels, `${field}.images[${i}].pixels`, size) };
    });
    return { name, images };
  });
  return { base, cut, classes, warmupEpochs, finetuneEpochs, unfreeze };
}

export function parsePredictRequest(body: unknown, size: number): PredictRequest {
  const o = object(body, 'body', ['pixels', 'topK']);
  return { pixels: pixels(o.pixels, 'pixels', size), topK: int(o.topK, 'topK', 1, LIMITS.topK) };
}
