// k-nearest neighbours by cosine similarity on standardised features (training statistics),
// with k chosen by leave-one-out on the training set: the baseline a head must beat.

import * as tf from '@tensorflow/tfjs-core';
import { standardization, standardize } from '../train/logistic.js';

export const KNN_DEFAULTS = { ks: [1, 3, 5, 7, 9, 15, 25] };

function unitRows(x: Float64Array, n: number, d: number): tf.Tensor2D {
  return tf.tidy(() => {
    const m = tf.tensor2d(Float32Array.from(x), [n, d]);
    return tf.div(m, tf.add(tf.norm(m, 'euclidean', 1, true), 1e-12)) as tf.Tensor2D;
  });
}

/** Neighbour labels and similarities of each query row, nearest first (`skipSelf`: leave-one-out). */
function neighbours(q: tf.Tensor2D, ref: tf.Tensor2D, k: number, skipSelf: boolean): { sims: Float32Array; idx: Int32Array; k: number } {
  const kk = Math.min(ref.shape[0], k + (skipSelf ? 1 : 0));
  return tf.tidy(() => {
    let s = tf.matMul(q, ref, false, true);
    if (skipSelf) s = tf.sub(s, tf.mul(tf.eye(q.shape[0], ref.shape[0]), 10));
    const top = tf.topk(s, kk);
    return { sims: top.values.dataSync() as Float32Array, idx: top.indices.dataSync() as Int32Array, k: kk };
  });
}

function vote(labels: Int32Array, nb: { sims: Float32Array; idx: Int32Array; k: number }, row: number, k: number): number {
  const votes = new Map<number, number>();
  for (let j = 0; j < Math.min(k, nb.k); j++) {
    const y = labels[nb.idx[row * nb.k + j]];
    votes.set(y, (votes.get(y) ?? 0) + 1 + nb.sims[row * nb.k + j] * 1e-6);
  }
  return [...votes].sort((a, b) => b[1] - a[1])[0][0];
}

export interface KnnResult { k: number; accuracy: number; looAccuracy: number }

/** Test accuracy of k-NN on rows of [n, d] features, k chosen by leave-one-out on the training rows. */
export function knnAccuracy(train: { x: Float32Array; labels: Int32Array }, test: { x: Float32Array; labels: Int32Array }, d: number): KnnResult {
  const n = train.labels.length;
  const s = standardization(train.x, d);
  const tr = unitRows(standardize(train.x, d, s), n, d);
  try {
    const ks = KNN_DEFAULTS.ks.filter((k) => k < n);
    const loo = neighbours(tr, tr, Math.max(...ks), true);
    const scores = ks.map((k) => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (vote(train.labels, loo, i, k) === train.labels[i]) hits++;
      return { k, acc: hits / n };
    });
    const best = scores.reduce((b, x) => (x.acc > b.acc ? x : b));
    let hits = 0;
    const chunk = 256;
    for (let start = 0; start < test.labels.length; start += chunk) {
      const m = Math.min(chunk, test.labels.length - start);
      const q = unitRows(standardize(test.x.subarray(start * d, (start + m) * d), d, s), m, d);
      const nb = neighbours(q, tr, best.k, false);
      q.dispose();
      for (let i = 0; i < m; i++) if (vote(train.labels, nb, i, best.k) === test.labels[start + i]) hits++;
    }
    return { k: best.k, looAccuracy: best.acc, accuracy: hits / Math.max(1, test.labels.length) };
  } finally {
    tr.dispose();
  }
}
