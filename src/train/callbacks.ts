// The callbacks of a training phase (runPhase): small pieces, each with its own state, that
// fineTune composes and a user can compose differently.
//   earlyStopping: ends the phase when the validation loss (or, without validation data, the
//     training loss) stops falling; with keepBest, ends it with the best epoch's weights.
//   nanGuard: a non-finite loss ends the phase with the weights of the last good epoch end.
//   checkpoints: saves the state each epoch end and every few minutes inside long epochs.
//   unfreezeSchedule: opens layer groups one by one (gradual unfreezing).
//   progress: the plain progress functions (PhaseHooks) as a callback.

import * as tf from '@tensorflow/tfjs-core';
import { GraftError } from '../errors.js';
import { openStages, setTrainable } from '../model/freeze.js';
import type { Layer } from '../model/layers.js';
import type { PhaseCallback, PhaseControl, PhaseHooks, PhaseInfo, TrainingState } from './phase.js';
import { restoreWeights, snapshotWeights } from './weights.js';

type Snapshot = Map<string, tf.Tensor>;
const free = (s: Snapshot | undefined) => { if (s) tf.dispose([...s.values()]); };

export interface EarlyStoppingOptions {
  /** Epochs without a fall of the validation loss before the phase ends. */
  patience: number;
  /** End with the weights of the epoch of lowest validation loss (when that was not the last). */
  keepBest?: boolean;
  /**
   * Without validation data: end when the training loss has not fallen by a relative
   * `tolerance` (and by 0.001 at least) for `patience` epochs.
   */
  plateau?: { patience: number; tolerance: number };
  /** The smallest fall of the validation loss that counts (default 1e-4). */
  minDelta?: number;
}

export function earlyStopping(o: EarlyStoppingOptions): PhaseCallback {
  if (!(o.patience >= 1)) throw new GraftError('BAD_OPTION', `earlyStopping: patience must be at least 1; got ${o.patience}.`);
  const minDelta = o.minDelta ?? 1e-4;
  let best = Infinity;
  let sinceBest = 0;
  let bestWeights: Snapshot | undefined;
  let bestEpoch: number | undefined;
  let lastEpoch = 0;
  return {
    name: 'early-stopping',
    state: () => ({ best, sinceBest }),
    restore: (s) => {
      const v = s as { best?: number; sinceBest?: number };
      best = v.best ?? Infinity;
      sinceBest = v.sinceBest ?? 0;
    },
    onEpochEnd(record, ctx) {
      lastEpoch = record.epoch;
      if (record.valLoss !== undefined) {
        if (o.keepBest && record.valLoss < best - minDelta) {
          free(bestWeights);
          bestWeights = snapshotWeights(ctx.layers);
          bestEpoch = record.epoch;
        }
        if (record.valLoss < best - minDelta) { best = record.valLoss; sinceBest = 0; } else if (++sinceBest >= o.patience) ctx.stop('validation');
      } else if (o.plateau) {
        if (best === Infinity || record.loss < best - Math.max(best * o.plateau.tolerance, 1e-3)) { best = record.loss; sinceBest = 0; } else if (++sinceBest >= o.plateau.patience) ctx.stop('plateau');
      }
    },
    onPhaseEnd(summary, ctx) {
      if (!bestWeights || summary.diverged || bestEpoch === undefined || bestEpoch === lastEpoch) return;
      restoreWeights(ctx.layers, bestWeights);
      return { ...summary, bestEpoch };
    },
    dispose() { free(bestWeights); bestWeights = undefined; },
  };
}

/** A non-finite loss ends the phase with the weights of the last good epoch end (summary.diverged says where). */
export function nanGuard(): PhaseCallback {
  let lastGood: Snapshot | undefined;
  return {
    name: 'nan-guard',
    setup(ctx) { lastGood = snapshotWeights(ctx.layers); },
    onEpochEnd(_record, ctx) { free(lastGood); lastGood = snapshotWeights(ctx.layers); },
    onDiverged(_e, ctx) {
      if (!lastGood) return false;
      restoreWeights(ctx.layers, lastGood);
      return true;
    },
    dispose() { free(lastGood); lastGood = undefined; },
  };
}

/** Saves the state (`save` writes it with the weights) at each epoch end and, inside long epochs, every `everyMinutes`. */
export function checkpoints(save: (state: TrainingState) => Promise<void>, options: { everyMinutes?: number } = {}): PhaseCallback {
  const everyMs = (options.everyMinutes ?? 0) * 60000;
  let last = Date.now();
  return {
    name: 'checkpoints',
    onPhaseStart() { last = Date.now(); },
    wantsPause: () => everyMs > 0 && Date.now() - last > everyMs,
    async onPause(state) { await save(state); last = Date.now(); },
    async onEpochEnd(_record, ctx) { await save(ctx.state()); last = Date.now(); },
  };
}

/** fineTune's checkpoint control as a callback, or none. */
export function controlCheckpoints(control: PhaseControl | undefined): PhaseCallback[] {
  return control?.checkpoint ? [checkpoints(control.checkpoint, { everyMinutes: control.checkpointEveryMinutes })] : [];
}

/**
 * Gradual unfreezing: `stages` are body layer groups, top first. Epoch e of E trains the first
 * openStages(e, E, stages.length) of them (and the head); the rest stay frozen.
 */
export function unfreezeSchedule(stages: Layer[][]): PhaseCallback {
  let open = -1;
  const apply = (epoch: number, epochs: number): boolean => {
    const n = openStages(epoch, epochs, stages.length);
    if (n === open) return false;
    stages.forEach((layers, i) => setTrainable(layers, i < n));
    open = n;
    return true;
  };
  return {
    name: 'unfreeze-schedule',
    setup(ctx) { apply(ctx.epoch, ctx.options.epochs); },
    describe(info: PhaseInfo, ctx) {
      const out: { epoch: number; opens: string[] }[] = [];
      let was = 0;
      for (let e = 1; e <= ctx.options.epochs; e++) {
        const n = openStages(e, ctx.options.epochs, stages.length);
        if (n > was) out.push({ epoch: e, opens: stages.slice(was, n).flat().filter((l) => l.weights.length).map((l) => l.name) });
        was = n;
      }
      return { ...info, unfreezeSchedule: out };
    },
    onEpochStart: (ctx) => apply(ctx.epoch, ctx.options.epochs),
  };
}

/** The plain progress functions as a callback. */
export function progress(hooks: PhaseHooks): PhaseCallback {
  return {
    name: 'progress',
    onPhaseStart: (info) => hooks.onPhaseStart?.(info),
    onBatch: (p) => hooks.onBatch?.(p),
    onEpochEnd: (record) => hooks.onEpochEnd?.(record),
    onPhaseEnd: async (summary) => { await hooks.onPhaseEnd?.(summary); },
  };
}
