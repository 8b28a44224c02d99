// npm run bench:small-data: Graft's default `graft train` on small data against the old recipe
// (SGD warm-up by epochs, 10% validation split, fine-tuning always kept), k-NN, and an
// independent reference: a logistic regression with L-BFGS in Debian's python3-torch
// (bench/reference_logreg.py) on the pooled body features Graft extracts from the same images.
// Three tasks: the photo fixture (scripts/photo-fixture.mjs) on mobilenet-v2, MNIST 5-9 at 10
// per class on digits-cnn, Fashion-MNIST at 10 per class on mobilenet-v2 at 96x96
// (npm run data:fashion -- --per-class 10 --test-per-class 100). Seeds 1-3. Last line: JSON.
// BENCH_TASKS=photos,mnist limits the tasks.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { count } from '../src/data/dataset.js';
import { cutBody } from '../src/model/cut.js';
import { featureDataset } from '../src/train/predict.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { dataOptions, loadTrainingData } from '../src/cli/data-args.js';
import { pooledFeatures } from '../src/train/head-fit.js';
import { knnAccuracy } from '../src/eval/knn.js';
import { alignClasses } from '../src/data/load.js';

interface Task { name: string; args: string[]; needs?: string }
const TASKS: Task[] = [
  { name: 'photos', args: ['--base', 'mobilenet-v2', '--data', 'data/photos'], needs: 'data/photos' },
  { name: 'mnist-5-9', args: ['--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '10', '--test-data', 'mnist-test:5-9'] },
  { name: 'fashion-mnist', args: ['--base', 'mobilenet-v2', '--input-size', '96', '--data', 'data/fashion-mnist', '--per-class', '10'], needs: 'data/fashion-mnist' },
];
// BENCH_FOLDER=<dir with train/ and test/ class folders>: also a set of your own photos ("folder").
if (process.env.BENCH_FOLDER) TASKS.push({ name: 'folder', args: ['--base', 'mobilenet-v2', '--data', process.env.BENCH_FOLDER], needs: process.env.BENCH_FOLDER });
const OLD = ['--warmup', 'sgd', '--keep-better', 'no', '--val-split', '0.1'];
const SEEDS = [1, 2, 3];
const wanted = process.env.BENCH_TASKS?.split(',');

function graftTrain(args: string[], out: string): { testAccuracy: number; seconds: number } {
  const t0 = Date.now();
  const stdout = execFileSync(process.execPath, ['bin/graft.js', 'train', ...args, '--out', out, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 28 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!);
  return { testAccuracy: r.testAccuracy, seconds: (Date.now() - t0) / 1000 };
}

function parseArgs(args: string[]): Record<string, string> {
  const v: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 2) v[args[i].slice(2)] = args[i + 1];
  return v;
}

/** Pooled body features of the same training and test images graft train uses with this seed, through Graft's own loaders. */
async function features(task: Task, seed: number, dir: string) {
  const values = parseArgs(task.args);
  const inputSize = values['input-size'] ? [Number(values['input-size']), Number(values['input-size'])] as [number, number] : undefined;
  const base = await loadModel(values.base, { inputSize });
  const cut = base.meta!.zoo!.suggestedCuts![0];
  const body = cutBody(base.model, cut).model;
  const o = dataOptions(values, base.model, base.meta?.preprocessing);
  const { data, test } = await loadTrainingData(values, o, seed);
  const p = base.meta!.preprocessing;
  const pool = base.meta?.zoo?.suggestedHead?.pooling ?? 'avg';
  const tr = pooledFeatures(await featureDataset(body, data, p), pool);
  const te = pooledFeatures(await featureDataset(body, alignClasses(test!, data.classNames), p), pool);
  await writeFile(join(dir, 'train.f32'), Buffer.from(tr.x.buffer));
  await writeFile(join(dir, 'train.labels'), Buffer.from(data.labels.buffer));
  await writeFile(join(dir, 'test.f32'), Buffer.from(te.x.buffer));
  await writeFile(join(dir, 'test.labels'), Buffer.from(alignClasses(test!, data.classNames).labels.buffer));
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ d: tr.d, k: data.classNames.length, seed }));
  const knn = knnAccuracy({ x: tr.x, labels: data.labels }, { x: te.x, labels: alignClasses(test!, data.classNames).labels }, tr.d);
  return { knn, n: count(data), testN: count(test!) };
}

await initBackend();
const dir = await mkdtemp(join(tmpdir(), 'graft-bench-small-'));
const results: Record<string, unknown>[] = [];
try {
  for (const task of TASKS) {
    if (wanted && !wanted.includes(task.name)) continue;
    if (task.needs && !existsSync(task.needs)) { console.error(`${task.name}: ${task.needs} is missing, skipped (see the header)`); continue; }
    for (const seed of SEEDS) {
      const f = await features(task, seed, dir);
      const ref = JSON.parse(execFileSync('/usr/bin/python3', ['bench/reference_logreg.py', dir], { encoding: 'utf8' }));
      const now = graftTrain([...task.args, '--seed', String(seed)], join(dir, 'new'));
      const old = graftTrain([...task.args, '--seed', String(seed), ...OLD], join(dir, 'old'));
      const row = {
        task: task.name, seed, trainSamples: f.n, testSamples: f.testN,
        default: now.testAccuracy, oldRecipe: old.testAccuracy, knn: f.knn.accuracy, knnK: f.knn.k,
        reference: ref.testAccuracy, referenceL2: ref.chosenL2, referenceRange: [Math.min(...ref.testAccuracyByL2), Math.max(...ref.testAccuracyByL2)],
        defaultMinusReference: now.testAccuracy - ref.testAccuracy, seconds: { default: now.seconds, oldRecipe: old.seconds },
      };
      console.error(JSON.stringify(row));
      results.push(row);
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
const byTask = [...new Set(results.map((r) => r.task as string))].map((t) => {
  const rs = results.filter((r) => r.task === t);
  const col = (k: string) => rs.map((r) => r[k] as number);
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const spread = (a: number[]) => Math.max(...a) - Math.min(...a);
  return { task: t, defaultMean: mean(col('default')), defaultSpread: spread(col('default')), oldMean: mean(col('oldRecipe')), oldSpread: spread(col('oldRecipe')),
    knnMean: mean(col('knn')), referenceMean: mean(col('reference')), worstDefaultMinusReference: Math.min(...col('defaultMinusReference')) };
});
console.log(JSON.stringify({ bench: 'small-data', results, summary: byTask }));
