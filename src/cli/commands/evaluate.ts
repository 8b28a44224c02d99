// graft evaluate <model> <data>: accuracy, per-class accuracy and the confusion matrix.

import { assertShape, backendInfo, selectHead, alignClasses, evaluate, formatEvaluation, GraftError, loadData, loadModel } from '../../index.js';
import { parse, str } from '../args.js';

export const usage = `graft evaluate <model> <data> [--labels <idx>] [--label-column <name>] [--json]

  <model>   a model directory written by graft train (or any model with a graft.json)
  <data>    mnist-test:<digits> (e.g. mnist-test:5-9), a .csv file, or an IDX images file
  --labels  the IDX labels file (default: beside the images file)
  --label-column  the CSV column holding the class (default: "label", else the last column)
  --head    new | old: which head of a multi-head model to evaluate (default new)
  --json    print { accuracy, loss, count, perClass, confusion, classNames }`;

export const summary = 'accuracy, per-class accuracy and confusion matrix of a trained model on data';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { labels: { type: 'string' }, 'label-column': { type: 'string' }, head: { type: 'string' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 2) { console.error(`graft evaluate needs a model and data.\n\nUsage:\n${usage}`); return 2; }
  const { model, meta } = await loadModel(positionals[0]);
  if (!meta) {
    throw new GraftError('BAD_MODEL', `${positionals[0]} has no graft.json, so its class names and preprocessing are unknown.`, {
      fix: 'Evaluate a model written by graft train, or a zoo model.' });
  }
  const head = selectHead(model, meta, str(values.head) ?? 'new');
  const data = alignClasses(await loadData(positionals[1], { labels: str(values.labels), labelColumn: str(values['label-column']) }), head.classNames);
  assertShape(data, meta.preprocessing, head.model.inputs[0].shape);
  const result = await evaluate(head.model, data, meta.preprocessing);
  console.log(values.json ? JSON.stringify({ ...result, backend: backendInfo()?.name }) : `${positionals[0]} on ${data.source} (backend ${backendInfo()?.name}): ${formatEvaluation(result)}`);
  return 0;
}
