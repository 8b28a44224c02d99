// Image folders through the CLI: MNIST digits written as PNG and JPEG files (real encoding
// and decoding by sharp), with corrupt files among them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadData } from '../../src/data/load.js';
import { takePerClass } from '../../src/data/dataset.js';
import { graft, lastJson } from '../cli.js';

async function digitFolder(dir: string, perClass: number): Promise<void> {
  const d = takePerClass(await loadData('mnist-train:5-9'), perClass, 7);
  for (let i = 0; i < d.labels.length; i++) {
    const cls = join(dir, d.classNames[d.labels[i]]);
    await mkdir(cls, { recursive: true });
    const img = sharp(Buffer.from(Uint8Array.from(d.x.subarray(i * 784, (i + 1) * 784))), { raw: { width: 28, height: 28, channels: 1 } });
    // Every third one a JPEG at 56x56 (resized back to 28x28 on loading), the rest PNG.
    if (i % 3 === 0) await writeFile(join(cls, `${i}.jpg`), await img.resize(56, 56).jpeg({ quality: 95 }).toBuffer());
    else await writeFile(join(cls, `${i}.png`), await img.png().toBuffer());
  }
}

test('graft train/evaluate/predict on a folder of digit images; bad files are listed and skipped', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-imgcli-'));
  try {
    const data = join(dir, 'digits');
    await digitFolder(data, 60);
    await writeFile(join(data, '5', 'broken.png'), 'not a png');
    await writeFile(join(data, '6', 'empty.jpg'), '');
    const full = await readFile(join(data, '7', (await import('node:fs')).readdirSync(join(data, '7')).find((f) => f.endsWith('.jpg'))!));
    await writeFile(join(data, '7', 'cut.jpg'), full.subarray(0, full.length >> 1));
    const out = join(dir, 'model');
    const r = await graft(['train', '--base', 'digits-cnn', '--data', data, '--augment', 'none', '--test-split', '0.2', '--warmup-epochs', '3', '--finetune-epochs', '1', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = lastJson(r.stdout);
    assert.ok(res.testAccuracy > 0.75, `test accuracy ${res.testAccuracy}`);
    // 48 per class is small data: no validation split; the head's cross-validated accuracy stands in for it.
    assert.equal(res.validationAccuracy, null);
    assert.ok(res.headFit.cvAccuracy > 0.6, `cross-validated accuracy ${res.headFit.cvAccuracy}`);
    const skipped = Object.fromEntries(res.skipped.map((s: { path: string; reason: string }) => [s.path.split('/').pop(), s.reason]));
    assert.deepEqual(Object.keys(skipped).sort(), ['broken.png', 'cut.jpg', 'empty.jpg']);
    assert.match(skipped['empty.jpg'], /empty file/);
    const meta = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8'));
    assert.equal(meta.preprocessing.imageFit, 'crop');
    assert.equal(meta.metrics.testSamples, 60);

    const ev = await graft(['evaluate', out, data, '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    const evr = lastJson(ev.stdout);
    assert.equal(evr.count, 300);
    assert.ok(evr.accuracy > 0.75, `evaluate accuracy ${evr.accuracy}`);
    assert.equal(evr.skipped.length, 3);

    const pr = await graft(['predict', out, join(data, '5'), '--json']);
    assert.equal(pr.code, 0, pr.stderr);
    const preds = lastJson(pr.stdout);
    assert.equal(preds.predictions.length, 60, 'the folder\'s readable images');
    assert.deepEqual(preds.skipped.map((s: { path: string }) => s.path.split('/').pop()), ['broken.png']);
    const fives = preds.predictions.filter((p: { top: { className: string }[] }) => p.top[0].className === '5').length;
    assert.ok(fives >= 40, `most of folder 5 predicted as 5: ${fives}/60`);
    assert.ok(preds.predictions.every((p: { file: string }) => p.file.startsWith(join(data, '5'))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('graft train refuses a folder with one usable class before training, and writes nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-imgcli-'));
  try {
    const data = join(dir, 'digits');
    await digitFolder(data, 5);
    for (const c of ['6', '7', '8', '9']) await rm(join(data, c), { recursive: true });
    await mkdir(join(data, '6'));
    await writeFile(join(data, '6', 'x.png'), 'broken');
    const out = join(dir, 'model');
    const r = await graft(['train', '--base', 'digits-cnn', '--data', data, '--out', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /samples of 1 class only \(5\).*without samples: 6/s);
    await assert.rejects(access(out));
    const none = await graft(['train', '--base', 'digits-cnn', '--data', join(dir, 'missing'), '--out', out]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /does not exist/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('graft train --stream keeps the images on disk and reads them per batch; evaluate streams on its own above the size limit', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-stream-cli-'));
  try {
    const data = join(dir, 'digits');
    await digitFolder(data, 40);
    const out = join(dir, 'model');
    const r = await graft(['train', '--base', 'digits-cnn', '--data', data, '--stream', '--test-split', '0.2', '--warmup-epochs', '3', '--finetune-epochs', '1', '--warmup-views', '2', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /images: 160 kept on disk at the model's input size \(0 MB\), read per batch/);
    assert.match(r.stdout, /test accuracy/);
    const acc = Number(/test accuracy[^0-9]*([0-9.]+)%/.exec(r.stdout)?.[1]);
    assert.ok(acc > 70, `test accuracy ${acc}% from streamed images`);
    const ev = await graft(['evaluate', out, data, '--json'], { env: { GRAFT_STREAM_ABOVE_MB: '0' } });
    assert.equal(ev.code, 0, ev.stderr);
    const evr = lastJson(ev.stdout);
    assert.equal(evr.count, 200);
    assert.ok(evr.accuracy > 0.7, `evaluate accuracy ${evr.accuracy} on streamed images`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
