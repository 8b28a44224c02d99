// transfer: the whole workflow on a loaded base model and a labelled dataset: choose the cut,
// graft a head sized for the data's classes (or extend the old head), settle the
// preprocessing, fine-tune (optionally keeping the old task), and describe the result in a
// graft.json.

import { distributed } from '../engine/dist.js';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { assertTrainable, concat, count, stratifiedSplit, takePerClass, type Dataset } from '../data/dataset.js';
import { adoptModel } from '../model/batch-norm.js';
import type { GraphBody } from '../model/graph-body.js';
import { OnnxBody } from '../model/onnx.js';
import { alignClasses } from '../data/load.js';
import { standardization, type Preprocessing } from '../data/preprocess.js';
import { extendModel } from '../model/extend.js';
import { frozenLayerNames } from '../model/freeze.js';
import { graft, type Grafted } from '../model/graft.js';
import type { HeadOptions } from '../model/head.js';
import { outputShapeOf, paramCount, type LayerRef } from '../model/layers.js';
import type { LoadedModel } from '../model/load.js';
import { versions, type GraftMeta, type HeadMeta } from '../model/meta.js';
import { findOldHead, headsMeta, multiHeadModel, type OldHead } from '../model/multi-head.js';
import { DEFAULTS } from './defaults.js';
import { DISTILL_DEFAULTS, lwfLoss } from './distill.js';
import { fineTune, validationFraction, type FineTuneOptions, type FineTuneResult } from './fine-tune.js';
import { predictAll } from './predict.js';
import { applyCheckpoint, writeCheckpoint, type Checkpoint } from './checkpoint.js';
import { EWC_DEFAULTS, ewcLoss, fisherDiagonal, type Ewc } from './ewc.js';
import { layersOf } from './weights.js';
import { withPrecision } from '../engine/native.js';

/** How to keep the old task: its head as a second output ("head"), plus distillation ("lwf") or an EWC penalty ("ewc", needs old data). */
export type KeepOld = 'head' | 'lwf' | 'ewc';

export interface TransferOptions extends FineTuneOptions {
  /** Where to cut (default: the base's first suggested cut, else just before its output layer). */
  cut?: LayerRef;
  head?: Omit<HeadOptions, 'numClasses'>;
  /** Keep the old head as a second output of the saved model, optionally with LwF distillation. */
  keepOld?: KeepOld;
  /** One head for old and new classes, initialised from the old head (distillation keeps the old classes). */
  extend?: boolean;
  /** Old-task data, for replay in extend mode. */
  oldData?: Dataset;
  /** Old examples per class mixed into training in extend mode (needs oldData). */
  replay?: number;
  temperature?: number;
  lambda?: number;
  /**
   * LwF: also train the old head's own layers (as the paper does). Off by default: measured
   * on small tasks, an old head trained toward its outputs on new-task data at fine-tuning
   * rates drifts on old-task data; a fixed old head makes distillation constrain the body only.
   */
  trainOldHead?: boolean;
  /** Called once the head is grafted on, before any training (to show or change the model). */
  onGrafted?: (g: Grafted) => void | Promise<void>;
  /** Called with the training and validation data once they are settled, before any training. */
  onSplit?: (s: { train: Dataset; validation?: Dataset; preprocessing?: Preprocessing }) => void | Promise<void>;
  /** Write checkpoints to `dir` (each epoch end, every `everyMinutes` inside epochs), keeping the last `keep`. */
  checkpoints?: { dir: string; run: Record<string, unknown>; keep?: number; everyMinutes?: number };
  /** Go on from this checkpoint (same base, data and options as the run that wrote it). */
  resumeFrom?: Checkpoint;
  /** True asks training to stop after the current batch (with a checkpoint when checkpoints are on). */
  shouldStop?: () => boolean;
}

export interface Transfer {
  grafted: Grafted;
  /** The model to save: the grafted model, or [new head, old head] when the old head is kept. */
  model: tfl.LayersModel;
  result: FineTuneResult;
  preprocessing?: Preprocessing;
  /** Class names of the (first) head: the new classes, or old + new in extend mode. */
  classNames: string[];
  oldHead?: OldHead;
  meta: GraftMeta;
}

/** A cut given by an ONNX or TensorFlow node or value name, as the layer the graph's rebuild made of it. */
export function resolveCut(base: LoadedModel, cut?: LayerRef): LayerRef | undefined {
  if (typeof cut !== 'string' || !base.imported || base.model.layers.some((l) => l.name === cut)) return cut;
  return base.imported.layerOf.get(cut) ?? cut;
}

/** The layer that feeds the output layer: cutting there replaces just the classifier. */
export function defaultCut(base: LoadedModel): string {
  const suggested = base.meta?.zoo?.suggestedCuts?.[0];
  if (suggested) return suggested;
  type L = { name: string; getClassName(): string; inboundNodes: { inboundLayers: L[] }[] };
  const before = (l: L) => l.inboundNodes[0]?.inboundLayers[0];
  let out = base.model.outputs[0].sourceLayer as unknown as L;
  // A separate softmax (as ONNX graphs end) is part of the classifier.
  while (['Softmax', 'Activation'].includes(out.getClassName()) && before(out) && before(out)!.getClassName() !== 'InputLayer') out = before(out)!;
  if (out !== (base.model.outputs[0].sourceLayer as unknown as L) && out.getClassName() !== 'Dense') return out.name;
  const feeder = before(out);
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

function checkOldData(old: Dataset | undefined, head: OldHead): void {
  if (!old) return;
  const unknown = old.classNames.filter((c) => !head.classNames.includes(c));
  if (unknown.length) {
    throw new GraftError('CLASS_MISMATCH', `The old data ${old.source} has classes ${unknown.join(', ')} that the old head (classes ${head.classNames.join(', ')}) does not know.`, {
      fix: 'Give old-task data of the classes the base model was trained on.' });
  }
}

export async function transfer(base: LoadedModel, data: Dataset, options: TransferOptions = {}): Promise<Transfer> {
  return withPrecision(options.precision, () => transferRun(base, data, options));
}

async function transferRun(base: LoadedModel, data: Dataset, options: TransferOptions): Promise<Transfer> {
  const wantsOld = Boolean(options.keepOld || options.extend || options.oldData);
  const oldHead = wantsOld ? findOldHead(base) : undefined;
  if (oldHead) checkOldData(options.oldData, oldHead);
  if (options.keepOld === 'ewc' && !options.oldData) {
    throw new GraftError('BAD_OPTION', 'EWC needs old-task data to measure which weights the old task relies on.', { fix: 'Give the old data (--old-data <data>; oldData in the library), or keep the old task by distillation instead (--keep-old lwf; keepOld: \'lwf\').' });
  }
  if (options.replay && (!options.extend || !options.oldData)) {
    throw new GraftError('BAD_OPTION', 'Replay needs extend mode and old data.', { fix: 'Add extend mode and the old data (--extend --old-data <data>; extend and oldData in the library), or drop replay.' });
  }
  let grafted: Grafted;
  let classNames = data.classNames;
  let labelled = data;
  if (options.extend) {
    ({ grafted, classNames } = extendModel(base, oldHead!, data.classNames));
    labelled = alignClasses(data, classNames);
  } else {
    const cut = resolveCut(base, options.cut) ?? defaultCut(base);
    // The base's suggested head applies at its suggested cut only.
    const suggested = cut === base.meta?.zoo?.suggestedCuts?.[0] ? base.meta?.zoo?.suggestedHead : undefined;
    grafted = graft(base.model, { cut, head: { seed: options.seed ?? DEFAULTS.seed, ...suggested, ...options.head, numClasses: data.classNames.length } });
  }
  const old = oldHead && options.keepOld ? { ...oldHead, layers: grafted.body.removed.map((l) => l.name) } : undefined;
  await options.onGrafted?.(grafted);

  let train = labelled;
  let validation = options.validation && options.extend ? alignClasses(options.validation, classNames) : options.validation;
  const split = validationFraction(labelled, options.validationSplit);
  if (!validation && split > 0) ({ rest: train, split: validation } = stratifiedSplit(labelled, split, options.seed ?? DEFAULTS.seed));
  if (options.replay && options.oldData) {
    // The replay buffer is small; repeating it to the size of a new class keeps the old
    // classes from being outvoted by the new ones in every batch.
    const replay = takePerClass(alignClasses(options.oldData, classNames), options.replay, options.seed ?? DEFAULTS.seed);
    const newPerClass = count(train) / data.classNames.length;
    const copies = Math.max(1, Math.round(newPerClass / options.replay));
    for (let i = 0; i < copies; i++) train = concat(train, replay);
  }
  const preprocessing = settlePreprocessing(base, train, options.preprocessing);
  await options.onSplit?.({ train, validation, preprocessing });
  const fine: FineTuneOptions = {
    ...options, validation, preprocessing, allowEmptyClasses: options.extend,
    cacheLabel: options.cacheLabel ?? `${base.source} cut at ${grafted.body.model.outputs[0].name.split('/')[0]}`,
  };
  const distill = { temperature: options.temperature ?? DISTILL_DEFAULTS.temperature, lambda: options.lambda ?? DISTILL_DEFAULTS.lambda };
  if (options.extend || options.keepOld === 'lwf') {
    // Record the old head's outputs on the training data before anything trains.
    const { values } = await predictAll(base.model, train, preprocessing);
    const targets = { ...distill, targets: values, oldClasses: oldHead!.classNames.length };
    if (options.extend) {
      const loss = lwfLoss({ ...targets, from: 'old-columns' });
      fine.losses = { warmUp: loss, fineTune: loss };
    } else {
      fine.losses = { fineTune: lwfLoss({ ...targets, from: 'second-output' }) };
      fine.finetuneModel = multiHeadModel(grafted);
      fine.alsoTrain = options.trainOldHead ? grafted.body.removed : [];
    }
  }
  let ewc: Ewc | undefined;
  if (options.keepOld === 'ewc') {
    // Measured on the original weights, before anything trains (or a checkpoint is put back).
    ewc = fisherDiagonal(base.model, grafted.body.layers, alignClasses(options.oldData!, oldHead!.classNames), preprocessing);
    fine.losses = { fineTune: ewcLoss(ewc, options.lambda ?? EWC_DEFAULTS.lambda) };
  }
  const weightLayers = layersOf(grafted.model, base.model, ...(fine.finetuneModel ? [fine.finetuneModel] : []));
  if (options.resumeFrom) {
    applyCheckpoint(weightLayers, options.resumeFrom);
    fine.resume = options.resumeFrom.state;
  }
  const c = options.checkpoints;
  fine.control = {
    shouldStop: options.shouldStop,
    checkpointEveryMinutes: c?.everyMinutes,
    // In a data-parallel run rank 0 writes them (every worker holds the same weights).
    checkpoint: c && (async (state) => { if (!distributed()?.rank) await writeCheckpoint(c.dir, weightLayers, state, c.run, c.keep); }),
  };
  let result: FineTuneResult;
  try {
    result = await fineTune(grafted, train, fine);
  } finally {
    ewc?.dispose();
  }
  const model = old ? multiHeadModel(grafted) : grafted.model;
  const meta = describeTransfer(base, grafted, { classNames, samples: count(train), result, preprocessing, heads: headsMeta(grafted, classNames, old) });
  if (options.extend || options.keepOld) {
    const weights = options.keepOld === 'ewc' ? { lambda: options.lambda ?? EWC_DEFAULTS.lambda, fisherSamples: EWC_DEFAULTS.samples } : fine.losses ? distill : {};
    meta.recipe = { ...meta.recipe, keepOld: options.extend ? 'extend' : options.keepOld, replay: options.replay ?? 0, ...weights };
  }
  return { grafted, model, result, preprocessing, classNames, oldHead: old ?? oldHead, meta };
}

export function describeTransfer(base: LoadedModel, g: Grafted, r: { classNames: string[]; samples: number; result: FineTuneResult; preprocessing?: Preprocessing; heads: HeadMeta[] }): GraftMeta {
  return {
    format: 'graft/1',
    classNames: r.classNames,
    preprocessing: r.preprocessing ?? { inputShape: (g.model.inputs[0].shape.slice(1) as number[]), description: 'none: raw values' },
    base: {
      source: base.source, cut: g.body.cut,
      removed: g.body.removed.map((l) => ({ name: l.name, className: l.getClassName(), shape: outputShapeOf(l), params: paramCount(l) })),
    },
    heads: r.heads,
    frozen: frozenLayerNames(g),
    metrics: { validationAccuracy: r.result.validation?.accuracy ?? null, validationLoss: r.result.validation?.loss ?? null, trainSamples: r.samples },
    history: r.result.history,
    ...(r.result.headFit ? { headFit: r.result.headFit } : {}),
    ...(r.result.fineTuneCheck ? { fineTuneCheck: r.result.fineTuneCheck } : {}),
    recipe: { ...r.result.recipe, head: g.head.options, phases: r.result.phases.map((p) => ({ phase: p.phase, epochsRun: p.epochsRun, stoppedEarly: p.stoppedEarly, ...(p.stoppedBy ? { stoppedBy: p.stoppedBy } : {}), seconds: p.seconds, groupLearningRates: p.groupLearningRates, ...(p.unfreezeSchedule ? { unfreezeSchedule: p.unfreezeSchedule } : {}), ...(p.labelSmoothing ? { labelSmoothing: p.labelSmoothing } : {}) })) },
    versions: versions(),
    createdAt: new Date().toISOString(),
  };
}


/** A frozen body that tfjs cannot train: an ONNX body (onnxruntime) or a tfjs GraphModel. */
export type FrozenBody = OnnxBody | GraphBody;

/**
 * The base the one training path uses for a frozen body: a weightless pass-through over its
 * features (cut at "features"), so the head is grafted, trained, checkpointed and saved as
 * for any base. The data given to `transfer` is then the body's features.
 */
export async function frozenBase(body: FrozenBody): Promise<LoadedModel> {
  const input = tfl.input({ shape: body.info.featureShape, name: 'body_features' });
  const passThrough = tfl.layers.activation({ activation: 'linear', name: 'features' }).apply(input) as tfl.SymbolicTensor;
  return { model: await adoptModel(tfl.model({ inputs: input, outputs: passThrough, name: 'frozen_body' })), source: body.info.path };
}

/** graft.json of a head trained on a frozen body's features: the body by path, hash and cut. */
export function frozenMeta(meta: GraftMeta, body: FrozenBody, pixels: Preprocessing | undefined): GraftMeta {
  const [h, w, c] = body.info.imageShape;
  return {
    ...meta,
    preprocessing: pixels ?? { inputShape: [h, w, c], description: 'none: raw values' },
    base: { source: body.info.path, cut: { layer: body.info.output, index: body.cutIndex() } },
    body: body.info,
    frozen: [body.info.kind === 'onnx' ? `${body.info.path} (ONNX body, run by onnxruntime)` : `${body.info.path} (tfjs GraphModel body)`],
    recipe: { ...meta.recipe, body: `${body.info.kind} (frozen; warm-up only)` },
  };
}

export interface FrozenTransferOptions extends Omit<TransferOptions, 'finetuneEpochs' | 'unfreeze' | 'preprocessing' | 'cut'> {
  /** The node to cut an ONNX body at when `source` is a path. */
  cut?: string;
  /** Pixel preprocessing for the body (an external graph has no graft.json). */
  preprocessing?: Preprocessing;
}

/**
 * transfer() for a frozen body: its features computed once (train and validation), then the
 * one training path with the warm-up alone; graft.json refers to the body.
 */
export async function transferFrozen(source: string | FrozenBody, data: Dataset, o: FrozenTransferOptions = {}): Promise<Transfer & { body: FrozenBody; featureSeconds: number }> {
  assertTrainable(data);
  const body = typeof source === 'string' ? await OnnxBody.load(source, o.cut) : source;
  const [h, w, c] = body.info.imageShape;
  if (data.sampleShape.join() !== [h, w, c].join()) {
    throw new GraftError('SHAPE_MISMATCH', `${data.source} has samples of shape [${data.sampleShape.join(', ')}]; the body takes [${h}, ${w}, ${c}].`, {
      fix: 'Give images (they are resized to the body\'s input), or data of that shape.' });
  }
  const t0 = Date.now();
  const features = await body.features(data, o.preprocessing);
  const validation = o.validation && await body.features(o.validation, o.preprocessing);
  const featureSeconds = (Date.now() - t0) / 1000;
  const t = await transfer(await frozenBase(body), { ...features, source: data.source }, { ...o, cut: 'features', preprocessing: { inputShape: body.info.featureShape, description: 'the frozen body\'s features' }, validation, finetuneEpochs: 0, diskCache: false });
  t.meta = frozenMeta(t.meta, body, o.preprocessing);
  t.meta.metrics = { ...t.meta.metrics, featureSeconds };
  return { ...t, body, featureSeconds };
}
