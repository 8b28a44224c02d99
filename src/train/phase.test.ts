// runPhase as a library user calls it: bad options are refused by name before anything trains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../engine/backend.js';
import { adoptModel } from '../model/batch-norm.js';
import { graft } from '../model/graft.js';
import { freezeBody } from '../model/freeze.js';
import { runPhase, type PhaseOptions } from './phase.js';
import { earlyStopping, nanGuard } from './callbacks.js';
import { layerGroups } from './fine-tune.js';
import { tinyCnn, PIXELS, textureImages } from '../../test/fixtures.js';

await initBackend();

test('runPhase refuses bad options by name (BAD_OPTION) and leaves no tensors behind', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  freezeBody(g);
  const train = textureImages(4);
  const base: PhaseOptions = { phase: 'warm-up', model: g.model, train, preprocessing: PIXELS, groups: [{ layers: g.head.layers, lrMult: 1 }], peakLr: 1e-2, epochs: 1 };
  const before = tf.memory().numTensors;
  const cases: [Partial<PhaseOptions> | Record<string, unknown>, RegExp][] = [
    [{ peakLr: Infinity }, /peakLr/], [{ peakLr: NaN }, /peakLr/], [{ epochs: 0 }, /epochs/], [{ batchSize: 0 }, /batchSize/], [{ batchSize: 2.5 }, /batchSize/],
    [{ weightDecay: -1 }, /weightDecay/], [{ labelSmoothing: 2 }, /labelSmoothing/], [{ schedule: 'bogus' }, /schedule/], [{ phase: 'bogus' }, /phase/],
    [{ engine: 'gpu' }, /engine/], [{ seed: NaN }, /seed/], [{ groups: undefined }, /groups/], [{ groups: [{ layers: g.head.layers, lrMult: 0 }] }, /groups/],
    [{ callbacks: {} }, /callbacks/], [{ callbacks: [{}] }, /name/], [{ callbacks: [nanGuard(), nanGuard()] }, /two callbacks/], [{ train: null }, /train/],
  ];
  for (const [change, why] of cases) {
    await assert.rejects(runPhase({ ...base, ...change } as PhaseOptions), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && why.test(e.message), JSON.stringify(Object.keys(change)));
  }
  assert.throws(() => layerGroups(g.body.layers, g.head.layers, 3, 0.1), /lrRatio must be at least 1/);
  assert.throws(() => layerGroups(g.body.layers, g.head.layers, -2, 10), /groups must be/);
  const out = await runPhase({ ...base, callbacks: [nanGuard(), earlyStopping({ patience: 2 })] });
  assert.equal(out.summary.epochsRun, 1);
  assert.equal(tf.memory().numTensors, before, 'runPhase left tensors behind');
});
