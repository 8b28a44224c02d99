// tfjs GraphModels rebuilt as layers: Graft's small fixture (numpy's activations and outputs)
// and a published one, the CenterNet MobileNetV3 of the MIT-licensed @vladmandic/human (a
// signature fixed to a batch of 1, float16-quantized weights, fused conv ops, hard-swish and
// squeeze-excite written as Add/Relu6/Mul): equal to GraphModel.execute at the cut, then run at
// a batch of 4, which the GraphModel itself refuses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { GraphModel } from '@tensorflow/tfjs-converter';
import { initBackend } from '../engine/backend.js';
import { loadModel } from './load.js';
import { OnnxUnsupported } from './onnx-layers.js';

await initBackend();
const fixture = fileURLToPath(new URL('../../../test/fixtures/graph-model/', import.meta.url));
const human = fileURLToPath(new URL('../../../node_modules/@vladmandic/human/models/', import.meta.url));
const CUT = 'tower_0/MobilenetV3/expanded_conv_14/add';

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test('the fixture GraphModel rebuilt as layers gives numpy\'s activations at the cut and its outputs', async () => {
  const e = JSON.parse(await readFile(join(fixture, 'expected.json'), 'utf8'));
  const before = tf.memory().numTensors;
  const whole = await loadModel(fixture);
  assert.equal(whole.imported?.format, 'tfjs-graph');
  const x = tf.tensor(e.input, e.inputShape);
  const probs = tf.tidy(() => (whole.model.predict(x) as tf.Tensor).dataSync());
  assert.ok(maxAbs(probs, e.probs) < 1e-5, `outputs off by ${maxAbs(probs, e.probs)}`);
  const cut = await loadModel(fixture, { cut: e.cut });
  const layer = cut.imported!.layerOf.get(e.cut.replace(/:0$/, ''))!;
  const { model: sub } = await import('@tensorflow/tfjs-layers').then((tfl) => ({ model: tfl.model({ inputs: cut.model.inputs, outputs: cut.model.getLayer(layer).output }) }));
  const feats = tf.tidy(() => (sub.predict(x) as tf.Tensor).dataSync());
  assert.ok(maxAbs(feats, e.features) < 1e-5, `features off by ${maxAbs(feats, e.features)}`);
  x.dispose();
  whole.model.dispose();
  cut.model.dispose();
  assert.equal(tf.memory().numTensors, before, 'no tensors left');
});

test('a published batch-1 GraphModel (CenterNet MobileNetV3): rebuilt up to the cut, equal to GraphModel.execute, and it runs at a batch of 4', async () => {
  const spec = join(human, 'centernet.json');
  // The whole graph has a ResizeBilinear in its head: rebuilt only up to the cut, and said why.
  await assert.rejects(loadModel(spec), (e: unknown) => e instanceof OnnxUnsupported && e.op === 'ResizeBilinear');
  const l = await loadModel(spec, { cut: CUT });
  assert.match(l.imported!.truncated!, /ResizeBilinear node ".*": an op Graft does not rebuild/);
  assert.deepEqual(l.model.outputs[0].shape, [null, 16, 16, 120]);
  const j = JSON.parse(await readFile(spec, 'utf8'));
  const w = await readFile(join(human, 'centernet.bin'));
  const gm = new GraphModel(tf.io.fromMemory({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest[0].weights, weightData: w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength), format: j.format }));
  await gm.load();
  const x = tf.randomUniform([4, 512, 512, 3], 0, 1, 'float32', 7);
  const ours = tf.tidy(() => (l.model.predict(x) as tf.Tensor).dataSync());
  const one = tf.tidy(() => (gm.execute(tf.slice(x, [0, 0, 0, 0], [1, 512, 512, 3]), CUT) as tf.Tensor).dataSync());
  let scale = 0;
  for (const v of one) scale = Math.max(scale, Math.abs(v));
  const d = maxAbs(ours.subarray(0, one.length), one);
  console.log(`centernet body at ${CUT}: rebuilt layers vs GraphModel.execute, max difference ${d.toExponential(2)} (values up to ${scale.toFixed(1)})`);
  assert.ok(d <= 1e-4 * Math.max(1, scale), `${d}`);
  assert.throws(() => gm.execute(x, CUT), /must be \[1,512,512,3\]/, 'the GraphModel itself takes a batch of 1 only');
  x.dispose();
  gm.dispose();
  l.model.dispose();
});
