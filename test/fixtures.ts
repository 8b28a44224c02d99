// Small real models and data for tests: a conv net with BatchNorm built with tfjs-layers, and
// synthetic image and tabular datasets whose classes a network can learn in seconds.

import * as tfl from '@tensorflow/tfjs-layers';
import { type Dataset } from '../src/data/dataset.js';
import { makeRng } from '../src/data/random.js';

/** Conv -> BN -> ReLU -> pool, twice, then GAP, dense, softmax; input [8, 8, 1]. */
export function tinyCnn(numClasses = 3, seed = 1): tfl.LayersModel {
  const init = (s: number) => tfl.initializers.glorotUniform({ seed: seed * 100 + s });
  const input = tfl.input({ shape: [8, 8, 1], name: 'image' });
  let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c1', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'bn1', momentum: 0.8 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'relu', name: 'r1' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.maxPooling2d({ poolSize: 2, name: 'p1' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'c2', kernelInitializer: init(2) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'bn2', momentum: 0.8 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'relu', name: 'r2' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 8, activation: 'relu', name: 'fc', kernelInitializer: init(3) }).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: numClasses, activation: 'softmax', name: 'old_output', kernelInitializer: init(4) }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out, name: 'tiny' });
}

/**
 * 8x8 grey images, values 0-255, one texture per class over noise: horizontal stripes,
 * vertical stripes, a checkerboard, diagonal stripes. A small conv net tells them apart
 * in a few epochs, wherever in the image it looks.
 */
export function textureImages(perClass: number, classes = 3, seed = 1): Dataset {
  const rng = makeRng(seed);
  const patterns = [
    (y: number, _x: number) => y % 2,
    (_y: number, x: number) => x % 2,
    (y: number, x: number) => (x + y) % 2,
    (y: number, x: number) => Math.floor((x + y) / 2) % 2,
  ];
  const n = perClass * classes;
  const x = new Float32Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % classes;
    labels[i] = c;
    const phase = Math.floor(rng() * 2);
    for (let y = 0; y < 8; y++) {
      for (let xx = 0; xx < 8; xx++) {
        const on = (patterns[c](y + phase, xx) + phase) % 2;
        x[i * 64 + y * 8 + xx] = Math.min(255, rng() * 100 + (on ? 150 : 0));
      }
    }
  }
  return { x, sampleShape: [8, 8, 1], labels, classNames: Array.from({ length: classes }, (_, c) => `t${c}`), source: 'texture images' };
}

export const PIXELS = { inputShape: [8, 8, 1], scale: 1 / 255 };

/** Largest absolute difference relative to the largest magnitude in `want` (differential tests). */
export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`lengths differ: ${got.length} vs ${want.length}`);
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
  return e / scale;
}
