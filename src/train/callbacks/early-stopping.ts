// earlyStopping: ends a phase when the validation loss (or, without validation data, the
// training loss) stops falling; with keepBest, ends it with the best epoch's weights. Its state
// (best loss, epochs since) goes into checkpoints.

import type * as tf from '@tensorflow/tfjs-core';
import { GraftError } from '../../errors.js';
import type { PhaseCallback } from '../phase.js';
import { disposeSnapshot as free, restoreWeights, snapshotWeights } from '../weights.js';

type Snapshot = Map<string, tf.Tensor>;

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
