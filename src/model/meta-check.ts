// graft.json is checked before use: its shape (a schema of the fields Graft reads), finite
// numbers, mean/std lengths against the input's channels, and class names against the units of
// the outputs they name. A graft.json that does not fit is a BAD_MODEL error, not a TypeError
// later or predictions silently cut short.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import type { GraftMeta } from './meta.js';

const bad = (where: string, what: string) => new GraftError('BAD_MODEL', `${where}: ${what}.`, {
  fix: 'graft.json is written by graft train; restore it from that run, or remove it to use the model without Graft\'s metadata.' });

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');
const finiteList = (v: unknown) => Array.isArray(v) && v.every((n) => typeof n === 'number' && Number.isFinite(n));

/** Checks what Graft reads of graft.json; returns it typed. */
export function checkMeta(raw: unknown, where: string): GraftMeta {
  if (!isObject(raw)) throw bad(where, 'is not a JSON object');
  if (raw.format !== 'graft/1') throw bad(where, `has format ${JSON.stringify(raw.format)}; Graft writes "graft/1"`);
  if (!strings(raw.classNames)) throw bad(where, '"classNames" must be a list of strings');
  const p = raw.preprocessing;
  if (!isObject(p)) throw bad(where, '"preprocessing" must be an object');
  if (!Array.isArray(p.inputShape) || !p.inputShape.every((d) => d === null || (Number.isInteger(d) && (d as number) > 0))) {
    throw bad(where, '"preprocessing.inputShape" must be a list of positive whole numbers');
  }
  for (const k of ['scale', 'offset'] as const) {
    if (p[k] !== undefined && !(typeof p[k] === 'number' && Number.isFinite(p[k]))) throw bad(where, `"preprocessing.${k}" must be a finite number; got ${JSON.stringify(p[k])}`);
  }
  const channels = p.inputShape.at(-1);
  for (const k of ['mean', 'std'] as const) {
    if (p[k] === undefined) continue;
    if (!finiteList(p[k])) throw bad(where, `"preprocessing.${k}" must be a list of finite numbers`);
    const list = p[k] as number[];
    if (typeof channels === 'number' && list.length !== channels && p.inputShape.length > 1) {
      throw bad(where, `"preprocessing.${k}" has ${list.length} values; the input has ${channels} channels`);
    }
    if (p.inputShape.length === 1 && typeof channels === 'number' && list.length !== channels) {
      throw bad(where, `"preprocessing.${k}" has ${list.length} values; the input has ${channels} features`);
    }
    if (k === 'std' && list.some((s) => s <= 0)) throw bad(where, '"preprocessing.std" values must be above 0');
  }
  if (p.imageFit !== undefined && !['crop', 'pad', 'stretch'].includes(p.imageFit as string)) throw bad(where, '"preprocessing.imageFit" must be crop, pad or stretch');
  if (raw.heads !== undefined) {
    if (!Array.isArray(raw.heads)) throw bad(where, '"heads" must be a list');
    raw.heads.forEach((h, i) => {
      if (!isObject(h) || typeof h.name !== 'string' || typeof h.outputLayer !== 'string' || !strings(h.classNames) || (h.layers !== undefined && !strings(h.layers))) {
        throw bad(where, `"heads[${i}]" must have a name, an outputLayer and classNames (strings)`);
      }
    });
  }
  return { ...raw, heads: raw.heads ?? [] } as unknown as GraftMeta;
}

/** Class names against the units of the outputs they label, mean/std against the model's input. */
export function checkMetaAgainstModel(meta: GraftMeta, model: tfl.LayersModel, where: string, options: { truncated?: boolean } = {}): void {
  const units = (i: number) => model.outputs[i].shape.at(-1) as number;
  if (!options.truncated) {
    for (const h of meta.heads) {
      const i = model.outputNames.indexOf(h.outputLayer);
      if (i >= 0 && h.classNames.length && h.classNames.length !== units(i)) {
        throw bad(where, `head "${h.name}" names ${h.classNames.length} classes, but its output layer ${h.outputLayer} has ${units(i)} units`);
      }
    }
    if (model.outputs.length === 1 && meta.classNames.length && meta.body === undefined && meta.classNames.length !== units(0)) {
      throw bad(where, `"classNames" names ${meta.classNames.length} classes, but the model's output has ${units(0)} units`);
    }
  }
  const channels = model.inputs[0].shape.at(-1);
  for (const k of ['mean', 'std'] as const) {
    const list = meta.preprocessing[k];
    if (list && typeof channels === 'number' && meta.body === undefined && list.length !== channels) {
      throw bad(where, `"preprocessing.${k}" has ${list.length} values; the model's input has ${channels} channels`);
    }
  }
}
