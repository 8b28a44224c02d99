// graft train: transfer a base model to the user's labelled data and save the result.

import {
  alignClasses, evaluate, takePerClass, GraftError, initBackend, loadData, loadModel, parseUnfreeze, saveModel, transfer, DEFAULTS,
  type HeadOptions,
} from '../../index.js';
import { intAtLeast, num, parse, percent, str } from '../args.js';
import { phaseLine, progressCallbacks } from '../progress.js';

export const usage = `graft train --base <model> --data <data> [options]

  --base <model>          pretrained model: a zoo name (digits-cnn), a directory, model.json or URL
  --data <data>           training data: mnist-train:<digits>, a .csv file, or an IDX images file
  --per-class <n>         use at most n training samples per class (seeded), e.g. for a quick run
  --labels <idx>          IDX labels file (default: beside the images file)
  --label-column <name>   CSV column with the class (default "label", else the last column)
  --cut <layer>           cut the base here, name or index (default: the base's suggested cut,
                          else the layer feeding its output layer)
  --head <spec>           head options, e.g. hidden=128:64,dropout=0.3,pool=max (default: pooling
                          if needed, dropout ${DEFAULTS.head.dropout}, dense softmax)
  --warmup-epochs <n>     epochs with the body frozen, on cached features (default ${DEFAULTS.warmupEpochs})
  --finetune-epochs <n>   epochs after unfreezing (default ${DEFAULTS.finetuneEpochs})
  --unfreeze <what>       none | all | N (top N weighted layers) | from:<layer> (default all)
  --lr <x>                peak learning rate of the head (default ${DEFAULTS.lr}); the fine-tune uses
                          half of it, and deeper layer groups down to 1/${DEFAULTS.lrMult} of that
  --lr-mult <x>           the deepest layer group trains at the fine-tune LR / x (default ${DEFAULTS.lrMult})
  --schedule <name>       one-cycle | cosine | constant (default ${DEFAULTS.schedule})
  --batch-size <n>        (default ${DEFAULTS.batchSize})
  --val-split <f>         fraction held out for validation and early stopping (default ${DEFAULTS.validationSplit})
  --val-data <data>       validation data instead of a split
  --test-data <data>      evaluated once at the end; its accuracy is saved in graft.json
  --out <dir>             where to save the model (default ./graft-model); written atomically
  --seed <n>              (default ${DEFAULTS.seed})
  --json                  print one JSON object with the result instead of progress and words`;

export const summary = 'transfer a pretrained model to your data: cut, new head, warm-up, fine-tune, save';

function parseSchedule(name: string | undefined): 'one-cycle' | 'cosine' | 'constant' | undefined {
  if (name === undefined || name === 'one-cycle' || name === 'cosine' || name === 'constant') return name;
  throw new GraftError('BAD_ARGUMENT', `--schedule "${name}" is not a schedule.`, { fix: 'Use one-cycle, cosine or constant.' });
}

export function parseHead(spec: string | undefined): Omit<HeadOptions, 'numClasses'> {
  if (!spec) return {};
  const head: Omit<HeadOptions, 'numClasses'> = {};
  for (const part of spec.split(',')) {
    const [key, value] = part.split('=');
    const bad = () => new GraftError('BAD_ARGUMENT', `--head part "${part}" is not understood.`, {
      fix: 'Write key=value pairs: hidden=128:64, dropout=0.3, pool=avg|max|flatten, activation=relu|gelu|tanh|elu.' });
    if (key === 'hidden') {
      head.hidden = value === '' || value === 'none' ? [] : value.split(':').map((u) => num(u, 'head hidden', intAtLeast(1))!);
    } else if (key === 'dropout') head.dropout = num(value, 'head dropout', (n) => n >= 0 && n < 1);
    else if (key === 'pool' && ['avg', 'max', 'flatten'].includes(value)) head.pooling = value as HeadOptions['pooling'];
    else if (key === 'activation' && ['relu', 'gelu', 'tanh', 'elu'].includes(value)) head.activation = value as HeadOptions['activation'];
    else throw bad();
  }
  return head;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    base: { type: 'string' }, data: { type: 'string' }, labels: { type: 'string' }, 'label-column': { type: 'string' },
    cut: { type: 'string' }, head: { type: 'string' }, 'warmup-epochs': { type: 'string' }, 'finetune-epochs': { type: 'string' },
    unfreeze: { type: 'string' }, lr: { type: 'string' }, 'batch-size': { type: 'string' }, 'val-split': { type: 'string' },
    'val-data': { type: 'string' }, 'test-data': { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
    'per-class': { type: 'string' }, 'lr-mult': { type: 'string' }, schedule: { type: 'string' },
  }, usage);
  if (values.help) { console.log(usage); return 0; }
  const baseSpec = str(values.base);
  const dataSpec = str(values.data);
  if (!baseSpec || !dataSpec) throw new GraftError('BAD_ARGUMENT', 'graft train needs --base and --data.', { fix: `Usage:\n${usage}` });
  const options = {
    cut: str(values.cut),
    head: parseHead(str(values.head)),
    warmupEpochs: num(values['warmup-epochs'], 'warmup-epochs', intAtLeast(0)),
    finetuneEpochs: num(values['finetune-epochs'], 'finetune-epochs', intAtLeast(0)),
    unfreeze: values.unfreeze === undefined ? undefined : parseUnfreeze(str(values.unfreeze)!),
    lr: num(values.lr, 'lr', (n) => n > 0 && n < 10),
    lrMult: num(values['lr-mult'], 'lr-mult', (n) => n >= 1),
    batchSize: num(values['batch-size'], 'batch-size', intAtLeast(1)),
    schedule: parseSchedule(str(values.schedule)),
    validationSplit: num(values['val-split'], 'val-split', (n) => n >= 0 && n < 1),
    seed: num(values.seed, 'seed', intAtLeast(0)),
  };
  const out = str(values.out) ?? 'graft-model';
  const json = Boolean(values.json);
  const log = (line: string) => { if (!json) console.log(line); };
  const backend = await initBackend(str(values.backend));
  const started = Date.now();
  const base = await loadModel(baseSpec);
  const dataOpts = { labels: str(values.labels), labelColumn: str(values['label-column']) };
  const perClass = num(values['per-class'], 'per-class', intAtLeast(1));
  const all = await loadData(dataSpec, dataOpts);
  const data = perClass === undefined ? all : takePerClass(all, perClass, options.seed ?? DEFAULTS.seed);
  const validation = values['val-data'] ? alignClasses(await loadData(str(values['val-data'])!, dataOpts), data.classNames) : undefined;
  const test = values['test-data'] ? alignClasses(await loadData(str(values['test-data'])!, dataOpts), data.classNames) : undefined;
  log(`backend: ${backend.name} (${backend.reason})`);
  log(`base: ${baseSpec}; data: ${data.source}, ${data.labels.length} samples, classes ${data.classNames.join(', ')}`);
  const cleanOptions = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const progress = progressCallbacks(process.stderr, json);
  const { grafted, result, meta, preprocessing } = await transfer(base, data, {
    ...cleanOptions, validation,
    callbacks: { ...progress, onPhaseStart: (info) => { log(phaseLine(info)); return progress.onPhaseStart?.(info); } },
  });
  if (test) {
    const ev = await evaluate(grafted.model, test, preprocessing);
    meta.metrics = { ...meta.metrics, testAccuracy: ev.accuracy, testLoss: ev.loss, testSamples: ev.count };
  }
  meta.metrics = { ...meta.metrics, seconds: (Date.now() - started) / 1000 };
  await saveModel(grafted.model, out, meta);
  if (json) {
    console.log(JSON.stringify({ backend: backend.name, out, cut: meta.base?.cut, classNames: meta.classNames, metrics: meta.metrics, phases: result.phases, history: result.history }));
  } else {
    log(`validation accuracy ${percent(meta.metrics.validationAccuracy as number | null)}${test ? `, test accuracy ${percent(meta.metrics.testAccuracy as number)}` : ''}`);
    log(`saved ${out}/ (model.json + weights.bin load in plain tfjs; graft.json holds classes, preprocessing, history)`);
  }
  return 0;
}
