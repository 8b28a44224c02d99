import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftError } from '../errors.js';
import { OnnxBody, readOnnxGraph, withOutputs } from './onnx.js';
import { initBackend } from '../engine/backend.js';
import { transferFrozen } from '../train/transfer.js';

const dir = fileURLToPath(new URL('../../../test/fixtures/onnx/', import.meta.url));
const model = join(dir, 'tiny-cnn.onnx');
const e = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as {
  input: number[]; inputShape: number[]; cut: string; cutNode: string; features: number[]; featureShape: number[]; probs: number[]; nodes: string[];
};

function nhwc(): Float32Array {
  const [n, c, h, w] = e.inputShape;
  const out = new Float32Array(n * h * w * c);
  for (let b = 0; b < n; b++) for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[((b * h + y) * w + x) * c + k] = e.input[((b * c + k) * h + y) * w + x];
  return out;
}

test('ONNX graph: nodes, inputs and outputs read from the protobuf; an extra output can be added', async () => {
  const bytes = await readFile(model);
  const g = readOnnxGraph(bytes, 'tiny');
  assert.deepEqual(g.nodes.map((n) => n.name), e.nodes);
  assert.deepEqual(g.inputs, [{ name: 'pixels', dims: ['batch', 3, 16, 16] }]);
  assert.deepEqual(g.outputs.map((o) => o.name), ['probs']);
  const more = readOnnxGraph(withOutputs(bytes, [e.cut], 'tiny'), 'tiny');
  assert.deepEqual(more.outputs.map((o) => o.name), ['probs', e.cut]);
  assert.deepEqual(more.nodes, g.nodes);
});

test('OnnxBody: features at an intermediate node equal what PyTorch computed (NCHW in and out, channels last for the head)', async () => {
  for (const cut of [e.cutNode, e.cut]) {
    const body = await OnnxBody.load(model, cut);
    assert.equal(body.info.layout, 'NCHW');
    assert.deepEqual(body.info.imageShape, [16, 16, 3]);
    const [, C, H, W] = e.featureShape;
    assert.deepEqual(body.info.featureShape, [H, W, C]);
    const out = await body.run(nhwc(), e.inputShape[0]);
    let worst = 0;
    for (let b = 0; b < e.inputShape[0]; b++) for (let k = 0; k < C; k++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      worst = Math.max(worst, Math.abs(out.values[((b * H + y) * W + x) * C + k] - e.features[((b * C + k) * H + y) * W + x]));
    }
    assert.ok(worst < 1e-5, `${cut}: max abs difference ${worst}`);
    await body.dispose();
  }
  const whole = await OnnxBody.load(model);
  const probs = await whole.run(nhwc(), e.inputShape[0]);
  assert.ok(probs.values.every((v, i) => Math.abs(v - e.probs[i]) < 1e-5), 'no cut: the graph output');
  await whole.dispose();
});

test('OnnxBody refuses bad files, unknown cuts and a changed body before any work', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'graft-onnx-'));
  try {
    const bytes = await readFile(model);
    await writeFile(join(tmp, 'cut.onnx'), bytes.subarray(0, bytes.length >> 1));
    await writeFile(join(tmp, 'text.onnx'), 'not a model');
    await assert.rejects(OnnxBody.load(join(tmp, 'cut.onnx')), (err: GraftError) => err.code === 'BAD_MODEL' && /truncated|not an ONNX model|damaged/.test(err.message));
    await assert.rejects(OnnxBody.load(join(tmp, 'text.onnx')), (err: GraftError) => err.code === 'BAD_MODEL');
    await assert.rejects(OnnxBody.load(model, 'relu_9'), (err: GraftError) => err.code === 'LAYER_NOT_FOUND' && /no node or value "relu_9"/.test(err.message));
    await assert.rejects(OnnxBody.load(model, e.cut, 'f'.repeat(64)), /content hash differs/);
    await assert.rejects(OnnxBody.load(join(tmp, 'missing.onnx')), (err: GraftError) => err.code === 'MODEL_NOT_FOUND');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('transferFrozen trains a head on the frozen ONNX body\'s features', async () => {
  await initBackend();
  // Three classes of 16x16 images: bright top half, bright left half, dark; values 0-255.
  const n = 60;
  const x = new Uint8Array(n * 16 * 16 * 3);
  const labels = new Int32Array(n);
  let seed = 5;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 3;
    for (let y = 0; y < 16; y++) for (let xx = 0; xx < 16; xx++) for (let c = 0; c < 3; c++) {
      const bright = labels[i] === 0 ? y < 8 : labels[i] === 1 ? xx < 8 : false;
      x[((i * 16 + y) * 16 + xx) * 3 + c] = Math.round((bright ? 200 : 30) + rnd() * 40);
    }
  }
  const data = { x, labels, sampleShape: [16, 16, 3], classNames: ['top', 'left', 'dark'], source: 'synthetic' };
  const t = await transferFrozen(model, data, { cut: e.cutNode, preprocessing: { inputShape: [16, 16, 3], scale: 1 / 255 }, warmupEpochs: 40, lr: 0.05, validationSplit: 0.25, seed: 2, head: { pooling: 'flatten' } });
  assert.ok((t.result.validation?.accuracy ?? 0) >= 0.8, `validation accuracy ${t.result.validation?.accuracy}`);
  assert.equal(t.meta.body?.kind, 'onnx');
  assert.equal(t.meta.body?.output, e.cut);
  assert.deepEqual(t.grafted.model.inputs[0].shape, [null, 8, 8, 8]);
  await t.body.dispose();
});
