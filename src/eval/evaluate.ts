// Accuracy, per-class accuracy and the confusion matrix of a classifier on a dataset.

import { predictWithTta } from './tta.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { predictAll } from '../train/predict.js';
import { scoreProbabilities, type Evaluation } from '../train/score.js';

export type { Evaluation };

export async function evaluate(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, batchSize = 128, options: { tta?: boolean } = {}): Promise<Evaluation> {
  if (options.tta) return scoreProbabilities(await predictWithTta(model, d, p, true), d.labels, d.classNames);
  const { values } = await predictAll(model, d, p, batchSize);
  return scoreProbabilities(values, d.labels, d.classNames);
}

export function formatEvaluation(e: Evaluation): string {
  const w = Math.max(5, ...e.classNames.map((c) => c.length));
  const lines = [`accuracy ${(100 * e.accuracy).toFixed(2)}% on ${e.count} samples (loss ${e.loss.toFixed(4)})`, '', 'per class:'];
  for (const pc of e.perClass) lines.push(`  ${pc.className.padEnd(w)}  ${pc.accuracy === null ? '   -  ' : `${(100 * pc.accuracy).toFixed(1).padStart(5)}%`}  (${pc.count})`);
  lines.push('', 'confusion matrix (rows: true class, columns: predicted):');
  const cw = Math.max(w, ...e.confusion.flat().map((v) => String(v).length));
  lines.push(`  ${''.padEnd(w)}  ${e.classNames.map((c) => c.padStart(cw)).join(' ')}`);
  e.confusion.forEach((row, i) => lines.push(`  ${e.classNames[i].padEnd(w)}  ${row.map((v) => String(v).padStart(cw)).join(' ')}`));
  return lines.join('\n');
}
