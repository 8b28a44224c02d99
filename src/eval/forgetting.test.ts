import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { adoptModel } from '../model/batch-norm.js';
import { distillationLoss, soften } from '../train/distill.js';
import { extendModel } from '../model/extend.js';
import { findOldHead, selectHead } from '../model/multi-head.js';
import { formatForgetting, transferWithForgetting } from './forgetting.js';
import { initBackend } from '../engine/backend.js';
import { loadModel, type LoadedModel } from '../model/load.js';
import { saveModel } from '../model/io.js';
import { transfer } from '../train/transfer.js';
import { loadMnist } from '../data/mnist.js';
import { takePerClass, type Dataset } from '../data/dataset.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';
import { runEpoch } from '../train/loop.js';
import { AdamW } from '../train/optimizer.js';
import { makeRng } from '../data/random.js';

await initBackend();

/** A tiny base pretrained on the old classes t0, t1, with its graft.json-like metadata. */
async function tinyBase(): Promise<LoadedModel> {
  const model = await adoptModel(tinyCnn(2, 4));
  const optimizer = new AdamW();
  const rng = makeRng(2);
  for (let e = 0; e < 8; e++) {
    await runEpoch({ model, data: oldTask(30, 11), preprocessing: PIXELS, groups: [{ layers: model.layers, lrMult: 1 }], optimizer, batchSize: 10, rng, lrAt: () => 1e-2, firstStep: 0 });
  }
  optimizer.dispose();
  return {
    model, source: 'tiny',
    meta: { format: 'graft/1', classNames: ['t0', 't1'], preprocessing: PIXELS, heads: [{ name: 'old', outputLayer: 'old_output', classNames: ['t0', 't1'], layers: [] }], versions: {}, createdAt: '' },
  };
}

/** New task: textures t2, t3 (relabelled copies of the texture fixture). */
function newTask(perClass: number, seed: number): Dataset {
  const d = textureImages(perClass, 4, seed);
  const keep = Array.from(d.labels.keys()).filter((i) => d.labels[i] >= 2);
  const s = 64;
  const x = new Float32Array(keep.length * s);
  keep.forEach((j, i) => x.set(d.x.subarray(j * s, (j + 1) * s), i * s));
  return { x, sampleShape: [8, 8, 1], labels: Int32Array.from(keep, (j) => d.labels[j] - 2), classNames: ['t2', 't3'], source: 'new textures' };
}

function oldTask(perClass: number, seed: number): Dataset {
  return { ...textureImages(perClass, 2, seed), classNames: ['t0', 't1'] };
}

test('with a frozen body the saved multi-head model\'s old output is bit-identical to the original model', async () => {
  const base = await tinyBase();
  const x = tf.randomUniform([6, 8, 8, 1], 0, 1, 'float32', 9);
  const original = (base.model.predict(x) as tf.Tensor).dataSync().slice();
  const t = await transfer(base, newTask(10, 2), { keepOld: 'head', unfreeze: 'none', warmup: 'sgd', warmupEpochs: 2, batchSize: 8 });
  assert.equal(t.model.outputs.length, 2);
  assert.deepEqual(t.meta.heads.map((h) => [h.name, h.outputLayer, h.classNames]), [['new', 'head_output', ['t2', 't3']], ['old', 'old_output', ['t0', 't1']]]);
  const dir = join(await mkdtemp(join(tmpdir(), 'graft-mh-')), 'm');
  await saveModel(t.model, dir, t.meta);
  const loaded = await loadModel(dir);
  assert.deepEqual(loaded.model.outputNames, ['head_output', 'old_output']);
  const old = selectHead(loaded.model, loaded.meta!, 'old');
  assert.deepEqual(old.classNames, ['t0', 't1']);
  const after = (old.model.predict(x) as tf.Tensor).dataSync();
  assert.ok(Buffer.from(after.buffer).equals(Buffer.from(original.buffer)), 'old head outputs changed');
  assert.throws(() => selectHead(loaded.model, loaded.meta!, 'older'), { code: 'BAD_OPTION' });
  x.dispose();
});

test('forgetting report: exact with a frozen body; measured before and after otherwise', async () => {
  const frozen = await transferWithForgetting(await tinyBase(), newTask(10, 3), { oldData: oldTask(10, 5), keepOld: 'head', unfreeze: 'none', warmup: 'sgd', warmupEpochs: 2, batchSize: 8, validationSplit: 0.1 });
  assert.equal(frozen.forgetting.oldTask.accuracyAfter, frozen.forgetting.oldTask.accuracyBefore);
  assert.equal(frozen.forgetting.oldTask.agreementAfter, 1);
  assert.equal(frozen.forgetting.oldTask.samples, 20);
  assert.ok(frozen.forgetting.newTask!.accuracyAfter >= 0 && frozen.forgetting.newTask!.accuracyAfter <= 1);
  assert.deepEqual(frozen.meta.forgetting, frozen.forgetting, 'saved in graft.json');
  const moved = await transferWithForgetting(await tinyBase(), newTask(10, 3), { oldData: oldTask(10, 5), warmup: 'sgd', keepBetter: false, warmupEpochs: 1, finetuneEpochs: 3, lr: 0.05, lrRatio: 1, batchSize: 8 });
  assert.ok(moved.forgetting.oldTask.agreementAfter <= 1);
  assert.match(formatForgetting(moved.forgetting), /old task accuracy\s+[\d.]+%\s+[\d.]+%/);
});

test('distillation: soften matches softmax(logits / T), and the loss is smallest at the target', () => {
  const logits = tf.tensor2d([[2, 0.5, -1], [0, 1, 3]]);
  const probs = tf.softmax(logits);
  const viaProbs = soften(probs, 2).arraySync() as number[][];
  const direct = tf.softmax(tf.div(logits, 2)).arraySync() as number[][];
  viaProbs.flat().forEach((v, i) => assert.ok(Math.abs(v - direct.flat()[i]) < 1e-5));
  const atTarget = distillationLoss(probs, probs, 2).dataSync()[0];
  const off = distillationLoss(tf.softmax(tf.tensor2d([[0, 0, 0], [3, 1, 0]])), probs, 2).dataSync()[0];
  assert.ok(atTarget < off);
});

test('LwF keeps the old digits far better than plain fine-tuning with the same recipe (MNIST, digits-cnn)', async () => {
  const train = takePerClass(await loadMnist('train', [5, 6, 7, 8, 9]), 100, 1);
  const old = takePerClass(await loadMnist('test', [0, 1, 2, 3, 4]), 100, 2);
  // No dropout: with seeded initialisers, splits and shuffles the run is then deterministic.
  const recipe = { warmup: 'sgd' as const, keepBetter: false, warmupEpochs: 2, finetuneEpochs: 3, lr: 5e-3, lrRatio: 1, seed: 4, oldData: old, head: { dropout: 0 }, batchNormStatistics: 'update' as const };
  const plain = await transferWithForgetting(await loadModel('digits-cnn'), train, { ...recipe, keepOld: 'head' });
  const lwf = await transferWithForgetting(await loadModel('digits-cnn'), train, { ...recipe, keepOld: 'lwf' });
  assert.equal(lwf.meta.recipe?.keepOld, 'lwf');
  console.log('old-task agreement: plain', plain.forgetting.oldTask.agreementAfter, 'lwf', lwf.forgetting.oldTask.agreementAfter);
  assert.ok(plain.forgetting.oldTask.accuracyBefore > 0.99);
  assert.ok(plain.forgetting.oldTask.agreementAfter < 0.9, `plain fine-tuning at this LR should forget: ${plain.forgetting.oldTask.agreementAfter}`);
  assert.ok(lwf.forgetting.oldTask.agreementAfter > plain.forgetting.oldTask.agreementAfter + 0.1,
    `LwF agreement ${lwf.forgetting.oldTask.agreementAfter} vs plain ${plain.forgetting.oldTask.agreementAfter}`);
  assert.ok(lwf.forgetting.newTask!.accuracyAfter > 0.8, `LwF new-task accuracy ${lwf.forgetting.newTask!.accuracyAfter}`);
});

test('EWC keeps the old digits far better than plain fine-tuning with the same recipe, and needs old data', async () => {
  const train = takePerClass(await loadMnist('train', [5, 6, 7, 8, 9]), 100, 1);
  const old = takePerClass(await loadMnist('test', [0, 1, 2, 3, 4]), 100, 2);
  const recipe = { warmup: 'sgd' as const, keepBetter: false, warmupEpochs: 2, finetuneEpochs: 3, lr: 5e-3, lrRatio: 1, seed: 4, oldData: old, head: { dropout: 0 }, batchNormStatistics: 'update' as const };
  const plain = await transferWithForgetting(await loadModel('digits-cnn'), train, { ...recipe, keepOld: 'head' });
  const ewc = await transferWithForgetting(await loadModel('digits-cnn'), train, { ...recipe, keepOld: 'ewc' });
  console.log('old-task agreement: plain', plain.forgetting.oldTask.agreementAfter, 'ewc', ewc.forgetting.oldTask.agreementAfter);
  assert.equal(ewc.meta.recipe?.keepOld, 'ewc');
  assert.equal(ewc.model.outputs.length, 2, 'the old head is kept as a second output');
  assert.ok(ewc.forgetting.oldTask.agreementAfter > plain.forgetting.oldTask.agreementAfter + 0.1);
  assert.ok(ewc.forgetting.newTask!.accuracyAfter > 0.8, `EWC new-task accuracy ${ewc.forgetting.newTask!.accuracyAfter}`);
  await assert.rejects(transfer(await loadModel('digits-cnn'), train, { keepOld: 'ewc' }), { code: 'BAD_OPTION' });
});

test('extend: old-class weights copied from the old head, class names merged, replay accepted', async () => {
  const base = await tinyBase();
  const old = findOldHead(base);
  const { grafted, classNames } = extendModel(base, old, ['t2', 't3']);
  assert.deepEqual(classNames, ['t0', 't1', 't2', 't3']);
  const [k, b] = grafted.head.layers[0].getWeights();
  const [ok, ob] = base.model.getLayer('old_output').getWeights();
  assert.deepEqual(Array.from(tf.slice(k, [0, 0], [-1, 2]).dataSync()), Array.from(ok.dataSync()));
  assert.deepEqual(Array.from(tf.slice(b, [0], [2]).dataSync()), Array.from(ob.dataSync()));
  assert.deepEqual(Array.from(tf.slice(b, [2], [2]).dataSync()), [0, 0]);
  const t = await transfer(await tinyBase(), newTask(10, 8), { extend: true, replay: 4, oldData: oldTask(10, 9), warmupEpochs: 1, finetuneEpochs: 1, batchSize: 8 });
  assert.deepEqual(t.meta.classNames, ['t0', 't1', 't2', 't3']);
  assert.equal(t.model.outputs[0].shape[1], 4);
});

test('keep-old errors come before any training', async () => {
  const base = await tinyBase();
  const wrongOld = { ...oldTask(5, 1), classNames: ['t0', 'zebra'] };
  await assert.rejects(transferWithForgetting(base, newTask(5, 1), { oldData: wrongOld, keepOld: 'head' }), { code: 'CLASS_MISMATCH' });
  const input = tfl.input({ shape: [8, 8, 1] });
  const flat = tfl.layers.flatten().apply(input) as tfl.SymbolicTensor;
  const regression = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 1, name: 'value' }).apply(flat) as tfl.SymbolicTensor });
  await assert.rejects(transfer({ model: regression, source: 'regression' }, newTask(5, 1), { extend: true }), (e: Error & { code?: string }) => e.code === 'BAD_MODEL' && /not a softmax classifier/.test(e.message));
  await assert.rejects(transfer(base, newTask(5, 1), { keepOld: 'lwf', replay: 3 }), { code: 'BAD_OPTION' });
});

test('EWC leaves no tensors behind', async () => {
  const { fisherDiagonal, ewcLoss } = await import('../train/ewc.js');
  const base = await tinyBase();
  const before = tf.memory().numTensors;
  const e = fisherDiagonal(base.model, base.model.layers.slice(1, 4), oldTask(4, 1), PIXELS, 8);
  assert.ok(e.fisher.size > 0);
  const x = tf.zeros([2, 8, 8, 1]);
  tf.dispose(tf.tidy(() => ewcLoss(e, 1)({ outputs: [base.model.apply(x) as tf.Tensor], labels: tf.tensor1d([0, 1], 'int32'), indices: [0, 1] })));
  x.dispose();
  e.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('the forgetting report works without a validation split (no new-task figures then)', async () => {
  const r = await transferWithForgetting(await tinyBase(), newTask(6, 3), { oldData: oldTask(6, 5), keepOld: 'head', unfreeze: 'none', warmupEpochs: 1, batchSize: 8, validationSplit: 0 });
  assert.equal(r.forgetting.newTask, null);
  assert.equal(r.forgetting.oldTask.accuracyAfter, r.forgetting.oldTask.accuracyBefore);
});
