// nanGuard: a non-finite loss ends the phase with the weights of the last good epoch end.

import type * as tf from '@tensorflow/tfjs-core';
import type { PhaseCallback } from '../phase.js';
import { disposeSnapshot as free, restoreWeights, snapshotWeights } from '../weights.js';

type Snapshot = Map<string, tf.Tensor>;

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
