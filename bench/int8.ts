// npm run bench:int8: how graft export --quantize int8 holds up on CPUs with and without VNNI.
//
// onnxruntime's x86 u8 x s8 kernels without AVX512-VNNI or AVX-VNNI (vpmaddubsw) add pairs of
// products in 16 bits, which saturate when activations near 255 meet weights near 127; with
// VNNI the sums are 32-bit. So one int8 file can score differently on two CPUs. This bench
// trains two models with graft train's defaults (the photo fixture on mobilenet-v2, 79 training
// and 39 test photos; MNIST 5-9 on digits-cnn, 200 per class, 4,861 test digits), exports
// each weight form of quantize.ts (int8: [-127, 127], onnxruntime's U8S8 kernels;
// int8-reduced: [-64, 64], onnxruntime's reduce_range; uint8: zero point 128, onnxruntime's
// U8U8 kernels, the default) and fp32, and runs every file on the test images:
//   native  this machine's CPU (its flags are printed)
//   avx2    under qemu-x86_64 -cpu EPYC-Milan (AVX2, no AVX512, no VNNI: an AMD EPYC Milan),
//           Debian's qemu-user; left out with a note when it is not installed
// against the tfjs fp32 model's predictions: accuracy, top-1 agreement, largest probability
// difference, and native seconds for the test set (2 threads, the fastest of 5 passes; under
// qemu times mean nothing).
// Last line: one JSON object with every figure.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { alignClasses, loadData } from '../src/data/load.js';
import { savedDataOptions } from '../src/cli/external-body.js';

import { batchValues } from '../src/data/preprocess.js';
import { predictAll } from '../src/train/predict.js';
import { exportOnnx } from '../src/export/export.js';
import type { WeightForm } from '../src/export/quantize.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const graftBin = join(root, 'bin', 'graft.js');
const FORMS: WeightForm[] = ['int8', 'int8-reduced', 'uint8'];

function cpuFlags(): string[] {
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
  return line.split(':')[1].trim().split(/\s+/).filter((f) => /^(avx|fma|f16c|amx)/.test(f)).sort();
}

function hasQemu(): boolean {
  return spawnSync('qemu-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;
}

interface Figures { accuracy: number; top1Agreement: number; maxAbsDiff: number; seconds?: number }

function compare(probs: Float32Array, ref: Float32Array, labels: Int32Array, k: number): Figures {
  let agree = 0, right = 0, maxAbsDiff = 0;
  const arg = (p: Float32Array, i: number) => { let b = 0; for (let c = 1; c < k; c++) if (p[i * k + c] > p[i * k + b]) b = c; return b; };
  for (let i = 0; i < labels.length; i++) {
    const a = arg(probs, i);
    if (a === arg(ref, i)) agree++;
    if (a === labels[i]) right++;
  }
  for (let i = 0; i < ref.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(probs[i] - ref[i]));
  return { accuracy: right / labels.length, top1Agreement: agree / labels.length, maxAbsDiff };
}

async function one(name: string, trainArgs: string[], testSpec: string, work: string) {
  const out = join(work, name);
  process.stderr.write(`${name}: graft train ${trainArgs.join(' ')}\n`);
  execFileSync(process.execPath, [graftBin, 'train', ...trainArgs, '--out', out, '--json'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const { model, meta } = await loadModel(out);
  const o = savedDataOptions({}, model, meta!);
  const calibration = await loadData(meta!.trainingData!.spec, o);
  const test = alignClasses(await loadData(testSpec, { ...o, classNames: meta!.classNames }), meta!.classNames);
  const n = test.labels.length;
  const k = meta!.classNames.length;
  const { values: ref } = await predictAll(model, test, meta!.preprocessing, 128, 'fp32');
  const tfjsAccuracy = compare(ref, ref, test.labels, k).accuracy;
  const dir = join(work, `${name}-onnx`);
  execFileSync('mkdir', ['-p', dir]);
  const raw = batchValues(test, Int32Array.from({ length: n }, (_, i) => i), undefined);
  await writeFile(join(dir, 'samples.f32'), Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength));
  await writeFile(join(dir, 'samples.json'), JSON.stringify({ sampleShape: test.sampleShape, classNames: test.classNames, n }));
  await writeFile(join(dir, 'fp32.onnx'), (await exportOnnx(model, meta!, {})).bytes);
  const keptFp32: Record<string, string | null> = {};
  for (const w of FORMS) {
    const e = await exportOnnx(model, meta!, { quantize: 'int8', calibration, calibrationSamples: 256, weights: w });
    keptFp32[w] = e.keptFp32?.layer ?? null;
    await writeFile(join(dir, `int8w-${w}.onnx`), e.bytes);
  }
  const runner = join(root, 'dist', 'bench', 'int8-run.js');
  const results: Record<string, Record<string, Figures>> = {};
  const where: [string, string[]][] = [['native', [process.execPath, runner, dir, '5']]];
  if (hasQemu()) where.push(['avx2', ['qemu-x86_64', '-cpu', 'EPYC-Milan', process.execPath, runner, dir]]);
  for (const [label, cmd] of where) {
    process.stderr.write(`${name}: onnxruntime ${label}\n`);
    execFileSync(cmd[0], cmd.slice(1), { stdio: ['ignore', 'inherit', 'ignore'] });
    const { seconds } = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as { seconds: Record<string, number> };
    results[label] = {};
    for (const f of ['fp32', ...FORMS.map((w) => `int8w-${w}`)]) {
      const b = await readFile(join(dir, `${f}.probs.f32`));
      const f32 = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      results[label][f] = { ...compare(f32, ref, test.labels, k), ...(label === 'native' ? { seconds: seconds[`${f}.onnx`] } : {}) };
    }
  }
  return { testSamples: n, tfjsAccuracy, keptFp32, ...results };
}

await initBackend();
const work = await mkdtemp(join(tmpdir(), 'graft-bench-int8-'));
try {
  const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const report = {
    cpu: { native: cpuFlags(), avx2: hasQemu() ? 'qemu-x86_64 -cpu EPYC-Milan: avx avx2 fma f16c, no avx512, no vnni' : 'not run: apt-get install qemu-user' },
    photos: await one('photos', ['--base', 'mobilenet-v2', '--data', join(photos, 'train')], join(photos, 'test'), work),
    mnist: await one('mnist', ['--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '200'], 'mnist-test:5-9', work),
  };
  for (const set of ['photos', 'mnist'] as const) {
    const r = report[set] as unknown as Record<string, Record<string, Figures>>;
    for (const where of ['native', 'avx2']) {
      if (!r[where]) continue;
      for (const [f, x] of Object.entries(r[where])) process.stderr.write(`${set} ${where} ${f}: accuracy ${(100 * x.accuracy).toFixed(1)}% agreement ${(100 * x.top1Agreement).toFixed(1)}% max |dp| ${x.maxAbsDiff.toFixed(3)}${x.seconds ? ` ${x.seconds.toFixed(2)} s` : ''}\n`);
    }
  }
  console.log(JSON.stringify(report));
} finally {
  await rm(work, { recursive: true, force: true });
}
