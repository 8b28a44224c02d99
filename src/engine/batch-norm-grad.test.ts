import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';

function maxRelErr(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1e-3, Math.abs(b[i])));
  return worst;
}

test('Graft\'s FusedBatchNorm gradient equals the gradient of the same formula in elementary ops, on cpu and wasm', async () => {
  await initBackend();
  const before = tf.getBackend();
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    for (const [shape, perChannel] of [[[3, 5, 4, 6], true], [[2, 7, 6], true], [[4, 6], false]] as const) {
      const c = shape[shape.length - 1];
      const x = tf.randomNormal([...shape], 0, 2, 'float32', 3);
      const stat = perChannel ? [c] : [...shape];
      const mean = tf.randomNormal(stat, 0, 1, 'float32', 4);
      const variance = tf.add(tf.randomUniform(stat, 0.2, 2, 'float32', 5), 0);
      const offset = tf.randomNormal(stat, 0, 1, 'float32', 6);
      const scale = tf.randomNormal(stat, 1, 0.3, 'float32', 7);
      const dy = tf.randomNormal([...shape], 0, 1, 'float32', 8);
      const eps = 1e-3;
      const fused = tf.grads((a, m, v, o, s) => tf.batchNorm(a, m, v, o, s, eps));
      const plain = tf.grads((a, m, v, o, s) => tf.add(tf.mul(tf.mul(tf.sub(a, m), tf.rsqrt(tf.add(v, eps))), s), o));
      const got = fused([x, mean, variance, offset, scale], dy);
      const want = plain([x, mean, variance, offset, scale], dy);
      ['x', 'mean', 'variance', 'offset', 'scale'].forEach((name, i) => {
        const err = maxRelErr(got[i].dataSync(), want[i].dataSync());
        assert.ok(err < 1e-4, `${backend} ${JSON.stringify(shape)} d${name}: max relative error ${err}`);
        assert.deepEqual(got[i].shape, want[i].shape);
      });
      tf.dispose([x, mean, variance, offset, scale, dy, ...got, ...want]);
    }
    // No Tile in the backward pass any more.
    const x = tf.randomNormal([2, 4, 4, 3]);
    const prof = await tf.profile(() => tf.dispose(tf.grads((a) => tf.batchNorm(a, tf.zeros([3]), tf.ones([3]), tf.zeros([3]), tf.ones([3]), 1e-3))([x], tf.onesLike(x))));
    assert.ok(!prof.kernels.some((k) => k.name === 'Tile'), 'the gradient does not tile');
    x.dispose();
  }
  await tf.setBackend(before);
});
