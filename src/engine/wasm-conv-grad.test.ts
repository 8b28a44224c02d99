import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradKernels } from './wasm-conv-grad.js';
import './backend.js';
import { setNativeKernels } from './native-kernels.js';

// These tests are about Graft's JavaScript kernels: keep the native ones out.
setNativeKernels(false);

const cases: Array<{ x: [number, number, number, number]; f: [number, number, number, number]; s: number; pad: 'same' | 'valid' }> = [
  { x: [2, 9, 9, 1], f: [3, 3, 1, 4], s: 1, pad: 'same' },
  { x: [3, 8, 7, 3], f: [3, 3, 3, 5], s: 2, pad: 'same' },
  { x: [1, 10, 10, 4], f: [5, 5, 4, 2], s: 1, pad: 'valid' },
  { x: [2, 7, 8, 6], f: [1, 1, 6, 3], s: 2, pad: 'valid' },
  { x: [3, 5, 6, 8], f: [1, 1, 8, 4], s: 1, pad: 'same' },
  { x: [1, 4, 4, 5], f: [1, 1, 5, 7], s: 1, pad: 'valid' },
  { x: [2, 6, 6, 2], f: [2, 2, 2, 3], s: 2, pad: 'same' },
];

async function filterGrad(backend: string, c: (typeof cases)[number], seed: number): Promise<Float32Array> {
  await tf.setBackend(backend);
  const x = tf.randomNormal(c.x, 0, 1, 'float32', seed);
  const f = tf.randomNormal(c.f, 0, 1, 'float32', seed + 1);
  const g = tf.grad((w: tf.Tensor) => tf.sum(tf.square(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.s, c.pad))))(f);
  const out = (await g.data()) as Float32Array;
  tf.dispose([x, f, g]);
  return out;
}

test('wasm Conv2DBackpropFilter matches the cpu kernel on varied shapes, strides and padding', async () => {
  registerWasmGradKernels();
  for (const [i, c] of cases.entries()) {
    const want = await filterGrad("cpu", c, 10 * i + 1);
    const got = await filterGrad("wasm", c, 10 * i + 1);
    assert.equal(got.length, want.length);
    let maxRel = 0;
    const scale = Math.max(...Array.from(want, Math.abs));
    for (let j = 0; j < want.length; j++) maxRel = Math.max(maxRel, Math.abs(got[j] - want[j]) / scale);
    assert.ok(maxRel < 1e-4, `case ${i} ${JSON.stringify(c)}: max relative error ${maxRel}`);
  }
});

test('wasm Conv2DBackpropFilter leaves no tensors or heap buffers behind', async () => {
  registerWasmGradKernels();
  await tf.setBackend('wasm');
  const x = tf.randomNormal([2, 8, 8, 3]);
  const f = tf.randomNormal([3, 3, 3, 4]);
  const grad = tf.grad((w: tf.Tensor) => tf.sum(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, "same")));
  tf.dispose(grad(f));
  const before = tf.memory().numTensors;
  const dataIdsBefore = tf.engine().backend.numDataIds();
  for (let i = 0; i < 5; i++) tf.dispose(grad(f));
  assert.equal(tf.memory().numTensors, before);
  assert.equal(tf.engine().backend.numDataIds(), dataIdsBefore);
  tf.dispose([x, f]);
});

const depthwiseCases: Array<{ x: [number, number, number, number]; f: [number, number, number, number]; s: number; pad: 'same' | 'valid'; d: number }> = [
  { x: [2, 9, 9, 3], f: [3, 3, 3, 1], s: 1, pad: 'same', d: 1 },
  { x: [1, 8, 7, 4], f: [3, 3, 4, 2], s: 2, pad: 'same', d: 1 },
  { x: [2, 10, 10, 2], f: [3, 3, 2, 3], s: 1, pad: 'valid', d: 1 },
  { x: [1, 7, 6, 5], f: [5, 5, 5, 1], s: 2, pad: 'valid', d: 1 },
];

async function depthwiseGrads(backend: string, c: (typeof depthwiseCases)[number], seed: number): Promise<[Float32Array, Float32Array]> {
  await tf.setBackend(backend);
  const x = tf.randomNormal(c.x, 0, 1, 'float32', seed);
  const f = tf.randomNormal(c.f, 0, 1, 'float32', seed + 1);
  const g = tf.grads((xi: tf.Tensor, fi: tf.Tensor) => tf.sum(tf.square(tf.depthwiseConv2d(xi as tf.Tensor4D, fi as tf.Tensor4D, c.s, c.pad, 'NHWC', c.d))));
  const [gx, gf] = g([x, f]);
  const out: [Float32Array, Float32Array] = [(await gx.data()) as Float32Array, (await gf.data()) as Float32Array];
  tf.dispose([x, f, gx, gf]);
  return out;
}

test('wasm depthwise backprop kernels (filter and input) match the cpu kernels', async () => {
  registerWasmGradKernels();
  for (const [i, c] of depthwiseCases.entries()) {
    const want = await depthwiseGrads('cpu', c, 20 * i + 3);
    const got = await depthwiseGrads('wasm', c, 20 * i + 3);
    for (const k of [0, 1]) {
      const scale = Math.max(...Array.from(want[k], Math.abs));
      let maxRel = 0;
      for (let j = 0; j < want[k].length; j++) maxRel = Math.max(maxRel, Math.abs(got[k][j] - want[k][j]) / scale);
      assert.ok(maxRel < 1e-4, `case ${i} ${k ? 'filter' : 'input'} gradient: max relative error ${maxRel}`);
    }
  }
});
