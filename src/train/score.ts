// Scoring class probabilities against labels: accuracy, loss, per-class accuracy and the
// confusion matrix. Used for validation during training and by evaluate.

/** The index of the largest value in row i of a row-major [n, k] array. */
export function argmaxRow(probs: ArrayLike<number>, i: number, k: number): number {
  let best = 0;
  for (let c = 1; c < k; c++) if (probs[i * k + c] > probs[i * k + best]) best = c;
  return best;
}

export interface Evaluation {
  accuracy: number;
  loss: number;
  count: number;
  classNames: string[];
  perClass: { className: string; accuracy: number | null; count: number }[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

export function scoreProbabilities(probs: Float32Array, labels: Int32Array, classNames: string[]): Evaluation {
  const k = classNames.length;
  const confusion = classNames.map(() => new Array<number>(k).fill(0));
  let correct = 0;
  let loss = 0;
  for (let i = 0; i < labels.length; i++) {
    const best = argmaxRow(probs, i, k);
    confusion[labels[i]][best]++;
    if (best === labels[i]) correct++;
    loss -= Math.log(Math.max(probs[i * k + labels[i]], 1e-7));
  }
  const n = labels.length;
  return {
    accuracy: n ? correct / n : 0,
    loss: n ? loss / n : 0,
    count: n,
    classNames,
    perClass: classNames.map((className, c) => {
      const total = confusion[c].reduce((a, b) => a + b, 0);
      return { className, accuracy: total ? confusion[c][c] / total : null, count: total };
    }),
    confusion,
  };
}
