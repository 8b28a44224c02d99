// Honest uncertainty for small test sets: the Wilson score interval of an accuracy (95% by
// default), which stays inside [0, 1] and is right at the ends, where the normal
// approximation says 100% +- 0 for 10 of 10.

export interface Interval { low: number; high: number; level: number }

export function wilson(correct: number, n: number, z = 1.959963984540054): Interval {
  if (n <= 0) return { low: 0, high: 1, level: 0.95 };
  const p = correct / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: correct <= 0 ? 0 : Math.max(0, centre - half), high: correct >= n ? 1 : Math.min(1, centre + half), level: 0.95 };
}

/** "74.4% (95% interval 58.9-85.4%, 29 of 39)". */
export function accuracyWords(accuracy: number, n: number): string {
  const correct = Math.round(accuracy * n);
  const w = wilson(correct, n);
  return `${(100 * accuracy).toFixed(1)}% (95% interval ${(100 * w.low).toFixed(1)}-${(100 * w.high).toFixed(1)}%, ${correct} of ${n})`;
}
