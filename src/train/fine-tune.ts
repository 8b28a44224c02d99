// fineTune: Graft's two-phase recipe, composed from the public pieces.
// Phase 1 (warm-up): the body is frozen; its features are computed once and the head trains
// on them. Phase 2 (fine-tune): part or all of the body is unfrozen and trains with the head
// at lower, per-layer-group learning rates (lower for deeper layers), on a one-cycle schedule.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { withDefaults } from '../options.js';
import { assertTrainable, count, stratifiedSplit, type Dataset } from '../data/dataset.js';
import { assertShape, type Preprocessing } from '../data/preprocess.js';
import { makeRng } from '../data/random.js';
import { FreezableBatchNormalization } from '../model/batch-norm.js';
import { freezeBody, unfreeze, type UnfreezeSpec } from '../model/freeze.js';
import type { Grafted } from '../model/graft.js';
import type { EpochRecord } from '../model/meta.js';
import type { Layer } from '../model/layers.js';
import { scoreProbabilities } from './score.js';
import { DEFAULTS } from './defaults.js';
import { runEpoch, type BatchProgress, type LayerGroup, type LossFn } from './loop.js';
import { AdamW } from './optimizer.js';
import { featureDataset, predictAll } from './predict.js';
import { evenMults, lrFactor, type ScheduleName } from './schedule.js';

export type Phase = 'warm-up' | 'fine-tune';

export interface FineTuneOptions {
  batchSize?: number;
  warmupEpochs?: number;
  finetuneEpochs?: number;
  lr?: number;
  finetuneLrFactor?: number;
  lrMult?: number;
  layerGroups?: number;
  schedule?: ScheduleName;
  pctStart?: number;
  div?: number;
  finalDiv?: number;
  unfreeze?: UnfreezeSpec;
  validationSplit?: number;
  /** Validation data; when given, validationSplit is not used. */
  validation?: Dataset;
  patience?: number;
  weightDecay?: number;
  seed?: number;
  preprocessing?: Preprocessing;
  callbacks?: FineTuneCallbacks;
  /** Losses other than cross-entropy of the new head (e.g. Learning without Forgetting), per phase. */
  losses?: { warmUp?: LossFn; fineTune?: LossFn };
  /** The model trained in the fine-tune phase when it differs from g.model (e.g. with the old head as a second output). */
  fineTuneModel?: tfl.LayersModel;
  /**
   * BatchNorm statistics in the fine-tune phase: 'update' (batch statistics, moving averages
   * updated) or 'keep' (unfrozen BatchNorm layers train gamma and beta but normalise with their
   * pretrained moving statistics, as Keras' fine-tuning guide advises).
   */
  batchNormStatistics?: 'update' | 'keep';
  /** Classes without training samples are allowed (extend mode without replay: the old classes). */
  allowEmptyClasses?: boolean;
  /** Layers outside body and new head that train with the head in the fine-tune phase (e.g. the old head). */
  alsoTrain?: Layer[];
}

export interface PhaseInfo {
  phase: Phase;
  epochs: number;
  batchesPerEpoch: number;
  trainableLayers: string[];
  frozenLayers: string[];
  /** Peak learning rate of each layer group, body groups first, head last. */
  groupLearningRates: { layers: string[]; lr: number }[];
  usesFeatureCache: boolean;
}

export interface PhaseSummary extends PhaseInfo {
  epochsRun: number;
  stoppedEarly: boolean;
  seconds: number;
}

export interface FineTuneCallbacks {
  onPhaseStart?: (info: PhaseInfo) => void | Promise<void>;
  onBatch?: (p: BatchProgress & { phase: Phase; epoch: number; epochs: number }) => void | Promise<void>;
  onEpochEnd?: (record: EpochRecord) => void | Promise<void>;
  onPhaseEnd?: (summary: PhaseSummary) => void | Promise<void>;
}

export interface FineTuneResult {
  history: EpochRecord[];
  phases: PhaseSummary[];
  featureSeconds: number;
  validation: { accuracy: number; loss: number } | null;
  recipe: Record<string, unknown>;
}

type Options = typeof DEFAULTS & FineTuneOptions;

interface PhaseRun {
  phase: Phase;
  model: tfl.LayersModel;
  /** Single-output model whose accuracy is the validation metric. */
  evalModel: tfl.LayersModel;
  loss?: LossFn;
  train: Dataset;
  val?: Dataset;
  preprocessing?: Preprocessing;
  groups: LayerGroup[];
  peakLr: number;
  epochs: number;
  o: Options;
  pctStart: number;
  usesFeatureCache: boolean;
  frozen: string[];
}

function setKeepStatistics(layers: Layer[], keep: boolean): void {
  for (const l of layers) if (l instanceof FreezableBatchNormalization) l.keepStatistics = keep;
}

/** Splits the unfrozen weighted body layers into contiguous groups, the head last. */
export function layerGroups(bodyLayers: Layer[], headLayers: Layer[], groups: number, lrMult: number): LayerGroup[] {
  const open = bodyLayers.filter((l) => l.trainable && l.weights.length > 0);
  const k = Math.max(0, Math.min(groups - 1, open.length));
  const mults = evenMults(1 / lrMult, 1, k + 1);
  const out: LayerGroup[] = [];
  for (let g = 0; g < k; g++) {
    out.push({ layers: open.slice(Math.floor((g * open.length) / k), Math.floor(((g + 1) * open.length) / k)), lrMult: mults[g] });
  }
  out.push({ layers: headLayers, lrMult: 1 });
  return out;
}

async function validate(model: tfl.LayersModel, val: Dataset | undefined, p: Preprocessing | undefined, batchSize: number) {
  if (!val) return undefined;
  const { values } = await predictAll(model, val, p, batchSize * 2);
  return scoreProbabilities(values, val.labels, val.classNames);
}

async function runPhase(r: PhaseRun, history: EpochRecord[], callbacks: FineTuneCallbacks = {}): Promise<PhaseSummary> {
  const { o } = r;
  const batches = Math.ceil(count(r.train) / o.batchSize);
  const info: PhaseInfo = {
    phase: r.phase, epochs: r.epochs, batchesPerEpoch: batches,
    trainableLayers: r.groups.flatMap((g) => g.layers.filter((l) => l.trainable && l.weights.length).map((l) => l.name)),
    frozenLayers: r.frozen,
    groupLearningRates: r.groups.map((g) => ({ layers: g.layers.map((l) => l.name), lr: r.peakLr * g.lrMult })),
    usesFeatureCache: r.usesFeatureCache,
  };
  await callbacks.onPhaseStart?.(info);
  const started = Date.now();
  const optimizer = new AdamW({ weightDecay: o.weightDecay });
  const rng = makeRng(o.seed + (r.phase === 'warm-up' ? 1 : 2));
  const total = r.epochs * batches;
  const lrAt = (step: number) => r.peakLr * lrFactor(o.schedule, step / total, { pctStart: r.pctStart, div: o.div, finalDiv: o.finalDiv });
  let best = Infinity;
  let sinceBest = 0;
  let epoch = 0;
  let stoppedEarly = false;
  try {
    for (epoch = 1; epoch <= r.epochs; epoch++) {
      const t0 = Date.now();
      const res = await runEpoch({
        model: r.model, data: r.train, preprocessing: r.preprocessing, groups: r.groups, optimizer, batchSize: o.batchSize, rng,
        lrAt, firstStep: (epoch - 1) * batches, loss: r.loss,
        onBatch: (p) => callbacks.onBatch?.({ ...p, phase: r.phase, epoch, epochs: r.epochs }),
      });
      const v = await validate(r.evalModel, r.val, r.preprocessing, o.batchSize);
      const record: EpochRecord = {
        phase: r.phase, epoch, loss: res.loss, accuracy: res.accuracy, valLoss: v?.loss, valAccuracy: v?.accuracy,
        learningRate: r.peakLr, seconds: (Date.now() - t0) / 1000,
      };
      history.push(record);
      await callbacks.onEpochEnd?.(record);
      if (v) {
        if (v.loss < best - 1e-4) { best = v.loss; sinceBest = 0; } else if (++sinceBest >= o.patience) { stoppedEarly = epoch < r.epochs; break; }
      }
    }
  } finally {
    optimizer.dispose();
  }
  const summary = { ...info, epochsRun: Math.min(epoch, r.epochs), stoppedEarly, seconds: (Date.now() - started) / 1000 };
  await callbacks.onPhaseEnd?.(summary);
  return summary;
}

/**
 * Trains a grafted model on `train`: warm-up of the head on cached body features, then
 * fine-tuning of the unfrozen part of the body. Returns the history of both phases.
 */
export async function fineTune(g: Grafted, train: Dataset, options: FineTuneOptions = {}): Promise<FineTuneResult> {
  const o: Options = withDefaults(DEFAULTS, options);
  for (const key of ['batchSize', 'lr', 'lrMult', 'layerGroups'] as const) {
    if (!(Number(o[key]) > 0)) throw new GraftError('BAD_OPTION', `${key} must be a positive number; got ${o[key]}.`);
  }
  assertTrainable(train, { allowEmpty: o.allowEmptyClasses });
  const p = o.preprocessing;
  assertShape(train, p, g.model.inputs[0].shape);
  const headClasses = g.model.outputs[0].shape[1];
  if (headClasses !== train.classNames.length) {
    throw new GraftError('CLASS_MISMATCH', `The head has ${headClasses} outputs but ${train.source} has ${train.classNames.length} classes.`, {
      fix: 'Build the head with numClasses equal to the number of classes in the data.' });
  }
  let trainSet = train;
  let val = o.validation;
  if (!val && o.validationSplit > 0) ({ rest: trainSet, split: val } = stratifiedSplit(train, o.validationSplit, o.seed));
  const history: EpochRecord[] = [];
  const phases: PhaseSummary[] = [];
  const cb = o.callbacks;
  const recipe = {
    warmupEpochs: o.warmupEpochs, finetuneEpochs: o.finetuneEpochs, batchSize: o.batchSize, lr: o.lr, finetuneLr: o.lr * o.finetuneLrFactor,
    lrMult: o.lrMult, layerGroups: o.layerGroups, schedule: o.schedule, unfreeze: o.unfreeze, weightDecay: o.weightDecay,
    validation: o.validation ? 'given' : o.validationSplit, patience: o.patience, seed: o.seed, optimizer: 'AdamW', batchNormStatistics: o.batchNormStatistics,
  };

  let featureSeconds = 0;
  if (o.warmupEpochs > 0) {
    freezeBody(g);
    const t0 = Date.now();
    const trainFeatures = await featureDataset(g.body.model, trainSet, p, o.batchSize * 2);
    const valFeatures = val && await featureDataset(g.body.model, val, p, o.batchSize * 2);
    featureSeconds = (Date.now() - t0) / 1000;
    phases.push(await runPhase({
      phase: 'warm-up', model: g.headModel, evalModel: g.headModel, loss: o.losses?.warmUp, train: trainFeatures, val: valFeatures, groups: [{ layers: g.head.layers, lrMult: 1 }],
      peakLr: o.lr, epochs: o.warmupEpochs, o, pctStart: o.pctStart, usesFeatureCache: true,
      frozen: g.body.layers.filter((l) => l.weights.length).map((l) => l.name),
    }, history, cb));
  }
  if (o.finetuneEpochs > 0) {
    const open = unfreeze(g, o.unfreeze);
    for (const l of o.alsoTrain ?? []) l.trainable = true;
    setKeepStatistics(g.body.layers, o.batchNormStatistics === 'keep');
    if (open.length === 0 && o.warmupEpochs > 0) {
      // Nothing to unfreeze: a second phase would only repeat the warm-up more slowly.
    } else {
      phases.push(await runPhase({
        phase: 'fine-tune', model: o.fineTuneModel ?? g.model, evalModel: g.model, loss: o.losses?.fineTune, train: trainSet, val, preprocessing: p,
        groups: layerGroups(g.body.layers, [...g.head.layers, ...(o.alsoTrain ?? [])], o.layerGroups, o.lrMult),
        peakLr: o.lr * (o.warmupEpochs > 0 ? o.finetuneLrFactor : 1), epochs: o.finetuneEpochs, o, pctStart: o.pctStart,
        usesFeatureCache: false, frozen: g.body.layers.filter((l) => !l.trainable && l.weights.length).map((l) => l.name),
      }, history, cb));
    }
  }
  setKeepStatistics(g.body.layers, false);
  const last = history[history.length - 1];
  return {
    history, phases, featureSeconds, recipe,
    validation: last?.valAccuracy === undefined ? null : { accuracy: last.valAccuracy, loss: last.valLoss! },
  };
}
