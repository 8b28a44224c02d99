// Gradual unfreezing (--unfreeze gradual) and label smoothing (--label-smoothing), on tfjs and
// in the native engine.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { adoptModel } from '../model/batch-norm.js';
import { crossEntropy } from './loop.js';
import { fineTune } from './fine-tune.js';
import type { PhaseInfo } from './phase.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { openStages, parseUnfreeze } from '../model/freeze.js';
import { NativeNet, nativeStatus } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();
const native = nativeStatus();
if (!native.available && process.env.GRAFT_NATIVE === 'require') throw new Error(`GRAFT_NATIVE=require but the native engine is ${native.reason}`);

test('gradual unfreezing opens one group more per epoch, and all of them by the last epoch', () => {
  assert.deepEqual([1, 2, 3, 4, 5].map((e) => openStages(e, 5, 3)), [1, 2, 3, 3, 3]);
  assert.deepEqual([1, 2].map((e) => openStages(e, 2, 4)), [2, 4], 'fewer epochs than groups: more at a time, all in the last');
  assert.deepEqual([1].map((e) => openStages(e, 1, 2)), [2]);
  assert.equal(parseUnfreeze('gradual'), 'gradual');
});

const kernel = (g: ReturnType<typeof graft>, name: string) => g.model.getLayer(name).getWeights()[0].dataSync().slice() as Float32Array;
const moved = (a: Float32Array, b: Float32Array) => a.some((v, i) => v !== b[i]);

for (const engine of ['tfjs', 'auto'] as const) {
  test(`gradual unfreezing trains the top group first, then the deeper one (${engine === 'auto' ? 'native engine' : 'tfjs'})`, { skip: engine === 'auto' && !native.available ? `native engine ${native.reason}` : false }, async () => {
    const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3, dropout: 0, seed: 5 } });
    const infos: PhaseInfo[] = [];
    const snaps: Record<string, Float32Array>[] = [];
    const snap = () => ({ c1: kernel(g, 'c1'), c2: kernel(g, 'c2') });
    const before = tf.memory().numTensors;
    const result = await fineTune(g, textureImages(12, 3, 4), {
      preprocessing: PIXELS, warmup: 'sgd', warmupEpochs: 2, finetuneEpochs: 3, keepBetter: false, layerGroups: 3, lrRatio: 2, lr: 1e-2, batchSize: 12,
      unfreeze: 'gradual', engine, validationSplit: 0,
      callbacks: {
        onPhaseStart: (p) => { infos.push(p); if (p.phase === 'fine-tune') snaps.push(snap()); },
        onEpochEnd: (r) => { if (r.phase === 'fine-tune') snaps.push(snap()); },
      },
    });
    const ft = infos[1];
    assert.equal(ft.engine, engine === 'auto' ? 'native' : 'tfjs');
    assert.deepEqual(ft.unfreezeSchedule?.map((s) => [s.epoch, s.opens]), [[1, ['c2', 'bn2']], [2, ['c1', 'bn1']]]);
    assert.ok(ft.frozenLayers.includes('c1') && !ft.trainableLayers.includes('c1'), 'c1 is frozen in the first fine-tune epoch');
    assert.ok(moved(snaps[0].c2, snaps[1].c2), 'epoch 1 trains the top group (c2)');
    assert.ok(!moved(snaps[0].c1, snaps[1].c1), 'epoch 1 leaves the deeper group (c1) as it was');
    assert.ok(moved(snaps[1].c1, snaps[2].c1), 'epoch 2 opens c1');
    assert.ok(moved(snaps[2].c1, snaps[3].c1) && moved(snaps[2].c2, snaps[3].c2), 'epoch 3 trains both');
    assert.ok(g.body.layers.every((l) => l.trainable), 'the body ends unfrozen');
    assert.equal(result.phases[1].epochsRun, 3);
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  });
}

test('label smoothing: the cross-entropy against (1 - e) one-hot + e / k', () => {
  const probs = tf.tensor2d([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]);
  const labels = tf.tensor1d([0, 1], 'int32');
  const e = 0.2;
  const expected = (-((1 - e + e / 3) * Math.log(0.7) + (e / 3) * (Math.log(0.2) + Math.log(0.1)))
    - ((e / 3) * (Math.log(0.1) + Math.log(0.6)) + (1 - e + e / 3) * Math.log(0.3))) / 2;
  const got = crossEntropy(probs, labels, undefined, e);
  assert.ok(Math.abs(got.dataSync()[0] - expected) < 1e-5, `${got.dataSync()[0]} vs ${expected}`);
  const plain = crossEntropy(probs, labels);
  assert.ok(Math.abs(plain.dataSync()[0] - (-(Math.log(0.7) + Math.log(0.3)) / 2)) < 1e-5);
  tf.dispose([probs, labels, got, plain]);
});

test('label smoothing in the native engine gives the tfjs loss, with and without class weights', { skip: native.available ? false : `native engine ${native.reason}` }, async () => {
  const input = tfl.input({ shape: [6] });
  const dense = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) });
  const model = tfl.model({ inputs: input, outputs: dense.apply(input) as tfl.SymbolicTensor });
  const x = Float32Array.from({ length: 5 * 6 }, (_, i) => Math.sin(i * 1.7) * 2);
  const y = Int32Array.of(0, 1, 2, 3, 1);
  for (const weights of [undefined, Float32Array.of(1, 2, 0.5, 1)]) {
    const net = new NativeNet(nativePlan(model, [{ layers: [dense as never] }]), { labelSmoothing: 0.1 });
    const got = net.trainStep(x, y, Float64Array.of(0), 0, weights).loss;
    net.dispose();
    const probs = model.predict(tf.tensor2d(x, [5, 6])) as tf.Tensor;
    const want = crossEntropy(probs, tf.tensor1d(y, 'int32'), weights, 0.1);
    assert.ok(Math.abs(got - want.dataSync()[0]) < 1e-5, `native ${got} vs tfjs ${want.dataSync()[0]}`);
  }
});

test('label smoothing outside [0, 1) and with the keep-old losses is refused', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  await assert.rejects(fineTune(g, textureImages(6), { preprocessing: PIXELS, labelSmoothing: 1 }), { code: 'BAD_OPTION', message: /labelSmoothing must be at least 0 and below 1/ });
  await assert.rejects(fineTune(g, textureImages(6), { preprocessing: PIXELS, labelSmoothing: 0.1, losses: { fineTune: ({ outputs, labels }) => crossEntropy(outputs[0], labels) } }),
    { code: 'BAD_OPTION', message: /keep the old task/ });
});

test('a head with hidden layers on small data trains to its training-loss plateau, not for a fixed few epochs', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3, hidden: [16], dropout: 0, seed: 5 } });
  const losses: number[] = [];
  const result = await fineTune(g, textureImages(10, 3, 6), {
    preprocessing: PIXELS, finetuneEpochs: 0, batchSize: 10, seed: 2, lr: 3e-2,
    callbacks: { onEpochEnd: (r) => { losses.push(r.loss); } },
  });
  const w = result.phases[0];
  assert.equal(result.recipe.warmup, 'sgd');
  assert.match(String(result.recipe.warmupStop), /training-loss plateau/);
  assert.equal(w.stoppedBy, 'plateau', `stopped at the plateau (ran ${w.epochsRun} of ${result.recipe.warmupEpochs} epochs)`);
  assert.ok(w.epochsRun < Number(result.recipe.warmupEpochs));
  assert.ok(w.epochsRun * 3 > 300, `more than the old minimum of 300 steps: ${w.epochsRun} epochs of 3 steps`);
  const end = losses[losses.length - 1];
  assert.ok(end < 0.05, `the training loss converged on separable features: ${end}`);
  assert.ok(end <= Math.min(...losses) * 1.05, `ends at its lowest: ${end} vs ${Math.min(...losses)}`);
});
