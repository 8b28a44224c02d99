import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { adoptModel } from '../model/batch-norm.js';
import { fineTune } from './fine-tune.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { findLearningRate } from './lr-find.js';
import { mirrored, predictWithTta } from '../eval/tta.js';
import { layersOf, snapshotWeights } from './weights.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();

test('the learning-rate finder sweeps up, stops when the loss blows up, suggests a decade below the minimum, and puts every weight back', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 4, seed: 5 } });
  const data = textureImages(20, 4, 1);
  await fineTune(g, data, { preprocessing: PIXELS, finetuneEpochs: 0, seed: 1 });
  const before = snapshotWeights(layersOf(g.model));
  const trainable = g.model.layers.map((l) => l.trainable);
  const tensors = tf.memory().numTensors;
  const r = await findLearningRate(g, data, { preprocessing: PIXELS, batchSize: 16, startLr: 1e-5, endLr: 100, steps: 80, seed: 2 });
  assert.equal(tf.memory().numTensors, tensors, 'no tensors left');
  assert.equal(r.stopped, 'diverged', `an LR of 100 blows any net up: ${r.losses.slice(-3)}`);
  assert.ok(r.lrs.length < 80 && r.lrs.length > 10, `${r.lrs.length} steps`);
  for (let i = 1; i < r.lrs.length; i++) assert.ok(r.lrs[i] > r.lrs[i - 1], 'the rate grows every step');
  assert.equal(r.minimumAt, r.lrs[r.losses.indexOf(Math.min(...r.losses))]);
  assert.ok(Math.abs(r.suggestion - r.minimumAt / 10) < 1e-12);
  assert.ok(r.losses.at(-1)! > 2 * Math.min(...r.losses), 'the sweep ends above its minimum');
  const after = snapshotWeights(layersOf(g.model));
  for (const [k, v] of before) assert.deepEqual([...v.dataSync()], [...after.get(k)!.dataSync()], `${k} was not put back`);
  assert.deepEqual(g.model.layers.map((l) => l.trainable), trainable, 'the trainable flags are put back');
  tf.dispose([...before.values(), ...after.values()]);
});

test('test-time augmentation averages an image with its mirror image', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3, seed: 5 } });
  const d = textureImages(4, 3, 3);
  const twice = mirrored(mirrored(d));
  assert.deepEqual([...(twice.x as Float32Array)], [...(d.x as Float32Array)], 'mirroring twice is the identity');
  assert.notDeepEqual([...(mirrored(d).x as Float32Array)], [...(d.x as Float32Array)]);
  const plain = (g.model.predict(tf.tensor(Float32Array.from(d.x as Float32Array, (v) => v / 255), [12, 8, 8, 1])) as tf.Tensor).dataSync();
  const flip = (g.model.predict(tf.tensor(Float32Array.from(mirrored(d).x as Float32Array, (v) => v / 255), [12, 8, 8, 1])) as tf.Tensor).dataSync();
  const tta = await predictWithTta(g.model, d, PIXELS, true);
  tta.forEach((v, i) => assert.ok(Math.abs(v - (plain[i] + flip[i]) / 2) < 1e-5, `prob ${i}`));
});
