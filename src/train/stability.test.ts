import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { adoptModel } from '../model/batch-norm.js';
import { fineTune } from './fine-tune.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

async function weightsAfterRun(seed: number): Promise<Float32Array[]> {
  const g = graft(await adoptModel(tinyCnn(3, 7)), { cut: 'r2', head: { numClasses: 3, hidden: [6], seed } });
  await fineTune(g, textureImages(10, 3, 5), { preprocessing: PIXELS, warmupEpochs: 2, finetuneEpochs: 2, batchSize: 8, seed });
  return g.model.weights.map((w) => (w.read().dataSync() as Float32Array).slice());
}

for (const backend of ['cpu', 'wasm']) {
  test(`--seed repeats a run exactly on the ${backend} backend (dropout included)`, async () => {
    await initBackend(backend);
    const a = await weightsAfterRun(3);
    const b = await weightsAfterRun(3);
    const c = await weightsAfterRun(4);
    a.forEach((w, i) => assert.ok(Buffer.from(w.buffer).equals(Buffer.from(b[i].buffer)), `weight ${i} differs between two runs with seed 3`));
    assert.ok(a.some((w, i) => !Buffer.from(w.buffer).equals(Buffer.from(c[i].buffer))), 'another seed gives another run');
  });
}

test('a 20-epoch run keeps the tensor count flat and memory bounded', async () => {
  await initBackend('wasm');
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3, hidden: [8] } });
  const tensors: number[] = [];
  const rss: number[] = [];
  await fineTune(g, textureImages(20), {
    preprocessing: PIXELS, warmupEpochs: 10, finetuneEpochs: 10, batchSize: 8, patience: 100,
    callbacks: { onEpochEnd: () => { tensors.push(tf.memory().numTensors); rss.push(process.memoryUsage().rss); } },
  });
  assert.equal(tensors.length, 20);
  assert.equal(new Set(tensors.slice(0, 10)).size, 1, `warm-up: ${tensors}`);
  assert.equal(new Set(tensors.slice(10)).size, 1, `fine-tune: ${tensors}`);
  const growth = rss[19] - rss[12];
  assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MB over the last 8 epochs`);
});
