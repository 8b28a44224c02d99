// A Keras .h5 file as the base of graft train, on a folder of real PNG files; bad files refused
// before anything is written.

import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { colourFolder, graft, root } from '../cli.js';

const fixtures = join(root, 'test', 'fixtures', 'keras');

test('graft train --base model.h5 on image folders; inspect lists its layers; a truncated .h5 is refused and nothing is written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-keras-e2e-'));
  try {
    await colourFolder(join(dir, 'data'), 20, 30, 3, 'png');
    const ins = await graft(['inspect', join(fixtures, 'cnn.h5')]);
    assert.equal(ins.code, 0, ins.stderr);
    assert.match(ins.stdout, /depthwise|DepthwiseConv2D/i);
    assert.match(ins.stdout, /Input node: image \[batch, 12, 12, 3\]/);
    const out = join(dir, 'model');
    const r = await graft(['train', '--base', join(fixtures, 'cnn.h5'), '--cut', 'gap', '--data', join(dir, 'data'), '--preprocess', 'unit',
      '--warmup-epochs', '30', '--lr', '0.05', '--finetune-epochs', '1', '--augment', 'none', '--val-split', '0.2', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(res.classNames, ['blue', 'green', 'red']);
    assert.ok(res.validationAccuracy >= 0.8, `validation accuracy ${res.validationAccuracy}`);
    const meta = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8'));
    assert.equal(meta.preprocessing.scale, 1 / 255);
    assert.deepEqual(meta.preprocessing.inputShape, [12, 12, 3]);
    const pr = await graft(['predict', out, join(dir, 'data', 'red', '0.png'), '--json']);
    assert.equal(pr.code, 0, pr.stderr);
    assert.equal(JSON.parse(pr.stdout).predictions[0].top[0].className, 'red');

    const h5 = await readFile(join(fixtures, 'cnn.h5'));
    await writeFile(join(dir, 'cut.h5'), h5.subarray(0, 3000));
    const bad = await graft(['train', '--base', join(dir, 'cut.h5'), '--data', join(dir, 'data'), '--out', join(dir, 'never')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cut\.h5 cannot be read.*truncated/);
    assert.doesNotMatch(bad.stderr, /HDF5-DIAG/);
    await assert.rejects(access(join(dir, 'never')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('graft train --base model.onnx: rebuilt as layers, it trains and fine-tunes like a tfjs base; predict, evaluate and report run it; a graph with an op Graft cannot rebuild trains a head on onnxruntime features and refuses fine-tuning by name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-onnx-e2e-'));
  try {
    await colourFolder(join(dir, 'data'), 24, 30, 4, 'jpg');
    await writeFile(join(dir, 'data', 'red', 'broken.jpg'), 'nope');
    const onnx = join(root, 'test', 'fixtures', 'onnx', 'tiny-cnn.onnx');
    const ins = await graft(['inspect', onnx]);
    assert.equal(ins.code, 0, ins.stderr);
    assert.match(ins.stdout, /Input node: pixels \[batch, 3, 16, 16\]/);
    assert.match(ins.stdout, /\/Relu_1\s+Relu\s+\/Relu_1_output_0/);
    const out = join(dir, 'model');
    const r = await graft(['train', '--base', onnx, '--cut', '/Relu_1', '--data', join(dir, 'data'), '--preprocess', 'unit', '--finetune-epochs', '2', '--keep-better', 'no', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(res.body, undefined, 'no separate body: the graph is layers now');
    assert.equal(res.cut.layer, 'Relu_1', 'the ONNX node name names the cut');
    assert.ok(res.phases.some((p: { phase: string }) => p.phase === 'fine-tune'), 'the body fine-tuned');
    assert.deepEqual(res.skipped.map((s: { path: string }) => s.path.split('/').pop()), ['broken.jpg']);
    assert.ok(res.onnx.check.maxAbsDiff < 1e-4, 'model.onnx written in the base format and checked');
    const meta = JSON.parse(await readFile(join(out, 'graft.json'), 'utf8'));
    assert.equal(meta.body, undefined);
    const ev = await graft(['evaluate', out, join(dir, 'data'), '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    assert.ok(JSON.parse(ev.stdout).accuracy >= 0.8);
    const pr = await graft(['predict', out, join(dir, 'data', 'blue', '3.jpg'), '--json']);
    assert.equal(pr.code, 0, pr.stderr);
    assert.equal(JSON.parse(pr.stdout).predictions[0].top[0].className, 'blue');
    const rep = await graft(['report', out, '--data', join(dir, 'data'), '--out', join(dir, 'report.html')]);
    assert.equal(rep.code, 0, rep.stderr);
    assert.match(await readFile(join(dir, 'report.html'), 'utf8'), /blue/);

    // A grouped convolution has no layer form: the body stays frozen on onnxruntime.
    const grouped = join(dir, 'grouped.onnx');
    execFileSync('/usr/bin/python3', ['-c', `
import torch
from torch import nn
torch.manual_seed(0)
m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
torch.onnx.export(m, torch.rand(1, 3, 16, 16), '${grouped}', input_names=['pixels'], opset_version=13)
`], { stdio: 'ignore' });
    const fr = await graft(['train', '--base', grouped, '--data', join(dir, 'data'), '--preprocess', 'unit', '--warmup-epochs', '30', '--lr', '0.3', '--out', join(dir, 'frozen'), '--json']);
    assert.equal(fr.code, 0, fr.stderr);
    const f = JSON.parse(fr.stdout.trim().split('\n').at(-1)!);
    assert.equal(f.body, 'onnxruntime');
    assert.equal(JSON.parse(await readFile(join(dir, 'frozen', 'graft.json'), 'utf8')).body.kind, 'onnx');
    const pf = await graft(['predict', join(dir, 'frozen'), join(dir, 'data', 'blue', '3.jpg'), '--json']);
    assert.equal(pf.code, 0, pf.stderr);
    const ft = await graft(['train', '--base', grouped, '--data', join(dir, 'data'), '--finetune-epochs', '2', '--out', join(dir, 'never')]);
    assert.equal(ft.code, 1);
    assert.match(ft.stderr, /cannot be trained: its Conv node "[^"]+": a grouped convolution \(group 2 of 8 channels\)/);
    assert.match(ft.stderr, /fix: Cut before that node/);
    await assert.rejects(access(join(dir, 'never')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
