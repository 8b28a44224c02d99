// One training phase (warm-up or fine-tune): epochs of the loop with a schedule, validation,
// early stopping, checkpoints (each epoch end, and every few minutes inside long epochs), a
// stop request honoured after the current batch, and the NaN guard: a non-finite loss ends
// the phase and puts back the weights of the last good epoch end.

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { count, type Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { makeRng } from '../data/random.js';
import type { Layer } from '../model/layers.js';
import type { EpochRecord } from '../model/meta.js';
import { describeAugment, type AugmentOptions } from '../data/augment.js';
import { DivergedError, epochLength, runEpoch, type BatchProgress, type EpochPosition, type LayerGroup, type LossFn } from './loop.js';
import { AdamW, type AdamWState } from './optimizer.js';
import { predictAll } from './predict.js';
import { lrFactor, type ScheduleName } from './schedule.js';
import { scoreProbabilities } from './score.js';
import { restoreWeights, snapshotWeights, variableKeys, variablesByKey } from './weights.js';
import { NativeNet, NativeUnsupported } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { openStages, setTrainable } from '../model/freeze.js';

export type Phase = 'warm-up' | 'fine-tune';

export interface PhaseInfo {
  phase: Phase;
  epochs: number;
  batchesPerEpoch: number;
  trainableLayers: string[];
  frozenLayers: string[];
  /** Peak learning rate of each layer group, body groups first, head last. */
  groupLearningRates: { layers: string[]; lr: number }[];
  usesFeatureCache: boolean;
  /** Image augmentation in words, when on. */
  augmentation?: string;
  /** How class imbalance is handled: class weights or balanced sampling. */
  balance?: 'weights' | 'sample';
  /** 'native': each batch is one call into the libtorch engine; 'tfjs': per-op on the tfjs backend. */
  engine?: 'native' | 'tfjs';
  /** Why the phase does not run natively, when it does not. */
  engineNote?: string;
  /** Set when the head is fitted (L-BFGS) instead of trained by epochs. */
  fit?: 'l-bfgs';
  /** Gradual unfreezing: the weighted body layers each epoch opens (the head trains from the start). */
  unfreezeSchedule?: { epoch: number; opens: string[] }[];
  /** Label smoothing of the cross-entropy, when on. */
  labelSmoothing?: number;
}

export interface Divergence {
  phase: Phase;
  epoch: number;
  batch: number;
  learningRate: number;
  message: string;
  fix: string;
}

export interface PhaseSummary extends PhaseInfo {
  epochsRun: number;
  stoppedEarly: boolean;
  /** What ended the phase early: the validation loss stopped improving, or (no validation data, `plateau`) the training loss did. */
  stoppedBy?: 'validation' | 'plateau';
  seconds: number;
  diverged?: Divergence;
  /** With keepBest: the epoch whose weights the phase ended with, when it was not the last. */
  bestEpoch?: number;
  /** The fitted warm-up's report (L2 strength, cross-validation, convergence). */
  headFit?: import('./head-fit.js').HeadFitReport;
}

/** Where training stands, enough to go on from there in another process. */
export interface TrainingState {
  phase: Phase;
  /** Epochs of this phase finished. */
  epochsDone: number;
  /** Inside the next epoch: batches done and running sums. */
  position?: EpochPosition;
  /** Random generator state at the start of the next (or current) epoch. */
  rngState: number;
  optimizer: AdamWState;
  best: number;
  sinceBest: number;
  history: EpochRecord[];
  phases: PhaseSummary[];
}

export interface PhaseCallbacks {
  onPhaseStart?: (info: PhaseInfo) => void | Promise<void>;
  onBatch?: (p: BatchProgress & { phase: Phase; epoch: number; epochs: number }) => void | Promise<void>;
  onEpochEnd?: (record: EpochRecord) => void | Promise<void>;
  onPhaseEnd?: (summary: PhaseSummary) => void | Promise<void>;
}

export interface PhaseControl {
  /** Saves a checkpoint of the state (weights are the caller's to save alongside). */
  checkpoint?: (state: TrainingState) => Promise<void>;
  checkpointEveryMinutes?: number;
  /** True asks training to stop after the current batch, with a checkpoint. */
  shouldStop?: () => boolean;
}

export interface PhaseRun {
  phase: Phase;
  model: tfl.LayersModel;
  /** Single-output model whose accuracy is the validation metric. */
  evalModel: tfl.LayersModel;
  /** Every layer whose weights the phase may change (for checkpoints and the NaN guard). */
  layers: Layer[];
  loss?: LossFn;
  train: Dataset;
  val?: Dataset;
  preprocessing?: Preprocessing;
  groups: LayerGroup[];
  peakLr: number;
  epochs: number;
  batchSize: number;
  schedule: ScheduleName;
  pctStart: number;
  div: number;
  finalDiv: number;
  weightDecay: number;
  patience: number;
  seed: number;
  usesFeatureCache: boolean;
  frozen: string[];
  resume?: TrainingState;
  classWeights?: Float32Array;
  balanced?: boolean;
  /** Augmentation of each training batch; undefined when off (fineTune drops the identity). */
  augment?: AugmentOptions;
  /** 'auto' (default): the native engine when it is built and supports every layer; 'tfjs': never. */
  engine?: 'auto' | 'tfjs';
  /** End the phase with the weights of its epoch of lowest validation loss (for validation sets large enough to trust). */
  keepBest?: boolean;
  /** Label smoothing e of the default cross-entropy: targets (1 - e) one-hot + e / classes. */
  labelSmoothing?: number;
  /**
   * Without validation data: end the phase when the training loss has not fallen by a relative
   * `tolerance` (and by 0.001 at least) for `patience` epochs: the convergence test of a head
   * trained by steps. The floor ends it too on separable data, whose loss falls forever.
   */
  plateau?: { patience: number; tolerance: number };
  /**
   * Gradual unfreezing: body layer groups, top first. Epoch e trains the first
   * openStages(e, epochs, stages.length) of them (and the head); the rest stay frozen.
   */
  stages?: Layer[][];
}

export interface PhaseOutcome {
  summary: PhaseSummary;
  /** Set when a stop request ended the phase; the state was checkpointed. */
  interrupted?: TrainingState;
}

async function validate(model: tfl.LayersModel, val: Dataset | undefined, p: Preprocessing | undefined, batchSize: number) {
  if (!val) return undefined;
  const { values } = await predictAll(model, val, p, batchSize * 2);
  return scoreProbabilities(values, val.labels, val.classNames);
}

/** Opens the stages of gradual unfreezing that epoch `epoch` trains; returns how many are open. */
function applyStages(r: PhaseRun, epoch: number): number {
  if (!r.stages) return 0;
  const open = openStages(epoch, r.epochs, r.stages.length);
  r.stages.forEach((layers, i) => setTrainable(layers, i < open));
  return open;
}

function unfreezeSchedule(r: PhaseRun): PhaseInfo['unfreezeSchedule'] {
  if (!r.stages) return undefined;
  const out: { epoch: number; opens: string[] }[] = [];
  let was = 0;
  for (let e = 1; e <= r.epochs; e++) {
    const open = openStages(e, r.epochs, r.stages.length);
    if (open > was) out.push({ epoch: e, opens: r.stages.slice(was, open).flat().filter((l) => l.weights.length).map((l) => l.name) });
    was = open;
  }
  return out;
}

export function phaseInfo(r: PhaseRun): PhaseInfo {
  const stagesOpen = r.stages ? openStages(1, r.epochs, r.stages.length) : 0;
  const closed = new Set((r.stages ?? []).slice(stagesOpen).flat().filter((l) => l.weights.length).map((l) => l.name));
  return {
    phase: r.phase, epochs: r.epochs, batchesPerEpoch: Math.ceil(epochLength(r.train, r.balanced) / r.batchSize),
    trainableLayers: r.groups.flatMap((g) => g.layers.filter((l) => l.trainable && l.weights.length && !closed.has(l.name)).map((l) => l.name)),
    frozenLayers: [...r.frozen, ...closed],
    groupLearningRates: r.groups.map((g) => ({ layers: g.layers.map((l) => l.name), lr: r.peakLr * g.lrMult })),
    usesFeatureCache: r.usesFeatureCache,
    ...(r.augment ? { augmentation: describeAugment(r.augment) } : {}),
    ...(r.balanced ? { balance: 'sample' as const } : r.classWeights ? { balance: 'weights' as const } : {}),
    ...(r.stages ? { unfreezeSchedule: unfreezeSchedule(r) } : {}),
    ...(r.labelSmoothing ? { labelSmoothing: r.labelSmoothing } : {}),
  };
}

/**
 * The phase's model in the native engine, or why not. The losses that keep the old task (LwF
 * distillation, EWC) run natively through their LossFn.native; only a loss without one needs tfjs.
 */
function nativeFor(r: PhaseRun): { net?: NativeNet; note?: string } {
  if (r.engine === 'tfjs') return { note: 'tfjs engine requested' };
  if (r.loss && !r.loss.native) return { note: 'a custom loss runs on tfjs' };
  try {
    return { net: new NativeNet(nativePlan(r.model, r.groups), { weightDecay: r.weightDecay, loss: r.loss?.native, labelSmoothing: r.labelSmoothing }) };
  } catch (e) {
    if (e instanceof NativeUnsupported) return { note: e.message };
    throw e;
  }
}

export async function runPhase(r: PhaseRun, history: EpochRecord[], phases: PhaseSummary[], callbacks: PhaseCallbacks = {}, control: PhaseControl = {}): Promise<PhaseOutcome> {
  let stagesOpen = applyStages(r, (r.resume?.epochsDone ?? 0) + 1);
  let { net: native, note: engineNote } = nativeFor(r);
  const info: PhaseInfo = { ...phaseInfo(r), engine: native ? 'native' : 'tfjs', ...(engineNote ? { engineNote } : {}) };
  const batches = info.batchesPerEpoch;
  await callbacks.onPhaseStart?.(info);
  const started = Date.now();
  const optimizer = new AdamW({ weightDecay: r.weightDecay });
  if (r.resume) optimizer.importState(r.resume.optimizer, variablesByKey(r.layers));
  if (native) for (const v of optimizer.variables()) native.setOptimizerState(v, optimizer.slot(v)!);
  const keys = variableKeys(r.layers);
  let rngState = r.resume?.rngState ?? makeRng(r.seed + (r.phase === 'warm-up' ? 1 : 2)).state();
  let position = r.resume?.position;
  let best = r.resume?.best ?? Infinity;
  let sinceBest = r.resume?.sinceBest ?? 0;
  const total = r.epochs * batches;
  const lrAt = (step: number) => r.peakLr * lrFactor(r.schedule, step / total, { pctStart: r.pctStart, div: r.div, finalDiv: r.finalDiv });
  const everyMs = (control.checkpointEveryMinutes ?? 0) * 60000;
  let lastCheckpoint = Date.now();
  let lastGood = snapshotWeights(r.layers);
  let epoch = (r.resume?.epochsDone ?? 0) + 1;
  let stoppedEarly = false;
  let stoppedBy: PhaseSummary['stoppedBy'];
  let diverged: Divergence | undefined;
  const state = (epochsDone: number, pos?: EpochPosition): TrainingState => {
    // The native engine holds the moments while it trains: bring them over first.
    if (native) for (const [v, s] of native.optimizerState()) optimizer.setSlot(v, s);
    return {
      phase: r.phase, epochsDone, position: pos, rngState, optimizer: optimizer.exportState((v) => keys.get(v)), best, sinceBest,
      history: history.slice(), phases: phases.slice(),
    };
  };
  let bestWeights: Map<string, tf.Tensor> | undefined;
  let bestEpoch: number | undefined;
  let lastEpoch = 0;
  const finish = async (interrupted?: TrainingState): Promise<PhaseOutcome> => {
    native?.dispose();
    optimizer.dispose();
    tf.dispose([...lastGood.values()]);
    let kept: number | undefined;
    if (bestWeights && !interrupted && !diverged && bestEpoch !== undefined && bestEpoch !== lastEpoch) {
      restoreWeights(r.layers, bestWeights);
      kept = bestEpoch;
    }
    if (bestWeights) tf.dispose([...bestWeights.values()]);
    const summary: PhaseSummary = { ...info, epochsRun: Math.min(epoch, r.epochs), stoppedEarly, ...(stoppedEarly && stoppedBy ? { stoppedBy } : {}), seconds: (Date.now() - started) / 1000, diverged, ...(kept ? { bestEpoch: kept } : {}) };
    if (!interrupted) await callbacks.onPhaseEnd?.(summary);
    return { summary, interrupted };
  };
  for (; epoch <= r.epochs; epoch++) {
    const t0 = Date.now();
    if (r.stages && openStages(epoch, r.epochs, r.stages.length) !== stagesOpen) {
      // The native engine reads what trains when it is built: rebuild it with the new stage
      // open, carrying the AdamW moments over (weights were synced at the epoch end).
      if (native) for (const [v, s] of native.optimizerState()) optimizer.setSlot(v, s);
      native?.dispose();
      stagesOpen = applyStages(r, epoch);
      if (native) {
        native = nativeFor(r).net!;
        for (const v of optimizer.variables()) native.setOptimizerState(v, optimizer.slot(v)!);
      }
    }
    let res;
    let rng = makeRng(0, rngState);
    for (;;) {
      // rngState stays the epoch's starting state until the epoch is done, so a paused
      // epoch replays the same order and dropout seeds when it goes on.
      rng = makeRng(0, rngState);
      try {
        res = await runEpoch({
          model: r.model, data: r.train, preprocessing: r.preprocessing, groups: r.groups, optimizer, batchSize: r.batchSize,
          rng, lrAt, firstStep: (epoch - 1) * batches, loss: r.loss, start: position,
          classWeights: r.classWeights, balanced: r.balanced, augment: r.augment, native, labelSmoothing: r.labelSmoothing,
          pause: () => Boolean(control.shouldStop?.()) || (everyMs > 0 && Date.now() - lastCheckpoint > everyMs),
          onBatch: (p) => callbacks.onBatch?.({ ...p, phase: r.phase, epoch, epochs: r.epochs }),
        });
      } catch (e) {
        if (!(e instanceof DivergedError)) throw e;
        restoreWeights(r.layers, lastGood);
        diverged = { phase: r.phase, epoch, batch: e.batch, learningRate: e.learningRate, message: e.detail, fix: e.fix! };
        return finish();
      }
      // The tfjs model gets the native weights for validation, checkpoints and the NaN guard.
      native?.syncWeights();
      if (!res.paused) break;
      position = res.paused;
      await control.checkpoint?.(state(epoch - 1, position));
      lastCheckpoint = Date.now();
      if (control.shouldStop?.()) return finish(state(epoch - 1, position));
    }
    position = undefined;
    rngState = rng.state();
    const v = await validate(r.evalModel, r.val, r.preprocessing, r.batchSize);
    const record: EpochRecord = {
      phase: r.phase, epoch, loss: res.loss, accuracy: res.accuracy, valLoss: v?.loss, valAccuracy: v?.accuracy,
      learningRate: r.peakLr, seconds: (Date.now() - t0) / 1000,
    };
    history.push(record);
    await callbacks.onEpochEnd?.(record);
    tf.dispose([...lastGood.values()]);
    lastGood = snapshotWeights(r.layers);
    let stop = false;
    lastEpoch = epoch;
    if (v) {
      if (r.keepBest && v.loss < best - 1e-4) {
        if (bestWeights) tf.dispose([...bestWeights.values()]);
        bestWeights = snapshotWeights(r.layers);
        bestEpoch = epoch;
      }
      if (v.loss < best - 1e-4) { best = v.loss; sinceBest = 0; } else if (++sinceBest >= r.patience) { stoppedEarly = epoch < r.epochs; stoppedBy = 'validation'; stop = true; }
    } else if (r.plateau) {
      if (best === Infinity || res.loss < best - Math.max(best * r.plateau.tolerance, 1e-3)) { best = res.loss; sinceBest = 0; } else if (++sinceBest >= r.plateau.patience) { stoppedEarly = epoch < r.epochs; stoppedBy = 'plateau'; stop = true; }
    }
    await control.checkpoint?.(state(stop ? r.epochs : epoch));
    lastCheckpoint = Date.now();
    if (stop) break;
  }
  return finish();
}
