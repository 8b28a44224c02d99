// fineTune: Graft's two-phase recipe, composed from the public pieces.
// Phase 1 (warm-up): the body is frozen; its features are computed once and the head trains
// on them. Phase 2 (fine-tune): part or all of the body is unfrozen and trains with the head
// at lower, per-layer-group learning rates (lower for deeper layers), on a one-cycle schedule.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { withDefaults } from '../options.js';
import { assertTrainable, stratifiedSplit, type Dataset } from '../data/dataset.js';
import { assertShape, type Preprocessing } from '../data/preprocess.js';
import { FreezableBatchNormalization } from '../model/batch-norm.js';
import { checkUnfreeze, freezeBody, unfreeze, type UnfreezeSpec } from '../model/freeze.js';
import type { Grafted } from '../model/graft.js';
import type { EpochRecord } from '../model/meta.js';
import type { Layer } from '../model/layers.js';
import { DEFAULTS } from './defaults.js';
import type { LayerGroup, LossFn } from './loop.js';
import { runPhase, type Divergence, type PhaseCallback, type PhaseHooks, type PhaseControl, type PhaseOptions, type PhaseSummary, type TrainingState } from './phase.js';
import { controlCheckpoints, earlyStopping, nanGuard, progress, unfreezeSchedule } from './callbacks.js';
import { layersOf } from './weights.js';

import { featureDataset, predictAll } from './predict.js';
import { scoreProbabilities } from './score.js';
import * as tf from '@tensorflow/tfjs-core';
import { fitBatchSize } from './memory.js';
import { nativeUnsupported } from '../model/native-plan.js';
import { precisionGiven, runPrecision, withPrecision, type Precision } from '../engine/native.js';
import { cachedFeatureDataset, modelFingerprint } from './feature-cache.js';
import { balancedClassWeights, epochLength } from './loop.js';
import { classImbalance } from '../data/dataset.js';
import { augmentedViews, describeAugment, isIdentity, type AugmentOptions } from '../data/augment.js';
import { evenMults, type ScheduleName } from './schedule.js';
import { fitLinearHead, HEAD_FIT_DEFAULTS, headDropoutOff, isLinearHead, type HeadFitReport } from './head-fit.js';
import { crossValidateFineTune, pairedValidation, pairedVerdict, rightOn, type FineTuneCheck } from './keep-better.js';
import { restoreWeights, snapshotWeights } from './weights.js';
import { findLearningRate, type LrFindResult } from './lr-find.js';
import { classCounts, count } from '../data/dataset.js';


export interface FineTuneOptions {
  batchSize?: number;
  warmupEpochs?: number;
  finetuneEpochs?: number;
  lr?: number;
  finetuneLrFactor?: number;
  /** The head's learning rate over the deepest body group's (fastai's lr_mult). */
  lrRatio?: number;
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
  /** Progress functions, called as each phase, batch and epoch starts or ends. */
  callbacks?: PhaseHooks;
  /** Losses other than cross-entropy of the new head (e.g. Learning without Forgetting), per phase. */
  losses?: { warmUp?: LossFn; fineTune?: LossFn };
  /** The model trained in the fine-tune phase when it differs from g.model (e.g. with the old head as a second output). */
  finetuneModel?: tfl.LayersModel;
  /**
   * BatchNorm statistics in the fine-tune phase: 'update' (batch statistics, moving averages
   * updated) or 'keep' (unfrozen BatchNorm layers train gamma and beta but normalise with their
   * pretrained moving statistics, as Keras' fine-tuning guide advises).
   */
  batchNormStatistics?: 'update' | 'keep' | 'auto';
  /** Classes without training samples are allowed (extend mode without replay: the old classes). */
  allowEmptyClasses?: boolean;
  /** Layers outside body and new head that train with the head in the fine-tune phase (e.g. the old head). */
  alsoTrain?: Layer[];
  /** Body features already computed for `train` and `validation` (e.g. by graft compare), reused by the warm-up. */
  cachedFeatures?: { train: Dataset; validation?: Dataset };
  /** Go on from a checkpointed state (the caller has put the checkpoint's weights back). */
  resume?: TrainingState;
  /** Checkpoints and stop requests. */
  control?: PhaseControl;
  /** Class imbalance handling (DEFAULTS.balance). */
  balance?: 'auto' | 'none' | 'weights' | 'sample';
  /**
   * Keep the warm-up's body features in the disk cache (feature-cache.ts) and reuse them when
   * the same body meets the same data again. Off by default in the library; graft train and
   * graft compare turn it on.
   */
  diskCache?: boolean;
  /** How the body is named in `graft cache ls` (e.g. "mobilenet-v2 cut at block_13_expand_relu"). */
  cacheLabel?: string;
  /** Warm-up on this many views of each training image: the original and views - 1 augmented copies (needs augment). Default 1. */
  warmupViews?: number;
  /** Image augmentation in the fine-tune phase (none unless given; `graft train` turns it on for image folders). */
  augment?: AugmentOptions;
  /**
   * The warm-up of a linear head: 'fit' (fitted to convergence by L-BFGS on standardised
   * features, L2 chosen by cross-validation on small data), 'sgd' (epochs of AdamW), or
   * 'auto' (default): 'fit' unless the head has hidden layers or the warm-up has its own loss.
   */
  warmup?: 'auto' | 'fit' | 'sgd';
  /** Run the learning-rate finder after the warm-up and fine-tune at its suggestion (--lr auto). */
  findLr?: boolean;
  /**
   * Label smoothing e of the cross-entropy in the phases trained by gradient steps (targets
   * (1 - e) one-hot + e / classes; 0 = off, the default). The fitted warm-up is regularised by
   * its cross-validated L2 instead.
   */
  labelSmoothing?: number;
  /** Compare the fine-tuned model with the warm-up head and keep it only when it wins by more than chance (McNemar on a validation set, a paired t-test over 3 folds without one; keep-better.ts; default true). */
  keepBetter?: boolean;
  /** Called before each fold of the fine-tune cross-validation on small data. */
  onFineTuneFold?: (fold: number, folds: number) => void | Promise<void>;
  /** 'auto' (default): each phase runs in the native engine when it is built and supports every layer; 'tfjs': per-op tfjs always. */
  engine?: 'auto' | 'tfjs';
  /**
   * The native engine's arithmetic for everything this run computes (features, phases,
   * validation): 'fp32', 'bf16' or 'auto' (bf16 where the CPU has AVX512-BF16 or AMX). Default:
   * the one in force (setPrecision; 'fp32' unless changed). See PhaseOptions.precision.
   */
  precision?: Precision;
}


export interface FineTuneResult {
  history: EpochRecord[];
  phases: PhaseSummary[];
  featureSeconds: number;
  /** Set when the fine-tune phase used a smaller batch to fit the backend's memory, in words. */
  memoryNote?: string;
  /** With diskCache: how many feature sets came from the disk cache and how many were computed. */
  featureCache?: { hits: number; misses: number };
  validation: { accuracy: number; loss: number } | null;
  recipe: Record<string, unknown>;
  /** Set when a stop request ended training; that state was checkpointed. */
  interrupted?: TrainingState;
  /** Set when the loss became NaN or infinite; the weights are those of the last good epoch. */
  diverged?: Divergence;
  /** How the linear head was fitted in the warm-up, when it was. */
  headFit?: HeadFitReport;
  /** Whether fine-tuning beat the warm-up head, and which was kept. */
  fineTuneCheck?: FineTuneCheck;
  /** The learning-rate finder's sweep, with findLr. */
  lrFinder?: LrFindResult;
}

/** True when the smallest class has fewer training samples than the small-data threshold. */
export function isSmallData(d: Dataset): boolean {
  const present = classCounts(d).filter((c) => c > 0);
  return present.length > 0 && Math.min(...present) < HEAD_FIT_DEFAULTS.smallDataPerClass;
}

/**
 * The validation fraction to split off: the one given, else none on small data (a split of a
 * few images decides nothing; cross-validation on the training set does that), else DEFAULTS'.
 */
export function validationFraction(d: Dataset, given: number | undefined): number {
  if (given !== undefined) return given;
  return isSmallData(d) ? 0 : DEFAULTS.validationSplit;
}

type Options = typeof DEFAULTS & FineTuneOptions;

export function setKeepStatistics(layers: Layer[], keep: boolean): void {
  for (const l of layers) if (l instanceof FreezableBatchNormalization) l.keepStatistics = keep;
}

/**
 * Splits the unfrozen weighted body layers into `groups - 1` contiguous groups, the head the
 * last group: `groups` counts the head. Their learning rates (lrMult, a fraction of the peak)
 * run evenly on a log scale from 1 / lrRatio (the deepest) to 1 (the head).
 */
export function layerGroups(bodyLayers: Layer[], headLayers: Layer[], groups: number, lrRatio: number): LayerGroup[] {
  if (!(Number.isInteger(groups) && groups >= 1)) throw new GraftError('BAD_OPTION', `layerGroups: groups must be a whole number of at least 1 (it counts the head); got ${groups}.`);
  if (!(Number.isFinite(lrRatio) && lrRatio >= 1)) {
    throw new GraftError('BAD_OPTION', `layerGroups: lrRatio must be at least 1 (the deepest group trains at the peak rate / lrRatio); got ${lrRatio}.`, { fix: 'Use e.g. 10 or 100; 1 gives every group the same rate.' });
  }
  const open = bodyLayers.filter((l) => l.trainable && l.weights.length > 0);
  const k = Math.max(0, Math.min(groups - 1, open.length));
  const mults = evenMults(1 / lrRatio, 1, k + 1);
  const out: LayerGroup[] = [];
  for (let g = 0; g < k; g++) {
    out.push({ layers: open.slice(Math.floor((g * open.length) / k), Math.floor(((g + 1) * open.length) / k)), lrMult: mults[g] });
  }
  out.push({ layers: headLayers, lrMult: 1 });
  return out;
}

/** 'keep' when the unfrozen BatchNorm layers' moving averages would still hold more than `residue` of their pretrained values after `steps`. */
export function autoBatchNorm(bodyLayers: Layer[], steps: number, residue: number): 'update' | 'keep' {
  const momenta = bodyLayers.filter((l) => l.trainable && l instanceof FreezableBatchNormalization).map((l) => (l as unknown as { momentum: number }).momentum);
  if (!momenta.length) return 'update';
  return Math.max(...momenta) ** steps > residue ? 'keep' : 'update';
}

/** What 'auto' means for this data: class weights when the classes are unequal enough. */
export function resolveBalance(d: Dataset, balance: 'auto' | 'none' | 'weights' | 'sample', ratio: number): 'none' | 'weights' | 'sample' {
  if (balance !== 'auto') return balance;
  return classImbalance(d) >= ratio ? 'weights' : 'none';
}

/**
 * Trains a grafted model on `train`: warm-up of the head on cached body features, then
 * fine-tuning of the unfrozen part of the body. Returns the history of both phases. The
 * composition of public pieces: freezeBody, a warm-up phase, unfreeze, a fine-tune phase.
 */
export async function fineTune(g: Grafted, train: Dataset, options: FineTuneOptions = {}): Promise<FineTuneResult> {
  return withPrecision(options.precision, () => fineTuneRun(g, train, options));
}

async function fineTuneRun(g: Grafted, train: Dataset, options: FineTuneOptions): Promise<FineTuneResult> {
  const r = planRun(g, train, options);
  if (r.o.warmupEpochs > 0 && (!r.resume || r.resume.phase === 'warm-up')) {
    freezeBody(g);
    await warmUp(g, r);
  } else if (r.resume?.phase === 'fine-tune') restoreWarmUpDecisions(g, r);
  if (r.o.finetuneEpochs > 0 && !r.interrupted && !r.diverged) {
    const open = unfreeze(g, r.o.unfreeze);
    for (const l of r.o.alsoTrain ?? []) l.trainable = true;
    // With nothing to unfreeze, a second phase would only repeat the warm-up more slowly.
    if (open.length > 0 || r.o.warmupEpochs === 0) await fineTuneBody(g, r);
  }
  setKeepStatistics(g.body.layers, false);
  return runResult(r);
}

/** A fineTune run: its options, data, decisions and what each phase left. */
interface Run {
  o: Options;
  p?: Preprocessing;
  trainSet: Dataset;
  val?: Dataset;
  history: EpochRecord[];
  phases: PhaseSummary[];
  balance: 'none' | 'weights' | 'sample';
  classWeights?: Float32Array;
  balancing: { classWeights?: Float32Array; balanced: boolean };
  augment?: AugmentOptions;
  views: number;
  recipe: Record<string, unknown>;
  common: Pick<PhaseOptions, 'batchSize' | 'schedule' | 'pctStart' | 'div' | 'finalDiv' | 'weightDecay' | 'seed' | 'engine' | 'labelSmoothing'>;
  resume?: TrainingState;
  fitHead: boolean;
  plateau?: { patience: number; tolerance: number };
  featureSeconds: number;
  featureCache?: { hits: number; misses: number };
  memoryNote?: string;
  interrupted?: TrainingState;
  diverged?: Divergence;
  headFit?: HeadFitReport;
  trainFeatures?: Dataset;
  warmUpVal?: number;
  /** Per validation image, whether the warm-up head got it right (for the check against the fine-tune). */
  warmUpRight?: Uint8Array;
  fineTuneCheck?: FineTuneCheck;
  bestRecord?: EpochRecord;
  lrFinder?: LrFindResult;
}

/** Checks the options and the data, splits off validation data and decides balance, warm-up and the recipe's words. */
function planRun(g: Grafted, train: Dataset, options: FineTuneOptions): Run {
  const o: Options = withDefaults(DEFAULTS, options);
  for (const key of ['batchSize', 'lr', 'lrRatio', 'layerGroups'] as const) {
    if (!(typeof o[key] === 'number' && Number.isFinite(o[key]) && o[key] > 0)) throw new GraftError('BAD_OPTION', `${key} must be a finite positive number; got ${o[key]}.`);
  }
  for (const key of ['warmupEpochs', 'finetuneEpochs', 'batchSize', 'layerGroups'] as const) {
    if (!(Number.isInteger(o[key]) && o[key] >= 0)) throw new GraftError('BAD_OPTION', `${key} must be a whole number of at least 0; got ${o[key]}.`);
  }
  if (o.lrRatio < 1) throw new GraftError('BAD_OPTION', `lrRatio must be at least 1: the deepest body group trains at the fine-tune rate / lrRatio; got ${o.lrRatio}.`, { fix: 'Use e.g. 10 or 100 (1: every group at the same rate).' });
  checkUnfreeze(o.unfreeze);
  const smoothing = o.labelSmoothing ?? 0;
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new GraftError('BAD_OPTION', `labelSmoothing must be at least 0 and below 1; got ${o.labelSmoothing}.`, { fix: 'Use a small value such as 0.1 (or 0 for none).' });
  }
  if (smoothing > 0 && o.losses) {
    throw new GraftError('BAD_OPTION', 'Label smoothing applies to the plain cross-entropy, not to the losses that keep the old task.', {
      fix: 'Leave label smoothing off (labelSmoothing 0) with the losses that keep the old task.' });
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
  const fraction = validationFraction(train, options.validationSplit);
  if (!val && fraction > 0) ({ rest: trainSet, split: val } = stratifiedSplit(train, fraction, o.seed));
  if (o.losses && o.balance === 'weights') {
    throw new GraftError('BAD_OPTION', 'Class weights apply to the plain cross-entropy loss, not to the distillation or penalty losses of keeping the old task.', {
      fix: 'Use balance "sample" instead.' });
  }
  const balance = o.losses && o.balance === 'auto' ? 'none' : resolveBalance(trainSet, o.balance, o.imbalanceRatio);
  const classWeights = balance === 'weights' ? balancedClassWeights(trainSet) : undefined;
  const augment = o.augment && !isIdentity(o.augment) ? o.augment : undefined;
  const views = augment ? Math.max(1, o.warmupViews ?? 1) : 1;
  const recipe: Record<string, unknown> = {
    warmupEpochs: o.warmupEpochs, finetuneEpochs: o.finetuneEpochs, batchSize: o.batchSize, lr: o.lr, finetuneLr: o.lr * o.finetuneLrFactor,
    lrRatio: o.lrRatio, layerGroups: o.layerGroups, schedule: o.schedule, unfreeze: o.unfreeze, weightDecay: o.weightDecay,
    validation: o.validation ? 'given' : fraction, patience: o.patience, seed: o.seed, optimizer: 'AdamW', batchNormStatistics: o.batchNormStatistics,
    balance, augment: augment ? describeAugment(augment) : 'none', warmupViews: o.warmupViews ?? 1,
    ...(smoothing ? { labelSmoothing: smoothing } : {}),
  };
  const fitHead = o.warmup === 'fit' || (o.warmup !== 'sgd' && isLinearHead(g) && !o.losses?.warmUp);
  if (o.warmup === 'fit' && (!isLinearHead(g) || o.losses?.warmUp)) {
    throw new GraftError('BAD_OPTION', 'The fitted warm-up needs a linear head trained on plain cross-entropy.', {
      fix: 'Use warmup "sgd" for heads with hidden layers and for the losses that keep the old task.' });
  }
  recipe.warmup = o.warmupEpochs > 0 ? (fitHead ? 'fit' : 'sgd') : 'none';
  if (fitHead) delete recipe.warmupEpochs;
  let plateau: Run['plateau'];
  if (options.warmupEpochs === undefined && o.warmupEpochs > 0 && !fitHead) {
    const perEpoch = Math.ceil((epochLength(trainSet, balance === 'sample') * views) / o.batchSize);
    o.warmupEpochs = Math.max(o.warmupEpochs, Math.ceil(o.minWarmupSteps / perEpoch));
    if (!val) {
      // No validation data to stop on (small data): train to the training-loss plateau, with
      // a step budget far above what a head on cached features needs.
      o.warmupEpochs = Math.max(o.warmupEpochs, Math.ceil(o.maxWarmupSteps / perEpoch));
      plateau = { patience: Math.ceil(o.plateauSteps / perEpoch), tolerance: o.plateauTolerance };
      recipe.warmupStop = `training-loss plateau (no fall of ${100 * o.plateauTolerance}% or 0.001 in ${plateau.patience} epochs of ${perEpoch} steps), constant learning rate, at most ${o.warmupEpochs} epochs`;
    }
    recipe.warmupEpochs = o.warmupEpochs;
  }
  // A stop during the keep-better check: redo the run from the warm-up (see TrainingState.checkPending).
  const resume = o.resume?.checkPending ? undefined : o.resume;
  if (o.resume?.checkPending) recipe.resumedCheck = 'the stop came during the check of fine-tuning against the warm-up head: this run redid the warm-up and the check';
  return {
    o, p, trainSet, val, history: [...(resume?.history ?? [])], phases: [...(resume?.phases ?? [])], balance, classWeights,
    balancing: { classWeights, balanced: balance === 'sample' }, augment, views, recipe, resume, fitHead, plateau, featureSeconds: 0,
    common: {
      batchSize: o.batchSize, schedule: o.schedule, pctStart: o.pctStart, div: o.div, finalDiv: o.finalDiv, weightDecay: o.weightDecay,
      seed: o.seed, engine: o.engine, labelSmoothing: smoothing || undefined,
    },
  };
}

/**
 * A run resumed in the fine-tune: what the fitted head decided (its report, whether the class
 * weights were kept, the head's dropout off) comes back from the checkpoint's warm-up summary.
 * Without it the resumed fine-tune trained with dropout in the head (epoch 2 loss 0.576 where
 * the uninterrupted run had 0.185), ended 2.6 points away, and said nothing was cross-validated.
 */
function restoreWarmUpDecisions(g: Grafted, r: Run): void {
  const report = [...r.phases].reverse().find((x) => x.phase === 'warm-up')?.headFit;
  if (!report) return;
  headDropoutOff(g);
  adoptHeadFit(r, report);
}

/** The head fit's report and its choice of class weights, which the fine-tune follows. */
function adoptHeadFit(r: Run, report: HeadFitReport): void {
  r.headFit = report;
  if (report.classWeights.startsWith('not')) {
    // The evidence said unweighted: the fine-tune follows the head.
    r.balancing.classWeights = undefined;
    r.balancing.balanced = false;
    r.recipe.balance = 'none (cross-validation preferred it to class weights)';
  }
}

/** Phase 1: the body's features computed once (or read from the disk cache), the head fitted to them or trained by a phase. */
async function warmUp(g: Grafted, r: Run): Promise<void> {
  const { o, p, trainSet, val, history, phases, balance, classWeights, balancing, augment, views } = r;
  const cb = o.callbacks;
  const t0 = Date.now();
  const bodyPrint = o.diskCache && !o.cachedFeatures ? modelFingerprint(g.body.model) : undefined;
  const features = async (d: Dataset) => {
    if (!bodyPrint) return featureDataset(g.body.model, d, p, o.batchSize * 2);
    const c = await cachedFeatureDataset(g.body.model, d, p, o.batchSize * 2, { bodyPrint, describe: o.cacheLabel });
    r.featureCache = { hits: (r.featureCache?.hits ?? 0) + (c.hit ? 1 : 0), misses: (r.featureCache?.misses ?? 0) + (c.hit ? 0 : 1) };
    return c.features;
  };
  const warmupSet = augment && views > 1 ? augmentedViews(trainSet, views, augment, o.seed) : trainSet;
  const trainFeatures = r.trainFeatures = o.cachedFeatures?.train ?? await features(warmupSet);
  const valFeatures = o.cachedFeatures ? o.cachedFeatures.validation : val && await features(val);
  r.featureSeconds = (Date.now() - t0) / 1000;
  const frozen = g.body.layers.filter((l) => l.weights.length).map((l) => l.name);
  if (r.fitHead) {
    const weightsByCv = o.balance === 'auto' && balance !== 'none';
    const out = await fitWarmUp(g, trainFeatures, valFeatures, { seed: o.seed, classWeights: classWeights ?? (balance === 'sample' ? balancedClassWeights(trainSet) : undefined), frozen, weightsByCv }, history, cb);
    phases.push(out.summary);
    adoptHeadFit(r, out.report);
    r.warmUpVal = out.valAccuracy;
    if (valFeatures) r.warmUpRight = await rightOn(g.headModel, valFeatures, undefined);
    return;
  }
  const out = await runPhase({
    ...r.common, phase: 'warm-up', model: g.headModel, evalModel: g.headModel, layers: g.head.layers, loss: o.losses?.warmUp,
    train: trainFeatures, val: valFeatures, groups: [{ layers: g.head.layers, lrMult: 1 }],
    peakLr: o.lr, epochs: o.warmupEpochs, usesFeatureCache: true, ...balancing,
    // A schedule planned over the step budget would still be warming up when the plateau comes.
    ...(r.plateau ? { schedule: 'constant' as const } : {}),
    frozen, resume: r.resume,
    callbacks: [nanGuard(), earlyStopping({ patience: o.patience, plateau: r.plateau }), ...(cb ? [progress(cb)] : []), ...controlCheckpoints(o.control)],
    shouldStop: o.control?.shouldStop, history, phases,
  });
  phases.push(out.summary);
  r.interrupted = out.interrupted;
  r.diverged = out.summary.diverged;
  if (valFeatures && !r.interrupted && !r.diverged) r.warmUpRight = await rightOn(g.headModel, valFeatures, undefined);
}

/** Phase 2: the unfrozen body and the head on layer groups (deeper at lower rates), checked against the warm-up head. */
async function fineTuneBody(g: Grafted, r: Run): Promise<void> {
  const { o, p, trainSet, val, history, phases, balance, balancing, augment, recipe, resume } = r;
  const model = o.finetuneModel ?? g.model;
  // The native engine has no fixed heap; tfjs wasm does (memory.ts).
  const native = o.engine !== 'tfjs' && (!o.losses?.fineTune || Boolean(o.losses.fineTune.native)) && nativeUnsupported(model) === undefined;
  const fitted = native ? { batchSize: o.batchSize, bytesPerSample: 0 } : await fitBatchSize(model, trainSet, p, o.batchSize);
  if (fitted.batchSize < o.batchSize) {
    r.memoryNote = `fine-tune batch size ${fitted.batchSize} instead of ${o.batchSize}: a training step needs ${(fitted.bytesPerSample / 1024 ** 2).toFixed(0)} MB per image and the ${tf.getBackend()} backend's heap is limited`;
    recipe.finetuneBatchSize = fitted.batchSize;
  }
  let peakLr = o.lr * (o.warmupEpochs > 0 ? o.finetuneLrFactor : 1);
  if (o.findLr) {
    const found = r.lrFinder = await findLearningRate(g, trainSet, { preprocessing: p, batchSize: fitted.batchSize, unfreeze: o.unfreeze, seed: o.seed, engine: o.engine });
    peakLr = found.suggestion;
    recipe.finetuneLr = peakLr;
    recipe.lrFinder = { suggestion: found.suggestion, minimumAt: found.minimumAt, steps: found.lrs.length, stopped: found.stopped };
  }
  const groups = layerGroups(g.body.layers, [...g.head.layers, ...(o.alsoTrain ?? [])], o.layerGroups, o.lrRatio);
  // Gradual unfreezing: the body groups open one per epoch from the top.
  const stages = o.unfreeze === 'gradual' ? groups.slice(0, -1).reverse().map((x) => x.layers) : undefined;
  const runFineTune = async (data: Dataset, v: Dataset | undefined, h: EpochRecord[], ph: PhaseSummary[], hooks?: PhaseHooks, control?: PhaseControl) => {
    const steps = o.finetuneEpochs * Math.ceil(epochLength(data, balance === 'sample') / fitted.batchSize);
    const bnStats = o.batchNormStatistics === 'auto' ? autoBatchNorm(g.body.layers, steps, o.autoBatchNormResidue) : o.batchNormStatistics;
    recipe.batchNormStatistics = bnStats;
    setKeepStatistics(g.body.layers, bnStats === 'keep');
    const keepBest = Boolean(v && count(v) >= HEAD_FIT_DEFAULTS.minValidation);
    const callbacks: PhaseCallback[] = [
      ...(stages ? [unfreezeSchedule(stages)] : []), nanGuard(), earlyStopping({ patience: o.patience, keepBest }),
      ...(hooks ? [progress(hooks)] : []), ...controlCheckpoints(control),
    ];
    return runPhase({
      ...r.common, batchSize: fitted.batchSize, phase: 'fine-tune', model, evalModel: g.model, layers: layersOf(model), loss: o.losses?.fineTune,
      train: data, val: v, preprocessing: p, ...balancing, augment, groups,
      peakLr, epochs: o.finetuneEpochs, usesFeatureCache: false,
      frozen: g.body.layers.filter((l) => !l.trainable && l.weights.length).map((l) => l.name),
      resume: resume?.phase === 'fine-tune' ? resume : undefined, callbacks, shouldStop: control?.shouldStop, history: h, phases: ph,
    });
  };
  // Fine-tuning is checked against the warm-up head when there is a plain warm-up head to go back to.
  const check = o.keepBetter && o.warmupEpochs > 0 && !o.losses && !o.finetuneModel && resume?.phase !== 'fine-tune';
  if (!o.keepBetter && o.warmupEpochs > 0) recipe.keepBetterSkipped = 'keep-better is off (--keep-better no, keepBetter: false), so the fine-tuned model was kept as it is';
  let skip = false;
  if (check && !val && r.fitHead && r.trainFeatures && isSmallData(trainSet)) {
    r.fineTuneCheck = await crossValidateFineTune({
      g, layers: layersOf(model), train: trainSet, trainFeatures: r.trainFeatures, preprocessing: p, seed: o.seed, classWeights: balancing.classWeights,
      onFold: o.onFineTuneFold, shouldStop: o.control?.shouldStop,
      fineTune: async (d) => { await runFineTune(d, undefined, [], [], undefined, { shouldStop: o.control?.shouldStop }); },
    });
    skip = r.fineTuneCheck?.kept === 'warm-up';
    if (!r.fineTuneCheck && o.control?.shouldStop?.()) {
      // Stopped in the folds: the weights are the warm-up head's again and no fine-tune step ran.
      // The checkpoint says so, and a resumed run redoes the check (a fine-tune resumed from
      // here skipped it, and kept a model 8 points worse on the test photos).
      const state: TrainingState = { phase: 'fine-tune', epochsDone: 0, rngState: 0, optimizer: { slots: [] }, history: [...history], phases: [...phases], checkPending: true };
      await o.control.checkpoint?.(state);
      recipe.keepBetterSkipped = 'stopped during the check; --resume redoes it';
      r.interrupted = state;
      return;
    }
    if (!r.fineTuneCheck) recipe.keepBetterSkipped = 'a class has fewer than 3 training images, too few for 3 folds';
  }
  const before = check && val && !skip ? snapshotWeights(layersOf(model)) : undefined;
  if (!skip) {
    const out = await runFineTune(trainSet, val, history, phases, o.callbacks, o.control);
    phases.push(out.summary);
    if (out.summary.bestEpoch) {
      r.bestRecord = history.find((x) => x.phase === 'fine-tune' && x.epoch === out.summary.bestEpoch);
      recipe.keptEpoch = out.summary.bestEpoch;
    }
    r.interrupted = out.interrupted;
    r.diverged = out.summary.diverged;
  }
  if (before && val && !r.interrupted && !r.diverged) {
    // Both on the same validation images, image by image (McNemar's test, keep-better.ts).
    if (r.warmUpRight) {
      const v = pairedValidation(r.warmUpRight, await rightOn(model, val, p));
      const { needed: _, ...counts } = v;
      r.fineTuneCheck = { method: 'validation', ...counts, ...pairedVerdict(v) };
      if (r.fineTuneCheck.kept === 'warm-up') restoreWeights(layersOf(model), before);
    }
  }
  if (before) tf.dispose([...before.values()]);
}

function runResult(r: Run): FineTuneResult {
  const { history, fineTuneCheck, val } = r;
  const final = r.bestRecord ?? history[history.length - 1];
  let validation = final?.valAccuracy === undefined ? null : { accuracy: final.valAccuracy, loss: final.valLoss! };
  if (fineTuneCheck?.method === 'validation' && fineTuneCheck.kept === 'warm-up' && val) {
    validation = { accuracy: fineTuneCheck.warmUpAccuracy, loss: [...history].reverse().find((x) => x.phase === 'warm-up')?.valLoss ?? validation!.loss };
  }
  if (fineTuneCheck) r.recipe.kept = fineTuneCheck.kept;
  // The precision of the run's native computations (features, steps, validation), and a phase
  // that went on in another (auto's fallback after a bf16 divergence).
  const p = runPrecision();
  const other = r.phases.find((ph) => ph.engine === 'native' && ph.precision && ph.precision !== p.precision);
  r.recipe.precision = { requested: precisionGiven() ? p.requested : 'default', used: p.precision, why: p.why, ...(other ? { [other.phase]: other.precision, note: other.precisionNote } : {}) };
  return {
    history, phases: r.phases, featureSeconds: r.featureSeconds, featureCache: r.featureCache, memoryNote: r.memoryNote, recipe: r.recipe,
    interrupted: r.interrupted, diverged: r.diverged, validation, headFit: r.headFit, fineTuneCheck, lrFinder: r.lrFinder,
  };
}

/** The fitted warm-up as a phase: the same callbacks and one history record as an SGD warm-up epoch. */
async function fitWarmUp(g: Grafted, train: Dataset, val: Dataset | undefined, a: { seed: number; classWeights?: Float32Array; weightsByCv?: boolean; frozen: string[] },
  history: EpochRecord[], cb?: PhaseHooks): Promise<{ summary: PhaseSummary; report: HeadFitReport; valAccuracy?: number }> {
  const info: PhaseSummary = {
    phase: 'warm-up', epochs: 1, batchesPerEpoch: 1, trainableLayers: g.head.layers.filter((l) => l.weights.length).map((l) => l.name), frozenLayers: a.frozen,
    groupLearningRates: [], usesFeatureCache: true, fit: 'l-bfgs', epochsRun: 1, stoppedEarly: false, seconds: 0,
  };
  await cb?.onPhaseStart?.(info);
  const report = fitLinearHead(g, train, val, a);
  let v: { accuracy: number; loss: number } | undefined;
  if (val) {
    const { values } = await predictAll(g.headModel, val, undefined);
    v = scoreProbabilities(values, val.labels, val.classNames);
  }
  const record: EpochRecord = { phase: 'warm-up', epoch: 1, loss: report.trainLoss, accuracy: report.trainAccuracy, valLoss: v?.loss, valAccuracy: v?.accuracy, peakLearningRate: 0, seconds: report.seconds };
  history.push(record);
  await cb?.onEpochEnd?.(record);
  const summary: PhaseSummary = { ...info, seconds: report.seconds, headFit: report };
  await cb?.onPhaseEnd?.(summary);
  return { summary, report, valAccuracy: v?.accuracy };
}
