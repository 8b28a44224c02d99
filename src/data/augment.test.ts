import { test } from 'node:test';
import assert from 'node:assert/strict';
import { augmentBatch, parseAugment, NO_AUGMENT, AUGMENT_DEFAULTS } from './augment.js';
import { epochOrder, epochLength, balancedClassWeights, crossEntropy } from '../train/loop.js';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type { Dataset } from './dataset.js';

function gradient(n: number, h: number, w: number, c: number): Float32Array {
  const buf = new Float32Array(n * h * w * c);
  for (let s = 0; s < n; s++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) buf[((s * h + y) * w + x) * c + k] = (x * 255) / (w - 1);
  return buf;
}

test('augmentBatch: none is the identity, a flip mirrors exactly, a seed repeats, values stay in range', () => {
  const a = gradient(4, 8, 10, 3);
  const none = a.slice();
  augmentBatch(none, 4, [8, 10, 3], NO_AUGMENT, 5);
  assert.deepEqual(none, a);
  const flipped = a.slice();
  augmentBatch(flipped, 4, [8, 10, 3], { ...NO_AUGMENT, flip: true }, 5);
  let mirrored = 0;
  for (let s = 0; s < 4; s++) {
    const first = flipped[s * 240];
    assert.ok(Math.abs(first) < 1e-3 || Math.abs(first - 255) < 1e-3, 'a flip resamples pixel centres exactly');
    if (first > 100) mirrored++;
  }
  assert.ok(mirrored > 0 && mirrored < 4, `some samples flipped, some not: ${mirrored}`);
  const b1 = a.slice();
  const b2 = a.slice();
  augmentBatch(b1, 4, [8, 10, 3], AUGMENT_DEFAULTS, 9);
  augmentBatch(b2, 4, [8, 10, 3], AUGMENT_DEFAULTS, 9);
  assert.deepEqual(b1, b2, 'same seed, same result');
  assert.notDeepEqual(b1, a);
  assert.ok(b1.every((v) => v >= 0 && v <= 255));
  const b3 = a.slice();
  augmentBatch(b3, 4, [8, 10, 3], AUGMENT_DEFAULTS, 10);
  assert.notDeepEqual(b3, b1, 'another seed, another result');
});

test('parseAugment reads specs and refuses nonsense', () => {
  assert.deepEqual(parseAugment('none'), NO_AUGMENT);
  assert.deepEqual(parseAugment('default'), AUGMENT_DEFAULTS);
  assert.deepEqual(parseAugment('flip,rotate=15'), { ...NO_AUGMENT, flip: true, rotate: 15 });
  assert.throws(() => parseAugment('rotate=90'), /rotate=90/);
  assert.throws(() => parseAugment('blur'), /not understood/);
});

test('balance: balanced sampling draws every class as often as the largest; class weights are n/(k n_c)', () => {
  const labels = Int32Array.from([0, 0, 0, 0, 0, 0, 1, 1, 2]);
  const d: Dataset = { x: new Float32Array(9), sampleShape: [1], labels, classNames: ['a', 'b', 'c'], source: 't' };
  let r = 1;
  const rng = () => ((r = (r * 16807) % 2147483647) / 2147483647);
  const order = epochOrder(d, rng, true);
  assert.equal(order.length, 18);
  assert.equal(epochLength(d, true), 18);
  const per = [0, 0, 0];
  for (const i of order) per[labels[i]]++;
  assert.deepEqual(per, [6, 6, 6]);
  assert.deepEqual(new Set(order.filter((i) => labels[i] === 0)).size, 6, 'the largest class: each sample once');
  assert.equal(epochOrder(d, rng).length, 9);
  const w = balancedClassWeights(d);
  assert.deepEqual(Array.from(w, (v) => +v.toFixed(4)), [0.5, 1.5, 3]);
  // Weighted cross-entropy: a wrong answer on the rare class costs more.
  tf.setBackend('cpu');
  const probs = tf.tensor2d([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]]);
  const plain = crossEntropy(probs, tf.tensor1d([0, 2], 'int32')).dataSync()[0];
  const weighted = crossEntropy(probs, tf.tensor1d([0, 2], 'int32'), w).dataSync()[0];
  assert.ok(Math.abs(plain - (-Math.log(0.9) - Math.log(0.05)) / 2) < 1e-5);
  assert.ok(Math.abs(weighted - (0.5 * -Math.log(0.9) + 3 * -Math.log(0.05)) / 2) < 1e-4);
});

test('augmentedViews: the original first, then seeded augmented copies with the same labels', async () => {
  const { augmentedViews } = await import('./augment.js');
  const x = Uint8Array.from(gradient(3, 8, 10, 3), (v) => Math.round(v));
  const d: Dataset = { x, sampleShape: [8, 10, 3], labels: Int32Array.from([0, 1, 2]), classNames: ['a', 'b', 'c'], source: 'g' };
  const v = augmentedViews(d, 3, AUGMENT_DEFAULTS, 4);
  assert.ok(v.x instanceof Uint8Array);
  assert.equal(v.x.length, 3 * x.length);
  assert.deepEqual(Array.from(v.labels), [0, 1, 2, 0, 1, 2, 0, 1, 2]);
  assert.deepEqual(v.x.subarray(0, x.length), x);
  assert.notDeepEqual(v.x.subarray(x.length, 2 * x.length), x);
  assert.notDeepEqual(v.x.subarray(x.length, 2 * x.length), v.x.subarray(2 * x.length));
  assert.deepEqual(augmentedViews(d, 3, AUGMENT_DEFAULTS, 4).x, v.x, 'repeats with the seed');
  assert.equal(augmentedViews(d, 1, AUGMENT_DEFAULTS, 4), d);
  assert.equal(augmentedViews(d, 3, NO_AUGMENT, 4), d);
});
