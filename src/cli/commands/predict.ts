// graft predict <model> <input>: class names and probabilities (top-k) for each sample.

import { predictWithTta } from '#internal/eval/tta.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import { assertShape } from '#internal/data/preprocess.js';
import { backendInfo } from '#internal/engine/backend.js';
import { classFolders, isDir, walk, isImageFile, loadImageFiles } from '#internal/data/images.js';
import { selectHead } from '#internal/model/multi-head.js';
import { GraftError, loadModel, predictAll, type Dataset, type GraftMeta } from 'graft';
import { loadCsv } from '#internal/data/csv.js';
import { loadData } from '#internal/data/load.js';
import { intAtLeast, num, parse, str } from '../args.js';
import { DATA_ARGS, decodeProgress, skippedLines } from '../data-args.js';
import { modelInputs, savedDataOptions } from '../external-body.js';
import { engineReport, modelFor, onnxHead, onnxProbabilities, tfjsEngine } from '../onnx-choice.js';

export const usage = `graft predict <model> <input>... [--top-k 3] [--limit 20] [--json]

  <model>   a model directory written by graft train (or any model with a graft.json), or an
            ONNX file written by graft export (run on onnxruntime; a model folder's current
            fp32 export is run on onnxruntime too, unless --engine native or tfjs)
  <input>   image files (JPEG, PNG, WebP, GIF, TIFF, AVIF), a folder of images (or of class
            sub-folders: the true class is shown), a .csv file of feature rows (a label
            column is optional), an IDX images file, or mnist-test:<digits>
            Images are resized as in training (graft.json's imageFit; --fit overrides).
  --head    new | old | all: which head of a multi-head model answers (default new)
  --top-k   how many classes to list per sample (default 3)
  --tta     test-time augmentation: average each image's probabilities with its mirror image's
  --limit   predict only the first N samples (default: all; the text output shows 20)
  --precision fp32 (default), bf16 or auto: the native engine's arithmetic (see graft --help);
            bf16 passes over a model folder's ONNX export (fp32) for the native engine
  --json    print { engine, precision: { requested, used, why }, predictions: [{ index, file?, top: [{ className, probability }], label? }], skipped }`;

export const summary = 'class names and probabilities for new samples';

async function loadInput(specs: string[], values: Record<string, unknown>, model: tfl.LayersModel | (number | null)[], meta: GraftMeta): Promise<Dataset & { files?: string[] }> {
  const o = savedDataOptions(values, model, meta, decodeProgress(Boolean(values.json)));
  const spec = specs[0];
  const folder = specs.length === 1 && await isDir(spec);
  if (folder && (await classFolders(spec)).length) return loadData(spec, { ...o, classNames: undefined });
  const files = folder ? await walk(spec) : specs;
  if (folder || files.length > 1 || isImageFile(spec)) {
    if (!o.image) throw new GraftError('BAD_DATA', 'The model does not take images (its input is not [height, width, 1 or 3]).', { fix: 'Give CSV or IDX data.' });
    const d = await loadImageFiles(files, { ...o.image, onFile: o.onFile });
    return { ...d, classNames: [''] };
  }
  if (/\.csv$/i.test(spec)) return loadCsv(spec, { labelsOptional: true });
  return loadData(spec, o);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'top-k': { type: 'string' }, limit: { type: 'string' }, head: { type: 'string' }, tta: { type: 'boolean' }, ...DATA_ARGS }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length < 2) { console.error(`graft predict needs a model and an input.\n\nUsage:\n${usage}`); return 2; }
  const topK = num(values['top-k'], 'top-k', intAtLeast(1)) ?? 3;
  const limit = num(values.limit, 'limit', intAtLeast(1));
  const spec = positionals[0];
  const { model, meta, onnx, note } = await modelFor(spec, values.head === 'all' ? 'all' : str(values.head) ?? 'new');
  const inputShape = onnx ? [null, ...onnx.model.sampleShape] : model!.inputs[0].shape;
  const input = await loadInput(positionals.slice(1), values, model ?? inputShape, meta);
  const files = input.files;
  let { data, preprocessing } = onnx ? { data: input as Dataset, preprocessing: meta.preprocessing } : await modelInputs(meta, input);
  if (!data.labels.length) {
    throw new GraftError('BAD_DATA', `Nothing to predict: ${data.skipped?.length ? `every file was skipped (${data.skipped.map((f) => `${f.path}: ${f.reason}`).join('; ')})` : 'the input holds no samples'}.`, { fix: 'Give readable images or data rows.' });
  }
  assertShape(data, preprocessing, inputShape);
  if (limit !== undefined && limit < data.labels.length) {
    const s = data.sampleShape.reduce((a, b) => a * b, 1);
    data = { ...data, x: data.x.subarray(0, limit * s), labels: data.labels.subarray(0, limit) };
  }
  const headNames = values.head === 'all' ? meta.heads.map((h) => h.name) : [onnx && values.head === undefined && onnx.model.info.outputs.length === 1 ? onnx.model.info.outputs[0].head : str(values.head) ?? 'new'];
  const heads: { name: string; classNames: string[]; probs: Float32Array }[] = [];
  try {
    if (onnx) {
      const outs = await onnxProbabilities(onnx.model, data, Boolean(values.tta));
      for (const name of headNames) {
        const k = onnxHead(onnx.model, onnx.file, name);
        heads.push({ name, classNames: onnx.model.info.outputs[k].classNames, probs: outs[k] });
      }
    } else {
      for (const name of headNames) {
        const head = selectHead(model!, meta, name);
        const probs = await predictWithTta(head.model, data, preprocessing, Boolean(values.tta));
        heads.push({ name, classNames: head.classNames, probs });
      }
    }
  } finally {
    await onnx?.model.dispose();
  }
  const engine = onnx ? 'onnxruntime' : tfjsEngine(model!);
  const report = engineReport(engine, onnx);
  const hasLabels = data.classNames.some((c) => c !== '');
  const predictions = Array.from(data.labels, (y, i) => {
    const per = heads.map((h) => {
      const k = h.classNames.length;
      const row = Array.from(h.probs.subarray(i * k, (i + 1) * k), (probability, c) => ({ className: h.classNames[c], probability }));
      row.sort((a, b) => b.probability - a.probability);
      return { head: h.name, top: row.slice(0, topK) };
    });
    return { index: i, ...(files ? { file: files[i] } : {}), top: per[0].top, ...(per.length > 1 ? { heads: per } : {}), ...(hasLabels ? { label: data.classNames[y] } : {}) };
  });
  if (values.json) {
    console.log(JSON.stringify({ model: positionals[0], input: data.source, ...report.json, ...(onnx ? { onnx: onnx.file } : {}), backend: backendInfo()?.name, predictions, skipped: data.skipped ?? [] }));
    return 0;
  }
  console.log(report.words);
  if (note) console.log(note);
  for (const line of skippedLines(data.skipped)) console.log(line);
  const shown = limit ?? 20;
  const fmt = (top: { className: string; probability: number }[]) => top.map((t) => `${t.className} ${(100 * t.probability).toFixed(1)}%`).join(', ');
  for (const p of predictions.slice(0, shown)) {
    const mark = p.label === undefined ? '' : p.label === p.top[0].className ? `  (true: ${p.label}, right)` : `  (true: ${p.label}, WRONG)`;
    if (p.heads) console.log(`#${p.index}: ${p.heads.map((h) => `[${h.head}] ${fmt(h.top)}`).join('   ')}${p.label === undefined ? '' : `  (true: ${p.label})`}`);
    else console.log(`${p.file ?? `#${p.index}`}: ${fmt(p.top)}${mark}`);
  }
  if (predictions.length > shown) console.log(`... ${predictions.length - shown} more (use --limit or --json)`);
  return 0;
}
