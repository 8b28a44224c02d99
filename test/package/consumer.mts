// A library user's file, type-checked and run by scripts/check-package.mjs in a fresh project
// that installed Graft's tarball. It uses the application's own tfjs: Graft must share it.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend, loadModel, transfer, evaluate, GraftError, DEFAULTS, type Dataset } from 'graft';
import { loadMnist, takePerClass } from 'graft/data';
import { renderDiagram, diagramOfGraft } from 'graft/report';
import { nativeStatus } from 'graft/native';
import { ZOO } from 'graft/bodies';

const fail = (m: string): never => { console.error(`consumer: ${m}`); process.exit(1); };

await initBackend();
if (tf.getBackend() !== 'wasm' && tf.getBackend() !== 'cpu') fail(`the application's tfjs has backend ${tf.getBackend()}`);
const before = tf.memory().numTensors;
const base = await loadModel('digits-cnn');
if (!(base.model instanceof tfl.LayersModel)) fail('the loaded model is not an instance of the application\'s tfjs-layers LayersModel');
if (tf.memory().numTensors <= before) fail('the model\'s weights are not tensors of the application\'s tfjs engine');
const train: Dataset = takePerClass(await loadMnist('train', [5, 6, 7, 8, 9]), 30, 1);
const test: Dataset = takePerClass(await loadMnist('test', [5, 6, 7, 8, 9]), 20, 1);
const t = await transfer(base, train, { finetuneEpochs: 1, seed: 1 });
const e = await evaluate(t.model, test, t.preprocessing);
if (!(e.accuracy > 0.5)) fail(`accuracy ${e.accuracy} after fine-tuning`);
if (!renderDiagram(diagramOfGraft(t.grafted)).startsWith('<svg')) fail('no diagram');
try { await loadModel('/nonexistent/model.json'); fail('no error for a missing model'); } catch (err) { if (!(err instanceof GraftError)) throw err; }
console.log(JSON.stringify({ ok: true, backend: tf.getBackend(), accuracy: e.accuracy, epochs: t.result.history.length, native: nativeStatus().available, zoo: Object.keys(ZOO).length, batchSize: DEFAULTS.batchSize }));
