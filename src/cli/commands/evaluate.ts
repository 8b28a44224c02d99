// graft evaluate <model> <data>: accuracy, per-class accuracy and the confusion matrix.

import { assertShape, backendInfo, selectHead, alignClasses, evaluate, formatEvaluation, GraftError, loadData, loadModel } from '../../index.js';
import { parse, str } from '../args.js';
import { DATA_ARGS, FIT_USAGE, decodeProgress, skippedLines } from '../data-args.js';
import { modelInputs, savedDataOptions } from '../external-body.js';

export const usage = `graft evaluate <model> <data> [--labels <idx>] [--label-column <name>] [--json]

  <model>   a model directory written by graft train (or any model with a graft.json)
  <data>    a folder with one sub-folder of images per class, mnist-test:<digits> (e.g.
            mnist-test:5-9), a .csv file, or an IDX images file
  --labels  the IDX labels file (default: beside the images file)
  --label-column  the CSV column holding the class (default: "label", else the last column)
  --head    new | old: which head of a multi-head model to evaluate (default new)
  --tta     test-time augmentation: average each image's probabilities with its mirror image's
  ${FIT_USAGE.replace('the model\'s input size', 'the model\'s input size (default: what training used, saved in graft.json)')}
  --json    print { accuracy, loss, count, perClass, confusion, classNames, skipped }`;

export const summary = 'accuracy, per-class accuracy and confusion matrix of a trained model on data';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...DATA_ARGS, head: { type: 'string' }, tta: { type: 'boolean' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 2) { console.error(`graft evaluate needs a model and data.\n\nUsage:\n${usage}`); return 2; }
  const { model, meta } = await loadModel(positionals[0]);
  if (!meta) {
    throw new GraftError('BAD_MODEL', `${positionals[0]} has no graft.json, so its class names and preprocessing are unknown.`, {
      fix: 'Evaluate a model written by graft train, or a zoo model.' });
  }
  const head = selectHead(model, meta, str(values.head) ?? 'new');
  const raw = alignClasses(await loadData(positionals[1], { ...savedDataOptions(values, model, meta, decodeProgress(Boolean(values.json))), classNames: head.classNames }), head.classNames);
  const { data, preprocessing } = await modelInputs(meta, raw);
  assertShape(data, preprocessing, head.model.inputs[0].shape);
  const result = await evaluate(head.model, data, preprocessing, 128, { tta: Boolean(values.tta) });
  if (values.json) {
    console.log(JSON.stringify({ ...result, tta: Boolean(values.tta), backend: backendInfo()?.name, skipped: data.skipped ?? [] }));
  } else {
    for (const line of skippedLines(data.skipped)) console.log(line);
    console.log(`${positionals[0]} on ${data.source} (backend ${backendInfo()?.name}${values.tta ? ', each image averaged with its mirror image' : ''}): ${formatEvaluation(result)}`);
  }
  return 0;
}
