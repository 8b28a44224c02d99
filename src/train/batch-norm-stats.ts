// "Precise BatchNorm": after training from scratch with few steps, BatchNorm's moving averages
// still hold much of their initial values (mean 0, variance 1) and inference normalises with
// statistics the network never trained with. This pass sets each BatchNorm layer's moving mean
// and variance to the average of its batch statistics over the training data (forward passes
// only; weights unchanged), as pycls and timm do for their baselines.

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../data/dataset.js';
import { batchRanges, batchTensor, type Preprocessing } from '../data/preprocess.js';
import { FreezableBatchNormalization, isBatchNorm } from '../model/batch-norm.js';

type Bn = FreezableBatchNormalization & { momentum: number };

export async function recalibrateBatchNorm(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, batchSize = 64): Promise<number> {
  const bns = model.layers.filter((l) => isBatchNorm(l as never)) as unknown as Bn[];
  if (!bns.length) return 0;
  const saved = bns.map((l) => ({ momentum: l.momentum, trainable: l.trainable, keep: l.keepStatistics }));
  let k = 0;
  try {
    for (const l of bns) {
      l.trainable = true;
      l.keepStatistics = false;
    }
    for (const ix of batchRanges(d, batchSize)) {
      k++;
      // tfjs: moving -= (moving - batch) * (1 - momentum). With momentum (k-1)/k the moving
      // value is the mean of the k batch statistics so far.
      for (const l of bns) l.momentum = (k - 1) / k;
      tf.tidy(() => { model.apply(batchTensor(d, ix, p), { training: true }); });
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    bns.forEach((l, i) => {
      l.momentum = saved[i].momentum;
      l.trainable = saved[i].trainable;
      l.keepStatistics = saved[i].keep;
    });
  }
  return k;
}
