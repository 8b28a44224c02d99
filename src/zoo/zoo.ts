// Graft's model zoo: embedded pretrained networks that work offline, with what a user needs
// to transfer from them (input size, preprocessing, suggested cut points, provenance, licence).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tfl from '@tensorflow/tfjs-layers';

export interface ZooEntry {
  name: string;
  /** Directory holding model.json, weights and graft.json. */
  dir: string;
  description: string;
}

const zooDir = (name: string) => fileURLToPath(new URL(`../../../zoo/${name}`, import.meta.url));

export const ZOO: Record<string, ZooEntry> = {
  'digits-cnn': {
    name: 'digits-cnn',
    dir: zooDir('digits-cnn'),
    description: 'Small CNN (3 conv blocks with BatchNorm) pretrained by Graft on MNIST digits 0-4; 28x28x1 input, pixels/255.',
  },
  'nsfwjs-mobilenet-v2': {
    name: 'nsfwjs-mobilenet-v2',
    dir: zooDir('mobilenet-v2'),
    description: "MobileNetV2 alpha 1.0 of the nsfwjs 4.4.0 classifier (MIT): ImageNet-initialised, then trained by nsfwjs on its 5 classes (drawing, hentai, neutral, porn, sexy); 224x224x3 RGB input, pixels/255; suggested cut block_13_expand_relu.",
  },
};

/** Earlier names of zoo entries, still accepted: mobilenet-v2 is the nsfwjs classifier's MobileNetV2. */
export const ZOO_ALIASES: Record<string, string> = { 'mobilenet-v2': 'nsfwjs-mobilenet-v2' };

export function zooEntry(name: string): ZooEntry | undefined {
  const e = ZOO[ZOO_ALIASES[name] ?? name];
  return e && existsSync(e.dir) ? e : undefined;
}

/** The digits-cnn architecture, untrained (the pretraining script and from-scratch baselines use it). */
export function digitsCnn(numClasses = 5): tfl.LayersModel {
  const input = tfl.input({ shape: [28, 28, 1], name: 'image' });
  let x = input;
  const block = (i: number, filters: number, pool: boolean) => {
    x = tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', useBias: false, name: `block${i}_conv` }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.batchNormalization({ name: `block${i}_bn` }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.activation({ activation: 'relu', name: `block${i}_relu` }).apply(x) as tfl.SymbolicTensor;
    if (pool) x = tfl.layers.maxPooling2d({ poolSize: 2, name: `block${i}_pool` }).apply(x) as tfl.SymbolicTensor;
  };
  block(1, 16, true);
  block(2, 32, true);
  block(3, 64, false);
  x = tfl.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 64, activation: 'relu', name: 'fc' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dropout({ rate: 0.2, name: 'dropout' }).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: numClasses, activation: 'softmax', name: 'predictions' }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out, name: 'digits_cnn' });
}
