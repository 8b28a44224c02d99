// The forgetting report: what training the new task did to the old one. Before and after:
// old-task accuracy (through the old head, or the extended head), agreement of the old
// task's predictions with the original model's, and new-task accuracy on validation data.

import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { alignClasses } from '../data/load.js';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import type { LoadedModel } from '../model/load.js';
import { findOldHead } from '../model/multi-head.js';
import { predictAll } from '../train/predict.js';
import { argmaxRow } from '../train/score.js';
import { transfer, type Transfer, type TransferOptions } from '../train/transfer.js';
import { takePerClass } from '../data/dataset.js';
import type { Grafted } from '../model/graft.js';

const CURVE_SAMPLES = 1000;

export interface ForgettingReport {
  mode: string;
  oldTask: { samples: number; accuracyBefore: number; accuracyAfter: number; agreementAfter: number; classNames: string[] };
  newTask: { samples: number; accuracyBefore: number; accuracyAfter: number; on: string } | null;
}

async function classify(model: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined): Promise<Int32Array> {
  const { values, shape } = await predictAll(model, d, p);
  const k = shape[shape.length - 1];
  return Int32Array.from({ length: d.labels.length }, (_, i) => argmaxRow(values, i, k));
}

const accuracy = (pred: Int32Array, labels: Int32Array) => (labels.length ? pred.reduce((n, p, i) => n + (p === labels[i] ? 1 : 0), 0) / labels.length : 0);

/**
 * Transfers as `transfer` does and measures the old task before and after. `oldData` is
 * old-task data whose classes the old head knows (labels are used for accuracy; agreement
 * with the original model's predictions needs none).
 */
export async function transferWithForgetting(base: LoadedModel, data: Dataset, options: TransferOptions & { oldData: Dataset }): Promise<Transfer & { forgetting: ForgettingReport }> {
  if (!base.meta?.preprocessing && data.sampleShape.length > 1 && !options.preprocessing) {
    throw new GraftError('BAD_MODEL', `The base "${base.source}" has no graft.json, so the preprocessing of its old data is unknown.`, { fix: 'Give preprocessing explicitly.' });
  }
  const prep = options.preprocessing ?? base.meta?.preprocessing;
  let oldEval: Dataset | undefined;
  let originalPred: Int32Array = new Int32Array();
  let newBefore: { accuracy: number; on: Dataset } | undefined;
  let grafted: Grafted | undefined;
  const curveData = (d: Dataset) => takePerClass(d, Math.ceil(CURVE_SAMPLES / d.classNames.length), 1);
  const result = await transfer(base, data, {
    ...options,
    callbacks: {
      ...options.callbacks,
      // The old-task accuracy after every epoch, on a sample of the old data, for the curves.
      onEpochEnd: async (record) => {
        const model = options.extend ? grafted!.model : base.model;
        const probe = curveData(oldEval!);
        record.oldTaskAccuracy = accuracy(await classify(model, probe, prep), probe.labels);
        await options.callbacks?.onEpochEnd?.(record);
      },
    },
    onGrafted: async (g) => {
      grafted = g;
      const old = findOldHead(base);
      oldEval = alignClasses(options.oldData, old.classNames);
      originalPred = await classify(base.model, oldEval, prep);
      await options.onGrafted?.(g);
    },
    // The new head before training, on the very validation data transfer settled on.
    onSplit: async (s) => {
      const val = s.validation;
      if (val && !options.extend) newBefore = { accuracy: accuracy(await classify(grafted!.model, val, prep), val.labels), on: val };
      await options.onSplit?.(s);
    },
  });
  const oldModel = options.extend ? result.grafted.model : base.model;
  const afterPred = await classify(oldModel, oldEval!, prep);
  let newTask: ForgettingReport['newTask'] = null;
  if (newBefore) {
    const after = accuracy(await classify(result.grafted.model, newBefore.on, prep), newBefore.on.labels);
    newTask = { samples: newBefore.on.labels.length, accuracyBefore: newBefore.accuracy, accuracyAfter: after, on: 'validation split' };
  }
  const forgetting: ForgettingReport = {
    mode: options.extend ? `extend${options.replay ? `, replay ${options.replay}/class` : ''}` : options.keepOld ?? 'plain',
    oldTask: {
      samples: oldEval!.labels.length,
      accuracyBefore: accuracy(originalPred, oldEval!.labels),
      accuracyAfter: accuracy(afterPred, oldEval!.labels),
      agreementAfter: accuracy(afterPred, originalPred),
      classNames: oldEval!.classNames,
    },
    newTask,
  };
  result.meta.forgetting = forgetting;
  return { ...result, forgetting };
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

export function formatForgetting(r: ForgettingReport): string {
  const rows = [
    ['', 'before', 'after', 'change'],
    ['old task accuracy', pct(r.oldTask.accuracyBefore), pct(r.oldTask.accuracyAfter), `${((r.oldTask.accuracyAfter - r.oldTask.accuracyBefore) * 100).toFixed(2)} pts`],
    ['old predictions kept', '100.00%', pct(r.oldTask.agreementAfter), ''],
  ];
  if (r.newTask) rows.push(['new task accuracy', pct(r.newTask.accuracyBefore), pct(r.newTask.accuracyAfter), `${((r.newTask.accuracyAfter - r.newTask.accuracyBefore) * 100).toFixed(2)} pts`]);
  const w = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const lines = rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('   '));
  return [`Forgetting report (${r.mode}; old task: ${r.oldTask.samples} samples of classes ${r.oldTask.classNames.join(', ')}${r.newTask ? `; new task: ${r.newTask.on}, ${r.newTask.samples} samples` : ''})`, ...lines.map((l) => `  ${l}`),
    '  "old predictions kept": how often the old task\'s answer is still the one the original model gave.'].join('\n');
}
