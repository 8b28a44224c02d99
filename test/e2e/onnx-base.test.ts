// An ONNX file as the base, as a user brings one: trained through the same path as a tfjs
// base (the graph rebuilt as layers), fine-tuned with --unfreeze all on the native engine,
// saved in the base's own format (model.onnx, NCHW) beside model.json.
//  - A pretrained network on real photos: Graft's own zoo MobileNetV2 exported to ONNX by
//    graft export, then used as a base: the same test accuracy as the tfjs base it came from.
//  - A torchvision network exported as PyTorch users do (batch of 1 fixed, NCHW, logits out):
//    fine-tuned whole, its model.onnx run by onnxruntime equal to graft predict within 1e-4.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, lastJson } from '../cli.js';

const root = new URL('../../..', import.meta.url).pathname;
const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
const dir = await mkdtemp(join(tmpdir(), 'graft-onnx-base-'));
test.after(() => rm(dir, { recursive: true, force: true }));

test('a pretrained ONNX base on real photos: the same accuracy as the tfjs model it was exported from', async () => {
  const onnx = join(dir, 'mobilenet-v2.onnx');
  const exp = await graft(['export', 'mobilenet-v2', '--out', onnx, '--layout', 'nchw']);
  assert.equal(exp.code, 0, exp.stderr);
  const common = ['--data', join(photos, 'train'), '--test-data', join(photos, 'test'), '--input-size', '96', '--seed', '1', '--json'];
  const fromOnnx = await graft(['train', '--base', onnx, '--cut', 'block_13_expand_relu_relu6', '--preprocess', 'unit', ...common, '--out', join(dir, 'from-onnx')]);
  assert.equal(fromOnnx.code, 0, fromOnnx.stderr);
  const fromTfjs = await graft(['train', '--base', 'mobilenet-v2', '--cut', 'block_13_expand_relu', ...common, '--out', join(dir, 'from-tfjs')]);
  assert.equal(fromTfjs.code, 0, fromTfjs.stderr);
  const a = lastJson(fromOnnx.stdout);
  const b = lastJson(fromTfjs.stdout);
  console.log(`photos, default recipe: ONNX base ${a.testAccuracy}, the tfjs base it came from ${b.testAccuracy}`);
  assert.ok(Math.abs(a.testAccuracy - b.testAccuracy) <= 1 / 39 + 1e-9, `${a.testAccuracy} vs ${b.testAccuracy}`);
  assert.ok(a.testAccuracy >= 0.7, `test accuracy ${a.testAccuracy}`);
  assert.ok(a.onnx && a.onnx.check.maxAbsDiff < 1e-4, JSON.stringify(a.onnx?.check));
});

test('a torchvision export with a fixed batch of 1: --unfreeze all trains every layer natively; model.onnx equals graft predict', async () => {
  const onnx = join(dir, 'resnet18.onnx');
  execFileSync('/usr/bin/python3', ['-c', `
import torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18(weights=None).eval()
torch.onnx.export(m, torch.rand(1, 3, 64, 64), '${onnx}', opset_version=13, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
`], { stdio: 'ignore' });
  const out = join(dir, 'resnet');
  const r = await graft(['train', '--base', onnx, '--data', join(photos, 'train'), '--preprocess', 'imagenet', '--unfreeze', 'all', '--finetune-epochs', '1', '--keep-better', 'no', '--seed', '1', '--out', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  const ft = j.phases.find((p: { phase: string }) => p.phase === 'fine-tune');
  assert.ok(ft, 'a fine-tune phase ran');
  assert.equal(j.cut.layer, 'avgpool/GlobalAveragePool', 'cut before the classifier (the Gemm), at the global pool');
  assert.ok(j.onnx.check.maxAbsDiff < 1e-4, JSON.stringify(j.onnx.check));
  assert.equal(j.onnx.layout, 'nchw');
  // The ONNX file against the tfjs model, each from its own process.
  const images = join(photos, 'test', 'mammals');
  const viaOnnx = await graft(['predict', join(out, 'model.onnx'), images, '--json']);
  const viaTfjs = await graft(['predict', out, images, '--engine', 'tfjs', '--json']);
  assert.equal(viaOnnx.code, 0, viaOnnx.stderr);
  assert.equal(viaTfjs.code, 0, viaTfjs.stderr);
  const p = lastJson(viaOnnx.stdout);
  const q = lastJson(viaTfjs.stdout);
  assert.equal(p.engine, 'onnxruntime');
  let worst = 0;
  type Top = { className: string; probability: number };
  for (let i = 0; i < q.predictions.length; i++) {
    for (const t of q.predictions[i].top as Top[]) {
      const o = (p.predictions[i].top as Top[]).find((x) => x.className === t.className);
      worst = Math.max(worst, o ? Math.abs(o.probability - t.probability) : 1);
    }
  }
  console.log(`resnet18 (batch-1 export) fine-tuned whole: model.onnx vs graft predict, largest probability difference ${worst.toExponential(2)} over ${q.predictions.length} photos`);
  assert.ok(q.predictions.length >= 5 && worst < 1e-4, `${worst}`);
});

test('a published batch-1 tfjs GraphModel (CenterNet MobileNetV3 of @vladmandic/human) as the body on real photos: rebuilt up to the cut, fine-tuned whole, predicts', async () => {
  const spec = join(root, 'node_modules', '@vladmandic', 'human', 'models', 'centernet.json');
  const out = join(dir, 'centernet');
  const r = await graft(['train', '--base', spec, '--cut', 'tower_0/MobilenetV3/expanded_conv_14/add', '--data', join(photos, 'train'), '--test-data', join(photos, 'test'),
    '--preprocess', 'symmetric', '--input-size', '160', '--unfreeze', 'all', '--finetune-epochs', '2', '--keep-better', 'no', '--seed', '1', '--out', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  assert.ok(j.phases.some((p: { phase: string }) => p.phase === 'fine-tune'), 'the body fine-tuned');
  console.log(`centernet body (a person detector's backbone) on the photos at 160x160, fine-tuned whole: test accuracy ${j.testAccuracy}`);
  assert.ok(j.testAccuracy >= 0.35, `test accuracy ${j.testAccuracy} (5 classes: chance is 0.2)`);
  // The result in the base's format: a GraphModel that tfjs-converter runs, equal to the model.
  assert.ok(j.graphModel && j.graphModel.maxAbsDiff < 1e-4, JSON.stringify(j.graphModel));
  const gm = JSON.parse(await readFile(join(out, 'graph-model', 'model.json'), 'utf8'));
  assert.equal(gm.format, 'graph-model');
  assert.ok(gm.modelTopology.node.some((n: { op: string }) => n.op === 'DepthwiseConv2dNative'));
  const p = await graft(['predict', out, join(photos, 'test', 'vehicles'), '--json']);
  assert.equal(p.code, 0, p.stderr);
  assert.ok(lastJson(p.stdout).predictions.length >= 5);
});

test('graft serve --models with an .onnx file: offered by name, drawn, trained through the job API with --preprocess; a graph that does not rebuild is named at start', async () => {
  const { serve, raw } = await import('../serve.js');
  const { encodePng } = await import('../../src/report/png.js');
  const models = join(dir, 'serve-models');
  const { cp } = await import('node:fs/promises');
  await cp(join(root, 'test', 'fixtures', 'onnx', 'tiny-cnn.onnx'), join(models, 'tiny.onnx'), { recursive: true });
  const server = await serve(['--port', '0', '--models', models, '--preprocess', 'unit', '--projects', join(dir, 'projects')]);
  try {
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await raw(server.port, { method, path, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'x-graft-token': server.token, ...(body === undefined ? {} : { 'content-type': 'application/json' }) } });
      return { ...r, json: JSON.parse(r.body) as Record<string, unknown> };
    };
    const list = (await api('GET', '/api/models')).json as unknown as { name: string; description: string }[];
    const tiny = list.find((m) => m.name === 'tiny');
    assert.ok(tiny, JSON.stringify(list));
    assert.match(tiny.description, /ONNX graph .*tiny\.onnx, rebuilt as \d+ layers; inputs: pixels 0-255 divided by 255/);
    assert.equal((await api('GET', '/api/inspect?model=tiny')).status, 200);
    // Two classes of 16x16 colour images: red and blue.
    const img = (rgb: number[], i: number) => {
      const px = new Uint8Array(16 * 16 * 3).map((_, k) => Math.max(0, Math.min(255, rgb[k % 3] + ((i * 37 + k * 11) % 41) - 20)));
      return { magic: encodePng(16, 16, 3, px).subarray(0, 12).toString('base64'), pixels: Array.from(px) };
    };
    const classes = [{ name: 'red', images: Array.from({ length: 12 }, (_, i) => img([220, 30, 30], i)) }, { name: 'blue', images: Array.from({ length: 12 }, (_, i) => img([30, 40, 220], i)) }];
    const j = await api('POST', '/api/jobs', { base: 'tiny', cut: 'Relu_1', classes, warmupEpochs: 1, finetuneEpochs: 1 });
    assert.equal(j.status, 202, j.body);
    const id = String(j.json.id);
    let s: Record<string, unknown> = {};
    for (let k = 0; k < 300; k++) {
      s = (await api('GET', `/api/jobs/${id}`)).json;
      if (['done', 'failed', 'cancelled'].includes(String(s.status))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(s.status, 'done', JSON.stringify(s).slice(0, 500));
  } finally {
    await server.stop();
  }
  // A graph Graft cannot rebuild whole is refused when the server starts, by node.
  const grouped = join(dir, 'grouped-models');
  execFileSync('/usr/bin/python3', ['-c', `
import os, torch
from torch import nn
os.makedirs('${grouped}', exist_ok=True)
m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, groups=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
torch.onnx.export(m, torch.rand(1, 3, 16, 16), '${grouped}/g.onnx', opset_version=13)
`], { stdio: 'ignore' });
  await assert.rejects(serve(['--port', '0', '--models', grouped]), /g\.onnx.*grouped convolution \(group 2 of 8 channels\).*graft serve offers graphs Graft rebuilds whole/s);
});
