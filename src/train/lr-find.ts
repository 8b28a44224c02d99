// The learning-rate finder (Smith 2015; fastai's lr_find): from the current weights, train
// for a few dozen steps while the learning rate grows exponentially, record the smoothed
// loss, stop when it has blown up, put every weight back, and suggest a rate a decade below
// the one where the loss was lowest (where it was still falling fastest).

import * as tf from '@tensorflow/tfjs-core';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { makeRng } from '../data/random.js';
import { freezeBody, unfreeze, type UnfreezeSpec } from '../model/freeze.js';
import type { Grafted } from '../model/graft.js';
import { NativeNet, NativeUnsupported, resolvePrecision } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { DEFAULTS } from './defaults.js';
import { withDefaults } from '../options.js';
import { DivergedError, runEpoch } from './loop.js';
import { AdamW } from './optimizer.js';
import { restoreWeights, snapshotWeights, layersOf } from './weights.js';
import { layerGroups, setKeepStatistics } from './fine-tune.js';

export interface LrFindOptions {
  preprocessing?: Preprocessing;
  batchSize?: number;
  unfreeze?: UnfreezeSpec;
  startLr?: number;
  endLr?: number;
  steps?: number;
  seed?: number;
  engine?: 'auto' | 'tfjs';
}

export interface LrFindResult {
  /** Peak (head) learning rate of each step, and the loss smoothed by an exponential moving average (bias-corrected). */
  lrs: number[];
  losses: number[];
  /** A decade below the rate of the lowest smoothed loss. */
  suggestion: number;
  minimumAt: number;
  /** Why the sweep ended. */
  stopped: 'diverged' | 'steps';
  engine: 'native' | 'tfjs';
}

export const LR_FIND_DEFAULTS = { startLr: 1e-7, endLr: 1, steps: 100, smoothing: 0.98, blowUp: 4 };

export async function findLearningRate(g: Grafted, train: Dataset, options: LrFindOptions = {}): Promise<LrFindResult> {
  const o = withDefaults({ ...LR_FIND_DEFAULTS, batchSize: DEFAULTS.batchSize, unfreeze: DEFAULTS.unfreeze, seed: DEFAULTS.seed }, options);
  const layers = layersOf(g.model);
  const saved = snapshotWeights(layers);
  const trainable = new Map(layers.map((l) => [l, l.trainable]));
  unfreeze(g, o.unfreeze);
  // A sweep is a short run: unfrozen BatchNorm normalises with its pretrained statistics, as
  // the fine-tune's bn-stats auto does for short runs (batch statistics would shift every
  // feature the fitted head was fitted on, and the sweep would start from a broken loss).
  setKeepStatistics(g.body.layers, true);
  const groups = layerGroups(g.body.layers, g.head.layers, DEFAULTS.layerGroups, DEFAULTS.lrRatio);
  let native: NativeNet | undefined;
  if (o.engine !== 'tfjs') {
    try { native = new NativeNet(nativePlan(g.model, groups), { weightDecay: DEFAULTS.weightDecay, precision: resolvePrecision().precision }); } catch (e) { if (!(e instanceof NativeUnsupported)) throw e; }
  }
  const optimizer = new AdamW({ weightDecay: DEFAULTS.weightDecay });
  const lrs: number[] = [];
  const losses: number[] = [];
  const rng = makeRng(o.seed + 5);
  const lrAt = (step: number) => o.startLr * (o.endLr / o.startLr) ** (step / Math.max(1, o.steps - 1));
  let avg = 0;
  let best = Infinity;
  let stopped: LrFindResult['stopped'] = 'steps';
  let step = 0;
  try {
    while (step < o.steps && stopped === 'steps') {
      let prevSum = 0;
      let prevSeen = 0;
      try {
        await runEpoch({
          model: g.model, data: train, preprocessing: o.preprocessing, groups, optimizer, batchSize: o.batchSize, rng, lrAt, firstStep: step, native,
          onBatch: (p) => {
            const seen = Math.min(train.labels.length, p.batch * o.batchSize);
            const batchLoss = (p.loss * seen - prevSum) / (seen - prevSeen);
            prevSum = p.loss * seen;
            prevSeen = seen;
            avg = o.smoothing * avg + (1 - o.smoothing) * batchLoss;
            const smoothed = avg / (1 - o.smoothing ** (step + 1));
            lrs.push(p.learningRate);
            losses.push(smoothed);
            best = Math.min(best, smoothed);
            step++;
            if (step > 5 && (smoothed > o.blowUp * best || !Number.isFinite(smoothed))) stopped = 'diverged';
          },
          pause: () => stopped !== 'steps' || step >= o.steps,
        });
      } catch (e) {
        if (!(e instanceof DivergedError)) throw e;
        stopped = 'diverged';
      }
    }
  } finally {
    native?.dispose();
    optimizer.dispose();
    restoreWeights(layers, saved);
    tf.dispose([...saved.values()]);
    setKeepStatistics(g.body.layers, false);
    freezeBody(g);
    for (const [l, t] of trainable) l.trainable = t;
  }
  const i = losses.indexOf(Math.min(...losses));
  return { lrs, losses, minimumAt: lrs[i], suggestion: lrs[i] / 10, stopped, engine: native ? 'native' : 'tfjs' };
}
