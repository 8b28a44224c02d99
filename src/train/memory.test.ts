import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { adoptModel } from '../model/batch-norm.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { unfreeze } from '../model/freeze.js';
import { loadModel } from '../model/load.js';
import { fineTune } from './fine-tune.js';
import { fitBatchSize, MEMORY_DEFAULTS, stepBytesPerSample } from './memory.js';
import { autoBatchNorm } from './fine-tune.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

test('fitBatchSize measures a step\'s memory per sample, shrinks the batch to the budget, and leaves BatchNorm statistics alone', async () => {
  await initBackend('wasm');
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3 } });
  unfreeze(g, 'all');
  const data = textureImages(4, 3, 1);
  const stats = () => g.model.nonTrainableWeights.map((w) => Array.from(w.read().dataSync()));
  const before = stats();
  const count = tf.memory().numTensors;
  const per = await stepBytesPerSample(g.model, data, PIXELS);
  assert.ok(per > 8 * 8 * 4 * 4, `a step keeps at least the first conv's activations per sample: ${per}`);
  assert.deepEqual(stats(), before, 'moving mean and variance unchanged by the probe');
  assert.equal(tf.memory().numTensors, count, 'no tensors left behind');
  assert.deepEqual(await fitBatchSize(g.model, data, PIXELS, 64), { batchSize: 64, bytesPerSample: per });
  const saved = MEMORY_DEFAULTS.wasmStepBudget;
  try {
    MEMORY_DEFAULTS.wasmStepBudget = per * 5.5;
    assert.equal((await fitBatchSize(g.model, data, PIXELS, 64)).batchSize, 5);
    MEMORY_DEFAULTS.wasmStepBudget = 1;
    assert.equal((await fitBatchSize(g.model, data, PIXELS, 64)).batchSize, 1, 'never below 1');
    // The wasm heap is the tfjs engine's limit; the native engine has none.
    const r = await fineTune(g, textureImages(10, 3, 2), { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 1, finetuneEpochs: 1, batchSize: 8, validationSplit: 0, engine: 'tfjs' });
    assert.match(r.memoryNote ?? '', /batch size 1 instead of 8/);
    assert.equal(r.recipe.finetuneBatchSize, 1);
    assert.equal(r.phases[1].batchesPerEpoch, 30);
  } finally {
    MEMORY_DEFAULTS.wasmStepBudget = saved;
  }
});

test('bn-stats auto keeps the pretrained statistics when the fine-tune is too short for the moving averages to follow', async () => {
  await initBackend();
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3 } });
  unfreeze(g, 'all');
  // tinyCnn's BatchNorm momentum is 0.8: 0.8^13 = 0.055 > 0.05, 0.8^14 = 0.044.
  assert.equal(autoBatchNorm(g.body.layers, 13, 0.05), 'keep');
  assert.equal(autoBatchNorm(g.body.layers, 14, 0.05), 'update');
  const short = await fineTune(g, textureImages(8, 3, 2), { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 1, finetuneEpochs: 1, batchSize: 8, validationSplit: 0 });
  assert.equal(short.recipe.batchNormStatistics, 'keep');
  const g2 = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3 } });
  const long = await fineTune(g2, textureImages(8, 3, 2), { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 1, finetuneEpochs: 5, batchSize: 8, validationSplit: 0 });
  assert.equal(long.recipe.batchNormStatistics, 'update');
  // Small data: the warm-up runs at least minWarmupSteps steps unless its epochs are given.
  const g3 = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3 } });
  const auto = await fineTune(g3, textureImages(10, 3, 2), { preprocessing: PIXELS, warmup: 'sgd', finetuneEpochs: 0, batchSize: 8, validationSplit: 0.2, patience: 1000 });
  assert.equal(auto.recipe.warmupEpochs, 100, '3 batches per epoch -> 100 epochs for 300 steps');
  assert.equal(auto.history.length, 100);
  // Without validation data, it plans maxWarmupSteps and stops at the training-loss plateau.
  const g4 = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 3 } });
  const plateau = await fineTune(g4, textureImages(8, 3, 2), { preprocessing: PIXELS, warmup: 'sgd', finetuneEpochs: 0, batchSize: 8, validationSplit: 0 });
  assert.equal(plateau.recipe.warmupEpochs, 1000, '3 batches per epoch -> 1000 epochs for 3000 steps');
  assert.match(String(plateau.recipe.warmupStop), /plateau/);
  assert.ok(plateau.history.length > 67 && plateau.history.length <= 1000, `${plateau.history.length} epochs: at least the plateau's patience`);
});

test('loadModel inputSize: the body runs at another size; layers tied to the old size are dropped after the cut', async () => {
  await initBackend();
  const small = await loadModel('mobilenet-v2', { inputSize: [64, 80] });
  assert.deepEqual(small.model.inputs[0].shape, [null, 64, 80, 3]);
  assert.equal(small.truncatedAt, 'block_13_expand_relu');
  assert.equal(small.model.outputs[0].name.split('/')[0], 'block_13_expand_relu');
  assert.deepEqual(small.meta?.preprocessing.inputShape, [64, 80, 3]);
  assert.deepEqual(small.meta?.zoo?.suggestedCuts, ['block_13_expand_relu', 'block_6_expand_relu']);
  const y = small.model.predict(tf.zeros([1, 64, 80, 3])) as tf.Tensor;
  assert.deepEqual(y.shape, [1, 4, 5, 576]);
  y.dispose();
  const full = await loadModel('mobilenet-v2');
  const body = (await import('../model/cut.js')).cutBody(full.model, 'block_13_expand_relu').model;
  // The same weights: at 224 the truncated body and the cut of the full model agree.
  const same = await loadModel('mobilenet-v2', { inputSize: [224, 224], keepUpTo: 'block_13_expand_relu' });
  assert.equal(same.truncatedAt, undefined, 'at its own size the whole network builds');
  const x = tf.randomUniform([1, 224, 224, 3], 0, 1, 'float32', 3);
  const a = body.predict(x) as tf.Tensor;
  const b = (await import('../model/cut.js')).cutBody(same.model, 'block_13_expand_relu').model.predict(x) as tf.Tensor;
  assert.ok(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] < 1e-5);
  tf.dispose([a, b, x]);
  const digits = await loadModel('digits-cnn', { inputSize: [32, 32] });
  assert.equal(digits.truncatedAt, undefined, 'global average pooling runs at any size');
  assert.deepEqual(digits.model.outputs[0].shape, [null, 5]);
  await assert.rejects(loadModel('mobilenet-v2', { inputSize: [64, 64], keepUpTo: 'dense_3' }),
    (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /cannot run at 64x64 \(even cut at dense_3\)/.test(e.message));
  await assert.rejects(loadModel('digits-cnn', { inputSize: [4, 4] }), /at least 8/);
});
