import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { GraftError } from '../errors.js';
import { GraphBody, graphModelJson } from './graph-body.js';
import { initBackend } from '../engine/backend.js';
import { transferFrozen } from '../train/transfer.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/graph-model/', import.meta.url));
const e = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as { input: number[]; inputShape: number[]; cut: string; features: number[]; probs: number[] };

test('GraphBody: a tfjs GraphModel cut at an inner node gives the activations numpy computed; no tensors left', async () => {
  await initBackend();
  assert.equal(await graphModelJson(dir), join(dir, 'model.json'));
  assert.equal(await graphModelJson(fileURLToPath(new URL('../../../zoo/digits-cnn', import.meta.url))), undefined, 'a LayersModel is not a GraphModel');
  const before = tf.memory().numTensors;
  const body = await GraphBody.load(dir, e.cut);
  assert.deepEqual(body.info.imageShape, [16, 16, 3]);
  assert.deepEqual(body.info.featureShape, [8, 8, 8]);
  const out = await body.run(Float32Array.from(e.input), e.inputShape[0]);
  const worst = Math.max(...Array.from(out.values, (v, i) => Math.abs(v - e.features[i])));
  assert.ok(worst < 1e-5, `max abs difference ${worst}`);
  const whole = await GraphBody.load(dir);
  const probs = await whole.run(Float32Array.from(e.input), e.inputShape[0]);
  assert.ok(probs.values.every((v, i) => Math.abs(v - e.probs[i]) < 1e-5));
  await body.dispose();
  await whole.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('GraphBody: unknown node, changed weights and a truncated shard are refused', async () => {
  await initBackend();
  await assert.rejects(GraphBody.load(dir, 'conv9/Relu'), (err: GraftError) => err.code === 'LAYER_NOT_FOUND' && /Close names: .*conv/.test(err.message));
  const good = await GraphBody.load(dir, e.cut);
  const tmp = await mkdtemp(join(tmpdir(), 'graft-graph-'));
  try {
    await cp(dir, tmp, { recursive: true });
    const shard = await readFile(join(tmp, 'group1-shard1of1.bin'));
    shard[0] ^= 0xff;
    await writeFile(join(tmp, 'group1-shard1of1.bin'), shard);
    await assert.rejects(GraphBody.load(tmp, e.cut, good.info.sha256), /content hash differs/);
    await writeFile(join(tmp, 'group1-shard1of1.bin'), shard.subarray(0, 100));
    await assert.rejects(GraphBody.load(tmp, e.cut), (err: GraftError) => err.code === 'BAD_MODEL');
  } finally {
    await good.dispose();
    await rm(tmp, { recursive: true, force: true });
  }
});

test('transferFrozen also trains a head on a GraphModel body', async () => {
  await initBackend();
  const n = 60;
  const x = new Float32Array(n * 16 * 16 * 3);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < 256; p++) for (let c = 0; c < 3; c++) x[(i * 256 + p) * 3 + c] = labels[i] === 0 ? (p % 16 < 8 ? 220 : 20) : ((p >> 4) < 8 ? 220 : 20);
  }
  const body = await GraphBody.load(dir, e.cut);
  const t = await transferFrozen(body, { x, labels, sampleShape: [16, 16, 3], classNames: ['left', 'top'], source: 'synthetic' }, {
    preprocessing: { inputShape: [16, 16, 3], scale: 1 / 255 }, warmupEpochs: 30, lr: 0.05, validationSplit: 0.25, seed: 3, head: { pooling: 'flatten' } });
  assert.ok((t.result.validation?.accuracy ?? 0) >= 0.9, `validation accuracy ${t.result.validation?.accuracy}`);
  assert.equal(t.meta.body?.kind, 'tfjs-graph');
  await body.dispose();
});
