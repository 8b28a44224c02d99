// graft evaluate <model> <data>: accuracy, per-class accuracy and the confusion matrix.

import { assertShape } from '#internal/data/preprocess.js';
import { backendInfo } from '#internal/engine/backend.js';
import { selectHead } from '#internal/model/multi-head.js';
import { alignClasses, loadData } from '#internal/data/load.js';
import { evaluate, GraftError, loadModel } from 'graft';
import { formatEvaluation } from '#internal/eval/evaluate.js';
import { parse, str } from '../args.js';
import { DATA_ARGS, FIT_USAGE, decodeProgress, skippedLines } from '../data-args.js';
import { modelInputs, savedDataOptions } from '../external-body.js';
import { engineReport, modelFor, onnxHead, onnxProbabilities, tfjsEngine } from '../onnx-choice.js';
import { scoreProbabilities } from '#internal/train/score.js';
import type * as tfl from '@tensorflow/tfjs-layers';

export const usage = `graft evaluate <model> <data> [--labels <idx>] [--label-column <name>] [--json]

  <model>   a model directory written by graft train (or any model with a graft.json), or an
            ONNX file written by graft export (a folder's current fp32 export runs on onnxruntime)
  <data>    a folder with one sub-folder of images per class, mnist-test:<digits> (e.g.
            mnist-test:5-9), a .csv file, or an IDX images file
  --labels  the IDX labels file (default: beside the images file)
  --label-column  the CSV column holding the class (default: "label", else the last column)
  --head    new | old: which head of a multi-head model to evaluate (default new)
  --tta     test-time augmentation: average each image's probabilities with its mirror image's
  ${FIT_USAGE.replace('the model\'s input size', 'the model\'s input size (default: what training used, saved in graft.json)')}
  --precision fp32 (default), bf16 or auto: the native engine's arithmetic (see graft --help);
            bf16 passes over a model folder's ONNX export (fp32) for the native engine
  --json    print { engine, precision: { requested, used, why }, accuracy, loss, count, perClass, confusion, classNames, skipped }`;

export const summary = 'accuracy, per-class accuracy and confusion matrix of a trained model on data';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...DATA_ARGS, head: { type: 'string' }, tta: { type: 'boolean' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 2) { console.error(`graft evaluate needs a model and data.\n\nUsage:\n${usage}`); return 2; }
  const asked = str(values.head);
  if (asked === 'all') throw new GraftError('BAD_OPTION', 'graft evaluate scores one head at a time; --head all is for graft predict.', { fix: 'Use --head new or --head old.' });
  const headName = asked ?? 'new';
  const { model, meta, onnx, note } = await modelFor(positionals[0], headName);
  try {
    const k = onnx ? onnxHead(onnx.model, onnx.file, asked) : -1;
    const head = onnx ? { classNames: onnx.model.info.outputs[k].classNames, inputShape: [null, ...onnx.model.sampleShape] } : (() => { const h = selectHead(model!, meta, headName); return { ...h, inputShape: h.model.inputs[0].shape }; })();
    const raw = alignClasses(await loadData(positionals[1], { ...savedDataOptions(values, model ?? head.inputShape, meta, decodeProgress(Boolean(values.json))), classNames: head.classNames }), head.classNames);
    const { data, preprocessing } = onnx ? { data: raw, preprocessing: meta.preprocessing } : await modelInputs(meta, raw);
    assertShape(data, preprocessing, head.inputShape);
    const result = onnx
      ? scoreProbabilities((await onnxProbabilities(onnx.model, data, Boolean(values.tta)))[k], data.labels, data.classNames)
      : await evaluate((head as { model: tfl.LayersModel }).model, data, preprocessing, 128, { tta: Boolean(values.tta) });
    const engine = onnx ? 'onnxruntime' : tfjsEngine((head as { model: tfl.LayersModel }).model);
    const report = engineReport(engine, onnx);
    if (values.json) {
      console.log(JSON.stringify({ ...result, tta: Boolean(values.tta), ...report.json, ...(onnx ? { onnx: onnx.file } : {}), backend: backendInfo()?.name, skipped: data.skipped ?? [] }));
    } else {
      console.log(report.words);
      if (note) console.log(note);
      for (const line of skippedLines(data.skipped)) console.log(line);
      console.log(`${positionals[0]} on ${data.source} (${onnx ? 'onnxruntime' : engine === 'native' ? 'native engine' : `backend ${engine}`}${values.tta ? ', each image averaged with its mirror image' : ''}): ${formatEvaluation(result)}`);
    }
  } finally {
    await onnx?.model.dispose();
  }
  return 0;
}
