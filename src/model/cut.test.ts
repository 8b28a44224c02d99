import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { adoptModel } from './batch-norm.js';
import { attachHead, buildHead } from './head.js';
import { cutBody } from './cut.js';
import { formatInspection, inspectModel } from './inspect.js';
import { graft } from './graft.js';
import { initBackend } from '../engine/backend.js';
import { GraftError } from '../errors.js';
import { tinyCnn } from '../../test/fixtures.js';

await initBackend();

test('a cut keeps the original input node and removes the layers after the cut', async () => {
  const base = await adoptModel(tinyCnn());
  const body = cutBody(base, 'r2');
  assert.equal(body.model.inputs[0], base.inputs[0], 'the body starts at the original input');
  assert.deepEqual(body.model.outputs[0].shape, [null, 4, 4, 8]);
  assert.deepEqual(body.removed.map((l) => l.name), ['gap', 'fc', 'old_output']);
  assert.deepEqual(body.cut, { layer: 'r2', index: 7 });
  assert.equal(cutBody(base, 7).cut.layer, 'r2', 'index and name give the same cut');
  assert.equal(cutBody(base, -3).cut.layer, 'gap', 'negative indices count from the end');
});

test('the grafted model shares the body with the base, whose old head still works', async () => {
  const base = await adoptModel(tinyCnn());
  const x = tf.randomUniform([2, 8, 8, 1], 0, 1, 'float32', 3);
  const oldBefore = (base.predict(x) as tf.Tensor).dataSync();
  const g = graft(base, { cut: 'r2', head: { numClasses: 5, hidden: [6] } });
  assert.deepEqual(g.model.outputs[0].shape, [null, 5]);
  assert.deepEqual(g.head.layers.map((l) => l.getClassName()), ['GlobalAveragePooling2D', 'Dropout', 'Dense', 'Dropout', 'Dense']);
  const oldAfter = (base.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(Array.from(oldAfter), Array.from(oldBefore));
  const viaBody = (g.headModel.predict(g.body.model.predict(x) as tf.Tensor) as tf.Tensor).dataSync();
  const whole = (g.model.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(Array.from(viaBody), Array.from(whole), 'head on features equals the whole grafted model');
  x.dispose();
});

test('cut errors: unknown layer with close names, a cut that leaves nothing, an index out of range', async () => {
  const base = await adoptModel(tinyCnn());
  assert.throws(() => cutBody(base, 'bn3'), (e: GraftError) => e.code === 'LAYER_NOT_FOUND' && /bn1|bn2/.test(e.message));
  assert.throws(() => cutBody(base, 'image'), { code: 'EMPTY_CUT' });
  assert.throws(() => cutBody(base, 0), { code: 'EMPTY_CUT' });
  assert.throws(() => cutBody(base, 40), { code: 'LAYER_NOT_FOUND' });
});

test('a head that does not fit the body output is refused with HEAD_MISMATCH', async () => {
  const base = await adoptModel(tinyCnn());
  const body = cutBody(base, 'fc'); // features [batch, 8]
  const head = buildHead([null, 8], { numClasses: 3, dropout: 0, name: 'wrong' });
  head.layers[0].apply(tfl.input({ shape: [10] })); // builds the dense layer for 10 inputs
  assert.throws(() => attachHead(body, head), { code: 'HEAD_MISMATCH' });
  assert.throws(() => buildHead([null, 4, 8], { numClasses: 3 }), { code: 'HEAD_MISMATCH' });
  assert.throws(() => buildHead([null, 8], { numClasses: 1 }), { code: 'BAD_OPTION' });
});

test('inspect lists layers, totals and nodes, and explains a cut in words', async () => {
  const base = await adoptModel(tinyCnn());
  const plain = inspectModel(base);
  assert.equal(plain.layers.length, base.layers.length);
  assert.equal(plain.totals.params, base.countParams());
  assert.deepEqual(plain.inputs, [{ name: 'image', shape: [null, 8, 8, 1] }]);
  const cut = inspectModel(base, 'r2');
  assert.deepEqual(cut.layers.filter((l) => l.status === 'removed').map((l) => l.name), ['gap', 'fc', 'old_output']);
  assert.equal(cut.layers.find((l) => l.name === 'image')!.status, 'input');
  assert.equal(cut.cut!.keptParams + cut.cut!.removedParams, plain.totals.params);
  const text = formatInspection(cut);
  assert.match(text, /input node stays the original input, "image"/);
  assert.match(text, /CUT HERE/);
});
