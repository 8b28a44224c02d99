import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { cutBody } from '../model/cut.js';
import { diagramOfModel, groupLayers } from '../report/diagram.js';
import { inspectModel } from '../model/inspect.js';
import { loadModel } from '../model/load.js';
import { zooEntry } from './zoo.js';

test('the zoo nsfwjs-mobilenet-v2 (also by its old name mobilenet-v2) loads with its metadata, cuts at its suggested layer and runs', async () => {
  assert.ok(zooEntry('nsfwjs-mobilenet-v2'), 'zoo/mobilenet-v2 is present');
  assert.equal(zooEntry('mobilenet-v2')?.name, 'nsfwjs-mobilenet-v2', 'the old name still works');
  const m = await loadModel('mobilenet-v2');
  assert.equal(m.model.layers.length, 162);
  assert.deepEqual(m.model.inputs[0].shape, [null, 224, 224, 3]);
  assert.equal(m.meta?.zoo?.licence.startsWith('MIT'), true);
  const cut = m.meta!.zoo!.suggestedCuts[0];
  const body = cutBody(m.model, cut);
  assert.deepEqual(body.model.outputs[0].shape, [null, 14, 14, 576]);
  const x = tf.randomUniform([1, 224, 224, 3], 0, 1, 'float32', 1);
  const features = body.model.predict(x) as tf.Tensor;
  assert.ok((features.dataSync() as Float32Array).every(Number.isFinite));
  const probs = (m.model.predict(x) as tf.Tensor).dataSync() as Float32Array;
  assert.ok(Math.abs(probs.reduce((a, b) => a + b, 0) - 1) < 1e-4, 'the nsfwjs head still gives a distribution');
  tf.dispose([x, features]);
  // 162 layers collapse into named blocks in the diagram.
  const spec = diagramOfModel(m.model, { layer: cut, removed: inspectModel(m.model, cut).cut!.removed });
  assert.ok(groupLayers(spec.body).length < 25, `body blocks: ${groupLayers(spec.body).length}`);
  assert.ok(groupLayers(spec.body).some((b) => b.group === 'block_5' && b.layers.length === 9));
});
