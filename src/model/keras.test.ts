import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { GraftError } from '../errors.js';
import { loadModel } from './load.js';
import { cutBody } from './cut.js';
import { keras3ToKeras2, unzip } from './keras.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/keras/', import.meta.url));
const expected = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as Record<string, { input: number[]; shape: number[]; output: number[] }>;

for (const [file, key] of [['cnn.h5', 'cnn'], ['mlp.h5', 'mlp'], ['cnn.keras', 'cnn']] as const) {
  test(`${file}: the imported model predicts what the fixture script computed with numpy`, async () => {
    const { model } = await loadModel(join(dir, file));
    const e = expected[key];
    const y = tf.tidy(() => model.predict(tf.tensor(e.input, e.shape)) as tf.Tensor);
    const got = y.dataSync();
    y.dispose();
    assert.equal(got.length, e.output.length);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - e.output[i]));
    assert.ok(worst < 1e-5, `max abs difference ${worst}`);
  });
}

test('an imported Keras model cuts like any other', async () => {
  const { model } = await loadModel(join(dir, 'cnn.h5'));
  const body = cutBody(model, 'gap');
  assert.deepEqual(body.model.outputs[0].shape, [null, 6]);
  assert.deepEqual(body.removed.map((l) => l.name), ['dense']);
});

test('bad Keras files: clear errors before any work', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'graft-keras-'));
  try {
    const h5 = await readFile(join(dir, 'cnn.h5'));
    const keras = await readFile(join(dir, 'cnn.keras'));
    const cases: [string, Buffer | string, RegExp][] = [
      ['truncated.h5', h5.subarray(0, h5.length >> 1), /truncated|cannot be read/],
      ['text.h5', 'not hdf5 at all', /not an HDF5 file/],
      ['zip.h5', keras, /not an HDF5 file/],
      ['truncated.keras', keras.subarray(0, keras.length - 100), /truncated|damaged|not a zip/],
      ['hdf5.keras', h5, /not a \.keras archive/],
      ['empty.h5', Buffer.alloc(0), /not an HDF5 file/],
    ];
    for (const [name, bytes, message] of cases) {
      await writeFile(join(tmp, name), bytes);
      await assert.rejects(loadModel(join(tmp, name)), (e: GraftError) => e instanceof GraftError && e.code === 'BAD_MODEL' && message.test(e.message) && Boolean(e.fix), name);
    }
    await assert.rejects(loadModel(join(dir, 'lambda.h5')), (e: GraftError) => e.code === 'BAD_MODEL' && /"Lambda"/.test(e.message));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('Keras 3 configs: keras_history nodes become Keras 2 inbound nodes; custom layers are named', () => {
  const tensor = (name: string) => ({ class_name: '__keras_tensor__', config: { keras_history: [name, 0, 0] } });
  const config = {
    class_name: 'Functional',
    config: {
      name: 'm', input_layers: [['in', 0, 0]], output_layers: [['add', 0, 0]],
      layers: [
        { module: 'keras.layers', class_name: 'InputLayer', name: 'in', config: { name: 'in', batch_shape: [null, 4], dtype: 'float32' }, inbound_nodes: [] },
        { module: 'keras.layers', class_name: 'Dense', name: 'd', config: { name: 'd', units: 4, kernel_initializer: { module: 'keras.initializers', class_name: 'GlorotUniform', config: { seed: null }, registered_name: null } }, inbound_nodes: [{ args: [tensor('in')], kwargs: {} }] },
        { module: 'keras.layers', class_name: 'Add', name: 'add', config: { name: 'add' }, inbound_nodes: [{ args: [[tensor('in'), tensor('d')]], kwargs: {} }] },
      ],
    },
  };
  const k2 = keras3ToKeras2(config, 'm.keras') as { class_name: string; config: { layers: { config: Record<string, unknown>; inbound_nodes: unknown[] }[] } };
  assert.equal(k2.class_name, 'Model');
  assert.deepEqual(k2.config.layers[0].config.batch_input_shape, [null, 4]);
  assert.deepEqual(k2.config.layers[1].inbound_nodes, [[['in', 0, 0, {}]]]);
  assert.deepEqual(k2.config.layers[2].inbound_nodes, [[['in', 0, 0, {}], ['d', 0, 0, {}]]]);
  assert.deepEqual(k2.config.layers[1].config.kernel_initializer, { class_name: 'GlorotUniform', config: { seed: null } });
  const custom = structuredClone(config);
  custom.config.layers[1].module = 'my_project.layers';
  assert.throws(() => keras3ToKeras2(custom, 'm.keras'), (e: GraftError) => e.code === 'BAD_MODEL' && /custom layers: d \(my_project\.layers\.Dense\)/.test(e.message));
  assert.throws(() => unzip(Buffer.from('PK not really a zip'), 'x.keras'), /not a zip archive/);
});
