// The old head, kept: finding the base model's classifier head, building one model with the
// new and the old head as two named outputs of the shared body, and picking one head of a
// saved multi-head model.

import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import type { Grafted } from './graft.js';
import type { LoadedModel } from './load.js';
import type { GraftMeta, HeadMeta } from './meta.js';

export interface OldHead {
  /** The base's output layer. */
  outputLayer: string;
  classNames: string[];
  /** Base layers after the cut, which only the old head uses. */
  layers: string[];
}

interface DenseConfig {
  activation?: string;
  units?: number;
}

/** The base model's classification head: a softmax output with known or numbered classes. */
export function findOldHead(base: LoadedModel, g?: Grafted): OldHead {
  const model = base.model;
  if (model.outputs.length !== 1) {
    throw new GraftError('BAD_MODEL', `Model "${base.source}" has ${model.outputs.length} outputs; Graft recognises an old head only on single-output models.`);
  }
  const out = model.outputs[0].sourceLayer;
  const config = out.getConfig() as DenseConfig;
  if (out.getClassName() !== 'Dense' || config.activation !== 'softmax') {
    throw new GraftError('BAD_MODEL', `The output layer "${out.name}" of "${base.source}" is a ${out.getClassName()} with activation "${config.activation ?? 'none'}", not a softmax classifier: there is no recognisable old head to keep or extend.`, {
      fix: 'Keep-old and extend modes need a base whose output is a Dense layer with softmax activation.' });
  }
  const units = config.units!;
  const named = base.meta?.heads?.[0]?.classNames ?? base.meta?.classNames;
  const classNames = named && named.length === units ? named : Array.from({ length: units }, (_, i) => String(i));
  return { outputLayer: out.name, classNames, layers: g ? g.body.removed.map((l) => l.name) : [out.name] };
}

/** One LayersModel: [new head, old head] on the shared body. Plain tfjs loads it. */
export function multiHeadModel(g: Grafted): tfl.LayersModel {
  return tfl.model({ inputs: g.model.inputs, outputs: [g.model.outputs[0], g.base.outputs[0]], name: 'grafted_multi_head' });
}

export function headsMeta(g: Grafted, newClassNames: string[], old?: OldHead): HeadMeta[] {
  const heads: HeadMeta[] = [{ name: 'new', outputLayer: g.head.layers[g.head.layers.length - 1].name, classNames: newClassNames, layers: g.head.layers.map((l) => l.name) }];
  if (old) heads.push({ name: 'old', outputLayer: old.outputLayer, classNames: old.classNames, layers: old.layers });
  return heads;
}

/**
 * The single-output model of one head of a loaded model, with that head's class names.
 * `name` is a head name from graft.json ("new", "old"); a single-head model has just one.
 */
export function selectHead(model: tfl.LayersModel, meta: GraftMeta, name = 'new'): { model: tfl.LayersModel; classNames: string[] } {
  if (model.outputs.length === 1) {
    if (name !== 'new' && !(meta.heads?.length === 1 && meta.heads[0].name === name)) {
      throw new GraftError('BAD_OPTION', `This model has one head; there is no "${name}" head.`, { fix: 'Train with the old head kept (--keep-old head; keepOld: \'head\' in the library).' });
    }
    return { model, classNames: meta.classNames };
  }
  const head = meta.heads?.find((h) => h.name === name);
  const index = head ? model.outputNames.indexOf(head.outputLayer) : -1;
  if (!head || index < 0) {
    throw new GraftError('BAD_OPTION', `No head named "${name}". Heads: ${(meta.heads ?? []).map((h) => h.name).join(', ')}.`, { fix: 'Use the head new, old or all (--head on the command line).' });
  }
  return { model: tfl.model({ inputs: model.inputs, outputs: model.outputs[index] }), classNames: head.classNames };
}
