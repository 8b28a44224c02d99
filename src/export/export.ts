// graft export's library side: a Graft model to ONNX bytes (fp32, fp16 or int8 calibrated on
// the user's images), and the check of an export against the tfjs model on real samples.

import type * as tfl from '@tensorflow/tfjs-layers';
import { count, sampleSize, subset, type Dataset } from '../data/dataset.js';
import { batchValues } from '../data/preprocess.js';
import { makeRng, shuffle } from '../data/random.js';
import { pixelHash } from '../data/images.js';
import { GraftError } from '../errors.js';
import type { GraftMeta } from '../model/meta.js';
import { selectHead } from '../model/multi-head.js';
import { predictAll } from '../train/predict.js';
import { argmaxRow } from '../train/score.js';
import { exportMetadata, onnxGraph, type OnnxExportInfo, type OnnxExportOptions } from './onnx-export.js';
import { nhwcToNchw, OnnxModel } from './onnx-run.js';
import { calibrate, encode, foldBatchNorm, quantizeInt8, toFloat16, type WeightForm } from './quantize.js';
import type { Graph } from './onnx-proto.js';
import { ort } from '../model/onnx.js';

export type Quantization = 'none' | 'fp16' | 'int8';

export interface ExportOptions extends OnnxExportOptions {
  quantize?: Quantization;
  /** int8: the images whose value ranges set the scales (raw values, as training read them). */
  calibration?: Dataset;
  /** int8: how many calibration samples to use at most (default 256, drawn at random). */
  calibrationSamples?: number;
  /** int8: activation ranges from the min and max seen, or the range of least quantization error (default). */
  ranges?: 'minmax' | 'mse';
  /** int8: leave the one most sensitive layer in fp32 when its int8 form is over a third of the error (default true). */
  keepSensitive?: boolean;
  /** int8: how weights are stored (quantize.ts' WeightForm; default uint8, the same results on every x86 CPU). */
  weights?: WeightForm;
  seed?: number;
}

export interface Exported {
  bytes: Uint8Array;
  info: OnnxExportInfo;
  /** int8: the samples calibrated on. */
  calibratedOn?: number;
  /** int8: the one layer left in fp32 because its int8 form was most of the error (mean |logit difference| against fp32 with and without it). */
  keptFp32?: { node: string; layer: string; error: number; errorWithout: number };
}

/** Up to `n` sample indices of `d`, drawn without replacement (all when fewer). */
export function sampleIndices(d: Dataset, n: number, seed = 0): Int32Array {
  const total = count(d);
  const idx = Int32Array.from({ length: total }, (_, i) => i);
  const rng = makeRng(seed);
  for (let i = total - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); [idx[i], idx[j]] = [idx[j], idx[i]]; }
  return idx.subarray(0, Math.min(n, total)).sort();
}

/**
 * What is wrong with a calibration set, in words (none when nothing is): int8's ranges are
 * measured on it, so images that are all alike (12 copies of one grey image gave "top class
 * agrees on 100%" and a file scoring 50% against fp32's 100%) give ranges no real image keeps to.
 */
export function calibrationWarnings(d: Dataset, classes: number): { distinct: number; constant: number; warnings: string[] } {
  const n = count(d);
  const per = sampleSize(d);
  const seen = new Set<string>();
  let constant = 0;
  const image = d.sampleShape.length === 3;
  for (let start = 0; start < n; start += 64) {
    const idx = Int32Array.from({ length: Math.min(64, n - start) }, (_, k) => start + k);
    const batch = batchValues(d, idx, undefined);  // raw values, from memory or disk alike
    const channels = image ? d.sampleShape[2] : 1;
    for (let b = 0; b < idx.length; b++) {
      const v = batch.subarray(b * per, (b + 1) * per);
      // Per channel (a flat red is 220, 30, 30 throughout): pixel values 0-255, a spread of
      // under 2 levels in every channel is one flat colour.
      let flat = true;
      for (let c = 0; c < channels && flat; c++) {
        let lo = Infinity, hi = -Infinity;
        for (let k = c; k < v.length; k += channels) { const x = v[k]; if (x < lo) lo = x; if (x > hi) hi = x; }
        if (image ? hi - lo >= 2 : hi !== lo) flat = false;
      }
      if (flat) constant++;
      seen.add(pixelHash(v));
    }
  }
  const distinct = seen.size;
  const warnings: string[] = [];
  if (constant) warnings.push(`${constant} of the ${n} calibration samples ${constant === 1 ? 'is' : 'are'} ${image ? 'one flat colour' : 'one value throughout'}: int8's value ranges measured on ${constant === n ? 'them' : 'such samples'} do not cover real inputs`);
  if (distinct < n) warnings.push(`${n - distinct} of the ${n} calibration samples are copies of others (${distinct} distinct)`);
  if (distinct < classes) warnings.push(`${distinct} distinct sample${distinct === 1 ? '' : 's'} for ${classes} classes, fewer than one per class`);
  return { distinct, constant, warnings };
}

/**
 * The calibration set split in two, so that the export's check runs on images it was not
 * calibrated on: up to `samples` to calibrate on, the rest (or, when there are not more than
 * `samples`, a fifth of them) to check on. None held out when there are fewer than 5.
 */
export function splitCalibration(d: Dataset, samples: number, seed = 0): { calibrate: Dataset; heldOut?: Dataset } {
  const n = count(d);
  if (n < 5) return { calibrate: d };
  const idx = shuffle(Array.from({ length: n }, (_, i) => i), makeRng(seed + 13));
  const held = n > samples ? n - samples : Math.ceil(n / 5);
  const heldIdx = idx.slice(0, held).sort((a, b) => a - b);
  const calIdx = idx.slice(held).sort((a, b) => a - b);
  return { calibrate: subset(d, calIdx), heldOut: subset(d, heldIdx) };
}

/** Samples in the graph's input form: preprocessed unless the graph does it, NCHW when asked. */
function* graphBatches(d: Dataset, indices: Int32Array, info: OnnxExportInfo, meta: GraftMeta, batch = 16): Generator<{ x: Float32Array; dims: number[] }> {
  const p = info.input.includesPreprocessing ? undefined : meta.preprocessing;
  for (let i = 0; i < indices.length; i += batch) {
    const idx = indices.subarray(i, i + batch);
    const x = batchValues(d, idx, p);
    const shape = d.sampleShape;
    if (info.input.layout === 'nchw' && shape.length === 3) yield { x: nhwcToNchw(x, idx.length, shape), dims: [idx.length, shape[2], shape[0], shape[1]] };
    else yield { x, dims: [idx.length, ...shape] };
  }
}

/** The ONNX bytes of a Graft model. */
export async function exportOnnx(model: tfl.LayersModel, meta: GraftMeta, options: ExportOptions = {}): Promise<Exported> {
  const q = options.quantize ?? 'none';
  const { graph, info } = onnxGraph(model, meta, options);
  if (q === 'none') return { bytes: encode(graph, exportMetadata(info), info.graftVersion), info };
  if (q === 'fp16') {
    const i16 = { ...info, quantization: 'fp16' as const };
    return { bytes: encode(toFloat16(foldBatchNorm(graph)), exportMetadata(i16), info.graftVersion), info: i16 };
  }
  const d = options.calibration;
  if (!d || !count(d)) {
    throw new GraftError('BAD_DATA', 'int8 quantization needs calibration images, and none were given.', { fix: 'Give --calibration <data>: a few hundred of the training images.' });
  }
  const want = sampleSize(d);
  const per = info.input.shape.reduce((a, b) => a * b, 1);
  if (want !== per) throw new GraftError('SHAPE_MISMATCH', `The calibration data ${d.source} has samples of shape [${d.sampleShape.join(', ')}]; the model takes [${model.inputs[0].shape.slice(1).join(', ')}].`, { fix: 'Calibrate on data like the training data.' });
  const indices = sampleIndices(d, options.calibrationSamples ?? 256, options.seed ?? 0);
  const folded = foldBatchNorm(graph);
  const ranges = await calibrate(folded, graphBatches(d, indices, info, meta), 0, options.ranges ?? 'mse');
  const weights = options.weights;
  let int8 = quantizeInt8(folded, ranges, { weights });
  let keptFp32: Exported['keptFp32'];
  if (options.keepSensitive !== false) {
    const probe = sampleIndices(d, 32, (options.seed ?? 0) + 1);
    const found = await mostSensitive(folded, ranges, int8, [...graphBatches(d, probe, info, meta)], weights);
    if (found && found.errorWithout < (2 / 3) * found.error) {
      int8 = quantizeInt8(folded, ranges, { skipNodes: [found.node], weights });
      keptFp32 = found;
    }
  }
  const i8 = { ...info, quantization: 'int8' as const, int8Weights: weights ?? 'uint8', ...(keptFp32 ? { keptFp32: [keptFp32.layer] } : {}) };
  return { bytes: encode(int8, exportMetadata(i8), info.graftVersion), info: i8, calibratedOn: indices.length, keptFp32 };
}

/** The values compared against fp32: the logits (a Softmax's input) where an output is a softmax, else the outputs. */
function comparedValues(g: Graph): string[] {
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  return g.outputs.map((o) => {
    let n = producer.get(o.name);
    if (n?.opType === 'Identity') n = producer.get(n.inputs[0]);
    return n?.opType === 'Softmax' ? n.inputs[0] : o.name;
  });
}

/** Mean absolute difference of `g`'s logits (or outputs) against the fp32 ones `ref`. */
async function outputError(g: Graph, batches: { x: Float32Array; dims: number[] }[], ref?: Float32Array[][]): Promise<{ error: number; outputs: Float32Array[][] }> {
  const o = await ort();
  const names = comparedValues(g);
  const probe: Graph = { ...g, outputs: [...g.outputs, ...names.filter((v) => !g.outputs.some((x) => x.name === v)).map((name) => ({ name, dataType: 1 as const }))] };
  const session = await o.InferenceSession.create(encode(probe, {}, 'sensitivity'), { intraOpNumThreads: 0, graphOptimizationLevel: 'all' });
  const outputs: Float32Array[][] = [];
  let sum = 0;
  let count = 0;
  try {
    for (const [k, b] of batches.entries()) {
      const r = await session.run({ [g.inputs[0].name]: new o.Tensor('float32', b.x, b.dims) }, names);
      const outs = names.map((v) => r[v].data as Float32Array);
      outputs.push(outs);
      if (ref) outs.forEach((p, j) => { for (let i = 0; i < p.length; i++) sum += Math.abs(p[i] - ref[k][j][i]); count += p.length; });
    }
  } finally {
    await session.release();
  }
  return { error: count ? sum / count : 0, outputs };
}

/**
 * The layer whose int8 form costs most: each Conv and Add in turn left in fp32, on a probe of
 * the calibration images. On MobileNetV2 the first depthwise convolution alone is half the
 * error (its 32 channels' ranges differ by orders of magnitude under one activation scale).
 */
async function mostSensitive(folded: Graph, ranges: Map<string, [number, number]>, int8: Graph, batches: { x: Float32Array; dims: number[] }[], weights?: WeightForm): Promise<{ node: string; layer: string; error: number; errorWithout: number } | undefined> {
  const { outputs: ref } = await outputError(folded, batches);
  const { error } = await outputError(int8, batches, ref);
  let best: { node: string; layer: string; error: number; errorWithout: number } | undefined;
  for (const n of folded.nodes.filter((x) => x.opType === 'Conv' || x.opType === 'Add')) {
    const { error: without } = await outputError(quantizeInt8(folded, ranges, { skipNodes: [n.name], weights }), batches, ref);
    if (!best || without < best.errorWithout) best = { node: n.name, layer: n.name.replace(/\/(Conv|Add)$/, ''), error, errorWithout: without };
  }
  return best;
}

export interface HeadCheck {
  head: string;
  /** Largest difference of any probability, export against the tfjs model. */
  maxAbsDiff: number;
  /** Share of samples whose top class is the same. */
  top1Agreement: number;
  /** With labelled data (for the first head): accuracy of the tfjs model and of the export. */
  accuracy?: { tfjs: number; onnx: number };
}

export interface ExportCheck extends Omit<HeadCheck, 'head'> {
  samples: number;
  /** Each output's figures; the top-level ones are the first head's, except maxAbsDiff (all heads). */
  perHead: HeadCheck[];
}

/** Runs the export on onnxruntime and the tfjs model on the same samples, output by output. */
export async function checkExport(bytes: Uint8Array, model: tfl.LayersModel, meta: GraftMeta, d: Dataset, labelled: boolean, maxSamples = 512): Promise<ExportCheck> {
  if (!count(d)) {
    throw new GraftError('BAD_DATA', `${d.source} holds no samples of the model's classes (${meta.classNames.slice(0, 8).join(', ')}${meta.classNames.length > 8 ? ', ...' : ''}) to check the export on.`, { fix: 'Give test data with one sub-folder per class of the model.' });
  }
  let om: OnnxModel;
  try {
    om = await OnnxModel.fromBytes(bytes, 'the export');
  } catch (e) {
    if (e instanceof GraftError && e.code === 'MISSING_PACKAGE') throw e;
    // Graft wrote these bytes just now: onnxruntime refusing them is Graft's failure, not a copy's.
    throw new GraftError('UNSUPPORTED', `onnxruntime cannot run the ONNX graph Graft wrote for this model (${(e as Error).message.split('\n')[0]}); nothing was written.`, {
      fix: 'The tfjs model is unaffected (graft predict runs it). Please report the layer types of this model so the export can be fixed.', cause: e });
  }
  try {
    const idx = sampleIndices(d, maxSamples, 1);
    const sub: Dataset = { ...d, x: batchValues(d, idx, undefined), labels: Int32Array.from(idx, (i) => d.labels[i]) };
    const got = await om.predict(sub);
    const n = idx.length;
    const perHead: HeadCheck[] = [];
    for (let k = 0; k < om.info.outputs.length; k++) {
      const o = om.info.outputs[k];
      const head = model.outputs.length > 1 ? selectHead(model, meta, o.head).model : model;
      const { values: ref } = await predictAll(head, sub, meta.preprocessing, 128, 'fp32');
      const c = o.classNames.length;
      let maxAbsDiff = 0;
      let agree = 0;
      const correct = [0, 0];
      for (let i = 0; i < ref.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(ref[i] - got[k][i]));
      for (let i = 0; i < n; i++) {
        const a = argmaxRow(ref, i, c);
        const b = argmaxRow(got[k], i, c);
        if (a === b) agree++;
        if (a === sub.labels[i]) correct[0]++;
        if (b === sub.labels[i]) correct[1]++;
      }
      perHead.push({ head: o.head, maxAbsDiff, top1Agreement: agree / n, ...(labelled && k === 0 ? { accuracy: { tfjs: correct[0] / n, onnx: correct[1] / n } } : {}) });
    }
    const first = perHead[0];
    return { samples: n, maxAbsDiff: Math.max(...perHead.map((h) => h.maxAbsDiff)), top1Agreement: first.top1Agreement, ...(first.accuracy ? { accuracy: first.accuracy } : {}), perHead };
  } finally {
    await om.dispose();
  }
}
