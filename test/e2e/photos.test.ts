// The small-data recipe as a user meets it: `graft train` with its defaults on the real-photo
// fixture (79 training and 39 test photographs of 5 classes from Debian's
// tuxpaint-stamps-default, scripts/photo-fixture.mjs), against an independent reference fitted
// outside Graft's code: a logistic regression with L-BFGS in Debian's python3-torch
// (bench/reference_logreg.py) on the pooled body features of the same images.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cutBody } from '../../src/model/cut.js';
import { featureDataset } from '../../src/train/predict.js';
import { initBackend } from '../../src/engine/backend.js';
import { loadData } from '../../src/data/load.js';
import { loadModel } from '../../src/model/load.js';
import { pooledFeatures } from '../../src/train/head-fit.js';
import { dataOptions } from '../../src/cli/data-args.js';
import { assertKeepBetterAgrees, cpuFlags, graft, graftOnCpu, hasQemu, lastJson, root } from '../cli.js';

const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();

async function reference(dir: string): Promise<number> {
  await initBackend();
  const base = await loadModel('mobilenet-v2');
  const body = cutBody(base.model, base.meta!.zoo!.suggestedCuts![0]).model;
  const p = base.meta!.preprocessing;
  // The image decoding graft train uses (alpha over white, centre crop, RGB).
  const o = dataOptions({}, base.model, p);
  const train = await loadData(join(photos, 'train'), o);
  const testSet = await loadData(join(photos, 'test'), { ...o, classNames: train.classNames });
  const tr = pooledFeatures(await featureDataset(body, train, p), 'avg');
  const te = pooledFeatures(await featureDataset(body, testSet, p), 'avg');
  await writeFile(join(dir, 'train.f32'), Buffer.from(tr.x.buffer));
  await writeFile(join(dir, 'train.labels'), Buffer.from(train.labels.buffer));
  await writeFile(join(dir, 'test.f32'), Buffer.from(te.x.buffer));
  await writeFile(join(dir, 'test.labels'), Buffer.from(testSet.labels.buffer));
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ d: tr.d, k: train.classNames.length, seed: 1 }));
  return JSON.parse(execFileSync('/usr/bin/python3', [join(root, 'bench/reference_logreg.py'), dir], { encoding: 'utf8' })).testAccuracy;
}

test('graft train with its defaults on 79 real photos reaches the independent reference minus 3 points, and says how sure it is', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-photos-'));
  try {
    const ref = await reference(dir);
    const r = await graft(['train', '--base', 'mobilenet-v2', '--data', photos, '--out', join(dir, 'model'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lastJson(r.stdout);
    console.log(`photo fixture: graft train ${out.testAccuracy}, python3-torch reference ${ref}`);
    assert.ok(out.testAccuracy >= ref - 0.03, `graft train ${out.testAccuracy} vs reference ${ref}`);
    assert.ok(ref > 0.5, `the reference itself should be far above chance (0.2): ${ref}`);
    assert.equal(out.headFit.chosenBy, 'cross-validation', 'under 100 per class the L2 strength is cross-validated');
    assert.ok(out.headFit.converged, JSON.stringify(out.headFit));
    assert.equal(out.validationAccuracy, null, 'no validation split of a few images');
    assertKeepBetterAgrees(out.fineTuneCheck, 'cross-validation');
    const [low, high] = out.uncertainty.test.wilson95;
    assert.ok(low < out.testAccuracy && out.testAccuracy < high && high - low > 0.1, `39 test images give a wide interval: ${low}-${high}`);
    assert.equal(out.uncertainty.test.samples, 39);
    // Predict on the test folder of class sub-folders names each file and its true class.
    const pr = await graft(['predict', join(dir, 'model'), join(photos, 'test')]);
    assert.equal(pr.code, 0, pr.stderr);
    const lines = pr.stdout.trim().split('\n').filter((l) => l.includes('(true: '));
    assert.ok(lines.length >= 20, pr.stdout);
    assert.ok(lines[0].startsWith(`${join(photos, 'test', 'clothes')}/`), lines[0]);
    assert.match(lines[0], /\.png: \w+ [\d.]+%.*\(true: clothes, (right|WRONG)\)$/);
    // int8 on MobileNetV2, calibrated on the training photos graft.json recorded: at most one of
    // the 39 test photos scored differently from the tfjs model, at most one top class differs.
    const ex = await graft(['export', join(dir, 'model'), '--quantize', 'int8', '--test-data', join(photos, 'test'), '--json']);
    assert.equal(ex.code, 0, ex.stderr);
    const q = JSON.parse(ex.stdout.trim().split('\n').at(-1)!);
    assert.equal(q.calibration.on, join(photos, 'train'));
    const photosApart = (a: number, b: number) => Math.round(Math.abs(a - b) * q.check.samples);
    assert.ok(photosApart(q.check.accuracy.onnx, q.check.accuracy.tfjs) <= 1, `int8 and tfjs scored ${photosApart(q.check.accuracy.onnx, q.check.accuracy.tfjs)} of 39 photos apart: ${JSON.stringify(q.check)}`);
    assert.ok(Math.round((1 - q.check.top1Agreement) * q.check.samples) <= 1, `int8's top class differs from fp32's on ${Math.round((1 - q.check.top1Agreement) * 39)} of 39 photos`);
    // The default stores weights as uint8 (onnxruntime's U8U8 kernels), the same on every CPU,
    // and the words say which CPU the check ran on.
    assert.deepEqual(q.int8, { weights: 'uint8', sameOnEveryCpu: true });
    assert.equal(q.check.cpu.vnni, / (avx512_vnni|avx_vnni)( |$)/m.test(cpuFlags()), 'the check names this CPU\'s VNNI as /proc/cpuinfo has it');
    assert.equal(q.caveat, undefined);
    // The same file on an AVX2-only CPU without VNNI (an AMD EPYC Milan, emulated by Debian's
    // qemu-user): graft evaluate gives the same figures as here, photo for photo.
    const model8 = join(dir, 'model', 'model.int8.onnx');
    const here = await graft(['evaluate', model8, join(photos, 'test'), '--json']);
    assert.equal(here.code, 0, here.stderr);
    if (hasQemu()) {
      const avx2 = await graftOnCpu('EPYC-Milan', ['evaluate', model8, join(photos, 'test'), '--json']);
      assert.equal(avx2.code, 0, avx2.stderr);
      const [a, b] = [lastJson(here.stdout), lastJson(avx2.stdout)];
      console.log(`int8 (uint8 weights): ${a.accuracy} on this CPU, ${b.accuracy} on an emulated AVX2-only EPYC-Milan`);
      assert.deepEqual(b.confusion, a.confusion, 'the same photos right and wrong on an AVX2-only CPU');
    } else console.log('int8 on an AVX2-only CPU: not run, qemu-x86_64 is not installed (apt-get install qemu-user; scripts/install-system-deps.sh does)');
    // --int8-weights int8 (onnxruntime's U8S8 kernels) says what its check cannot see.
    const s8 = await graft(['export', join(dir, 'model'), '--quantize', 'int8', '--int8-weights', 'int8', '--out', join(dir, 's8.onnx'), '--test-data', join(photos, 'test'), '--json']);
    assert.equal(s8.code, 0, s8.stderr);
    const q8 = lastJson(s8.stdout);
    assert.deepEqual(q8.int8, { weights: 'int8', sameOnEveryCpu: false });
    assert.match(q8.caveat, q8.check.cpu.vnni ? /this CPU has VNNI.*without VNNI.*can score lower there/ : /this CPU has no VNNI.*can saturate/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('duplicates: a photo twice in its class or in two classes is used once and named; test photos that are training photos are counted and said', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-dups-'));
  try {
    const data = join(dir, 'data');
    await cp(join(photos, 'train'), join(data, 'train'), { recursive: true });
    await cp(join(photos, 'test'), join(data, 'test'), { recursive: true });
    const [first, second] = (await readdir(join(data, 'train', 'mammals'))).sort();
    // The same photo again in its class (a folder loaded twice), and once in another class.
    await copyFile(join(data, 'train', 'mammals', first), join(data, 'train', 'mammals', `zz-again-${first}`));
    await copyFile(join(data, 'train', 'mammals', second), join(data, 'train', 'vehicles', `zz-wrong-${second}`));
    // Two training photos in the test folder.
    await copyFile(join(data, 'train', 'mammals', first), join(data, 'test', 'mammals', `leak-${first}`));
    const [veh] = (await readdir(join(data, 'train', 'vehicles'))).sort();
    await copyFile(join(data, 'train', 'vehicles', veh), join(data, 'test', 'vehicles', `leak-${veh}`));
    const r = await graft(['train', '--base', 'mobilenet-v2', '--data', data, '--finetune-epochs', '0', '--out', join(dir, 'model'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lastJson(r.stdout);
    const reasons = out.skipped.map((s: { path: string; reason: string }) => `${s.path}: ${s.reason}`).join('\n');
    assert.match(reasons, new RegExp(`zz-again-${first.replace('.', '\\.')}: a copy of .*mammals/${first.replace('.', '\\.')} \\(the same image once decoded\\): used once`));
    // In two classes: the labels disagree, and neither copy is used.
    assert.match(reasons, new RegExp(`vehicles/zz-wrong-${second.replace('.', '\\.')}: the same image is in the classes "mammals" and "vehicles" .*no copy is used`));
    assert.match(reasons, new RegExp(`mammals/${second.replace('.', '\\.')}: the same image is in the classes "mammals" and "vehicles"`));
    assert.equal(out.skipped.length, 3, reasons);
    assert.deepEqual({ count: out.testCopiesOfTraining.count, of: out.testCopiesOfTraining.of }, { count: 2, of: 41 });
    assert.match(out.testCopiesOfTraining.examples.join(' '), /leak-/);
    const words = await graft(['train', '--base', 'mobilenet-v2', '--data', data, '--finetune-epochs', '0', '--out', join(dir, 'model2')]);
    assert.equal(words.code, 0, words.stderr);
    assert.match(words.stdout, /duplicates: 2 of the 41 test images are also training images \(e\.g\. .*leak-.*\), so the test accuracy overstates/);
    assert.match(words.stdout, /left out 3 file\(s\), each with its reason/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
