// A small conv net with what pretrained CNNs use (BN, depthwise, a residual Add, a separable
// conv, dropout), and random data for it: the native engine's tests and the data-parallel ones.

import * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../src/data/dataset.js';
import { makeRng } from '../src/data/random.js';

export function randomData(n: number, shape: number[], classes: number, seed: number): Dataset {
  const rng = makeRng(seed);
  const per = shape.reduce((a, b) => a * b, 1);
  return {
    x: Float32Array.from({ length: n * per }, () => rng() * 2 - 1), sampleShape: shape,
    labels: Int32Array.from({ length: n }, (_, i) => i % classes), classNames: Array.from({ length: classes }, (_, i) => `c${i}`), source: 'random',
  };
}

/** A small conv net with what pretrained CNNs use: BN in three modes, depthwise, residual Add, separable conv, dropout. */
export function residualNet(seed: number): tfl.LayersModel {
  const init = (s: number) => tfl.initializers.glorotUniform({ seed: seed * 100 + s });
  const input = tfl.input({ shape: [10, 10, 3] });
  let x = tfl.layers.conv2d({ name: 'stem', filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: false, kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'stem_bn', momentum: 0.9 }).apply(x) as tfl.SymbolicTensor;
  const a = tfl.layers.reLU({ name: 'stem_relu', maxValue: 6 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.depthwiseConv2d({ name: 'dw', kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init(2) }).apply(a) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'dw_bn', momentum: 0.9 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ name: 'dw_relu', activation: 'relu6' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ name: 'project', filters: 8, kernelSize: 1, useBias: false, kernelInitializer: init(3) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'project_bn', momentum: 0.9 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.add({ name: 'add' }).apply([a, x]) as tfl.SymbolicTensor;
  x = tfl.layers.zeroPadding2d({ name: 'pad', padding: [[0, 1], [0, 1]] }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.separableConv2d({ name: 'sep', filters: 12, kernelSize: 3, strides: 2, activation: 'relu', depthwiseInitializer: init(4), pointwiseInitializer: init(5) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dropout({ name: 'drop', rate: 0 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ name: 'head', units: 4, activation: 'softmax', kernelInitializer: init(6) }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: x });
}
