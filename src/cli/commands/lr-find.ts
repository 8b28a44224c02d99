// graft lr-find: the learning-rate finder for the fine-tune phase. Grafts the head, fits it
// as graft train's warm-up does, then sweeps the learning rate of the unfrozen model and
// draws loss against rate. `graft train --lr auto` runs the same sweep and uses its suggestion.

import { writeFile } from 'node:fs/promises';
import { DEFAULTS, GraftError, fineTune, graft, initBackend, loadModel } from 'graft';
import { parseUnfreeze } from '#internal/model/freeze.js';
import { defaultCut } from '#internal/train/transfer.js';
import { findLearningRate } from '#internal/train/lr-find.js';
import { lrFinderChart } from '#internal/report/lr-chart.js';
import { intAtLeast, num, parse, str } from '../args.js';
import { DATA_ARGS, dataOptions, loadTrainingData, parseFit } from '../data-args.js';
import { GRAFT_MARKER, inputsOf, outFile } from '../out-args.js';

export const usage = `graft lr-find --base <model> --data <data> [options]

Sweeps the learning rate from 1e-7 up while the unfrozen model trains on your data, from a head
already fitted as graft train's warm-up fits it, and stops when the loss blows up. Every weight
is put back afterwards. Suggests a rate a decade below the lowest loss (fastai's rule); graft
train --lr auto runs the same sweep and fine-tunes at it.

  --base <model>     zoo name, model folder, model.json or URL
  --data <data>      image folder (one sub-folder per class), mnist-train:<digits>, CSV, IDX
  --per-class <n>    at most n training samples per class
  --cut <layer>      where to cut (default: the base's suggested cut)
  --unfreeze <what>  none | all | N | from:<layer> (default all)
  --steps <n>        steps of the sweep (default 100)
  --batch-size <n>   (default ${DEFAULTS.batchSize})
  --svg <file>       draw loss against learning rate (a new file, or one Graft wrote)
  --seed <n>         (default ${DEFAULTS.seed})
  --json             print { suggestion, minimumAt, stopped, lrs, losses }`;

export const summary = 'learning-rate finder: loss against learning rate, and a suggested rate for fine-tuning';

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    base: { type: 'string' }, data: { type: 'string' }, cut: { type: 'string' }, unfreeze: { type: 'string' }, steps: { type: 'string' },
    'batch-size': { type: 'string' }, svg: { type: 'string' }, seed: { type: 'string' }, 'per-class': { type: 'string' }, ...DATA_ARGS,
  }, usage);
  if (values.help) { console.log(usage); return 0; }
  const baseSpec = str(values.base);
  const dataSpec = str(values.data);
  if (!baseSpec || !dataSpec) throw new GraftError('BAD_ARGUMENT', 'graft lr-find needs --base and --data.', { fix: `Usage:\n${usage}` });
  const steps = num(values.steps, 'steps', (n) => Number.isInteger(n) && n >= 10 && n <= 10000) ?? 100;
  const batchSize = num(values['batch-size'], 'batch-size', intAtLeast(1)) ?? DEFAULTS.batchSize;
  const seed = num(values.seed, 'seed', intAtLeast(0)) ?? DEFAULTS.seed;
  const unfreezeSpec = values.unfreeze === undefined ? DEFAULTS.unfreeze : parseUnfreeze(str(values.unfreeze)!);
  parseFit(values.fit);
  const svg = str(values.svg);
  if (values.svg !== undefined) await outFile(svg, { flag: '--svg', example: 'lr.svg', marker: GRAFT_MARKER, protect: inputsOf(values) });
  await initBackend(str(values.backend));
  const base = await loadModel(baseSpec);
  const { data } = await loadTrainingData(values, dataOptions(values, base.model, base.meta?.preprocessing), seed);
  const cut = str(values.cut) ?? defaultCut(base);
  const suggested = cut === base.meta?.zoo?.suggestedCuts?.[0] ? base.meta?.zoo?.suggestedHead : undefined;
  const g = graft(base.model, { cut, head: { seed, ...suggested, numClasses: data.classNames.length } });
  const p = base.meta?.preprocessing;
  await fineTune(g, data, { preprocessing: p, finetuneEpochs: 0, seed, validationSplit: 0 });
  const r = await findLearningRate(g, data, { preprocessing: p, batchSize, unfreeze: unfreezeSpec, steps, seed });
  if (svg) await writeFile(svg, lrFinderChart(r));
  if (values.json) {
    console.log(JSON.stringify({ suggestion: r.suggestion, minimumAt: r.minimumAt, stopped: r.stopped, engine: r.engine, lrs: r.lrs, losses: r.losses }));
    return 0;
  }
  console.log(`learning-rate sweep of ${r.lrs.length} steps (${r.engine} engine) from ${r.lrs[0].toExponential(1)} to ${r.lrs.at(-1)!.toExponential(1)}; ${r.stopped === 'diverged' ? 'stopped when the loss blew up' : 'the loss did not blow up within the sweep'}`);
  console.log(`lowest smoothed loss ${Math.min(...r.losses).toFixed(4)} at ${r.minimumAt.toExponential(1)}; suggested fine-tune learning rate ${r.suggestion.toExponential(1)} (a decade below)`);
  console.log(`use it: graft train --base ${baseSpec} --data ${dataSpec} --lr ${(r.suggestion / DEFAULTS.finetuneLrFactor).toPrecision(2)}   (--lr is the head's warm-up rate; the fine-tune runs at half of it), or --lr auto`);
  if (svg) console.log(`wrote ${svg}`);
  return 0;
}
