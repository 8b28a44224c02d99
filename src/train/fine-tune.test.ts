import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { adoptModel } from '../model/batch-norm.js';
import { crossEntropy, type LossFn } from './loop.js';
import { evaluate } from '../eval/evaluate.js';
import { evenMults, lrFactor } from './schedule.js';
import { fineTune, layerGroups } from './fine-tune.js';
import type { PhaseInfo } from './phase.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { unfreeze } from '../model/freeze.js';
import { makeRng } from '../data/random.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();

test('the two-phase recipe learns tiny data far above chance', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 4, dropout: 0, seed: 5 } });
  const phases: PhaseInfo[] = [];
  const result = await fineTune(g, textureImages(40, 4, 1), {
    preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 5, finetuneEpochs: 20, lr: 2e-2, lrRatio: 10, batchSize: 16, seed: 3, validationSplit: 0.1,
    callbacks: { onPhaseStart: (p) => { phases.push(p); } },
  });
  assert.deepEqual(result.phases.map((p) => p.phase), ['warm-up', 'fine-tune']);
  assert.equal(phases[0].usesFeatureCache, true);
  assert.equal(phases[0].trainableLayers.length, 1, 'only the head dense layer trains in the warm-up');
  assert.ok(phases[1].groupLearningRates[0].lr < phases[1].groupLearningRates.at(-1)!.lr, 'deeper layers get lower learning rates');
  const test = await evaluate(g.model, textureImages(25, 4, 99), PIXELS);
  console.log('tiny recipe test accuracy', test.accuracy);
  assert.ok(test.accuracy > 0.85, `test accuracy ${test.accuracy} should be far above chance (0.25)`);
  assert.ok(result.validation && result.validation.accuracy > 0.7);
});

test('tensor count stays flat across epochs and phases', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  const data = textureImages(8);
  const counts: number[] = [];
  await fineTune(g, data, {
    preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 3, finetuneEpochs: 3, batchSize: 8, validationSplit: 0.25,
    callbacks: { onEpochEnd: () => { counts.push(tf.memory().numTensors); } },
  });
  const before = tf.memory().numTensors;
  await fineTune(g, data, { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 2, finetuneEpochs: 2, batchSize: 8 });
  assert.equal(tf.memory().numTensors, before, 'a whole fineTune run leaves no tensors behind');
  assert.equal(new Set(counts.slice(0, 3)).size, 1, `warm-up epochs: ${counts}`);
  assert.equal(new Set(counts.slice(3)).size, 1, `fine-tune epochs: ${counts}`);
});

test('early stopping ends a phase when the validation loss stops improving', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  // Random labels: validation loss cannot keep improving.
  const data = textureImages(10);
  const rng = makeRng(11);
  data.labels = data.labels.map(() => Math.floor(rng() * 3));
  const result = await fineTune(g, data, { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 30, finetuneEpochs: 0, lr: 0.05, patience: 2, batchSize: 6, validationSplit: 0.3 });
  assert.equal(result.phases[0].stoppedEarly, true);
  assert.ok(result.phases[0].epochsRun < 30);
});

test('bad training input is refused before any training', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  const one = textureImages(5, 1);
  await assert.rejects(fineTune(g, one, { preprocessing: PIXELS }), { code: 'BAD_DATA' });
  const four = textureImages(5, 4);
  await assert.rejects(fineTune(g, four, { preprocessing: PIXELS }), { code: 'CLASS_MISMATCH' });
  const wrongShape = { ...textureImages(5), sampleShape: [4, 16, 1] };
  await assert.rejects(fineTune(g, wrongShape, { preprocessing: PIXELS }), { code: 'SHAPE_MISMATCH' });
  await assert.rejects(fineTune(g, textureImages(5), { batchSize: 0 }), { code: 'BAD_OPTION' });
});

test('layer groups split the unfrozen body, deepest first, with geometric learning rates', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  unfreeze(g, 'all');
  const groups = layerGroups(g.body.layers, g.head.layers, 3, 100);
  assert.deepEqual(groups.map((x) => x.layers.map((l) => l.name)), [['c1', 'bn1'], ['c2', 'bn2'], g.head.layers.map((l) => l.name)]);
  assert.deepEqual(groups.map((x) => Number(x.lrMult.toPrecision(6))), [0.01, 0.1, 1]);
  unfreeze(g, { top: 1 });
  assert.deepEqual(layerGroups(g.body.layers, g.head.layers, 3, 100).map((x) => x.layers.length), [1, g.head.layers.length]);
});

test('schedules: one-cycle rises to the peak then anneals; cosine falls to zero; evenMults is geometric', () => {
  const o = { pctStart: 0.3, div: 25, finalDiv: 1e4 };
  assert.ok(Math.abs(lrFactor('one-cycle', 0, o) - 1 / 25) < 1e-12);
  assert.ok(Math.abs(lrFactor('one-cycle', 0.3, o) - 1) < 1e-12);
  assert.ok(Math.abs(lrFactor('one-cycle', 1, o) - 1e-4) < 1e-12);
  assert.ok(lrFactor('one-cycle', 0.15, o) < 1 && lrFactor('one-cycle', 0.6, o) < 1);
  assert.equal(lrFactor('cosine', 0, o), 1);
  assert.ok(lrFactor('cosine', 1, o) < 1e-12);
  assert.deepEqual(evenMults(1e-4, 1e-2, 3).map((v) => Number(v.toPrecision(6))), [1e-4, 1e-3, 1e-2]);
});

test('options given as undefined keep their defaults', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3, dropout: undefined } });
  assert.equal(g.head.options.dropout, 0.2);
  const r = await fineTune(g, textureImages(6), { preprocessing: PIXELS, unfreeze: undefined, lr: undefined, warmupEpochs: 1, finetuneEpochs: 1, batchSize: 6 });
  assert.equal(r.recipe.unfreeze, 'all');
  assert.equal(r.recipe.lr, 2e-3);
});

test('NaN guard: a non-finite loss stops the phase and puts back the last good epoch\'s weights', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3, seed: 1 } });
  let calls = 0;
  let snapshot: Float32Array | undefined;
  // Fine-tune epochs have 3 batches here: the loss turns NaN in the middle of the second epoch.
  const poison: LossFn = ({ outputs, labels }) => (++calls >= 5 ? tf.mul(crossEntropy(outputs[0], labels), NaN) : crossEntropy(outputs[0], labels)) as tf.Scalar;
  const result = await fineTune(g, textureImages(6), {
    preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 1, finetuneEpochs: 3, batchSize: 6, validationSplit: 0, losses: { fineTune: poison },
    callbacks: { onEpochEnd: (r) => { if (r.phase === 'fine-tune') snapshot = (g.model.getLayer('c1').getWeights()[0].dataSync() as Float32Array).slice(); } },
  });
  assert.ok(result.diverged, 'the divergence is reported');
  assert.equal(result.diverged!.phase, 'fine-tune');
  assert.equal(result.diverged!.epoch, 2);
  assert.equal(result.diverged!.batch, 2);
  assert.ok(result.diverged!.learningRate > 0);
  assert.match(result.diverged!.fix, /Lower the learning rate/);
  const now = g.model.getLayer('c1').getWeights()[0].dataSync() as Float32Array;
  assert.ok(now.every(Number.isFinite));
  assert.deepEqual(Array.from(now), Array.from(snapshot!), 'weights are those at the end of fine-tune epoch 1');
  assert.equal(result.history.filter((h) => h.phase === 'fine-tune').length, 1);
});
