// transfer: the whole workflow on a loaded base model and a labelled dataset: choose the cut,
// graft a head sized for the data's classes, settle the preprocessing, fine-tune, and
// describe the result in a graft.json.

import { GraftError } from '../errors.js';
import { stratifiedSplit, type Dataset } from '../data/dataset.js';
import { standardization, type Preprocessing } from '../data/preprocess.js';
import { frozenLayerNames } from '../model/freeze.js';
import { graft, type Grafted } from '../model/graft.js';
import type { HeadOptions } from '../model/head.js';
import type { LayerRef } from '../model/layers.js';
import type { LoadedModel } from '../model/load.js';
import { versions, type GraftMeta } from '../model/meta.js';
import { DEFAULTS } from './defaults.js';
import { fineTune, type FineTuneOptions, type FineTuneResult } from './fine-tune.js';

export interface TransferOptions extends FineTuneOptions {
  /** Where to cut (default: the base's first suggested cut, else just before its output layer). */
  cut?: LayerRef;
  head?: Omit<HeadOptions, 'numClasses'>;
  /** Called once the head is grafted on, before any training (to show or change the model). */
  onGrafted?: (g: Grafted) => void | Promise<void>;
}

export interface Transfer {
  grafted: Grafted;
  result: FineTuneResult;
  preprocessing?: Preprocessing;
  meta: GraftMeta;
}

/** The layer that feeds the output layer: cutting there replaces just the classifier. */
export function defaultCut(base: LoadedModel): string {
  const suggested = base.meta?.zoo?.suggestedCuts?.[0];
  if (suggested) return suggested;
  const out = base.model.outputs[0].sourceLayer as unknown as { inboundNodes: { inboundLayers: { name: string }[] }[] };
  const feeder = out.inboundNodes[0]?.inboundLayers[0];
  if (!feeder) throw new GraftError('EMPTY_CUT', `Model "${base.model.name}" has no layer before its output.`, { fix: 'Use a deeper pretrained model.' });
  return feeder.name;
}

function settlePreprocessing(base: LoadedModel, train: Dataset, given?: Preprocessing): Preprocessing | undefined {
  if (given) return given;
  if (base.meta?.preprocessing && train.sampleShape.length > 1) return base.meta.preprocessing;
  // Tabular data: standardise with the training split's own statistics.
  if (train.sampleShape.length === 1) return standardization(train);
  return base.meta?.preprocessing;
}

export async function transfer(base: LoadedModel, data: Dataset, options: TransferOptions = {}): Promise<Transfer> {
  const cut = options.cut ?? defaultCut(base);
  // The base's suggested head applies at its suggested cut only.
  const suggested = cut === base.meta?.zoo?.suggestedCuts?.[0] ? base.meta?.zoo?.suggestedHead : undefined;
  const grafted = graft(base.model, { cut, head: { ...suggested, ...options.head, numClasses: data.classNames.length } });
  await options.onGrafted?.(grafted);
  let train = data;
  let validation = options.validation;
  const split = options.validationSplit ?? DEFAULTS.validationSplit;
  if (!validation && split > 0) ({ rest: train, split: validation } = stratifiedSplit(data, split, options.seed ?? DEFAULTS.seed));
  const preprocessing = settlePreprocessing(base, train, options.preprocessing);
  const result = await fineTune(grafted, train, { ...options, validation, preprocessing });
  const meta = describe(base, grafted, data, result, preprocessing);
  return { grafted, result, preprocessing, meta };
}

export function describe(base: LoadedModel, g: Grafted, data: Dataset, result: FineTuneResult, preprocessing?: Preprocessing): GraftMeta {
  const output = g.head.layers[g.head.layers.length - 1].name;
  return {
    format: 'graft/1',
    classNames: data.classNames,
    preprocessing: preprocessing ?? { inputShape: data.sampleShape, description: 'none: raw values' },
    base: { source: base.source, cut: g.body.cut },
    heads: [{ name: 'new', outputLayer: output, classNames: data.classNames, layers: g.head.layers.map((l) => l.name) }],
    frozen: frozenLayerNames(g),
    metrics: { validationAccuracy: result.validation?.accuracy ?? null, validationLoss: result.validation?.loss ?? null, trainSamples: data.labels.length },
    history: result.history,
    recipe: { ...result.recipe, head: g.head.options, phases: result.phases.map((p) => ({ phase: p.phase, epochsRun: p.epochsRun, stoppedEarly: p.stoppedEarly, seconds: p.seconds, groupLearningRates: p.groupLearningRates })) },
    versions: versions(),
    createdAt: new Date().toISOString(),
  };
}

