// ONNX export against tfjs, on onnxruntime: every layer kind the native engine translates, in
// every input form (nhwc, nchw, preprocessing inside), fp16 within 1e-2, the zoo models within
// 1e-4, and the protobuf pieces (negative int64 varints, half floats) against known encodings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../engine/backend.js';
import { loadModel } from '../model/load.js';
import type { GraftMeta } from '../model/meta.js';
import { makeRng } from '../data/random.js';
import { readOnnxGraph, readOnnxMetadata } from '../model/onnx.js';
import { exportOnnx } from './export.js';
import { exportMetadata, onnxGraph } from './onnx-export.js';
import { encode } from './quantize.js';
import { OnnxModel } from './onnx-run.js';
import { toHalf } from './onnx-proto.js';

await initBackend();

function metaFor(classes: number, preprocessing: GraftMeta['preprocessing']): GraftMeta {
  const classNames = Array.from({ length: classes }, (_, i) => `c${i}`);
  return { format: 'graft/1', classNames, preprocessing, heads: [{ name: 'new', outputLayer: 'out', classNames, layers: [] }], versions: {}, createdAt: '' };
}

/** Every layer kind of the native op list, with random weights (BatchNorm statistics too). */
function zooOfLayers(): tfl.LayersModel {
  const input = tfl.input({ shape: [13, 11, 3] });
  let x = tfl.layers.rescaling({ scale: 2, offset: -1 }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.zeroPadding2d({ padding: [[1, 2], [0, 1]] }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({}).apply(x) as tfl.SymbolicTensor;
  const a = tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, activation: 'relu6' }).apply(x) as tfl.SymbolicTensor;
  const b = tfl.layers.separableConv2d({ filters: 16, kernelSize: 3, padding: 'same', dilationRate: 1, activation: 'elu' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.add().apply([a, b]) as tfl.SymbolicTensor;
  x = tfl.layers.leakyReLU({ alpha: 0.2 }).apply(x) as tfl.SymbolicTensor;
  const c = tfl.layers.conv2d({ filters: 16, kernelSize: 1, activation: 'sigmoid', useBias: false }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.multiply().apply([x, c]) as tfl.SymbolicTensor;
  const m = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as tfl.SymbolicTensor;
  const v = tfl.layers.averagePooling2d({ poolSize: 2, strides: 2, padding: 'valid' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.concatenate().apply([m, v]) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'swish' }).apply(x) as tfl.SymbolicTensor;
  const shape = x.shape.slice(1) as number[];
  x = tfl.layers.reshape({ targetShape: [shape[0] * shape[1], shape[2]] }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reshape({ targetShape: [shape[0], shape[1], shape[2]] }).apply(x) as tfl.SymbolicTensor;
  const g = tfl.layers.globalAveragePooling2d({}).apply(x) as tfl.SymbolicTensor;
  const gm = tfl.layers.globalMaxPooling2d({}).apply(x) as tfl.SymbolicTensor;
  // Flatten of an image-shaped value: the ONNX graph must go back to NHWC order first.
  const f = tfl.layers.flatten().apply(tfl.layers.conv2d({ filters: 2, kernelSize: 1 }).apply(x) as tfl.SymbolicTensor) as tfl.SymbolicTensor;
  x = tfl.layers.concatenate().apply([g, gm, f]) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 12, activation: 'tanh' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dropout({ rate: 0.5 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 4, activation: 'softmax', name: 'out' }).apply(x) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: x });
  // Non-trivial BatchNorm statistics, so that a wrong translation shows.
  const rng = makeRng(3);
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const ws = layer.getWeights();
    const values = ws.map((w, i) => tf.tensor(Array.from({ length: w.size }, () => (i === 3 ? 0.5 + rng() : rng() - 0.5)), w.shape));
    layer.setWeights(values);
    tf.dispose(values);
  }
  return model;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomInputs(n: number, shape: number[], seed: number, scale = 1): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: n * shape.reduce((p, q) => p * q, 1) }, () => rng() * scale);
}

test('every layer kind: onnxruntime equals tfjs within 1e-4 in nhwc, nchw and with preprocessing inside; fp16 within 1e-2', async () => {
  const model = zooOfLayers();
  const pre = { inputShape: [13, 11, 3], scale: 1 / 255, mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
  const meta = metaFor(4, pre);
  const n = 5;
  const raw = randomInputs(n, [13, 11, 3], 7, 255);
  const prepped = raw.map((v, i) => ((v / 255) - pre.mean[i % 3]) / pre.std[i % 3]);
  const want = tf.tidy(() => (model.predict(tf.tensor(prepped, [n, 13, 11, 3])) as tf.Tensor).dataSync());
  const d = { x: raw, sampleShape: [13, 11, 3], labels: new Int32Array(n), classNames: meta.classNames, source: 'random' };
  const before = tf.memory().numTensors;
  for (const options of [{}, { layout: 'nchw' as const }, { includePreprocessing: true }, { layout: 'nchw' as const, includePreprocessing: true }]) {
    const { bytes, info } = await exportOnnx(model, meta, options);
    const om = await OnnxModel.fromBytes(bytes, 'test');
    const [got] = await om.predict(d);
    await om.dispose();
    assert.ok(maxAbs(got, want) < 1e-4, `${JSON.stringify(options)}: max difference ${maxAbs(got, want)}`);
    assert.equal(info.input.layout, options.layout ?? 'nhwc');
    const g = readOnnxGraph(bytes, 'test');
    assert.deepEqual(g.inputs[0].dims.slice(1), options.layout === 'nchw' ? [3, 13, 11] : [13, 11, 3]);
    assert.equal(g.inputs[0].name, options.includePreprocessing ? 'pixels' : 'input');
    assert.ok(!g.nodes.some((x) => x.opType === 'Pad' && options.layout), 'the zero padding is folded into the next Conv');
  }
  const { bytes } = await exportOnnx(model, meta, { quantize: 'fp16' });
  const om = await OnnxModel.fromBytes(bytes, 'fp16');
  const [got] = await om.predict(d);
  await om.dispose();
  assert.ok(maxAbs(got, want) < 1e-2, `fp16: max difference ${maxAbs(got, want)}`);
  assert.ok(maxAbs(got, want) > 0, 'fp16 really is fp16');
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  model.dispose();
});

test('the zoo models: fp32 export equals tfjs within 1e-4 on random images; metadata describes the file', async () => {
  for (const name of ['digits-cnn', 'mobilenet-v2']) {
    const { model, meta } = await loadModel(name);
    const shape = model.inputs[0].shape.slice(1) as number[];
    const n = 3;
    const raw = randomInputs(n, shape, 11, 255);
    const want = tf.tidy(() => (model.predict(tf.tensor(raw.map((v) => v * (meta!.preprocessing.scale ?? 1)), [n, ...shape])) as tf.Tensor).dataSync());
    const { bytes } = await exportOnnx(model, meta!);
    const om = await OnnxModel.fromBytes(bytes, name);
    const [got] = await om.predict({ x: raw, sampleShape: shape, labels: new Int32Array(n), classNames: meta!.classNames, source: 'random' });
    await om.dispose();
    assert.ok(maxAbs(got, want) < 1e-4, `${name}: max difference ${maxAbs(got, want)}`);
    const md = readOnnxMetadata(bytes, name);
    const info = JSON.parse(md['graft.info']);
    assert.deepEqual(info.outputs[0].classNames, meta!.classNames);
    assert.deepEqual(JSON.parse(md.classNames), meta!.classNames);
    assert.equal(info.preprocessing.scale, meta!.preprocessing.scale);
    model.dispose();
  }
});

test('int8 needs calibration images and says so; a file without graft metadata is refused for predict', async () => {
  const model = zooOfLayers();
  const meta = metaFor(4, { inputShape: [13, 11, 3] });
  await assert.rejects(exportOnnx(model, meta, { quantize: 'int8' }), /calibration images/);
  // A model with an ir_version and nothing else: no graft.info.
  await assert.rejects(OnnxModel.fromBytes(Uint8Array.from([0x08, 0x08, 0x3a, 0x00]), 'plain.onnx'), /without Graft's metadata/);
  // Metadata that does not describe the graph is refused with words, not a crash at run time.
  const { graph, info } = onnxGraph(model, meta);
  const lie = (i: typeof info) => encode(graph, exportMetadata(i), 'test');
  await assert.rejects(OnnxModel.fromBytes(lie({ ...info, outputs: [{ ...info.outputs[0], classNames: ['a', 'b', 'c'] }] }), 'lie.onnx'), /metadata does not match its graph: its output probabilities has 4 classes, the metadata names 3/);
  await assert.rejects(OnnxModel.fromBytes(lie({ ...info, input: { ...info.input, name: 'image' } }), 'lie.onnx'), /its input is input, the metadata says image/);
  await assert.rejects(OnnxModel.fromBytes(lie({ ...info, outputs: [{ ...info.outputs[0], name: 'scores' }] }), 'lie.onnx'), /it has no output scores/);
  model.dispose();
});

test('half floats round to nearest even, with subnormals, infinities and NaN', () => {
  assert.equal(toHalf(1), 0x3c00);
  assert.equal(toHalf(-2), 0xc000);
  assert.equal(toHalf(65504), 0x7bff);
  assert.equal(toHalf(65520), 0x7c00);
  assert.equal(toHalf(1 / 0), 0x7c00);
  assert.equal(toHalf(2 ** -24), 0x0001);
  assert.equal(toHalf(2 ** -14), 0x0400);
  assert.equal(toHalf(1 + 2 ** -11), 0x3c00, 'a tie rounds to even');
  assert.equal(toHalf(1 + 3 * 2 ** -11), 0x3c02, 'a tie rounds to even (up)');
  assert.equal(toHalf(0.1), 0x2e66);
  assert.ok((toHalf(NaN) & 0x7c00) === 0x7c00 && (toHalf(NaN) & 0x3ff) !== 0);
});
