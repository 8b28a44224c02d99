// graft demo --forgetting: the same transfer (digits-cnn, 0-4 to 5-9) in five ways of keeping
// (or not) the old task, measured on the old digits, the new digits and all ten.

import { alignClasses } from '#internal/data/load.js';
import { evaluate, loadModel, transfer, type Dataset, type TransferOptions } from 'graft';
import { loadMnist } from '#internal/data/mnist.js';
import { takePerClass } from '#internal/data/dataset.js';
import { percent } from '../args.js';
import type { LayersModel } from '@tensorflow/tfjs-layers';

export interface ForgettingRow {
  mode: string;
  /** Whether training changed the pretrained body's weights (measured: its first layer against the original's). */
  bodyChanged: boolean;
  oldTaskAccuracy: number | null;
  newTaskAccuracy: number | null;
  allDigitsAccuracy: number | null;
  seconds: number;
}

/** One recipe for every row, so they differ only in how they treat the old task. */
export const FORGETTING_RECIPE = { perClass: 1000, lr: 4e-3, lrRatio: 1, warmupEpochs: 3, finetuneEpochs: 5, replay: 20 };

// Each row trains what it says: keep-better is off, or its check could put the warm-up head back
// and a "full fine-tune" row would show the frozen body's figures (it did: 99.77% both).
const MODES: Array<{ mode: string; options: TransferOptions; needsOldTrain?: boolean }> = [
  { mode: 'frozen body, old head kept', options: { keepOld: 'head', unfreeze: 'none', keepBetter: false } },
  { mode: 'full fine-tune', options: { keepOld: 'head', keepBetter: false } },
  { mode: 'fine-tune with LwF', options: { keepOld: 'lwf', keepBetter: false } },
  { mode: 'extend, no replay', options: { extend: true, keepBetter: false } },
  { mode: `extend, replay ${FORGETTING_RECIPE.replay}/class`, options: { extend: true, replay: FORGETTING_RECIPE.replay, keepBetter: false }, needsOldTrain: true },
];

/** Largest change of any weight of the original's first weighted layer in `model`. */
function bodyChange(original: LayersModel, model: LayersModel): number {
  const first = original.layers.find((l) => l.getWeights().length > 0)!;
  const before = first.getWeights();
  const after = model.getLayer(first.name).getWeights();
  let d = 0;
  before.forEach((w, i) => {
    const a = w.dataSync();
    const b = after[i].dataSync();
    for (let k = 0; k < a.length; k++) d = Math.max(d, Math.abs(a[k] - b[k]));
  });
  return d;
}

export async function forgettingRows(seed: number, say: (l?: string) => void): Promise<{ rows: ForgettingRow[]; originalOld: number }> {
  const r = FORGETTING_RECIPE;
  const [train, oldTrain, newTest, oldTest] = await Promise.all([
    loadMnist('train', [5, 6, 7, 8, 9]).then((d) => takePerClass(d, r.perClass, seed)),
    loadMnist('train', [0, 1, 2, 3, 4]),
    loadMnist('test', [5, 6, 7, 8, 9]),
    loadMnist('test', [0, 1, 2, 3, 4]),
  ]);
  const allTest: Dataset = await loadMnist('test', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const original = await loadModel('digits-cnn');
  const prep = original.meta!.preprocessing;
  const originalOld = (await evaluate(original.model, oldTest, prep)).accuracy;
  const rows: ForgettingRow[] = [];
  for (const m of MODES) {
    const t0 = Date.now();
    const base = await loadModel('digits-cnn'); // a fresh copy: training changes the shared body
    const t = await transfer(base, train, {
      warmupEpochs: r.warmupEpochs, finetuneEpochs: r.finetuneEpochs, lr: r.lr, lrRatio: r.lrRatio, seed,
      ...m.options, oldData: m.needsOldTrain ? oldTrain : undefined,
    });
    let row: ForgettingRow;
    const bodyChanged = bodyChange(original.model, t.grafted.model) > 0;
    if (m.options.extend) {
      const model = t.grafted.model;
      row = {
        mode: m.mode,
        bodyChanged,
        oldTaskAccuracy: (await evaluate(model, alignClasses(oldTest, t.classNames), prep)).accuracy,
        newTaskAccuracy: (await evaluate(model, alignClasses(newTest, t.classNames), prep)).accuracy,
        allDigitsAccuracy: (await evaluate(model, alignClasses(allTest, t.classNames), prep)).accuracy,
        seconds: 0,
      };
    } else {
      row = {
        mode: m.mode,
        bodyChanged,
        oldTaskAccuracy: (await evaluate(base.model, oldTest, prep)).accuracy,
        newTaskAccuracy: (await evaluate(t.grafted.model, newTest, prep)).accuracy,
        allDigitsAccuracy: null,
        seconds: 0,
      };
    }
    row.seconds = (Date.now() - t0) / 1000;
    rows.push(row);
    say(`   ${row.mode}: old ${percent(row.oldTaskAccuracy)}, new ${percent(row.newTaskAccuracy)}${row.allDigitsAccuracy === null ? '' : `, all ten ${percent(row.allDigitsAccuracy)}`} (${row.seconds.toFixed(0)} s)`);
  }
  return { rows, originalOld };
}

export function forgettingTable(rows: ForgettingRow[], originalOld: number): string {
  const head = ['mode', 'old task (0-4)', 'new task (5-9)', 'all 10 digits'];
  const body = rows.map((r) => [r.mode, percent(r.oldTaskAccuracy), percent(r.newTaskAccuracy), percent(r.allDigitsAccuracy)]);
  const all = [head, ...body];
  const w = head.map((_, c) => Math.max(...all.map((row) => row[c].length)));
  const line = (row: string[]) => `   ${row.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('   ')}`;
  return [`   (original model on the old digits: ${percent(originalOld)})`, line(head), ...body.map(line)].join('\n');
}

/** Plain words on the measured rows: which targets were met. */
export function forgettingVerdict(rows: ForgettingRow[], originalOld: number): string[] {
  const by = (prefix: string) => rows.find((r) => r.mode.startsWith(prefix))!;
  const frozen = by('frozen');
  const plain = by('full fine-tune');
  const lwf = by('fine-tune with LwF');
  const replay = rows[rows.length - 1];
  const lines: string[] = [];
  lines.push(frozen.oldTaskAccuracy === originalOld && !frozen.bodyChanged
    ? '   - Frozen body: the old head keeps exactly its old accuracy, and the new head is trained on the same features.'
    : frozen.bodyChanged ? `   - Frozen body: its weights changed, and the old accuracy is ${percent(frozen.oldTaskAccuracy)} (from ${percent(originalOld)}): they should not have.`
    : `   - Frozen body: the old accuracy moved from ${percent(originalOld)} to ${percent(frozen.oldTaskAccuracy)}: it should not have.`);
  // Every word below comes from the figures: a drop under half a point is not called forgetting.
  const points = (a: number, b: number) => `${(100 * Math.abs(a - b)).toFixed(2)} points`;
  const drop = originalOld - plain.oldTaskAccuracy!;
  lines.push(!plain.bodyChanged
    ? `   - Full fine-tune: the body did not change (${percent(plain.oldTaskAccuracy)} on the old digits), so this row shows no fine-tuning.`
    : drop >= 0.005
      ? `   - Full fine-tune: the body adapts to 5-9 and the old head drops from ${percent(originalOld)} to ${percent(plain.oldTaskAccuracy)} (${points(originalOld, plain.oldTaskAccuracy!)}): forgetting.`
      : `   - Full fine-tune: the body changed, and the old head stays at ${percent(plain.oldTaskAccuracy)} (from ${percent(originalOld)}): little forgetting in this run.`);
  const kept = lwf.oldTaskAccuracy! / originalOld;
  const gap = (plain.newTaskAccuracy! - lwf.newTaskAccuracy!) * 100;
  const vsPlain = lwf.oldTaskAccuracy! > plain.oldTaskAccuracy! ? `${points(lwf.oldTaskAccuracy!, plain.oldTaskAccuracy!)} more of the old task than plain fine-tuning`
    : lwf.oldTaskAccuracy! < plain.oldTaskAccuracy! ? `${points(lwf.oldTaskAccuracy!, plain.oldTaskAccuracy!)} less of the old task than plain fine-tuning: here distillation did not help` : 'as much of the old task as plain fine-tuning';
  lines.push(`   - LwF keeps ${(100 * kept).toFixed(1)}% of the old accuracy (target 90%), ${vsPlain}, with the new task ${gap <= 0 ? `${(-gap).toFixed(2)} points better than` : `${gap.toFixed(2)} points below`} plain fine-tuning (target: within 2).`);
  const ext = rows[3];
  const extOld = ext.oldTaskAccuracy!;
  lines.push(extOld < originalOld - 0.05
    ? `   - Extend without replay: one head for all ten digits, but the old digits fall to ${percent(extOld)}: distillation alone does not stop a single head from preferring the new classes.`
    : `   - Extend without replay: one head for all ten digits; the old digits stay at ${percent(extOld)} (from ${percent(originalOld)}).`);
  const all = replay.allDigitsAccuracy!;
  lines.push(`   - Extend with ${FORGETTING_RECIPE.replay} old examples per class replayed: ${percent(all)} on all ten digits (target 95%: ${all >= 0.95 ? 'met' : 'not met'})${ext.allDigitsAccuracy !== null ? `, against ${percent(ext.allDigitsAccuracy)} without replay` : ''}.`);
  return lines;
}
