// One training phase (warm-up or fine-tune): epochs of the loop with a learning-rate schedule,
// each validated, on the native engine when it supports the model; a stop request honoured
// after the current batch. The rest is callbacks (callbacks.ts): early stopping, checkpoints
// (each epoch end, and every few minutes inside long epochs), the NaN guard, an unfreeze
// schedule, progress. Each keeps its own state, which checkpoints carry.

import type * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../data/dataset.js';
import { GraftError } from '../errors.js';
import { DEFAULTS } from './defaults.js';
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
import { layersOf, variableKeys, variablesByKey } from './weights.js';
import { NativeNet, NativeUnsupported, PRECISIONS, resolvePrecision, type Precision } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { distributed, stopTogether } from '../engine/dist.js';

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
  /** The arithmetic of the native steps: fp32, or bf16 convolutions and matrix products with fp32 master weights (tfjs: fp32). */
  precision?: 'fp32' | 'bf16';
  /** Why that precision: what was asked and what the CPU has, or why auto fell back to fp32. */
  precisionNote?: string;
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
  /** Each callback's own state, by its name. */
  callbacks?: Record<string, unknown>;
  /** Early stopping's state in checkpoints written before callbacks had their own. */
  best?: number;
  sinceBest?: number;
  history: EpochRecord[];
  phases: PhaseSummary[];
  /**
   * Written when a stop came during the keep-better check's folds: nothing of the fine-tune ran,
   * the weights are the warm-up head's. A resumed run redoes the warm-up and the check (both
   * deterministic for a seed), so it reaches the decision the uninterrupted run reaches.
   */
  checkPending?: boolean;
}

/** Plain progress functions (what the CLI and the web page print); `progress()` makes them a callback. */
export interface PhaseHooks {
  onPhaseStart?: (info: PhaseInfo) => void | Promise<void>;
  onBatch?: (p: BatchProgress & { phase: Phase; epoch: number; epochs: number }) => void | Promise<void>;
  onEpochEnd?: (record: EpochRecord) => void | Promise<void>;
  onPhaseEnd?: (summary: PhaseSummary) => void | Promise<void>;
  /** Something the user should hear about mid-phase (precision auto falling back to fp32). */
  onNotice?: (message: string) => void;
}

export interface PhaseControl {
  /** Saves a checkpoint of the state (weights are the caller's to save alongside). */
  checkpoint?: (state: TrainingState) => Promise<void>;
  checkpointEveryMinutes?: number;
  /** True asks training to stop after the current batch, with a checkpoint. */
  shouldStop?: () => boolean;
}

/** What a callback sees of the running phase. */
export interface PhaseContext {
  readonly options: Readonly<PhaseOptions>;
  /** The epoch running or just ended (1-based). */
  readonly epoch: number;
  /** Every layer whose weights the phase may change. */
  readonly layers: Layer[];
  /** The run's history so far, this phase's epochs included. */
  readonly history: EpochRecord[];
  /** Asks the phase to end after this epoch, and says why (early stopping). */
  stop(by: 'validation' | 'plateau'): void;
  readonly stopping: boolean;
  /** The phase's state now, every callback's own state with it: what a checkpoint saves. */
  state(): TrainingState;
}

/**
 * A small piece of training behaviour, as Keras' callbacks and Lightning's are: early stopping,
 * checkpoints, the NaN guard, an unfreeze schedule, progress (callbacks.ts). Each keeps its own
 * state; `state`/`restore` carry it through checkpoints under its `name`.
 */
export interface PhaseCallback {
  readonly name: string;
  /** Before the engine is built: e.g. which layers train in the first epoch. */
  setup?(ctx: PhaseContext): void;
  /** Adds to the phase's description. */
  describe?(info: PhaseInfo, ctx: PhaseContext): PhaseInfo;
  onPhaseStart?(info: PhaseInfo, ctx: PhaseContext): void | Promise<void>;
  /** Before each epoch; true when it changed which layers train (the engine is then rebuilt). */
  onEpochStart?(ctx: PhaseContext): boolean | void;
  onBatch?(p: BatchProgress & { phase: Phase; epoch: number; epochs: number }, ctx: PhaseContext): void | Promise<void>;
  /** Asked after each batch: true pauses the epoch here (onPause runs, then it goes on). */
  wantsPause?(ctx: PhaseContext): boolean;
  onPause?(state: TrainingState, ctx: PhaseContext): void | Promise<void>;
  onEpochEnd?(record: EpochRecord, ctx: PhaseContext): void | Promise<void>;
  /** Something the user should hear about mid-phase (e.g. precision auto falling back to fp32). */
  onNotice?(message: string, ctx: PhaseContext): void;
  /** A non-finite loss: true when the callback handled it (put good weights back); else the error ends the run. */
  onDiverged?(e: DivergedError, ctx: PhaseContext): boolean;
  /** After the last epoch (not after a stop request); may amend the summary. */
  onPhaseEnd?(summary: PhaseSummary, ctx: PhaseContext): PhaseSummary | void | Promise<PhaseSummary | void>;
  /** Frees what it holds; runs however the phase ends. */
  dispose?(): void;
  state?(): unknown;
  restore?(state: unknown): void;
}

export interface PhaseOptions {
  phase: Phase;
  model: tfl.LayersModel;
  /** Single-output model whose accuracy is the validation metric (default: model). */
  evalModel?: tfl.LayersModel;
  /** Every layer whose weights the phase may change, for checkpoints and the NaN guard (default: the model's). */
  layers?: Layer[];
  /** The loss (default: cross-entropy of the first output). */
  loss?: LossFn;
  train: Dataset;
  val?: Dataset;
  preprocessing?: Preprocessing;
  /** What trains, at which fraction of peakLr (layerGroups() makes them). */
  groups: LayerGroup[];
  peakLr: number;
  epochs: number;
  batchSize?: number;
  schedule?: ScheduleName;
  pctStart?: number;
  div?: number;
  finalDiv?: number;
  weightDecay?: number;
  seed?: number;
  /** Whether `train` holds body features rather than images (for the description). */
  usesFeatureCache?: boolean;
  /** Names of the frozen weighted layers (for the description). */
  frozen?: string[];
  /** Go on from a checkpointed state (the caller has put its weights back). */
  resume?: TrainingState;
  classWeights?: Float32Array;
  balanced?: boolean;
  /** Augmentation of each training batch; undefined when off. */
  augment?: AugmentOptions;
  /** 'auto' (default): the native engine when it is built and supports every layer; 'tfjs': never. */
  engine?: 'auto' | 'tfjs';
  /**
   * The native engine's arithmetic: 'fp32', 'bf16' (convolutions and matrix products in bf16,
   * master weights, moments, BatchNorm statistics and the loss in fp32), or 'auto' (bf16 where
   * the CPU has AVX512-BF16 or AMX, else fp32; a phase that diverges in bf16 goes on in fp32).
   * Default: setPrecision's, 'fp32' unless changed. The tfjs engine always runs fp32.
   */
  precision?: Precision;
  /** Label smoothing e of the default cross-entropy: targets (1 - e) one-hot + e / classes. */
  labelSmoothing?: number;
  callbacks?: PhaseCallback[];
  /** True asks the phase to stop after the current batch; callbacks' onPause runs first (checkpoints). */
  shouldStop?: () => boolean;
  /** The run's history and phase summaries so far: this phase appends its epochs to `history`. */
  history?: EpochRecord[];
  phases?: PhaseSummary[];
}

export interface PhaseOutcome {
  summary: PhaseSummary;
  /** Set when a stop request ended the phase; onPause callbacks had the state. */
  interrupted?: TrainingState;
}

async function validate(model: tfl.LayersModel, val: Dataset | undefined, p: Preprocessing | undefined, batchSize: number, precision: Precision) {
  if (!val) return undefined;
  const { values } = await predictAll(model, val, p, batchSize * 2, precision);
  return scoreProbabilities(values, val.labels, val.classNames);
}

type Resolved = PhaseOptions & Required<Pick<PhaseOptions, 'batchSize' | 'schedule' | 'pctStart' | 'div' | 'finalDiv' | 'weightDecay' | 'seed' | 'layers' | 'evalModel' | 'frozen' | 'history' | 'phases' | 'callbacks'>>;

const SCHEDULES: ScheduleName[] = ['one-cycle', 'cosine', 'constant'];

function resolve(o: PhaseOptions): Resolved {
  const bad = (what: string, got: unknown, fix?: string) => new GraftError('BAD_OPTION', `runPhase: ${what}; got ${typeof got === 'string' ? JSON.stringify(got) : String(got)}.`, fix ? { fix } : {});
  if (o.phase !== 'warm-up' && o.phase !== 'fine-tune') throw bad('phase must be "warm-up" or "fine-tune"', o.phase);
  if (!o.train || !(o.train.labels instanceof Int32Array)) throw bad('train must be a Dataset (graft/data loads them)', o.train);
  if (!(typeof o.peakLr === 'number' && Number.isFinite(o.peakLr) && o.peakLr > 0)) throw bad('peakLr must be a finite positive number', o.peakLr, 'Use e.g. 1e-3.');
  if (!(Number.isInteger(o.epochs) && o.epochs >= 1)) throw bad('epochs must be a whole number of at least 1', o.epochs);
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize >= 1)) throw bad('batchSize must be a whole number of at least 1', o.batchSize);
  if (o.weightDecay !== undefined && !(Number.isFinite(o.weightDecay) && o.weightDecay >= 0)) throw bad('weightDecay must be a finite number of at least 0', o.weightDecay);
  if (o.labelSmoothing !== undefined && !(o.labelSmoothing >= 0 && o.labelSmoothing < 1)) throw bad('labelSmoothing must be at least 0 and below 1', o.labelSmoothing);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw bad('seed must be a whole number', o.seed);
  if (o.schedule !== undefined && !SCHEDULES.includes(o.schedule)) throw bad(`schedule must be one of ${SCHEDULES.join(', ')}`, o.schedule);
  if (o.engine !== undefined && o.engine !== 'auto' && o.engine !== 'tfjs') throw bad('engine must be "auto" or "tfjs"', o.engine);
  if (o.precision !== undefined && !PRECISIONS.includes(o.precision)) throw bad(`precision must be one of ${PRECISIONS.join(', ')}`, o.precision);
  if (!Array.isArray(o.groups) || !o.groups.length || o.groups.some((g) => !Array.isArray(g?.layers) || !(Number.isFinite(g.lrMult) && g.lrMult > 0))) {
    throw bad('groups must be a non-empty array of { layers, lrMult } with lrMult a positive fraction of peakLr', o.groups, 'layerGroups() makes them.');
  }
  if (o.callbacks !== undefined && !Array.isArray(o.callbacks)) throw bad('callbacks must be an array of callbacks', o.callbacks);
  const names = (o.callbacks ?? []).map((c) => c?.name);
  if (names.some((n) => typeof n !== 'string' || !n)) throw bad('every callback needs a name (its key in checkpoints)', names.join(', '));
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw bad(`two callbacks are named "${twice}": their states would overwrite each other in checkpoints`, names.join(', '), 'Give each callback its own name.');
  return {
    ...o, batchSize: o.batchSize ?? DEFAULTS.batchSize, schedule: o.schedule ?? DEFAULTS.schedule, pctStart: o.pctStart ?? DEFAULTS.pctStart,
    div: o.div ?? DEFAULTS.div, finalDiv: o.finalDiv ?? DEFAULTS.finalDiv, weightDecay: o.weightDecay ?? DEFAULTS.weightDecay, seed: o.seed ?? DEFAULTS.seed,
    layers: o.layers ?? layersOf(o.model), evalModel: o.evalModel ?? o.model, frozen: o.frozen ?? [], history: o.history ?? [], phases: o.phases ?? [],
    callbacks: o.callbacks ?? [],
  };
}

function phaseInfo(r: Resolved): PhaseInfo {
  const closed = r.groups.flatMap((g) => g.layers.filter((l) => !l.trainable && l.weights.length).map((l) => l.name));
  return {
    phase: r.phase, epochs: r.epochs, batchesPerEpoch: Math.ceil(epochLength(r.train, r.balanced) / r.batchSize),
    trainableLayers: r.groups.flatMap((g) => g.layers.filter((l) => l.trainable && l.weights.length).map((l) => l.name)),
    frozenLayers: [...r.frozen, ...closed.filter((n) => !r.frozen.includes(n))],
    groupLearningRates: r.groups.map((g) => ({ layers: g.layers.map((l) => l.name), lr: r.peakLr * g.lrMult })),
    usesFeatureCache: Boolean(r.usesFeatureCache),
    ...(r.augment ? { augmentation: describeAugment(r.augment) } : {}),
    ...(r.balanced ? { balance: 'sample' as const } : r.classWeights ? { balance: 'weights' as const } : {}),
    ...(r.labelSmoothing ? { labelSmoothing: r.labelSmoothing } : {}),
  };
}

/**
 * The phase's model in the native engine, or why not. The losses that keep the old task (LwF
 * distillation, EWC) run natively through their LossFn.native; only a loss without one needs tfjs.
 */
function nativeFor(r: Resolved, precision: 'fp32' | 'bf16'): { net?: NativeNet; note?: string } {
  if (r.engine === 'tfjs') return { note: 'tfjs engine requested' };
  if (r.loss && !r.loss.native) return { note: 'a custom loss without a native form runs on tfjs' };
  try {
    return { net: new NativeNet(nativePlan(r.model, r.groups), { weightDecay: r.weightDecay, loss: r.loss?.native, labelSmoothing: r.labelSmoothing, precision }) };
  } catch (e) {
    if (e instanceof NativeUnsupported) return { note: e.message };
    throw e;
  }
}

/**
 * One training phase: epochs of AdamW steps over `train` on a learning-rate schedule, each
 * epoch validated on `val`; what else happens (early stopping, checkpoints, the NaN guard,
 * unfreezing, progress) is the callbacks'. A stop request is honoured after the current batch.
 */
export async function runPhase(options: PhaseOptions): Promise<PhaseOutcome> {
  const r = resolve(options);
  const { history, phases, callbacks } = r;
  const saved = r.resume?.callbacks ?? (r.resume ? { 'early-stopping': { best: r.resume.best, sinceBest: r.resume.sinceBest } } : {});
  for (const c of callbacks) if (saved[c.name] !== undefined) c.restore?.(saved[c.name]);
  const optimizer = new AdamW({ weightDecay: r.weightDecay });
  const keys = variableKeys(r.layers);
  let rngState = r.resume?.rngState ?? makeRng(r.seed + (r.phase === 'warm-up' ? 1 : 2)).state();
  let position = r.resume?.position;
  let epoch = (r.resume?.epochsDone ?? 0) + 1;
  let stopBy: PhaseSummary['stoppedBy'];
  let native: NativeNet | undefined;
  // What ctx.state() describes: after an epoch (`done` epochs, none in progress) or a pause.
  let where: { done: number; position?: EpochPosition } = { done: epoch - 1, position };
  const state = (): TrainingState => {
    // The native engine holds the moments while it trains: bring them over first.
    if (native) for (const [v, s] of native.optimizerState()) optimizer.setSlot(v, s);
    const own: Record<string, unknown> = {};
    for (const c of callbacks) if (c.state) own[c.name] = c.state();
    return {
      phase: r.phase, epochsDone: where.done, position: where.position, rngState, optimizer: optimizer.exportState((v) => keys.get(v)),
      callbacks: own, history: history.slice(), phases: phases.slice(),
    };
  };
  const ctx: PhaseContext = {
    options: r, get epoch() { return Math.min(epoch, r.epochs); }, layers: r.layers, history,
    stop: (by) => { stopBy ??= by; }, get stopping() { return stopBy !== undefined; }, state,
  };
  for (const c of callbacks) c.setup?.(ctx);
  let engineNote: string | undefined;
  const wanted = resolvePrecision(r.precision);
  let precision = wanted.precision;
  ({ net: native, note: engineNote } = nativeFor(r, precision));
  if (distributed() && !native) {
    throw new GraftError('UNSUPPORTED', `Data-parallel training runs on the native engine only, and this ${r.phase} phase cannot (${engineNote}).`, {
      fix: 'Train with one worker (drop --workers/--world-size), or change what keeps the phase off the native engine.' });
  }
  // Under auto, a bf16 phase that diverges goes back to the last synced weights and moments and
  // goes on in fp32: the moments are brought over at each sync point for that.
  const canFallBack = () => native?.precision === 'bf16' && wanted.requested === 'auto';
  let info: PhaseInfo = {
    ...phaseInfo(r), engine: native ? 'native' : 'tfjs', ...(engineNote ? { engineNote } : {}),
    precision: native ? precision : 'fp32', precisionNote: native ? wanted.why : `${wanted.why}; the tfjs engine runs fp32`,
  };
  for (const c of callbacks) if (c.describe) info = c.describe(info, ctx);
  const batches = info.batchesPerEpoch;
  for (const c of callbacks) await c.onPhaseStart?.(info, ctx);
  const started = Date.now();
  if (r.resume) optimizer.importState(r.resume.optimizer, variablesByKey(r.layers));
  if (native) for (const v of optimizer.variables()) native.setOptimizerState(v, optimizer.slot(v)!);
  const total = r.epochs * batches;
  const lrAt = (step: number) => r.peakLr * lrFactor(r.schedule, step / total, { pctStart: r.pctStart, div: r.div, finalDiv: r.finalDiv });
  let diverged: Divergence | undefined;
  const finish = async (interrupted?: TrainingState): Promise<PhaseOutcome> => {
    native?.dispose();
    optimizer.dispose();
    let summary: PhaseSummary = {
      ...info, epochsRun: Math.min(epoch, r.epochs), stoppedEarly: stopBy !== undefined && epoch < r.epochs, seconds: (Date.now() - started) / 1000, diverged,
    };
    if (summary.stoppedEarly) summary.stoppedBy = stopBy;
    try {
      if (!interrupted) for (const c of callbacks) summary = (await c.onPhaseEnd?.(summary, ctx)) ?? summary;
    } finally {
      for (const c of callbacks) c.dispose?.();
    }
    return { summary, interrupted };
  };
  try {
    for (; epoch <= r.epochs; epoch++) {
      const t0 = Date.now();
      let rebuild = false;
      for (const c of callbacks) rebuild = Boolean(c.onEpochStart?.(ctx)) || rebuild;
      if (rebuild && native) {
        // The native engine reads what trains when it is built: rebuild it, carrying the AdamW
        // moments over (weights were synced at the epoch end).
        for (const [v, s] of native.optimizerState()) optimizer.setSlot(v, s);
        native.dispose();
        native = nativeFor(r, precision).net!;
        for (const v of optimizer.variables()) native.setOptimizerState(v, optimizer.slot(v)!);
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
            pause: () => Boolean(r.shouldStop?.()) || callbacks.some((c) => c.wantsPause?.(ctx)),
            onBatch: async (p) => { for (const c of callbacks) await c.onBatch?.({ ...p, phase: r.phase, epoch, epochs: r.epochs }, ctx); },
          });
        } catch (e) {
          if (!(e instanceof DivergedError)) throw e;
          if (canFallBack()) {
            // The tfjs model holds the weights of the last sync point (the epoch's start or the
            // last pause), the optimizer the moments: the epoch goes on from there in fp32.
            native!.dispose();
            precision = 'fp32';
            native = nativeFor(r, precision).net!;
            for (const v of optimizer.variables()) native.setOptimizerState(v, optimizer.slot(v)!);
            const why = `auto: bf16 diverged (${e.detail.replace(/\.$/, '')}, epoch ${epoch}, batch ${e.batch}); this phase goes on in fp32 from the epoch's last good point`;
            info = { ...info, precision, precisionNote: why };
            for (const c of callbacks) c.onNotice?.(why, ctx);
            continue;
          }
          let handled = false;
          for (const c of callbacks) handled = Boolean(c.onDiverged?.(e, ctx)) || handled;
          if (!handled) throw e;
          diverged = { phase: r.phase, epoch, batch: e.batch, learningRate: e.learningRate, message: e.detail, fix: e.fix! };
          return await finish();
        }
        // The tfjs model gets the native weights for validation, checkpoints and the NaN guard.
        native?.syncWeights();
        if (canFallBack()) for (const [v, s] of native!.optimizerState()) optimizer.setSlot(v, s);
        if (!res.paused) break;
        position = res.paused;
        where = { done: epoch - 1, position };
        const st = state();
        for (const c of callbacks) await c.onPause?.(st, ctx);
        // In a data-parallel run the workers stop together when any of them was asked to.
        if (stopTogether(Boolean(r.shouldStop?.()))) return await finish(st);
      }
      position = undefined;
      rngState = rng.state();
      const v = await validate(r.evalModel, r.val, r.preprocessing, r.batchSize, precision);
      const record: EpochRecord = {
        phase: r.phase, epoch, loss: res.loss, accuracy: res.accuracy, valLoss: v?.loss, valAccuracy: v?.accuracy,
        peakLearningRate: r.peakLr, seconds: (Date.now() - t0) / 1000,
      };
      history.push(record);
      where = { done: epoch };
      // Callbacks run in order: one that stops the phase (early stopping) comes before the one
      // that checkpoints, so the checkpoint records the phase as done.
      for (const c of callbacks) {
        if (stopBy !== undefined && where.done !== r.epochs) where = { done: r.epochs };
        await c.onEpochEnd?.(record, ctx);
      }
      if (stopBy !== undefined) break;
    }
    return await finish();
  } catch (e) {
    native?.dispose();
    for (const c of callbacks) c.dispose?.();
    throw e;
  }
}
