// The native per-op kernels inside the wasm backend against tfjs cpu, on varied shapes:
// convolutions (plain, depthwise, fused), both their gradients, and matrix products.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import { maxRelErr } from '../../test/fixtures.js';
import { nativeStatus } from './native.js';
import { NATIVE_KERNEL_NAMES, nativeKernels, setNativeKernels } from './native-kernels.js';

await initBackend('wasm');
const status = nativeStatus();
if (!status.available && process.env.GRAFT_NATIVE === 'require') throw new Error(`GRAFT_NATIVE=require but the native engine is ${status.reason}`);
const skip = status.available ? false : `native engine ${status.reason}`;

async function on<T>(backend: string, f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  const values = await Promise.all(list.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(list);
  return values;
}


async function same(name: string, f: () => tf.Tensor | tf.Tensor[]): Promise<void> {
  const want = await on('cpu', f);
  const got = await on('wasm', f);
  want.forEach((w, i) => {
    const e = maxRelErr(got[i], w);
    assert.ok(e <= 1e-4, `${name} output ${i}: max relative error ${e}`);
  });
}

const rnd = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

type Pad = 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]];
const CONVS: Array<{ x: [number, number, number, number]; k: [number, number]; out: number; s: [number, number]; pad: Pad; d?: number }> = [
  { x: [2, 9, 9, 3], k: [3, 3], out: 4, s: [1, 1], pad: 'same' },
  { x: [3, 8, 8, 3], k: [3, 3], out: 5, s: [2, 2], pad: 'same' },
  { x: [2, 9, 11, 2], k: [3, 3], out: 4, s: [2, 2], pad: 'same' },
  { x: [1, 10, 9, 4], k: [5, 3], out: 2, s: [2, 1], pad: 'valid' },
  { x: [2, 11, 11, 2], k: [3, 3], out: 3, s: [1, 1], pad: 'same', d: 2 },
  { x: [2, 6, 7, 8], k: [1, 1], out: 16, s: [1, 1], pad: 'valid' },
  { x: [1, 7, 7, 3], k: [3, 3], out: 2, s: [1, 1], pad: [[0, 0], [2, 0], [1, 3], [0, 0]] },
];

for (const [i, c] of CONVS.entries()) {
  test(`native Conv2D, its gradients and fused form match cpu: ${JSON.stringify(c)}`, { skip }, async () => {
    const fshape = [...c.k, c.x[3], c.out];
    const x = () => rnd(c.x, 10 * i + 1);
    const w = () => rnd(fshape, 10 * i + 2);
    const conv = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad as 'same', 'NHWC', c.d ?? 1);
    await same('conv2d', () => conv(x(), w()));
    // (tfjs has no gradient for dilated convolutions.)
    if (!c.d) await same('conv2d gradients', () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(conv(a, b))))([x(), w()]));
    if (!Array.isArray(c.pad)) {
      await same('fused conv2d', () => tf.fused.conv2d({ x: x() as tf.Tensor4D, filter: w() as tf.Tensor4D, strides: c.s, pad: c.pad as 'same', dilations: c.d ?? 1, bias: rnd([c.out], 3), activation: 'relu6' }));
    }
  });
}

const DEPTHWISE: Array<{ x: [number, number, number, number]; k: number; mult: number; s: number; pad: 'same' | 'valid' }> = [
  { x: [2, 8, 8, 4], k: 3, mult: 1, s: 2, pad: 'same' },
  { x: [2, 9, 9, 3], k: 3, mult: 2, s: 1, pad: 'same' },
  { x: [1, 7, 6, 5], k: 3, mult: 1, s: 1, pad: 'valid' },
  { x: [3, 11, 11, 2], k: 5, mult: 3, s: 2, pad: 'same' },
];

for (const [i, c] of DEPTHWISE.entries()) {
  test(`native depthwise conv, its gradients and fused form match cpu: ${JSON.stringify(c)}`, { skip }, async () => {
    const x = () => rnd(c.x, 100 + i);
    const w = () => rnd([c.k, c.k, c.x[3], c.mult], 200 + i);
    const conv = (a: tf.Tensor, b: tf.Tensor) => tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
    await same('depthwise', () => conv(x(), w()));
    await same('depthwise gradients', () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(conv(a, b))))([x(), w()]));
    await same('fused depthwise', () => tf.fused.depthwiseConv2d({ x: x() as tf.Tensor4D, filter: w() as tf.Tensor4D, strides: c.s, pad: c.pad, bias: rnd([c.x[3] * c.mult], 5), activation: 'relu' }));
  });
}

test('native matrix products match cpu: transposes, batches, broadcasting, fused bias and activation', { skip }, async () => {
  await same('matMul', () => tf.matMul(rnd([5, 7], 1), rnd([7, 3], 2)));
  await same('matMul transposed', () => tf.matMul(rnd([7, 5], 1), rnd([3, 7], 2), true, true));
  await same('batched', () => tf.matMul(rnd([4, 5, 6], 1), rnd([4, 6, 2], 2)));
  await same('broadcast batch', () => tf.matMul(rnd([1, 5, 6], 1), rnd([3, 6, 2], 2)));
  await same('rank 4', () => tf.matMul(rnd([2, 3, 4, 5], 1), rnd([2, 3, 5, 2], 2)));
  await same('fused', () => tf.fused.matMul({ a: rnd([6, 8], 3), b: rnd([8, 4], 4), bias: rnd([4], 5), activation: 'relu' }));
  await same('gradients', () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D))))([rnd([6, 5], 6), rnd([5, 3], 7)]));
});

test('the native kernels are in the wasm backend, fall back for what they do not handle, and leak nothing', { skip }, async () => {
  assert.deepEqual(nativeKernels(), NATIVE_KERNEL_NAMES);
  await tf.setBackend('wasm');
  // Zero-size batches go to wasm's own kernels.
  const empty = tf.conv2d(tf.zeros([0, 4, 4, 2]) as tf.Tensor4D, tf.ones([3, 3, 2, 1]) as tf.Tensor4D, 1, 'same');
  assert.deepEqual(empty.shape, [0, 4, 4, 1]);
  empty.dispose();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) tf.dispose(tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')))([rnd([2, 8, 8, 3], 1), rnd([3, 3, 3, 4], 2)])));
  assert.equal(tf.memory().numTensors, before);
  // Off puts wasm's (and Graft's JS) kernels back; on again restores the native ones.
  assert.equal(setNativeKernels(false), false);
  assert.deepEqual(nativeKernels(), []);
  await same('conv2d on wasm kernels', () => tf.conv2d(rnd([2, 8, 8, 3], 1) as tf.Tensor4D, rnd([3, 3, 3, 4], 2) as tf.Tensor4D, 2, 'same'));
  assert.equal(setNativeKernels(true), true);
  assert.deepEqual(nativeKernels(), NATIVE_KERNEL_NAMES);
});
