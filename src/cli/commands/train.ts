// graft train: transfer a base model to the user's labelled data and save the result.

import { stat } from 'node:fs/promises';
import { accuracyWords, wilson } from '#internal/eval/interval.js';
import type { FineTuneResult } from '#internal/train/fine-tune.js';
import type { GraftMeta } from '#internal/model/meta.js';
import { isBytes } from '#internal/data/disk-samples.js';
import { graphModelJson } from '#internal/model/graph-body.js';
import { alignClasses, loadData } from '#internal/data/load.js';
import { evaluate, readLatestCheckpoint, type Checkpoint, GraftError, initBackend, loadModel, saveModel, transfer, DEFAULTS, type HeadOptions } from 'graft';
import { classCounts, classImbalance } from '#internal/data/dataset.js';
import { parseAugment, isIdentity, AUGMENT_DEFAULTS } from '#internal/data/augment.js';
import { partialOut } from '#internal/model/out-dir.js';
import { transferWithForgetting, formatForgetting, type ForgettingReport } from '#internal/eval/forgetting.js';
import { type KeepOld } from '#internal/train/transfer.js';
import type { PhaseInfo } from '#internal/train/phase.js';
import { parseUnfreeze } from '#internal/model/freeze.js';
import { intAtLeast, num, parse, percent, str, type Options } from '../args.js';
import { basename, join, resolve } from 'node:path';
import { phaseLine, progressCallbacks } from '../progress.js';
import { run as exportModel } from './export.js';
import { writeGraphModel } from '#internal/export/graph-model-export.js';
import { batchValues } from '#internal/data/preprocess.js';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { OnnxUnsupported } from '#internal/model/onnx-layers.js';
import { frozenBase, frozenMeta, resolveCut, type FrozenBody } from '#internal/train/transfer.js';
import { GraphBody } from '#internal/model/graph-body.js';
import { OnnxBody } from '#internal/model/onnx.js';
import { type Dataset, type LoadedModel } from 'graft';
import { defaultPrecision, nativeStatus, precisionGiven, PRECISIONS, runPrecision, setPrecision, withPrecision, type Precision } from '#internal/engine/native.js';
import { closeNames } from '#internal/errors.js';
import { fetchRemoteModel, remoteModel } from '#internal/zoo/remote.js';
import { outFolder } from '../out-args.js';
import { downloadProgress } from '../download-progress.js';
import { assertSameRun, dataPrint } from '#internal/train/resume-check.js';
import { agree, allreduce, distributed, isCollectiveFailure, joinRun, leaveRun, lostWorker, shardRange } from '#internal/engine/dist.js';
import { versions } from '#internal/model/meta.js';
import { DIST_FLAGS, joinOptions, launchWorkers, localWorkers, onlyFlags, watchLauncher, withoutFlags } from '../workers.js';
import { DATA_ARGS, FIT_USAGE, PREPROCESS_USAGE, parsePreprocess, dataOptions, decodeProgress, loadTrainingData, parseFit, parseTestSplit, parseSize, skippedLines, streamLine } from '../data-args.js';

export const usage = `graft train --base <model> --data <data> [options]

  --base <model>          pretrained model: a zoo name (digits-cnn, nsfwjs-mobilenet-v2, also
                          called mobilenet-v2), a named model fetched into $GRAFT_HOME on
                          first use (onnx-zoo:mobilenetv2, onnx-zoo:resnet50,
                          onnx-zoo:efficientnet-lite4), a directory,
                          model.json or URL, a Keras .h5 or .keras file, an ONNX file or a tfjs
                          GraphModel: rebuilt as layers, they train and fine-tune like the rest
                          (the result is also saved in the base's format: model.onnx, or
                          graph-model/); --cut names a node or value (graft inspect lists them).
                          A graph with an op Graft cannot rebuild trains a head on its frozen
                          features
  --data <data>           training data: a folder with one sub-folder of images per class (or
                          train/, val/, test/ folders of those), mnist-train:<digits>, a .csv
                          file, or an IDX images file
  --per-class <n>         use at most n training samples per class (seeded), e.g. for a quick run
  ${FIT_USAGE}
  ${PREPROCESS_USAGE}
  --input-size <n|hxw>    run a fully convolutional base at another input size (e.g. 96 for
                          nsfwjs-mobilenet-v2: ~5x faster than 224); images are resized to it
  --augment <spec>        default | none | crop=0.6,flip,rotate=10,jitter=0.2: augmentation in
                          the fine-tune phase (default: on for image folders, off otherwise)
  --warmup-views <k>      warm up on k views of each image: the original and k-1 augmented
                          copies, their features computed once and cached (default 1)
  --balance <how>         auto | weights | sample | none: class imbalance (default auto: class
                          weights n/(k*n_c) when the largest class is >= 1.5x the smallest)
  --labels <idx>          IDX labels file (default: beside the images file)
  --label-column <name>   CSV column with the class (default "label", else the last column)
  --cut <layer>           cut the base here, name or index (default: the base's suggested cut,
                          else the layer feeding its output layer)
  --head <spec>           head options, e.g. hidden=128:64,dropout=0.3,pool=max (default: pooling
                          if needed, dropout ${DEFAULTS.head.dropout}, dense softmax)
  --warmup <how>          auto | fit | sgd: how the head is trained with the body frozen, on body
                          features computed once. fit: a linear head is fitted to convergence
                          (L-BFGS on standardised features; the L2 strength is chosen by 5-fold
                          cross-validation when a class has under 100 samples). sgd: epochs of
                          AdamW. auto (default): fit, unless the head has hidden layers or the
                          old task is distilled (--extend)
  --warmup-epochs <n>     with --warmup sgd: epochs (default ${DEFAULTS.warmupEpochs}, more on small data: at
                          least ${DEFAULTS.minWarmupSteps} steps); 0 skips the warm-up either way
  --finetune-epochs <n>   epochs after unfreezing (default ${DEFAULTS.finetuneEpochs})
  --keep-better <yes|no>  keep the fine-tuned model only when it beats the warm-up head by more
                          than chance: on the validation data (McNemar's test, 10%), or on small
                          data (no validation split) by 3-fold cross-validation on the training
                          set (paired t-test, 10%), which costs 3 short fine-tunes (default yes)
  --unfreeze <what>       none | all | gradual | N (top N weighted layers) | from:<layer> (default
                          all). gradual: the whole body, one layer group more per fine-tune
                          epoch from the top (ULMFiT); groups as --layer-groups
  --layer-groups <n>      body layer groups for discriminative learning rates and gradual
                          unfreezing, plus the head (default ${DEFAULTS.layerGroups})
  --label-smoothing <e>   targets (1 - e) one-hot + e/classes in the epochs trained by gradient
                          (fine-tune, sgd warm-up); 0 to below 1 (default 0: off)
  --lr <x>|auto           peak learning rate of the head (default ${DEFAULTS.lr}); the fine-tune uses
                          half of it, and deeper layer groups down to 1/${DEFAULTS.lrRatio} of that.
                          auto: after the warm-up, the learning-rate finder (graft lr-find) sweeps
                          the unfrozen model and the fine-tune runs at its suggestion
  --lr-mult <x>           the deepest layer group trains at the fine-tune LR / x (default ${DEFAULTS.lrRatio}; fastai's lr_mult)
  --bn-stats <how>        auto | update | keep: whether unfrozen BatchNorm layers update their
                          moving statistics while fine-tuning (keep = Keras' advice; default
                          auto: update only when the fine-tune has enough steps for the moving
                          averages to follow, i.e. momentum^steps < ${DEFAULTS.autoBatchNormResidue})
  --schedule <name>       one-cycle | cosine | constant (default ${DEFAULTS.schedule})
  --batch-size <n>        (default ${DEFAULTS.batchSize})
  --val-split <f>         fraction held out for validation and early stopping (default
                          ${DEFAULTS.validationSplit}, or none when a class has under 100 images: then
                          cross-validation on the training set decides)
  --val-data <data>       validation data instead of a split
  --test-split <f>        fraction held out (stratified, seeded) and evaluated once at the end
  --test-data <data>      evaluated once at the end; its accuracy is saved in graft.json
  --keep-old <how>        keep the old task: head (the old head stays a second output of the
                          saved model; exact with --unfreeze none), lwf (also Learning without
                          Forgetting: distillation toward the old head's recorded outputs) or
                          ewc (also an Elastic Weight Consolidation penalty; needs --old-data)
  --extend                one head for old + new classes, old weights copied from the old head,
                          distillation on the old classes
  --old-data <data>       old-task data: measure forgetting (before/after table, saved in graft.json)
  --replay <n>            with --extend and --old-data: mix n old examples per class into training
  --temperature <t>       distillation temperature (default 2)
  --lambda <x>            distillation (lwf) or penalty (ewc) weight (default 1)
  --out <dir>             where to save the model (default ./graft-model); written atomically,
                          checkpoints in <dir>/checkpoints. It must be new, empty or an earlier
                          Graft model, and not the current folder, the base or the data; a run
                          that diverges saves to <dir>.diverged and leaves <dir> as it was;
                          one run at a time per folder (another run's folder: OUT_BUSY)
  --checkpoint-minutes <m> also checkpoint inside epochs every m minutes (default 5)
  --keep-checkpoints <k>  keep the last k checkpoints (default 3)
  --resume <dir>          go on with the run whose --out was <dir>, from its last checkpoint,
                          with that run's own options (no other options but --precision);
                          refused when the data or options changed since (it says what
                          changed), or when the run finished
  --resume-anyway         with --resume: go on although the data or options changed
  --no-cache              do not keep the warm-up's body features in the disk cache (by default
                          they are kept and reused when the same body meets the same data;
                          see graft cache)
  --seed <n>              (default ${DEFAULTS.seed})
  --precision <p>         fp32 (default), bf16 or auto: the native engine's arithmetic (bf16
                          convolutions and matrix products, fp32 master weights; auto: bf16
                          where the CPU has AVX512-BF16 or AMX, see graft doctor); the
                          test set is scored in fp32, as the saved (fp32) model predicts
  --json                  print one JSON object with the result instead of progress and words
                          (validationAccuracy, testAccuracy, skipped: [{path, reason}], ...)

Data-parallel training (native engine; docs/scale.md):
  --workers <n>           train with n worker processes on this machine, each with its share
                          of the cores; each trains its part of every batch, gradients are
                          summed over c10d/Gloo, BatchNorm statistics are the whole batch's
  --rank <r> --world-size <w> --master <host:port>
                          be worker r of w across machines; rank 0 serves the rendezvous at
                          host:port (torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT work
                          too). Every worker needs the same data and options; rank 0 writes
                          the model, the checkpoints and the feature cache
  --dist-timeout <s>      how long a worker waits for the others (default 30)

Files that cannot be used (unreadable, truncated, empty, not an image) are listed and skipped.

Ctrl-C stops after the current batch, writes a checkpoint and prints the command to resume.`;

export const summary = 'transfer a pretrained model to your data: cut, new head, warm-up, fine-tune, save';

function oneOf<T extends string>(v: string | undefined, flag: string, allowed: readonly T[]): T | undefined {
  if (v === undefined || (allowed as readonly string[]).includes(v)) return v as T | undefined;
  throw new GraftError('BAD_ARGUMENT', `--${flag} "${v}" is not understood.`, { fix: `Use ${allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}` : allowed[0]}.` });
}

function yesNo(v: string | undefined, flag: string): boolean | undefined {
  const w = oneOf(v, flag, ['yes', 'no'] as const);
  return w === undefined ? undefined : w === 'yes';
}

function parseKeepOld(how: string | undefined): KeepOld | undefined {
  if (how === undefined || how === 'head' || how === 'lwf' || how === 'ewc') return how;
  throw new GraftError('BAD_ARGUMENT', `--keep-old "${how}" is not understood.`, { fix: 'Use head, lwf or ewc.' });
}

function parseBnStats(how: string | undefined): 'update' | 'keep' | 'auto' | undefined {
  if (how === undefined || how === 'update' || how === 'keep' || how === 'auto') return how;
  throw new GraftError('BAD_ARGUMENT', `--bn-stats "${how}" is not understood.`, { fix: 'Use auto, update or keep.' });
}

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

const OPTIONS: Options = {
  base: { type: 'string' }, data: { type: 'string' }, labels: { type: 'string' }, 'label-column': { type: 'string' },
  cut: { type: 'string' }, head: { type: 'string' }, 'warmup-epochs': { type: 'string' }, warmup: { type: 'string' }, 'keep-better': { type: 'string' }, 'finetune-epochs': { type: 'string' },
  unfreeze: { type: 'string' }, lr: { type: 'string' }, 'batch-size': { type: 'string' }, 'val-split': { type: 'string' },
  'val-data': { type: 'string' }, 'test-data': { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
  'per-class': { type: 'string' }, 'lr-mult': { type: 'string' }, schedule: { type: 'string' }, 'label-smoothing': { type: 'string' }, 'layer-groups': { type: 'string' },
  'keep-old': { type: 'string' }, extend: { type: 'boolean' }, 'old-data': { type: 'string' }, replay: { type: 'string' },
  temperature: { type: 'string' }, lambda: { type: 'string' }, 'bn-stats': { type: 'string' },
  'checkpoint-minutes': { type: 'string' }, 'keep-checkpoints': { type: 'string' }, resume: { type: 'string' },
  workers: { type: 'string' }, rank: { type: 'string' }, 'world-size': { type: 'string' }, master: { type: 'string' }, 'dist-timeout': { type: 'string' },
  'input-size': { type: 'string' }, 'warmup-views': { type: 'string' }, preprocess: { type: 'string' }, 'no-cache': { type: 'boolean' }, 'resume-anyway': { type: 'boolean' }, augment: { type: 'string' }, balance: { type: 'string' }, 'test-split': { type: 'string' },
  ...DATA_ARGS,
};

function parseBalance(how: string | undefined): 'auto' | 'none' | 'weights' | 'sample' | undefined {
  if (how === undefined || how === 'auto' || how === 'none' || how === 'weights' || how === 'sample') return how;
  throw new GraftError('BAD_ARGUMENT', `--balance "${how}" is not understood.`, { fix: 'Use auto, weights, sample or none.' });
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, OPTIONS, usage);
  if (values.help) { console.log(usage); return 0; }
  const workers = localWorkers(values);
  if (workers !== undefined && workers > 1) {
    // This process launches the workers: the same command, each with its rank.
    const whole = process.argv.slice(2);
    return launchWorkers(workers, withoutFlags(whole, ['--workers']), str(values.resume) ?? str(values.out) ?? 'graft-model');
  }
  const place = joinOptions(values);
  if (!place) return runOne(values, argv);
  watchLauncher();
  const d = joinRun(place);
  // A worker started by hand (not by --workers) says where it stands; rank 0 speaks for the run.
  const byHand = d.rank > 0 && !process.env.GRAFT_LAUNCHER_PID;
  if (byHand) process.stderr.write(`rank ${d.rank} of ${d.worldSize}: joined the run at ${d.master}; rank 0 shows the progress and writes the files\n`);
  try {
    // Every worker runs the same Graft on the same options, in any order; where each writes
    // (--out, --resume) is rank 0's business. The data (and a resumed checkpoint) are compared once read.
    const same = Object.fromEntries(Object.entries(values).filter(([k]) => !['out', 'resume', 'json', 'debug', 'workers', 'rank', 'world-size', 'master', 'dist-timeout', 'resume-anyway'].includes(k)).sort(([a], [b]) => a.localeCompare(b)));
    agree('setup', { graft: versions().graft, torch: nativeStatus().torch ?? null, precision: defaultPrecision(), options: same });
    const code = await runOne(values, argv);
    if (byHand) process.stderr.write(`rank ${d.rank} of ${d.worldSize}: ${code === 0 ? 'done' : code === 130 ? 'stopped with the run (rank 0 wrote the checkpoint)' : `ended with exit code ${code}`}\n`);
    return code;
  } catch (e) {
    throw e instanceof GraftError || !isCollectiveFailure(e) ? e : lostWorker(e, 'training');
  } finally {
    if (distributed() === d) leaveRun();
  }
}

async function runOne(values: Values, argv: string[]): Promise<number> {
  const resumeDir = str(values.resume);
  if (!resumeDir) return train(values, argv);
  const others = argv.filter((a) => a.startsWith('--') && !['--resume', '--resume-anyway', '--json', '--backend', '--debug', ...DIST_FLAGS].includes(a.split('=')[0]));
  if (others.length) {
    throw new GraftError('BAD_ARGUMENT', `--resume goes on with the run's own options; got ${others.join(', ')} as well.`, { fix: `Run: graft train --resume ${resumeDir}` });
  }
  const checkpoint = await readLatestCheckpoint(join(resumeDir, 'checkpoints'));
  if (!checkpoint) {
    throw new GraftError('BAD_ARGUMENT', `There is no checkpoint in ${join(resumeDir, 'checkpoints')}.`, { fix: 'Give the --out directory of a run that was stopped, or start a new run.' });
  }
  // A run that finished saved its model after its last checkpoint: there is nothing to go on with,
  // and training again from that checkpoint would overwrite the finished model.
  const savedAt = (await stat(join(resumeDir, 'graft.json')).catch(() => undefined))?.mtimeMs;
  const checkpointAt = (await stat(join(checkpoint.path, 'checkpoint.json')).catch(() => undefined))?.mtimeMs;
  if (savedAt !== undefined && checkpointAt !== undefined && savedAt > checkpointAt) {
    throw new GraftError('BAD_ARGUMENT', `The run in ${resumeDir} finished: its model (graft.json) was saved after its last checkpoint (${checkpoint.path}), so there is nothing to resume.`, {
      fix: `To train more, start a new run with another --out (graft train ... --out <new dir>); graft evaluate ${resumeDir} <data> scores the finished model.` });
  }
  const original = (checkpoint.run.argv as string[]).filter((a, i, all) => a !== '--out' && all[i - 1] !== '--out');
  // The run's own precision, unless this command gives one (checkpoints are fp32 either way).
  const ran = checkpoint.run.precision;
  if (!precisionGiven() && typeof ran === 'string' && PRECISIONS.includes(ran as Precision)) setPrecision(ran as Precision);
  const args = [...withoutFlags(original, DIST_FLAGS), '--out', resumeDir, ...argv.filter((a) => ['--json', '--debug', '--resume-anyway'].includes(a)), ...onlyFlags(argv, DIST_FLAGS)];
  return train(parse(args, OPTIONS, usage).values, args, checkpoint);
}

type Values = ReturnType<typeof parse>['values'];

async function train(values: Values, argv: string[], resumeFrom?: Checkpoint): Promise<number> {
  const given = str(values.base);
  const dataSpec = str(values.data);
  if (!given || !dataSpec) throw new GraftError('BAD_ARGUMENT', 'graft train needs --base and --data.', { fix: `Usage:\n${usage}` });
  // A named model (onnx-zoo:...): fetched into the cache once; its preprocessing is known.
  const remote = remoteModel(given);
  const baseSpec = remote ? await fetchRemoteModel(remote, { onProgress: downloadProgress(Boolean(values.json)), log: (l) => { if (!values.json) console.log(l); } }) : given;
  if (remote) {
    values.base = baseSpec;
    if (values.preprocess === undefined) values.preprocess = remote.preprocessing;
  }
  const options = {
    cut: str(values.cut),
    head: parseHead(str(values.head)),
    warmupEpochs: num(values['warmup-epochs'], 'warmup-epochs', intAtLeast(0)),
    warmup: oneOf(str(values.warmup), 'warmup', ['auto', 'fit', 'sgd'] as const),
    keepBetter: yesNo(str(values['keep-better']), 'keep-better'),
    finetuneEpochs: num(values['finetune-epochs'], 'finetune-epochs', intAtLeast(0)),
    unfreeze: values.unfreeze === undefined ? undefined : parseUnfreeze(str(values.unfreeze)!),
    lr: values.lr === 'auto' ? undefined : num(values.lr, 'lr', (n) => n > 0 && n < 10),
    findLr: values.lr === 'auto' ? true : undefined,
    lrRatio: num(values['lr-mult'], 'lr-mult', (n) => n >= 1),
    layerGroups: num(values['layer-groups'], 'layer-groups', (n) => Number.isInteger(n) && n >= 1 && n <= 64),
    labelSmoothing: num(values['label-smoothing'], 'label-smoothing', (n) => n >= 0 && n < 1),
    batchSize: num(values['batch-size'], 'batch-size', intAtLeast(1)),
    schedule: parseSchedule(str(values.schedule)),
    batchNormStatistics: parseBnStats(str(values['bn-stats'])),
    keepOld: parseKeepOld(str(values['keep-old'])),
    extend: values.extend ? true : undefined,
    replay: num(values.replay, 'replay', intAtLeast(1)),
    temperature: num(values.temperature, 'temperature', (n) => n > 0),
    lambda: num(values.lambda, 'lambda', (n) => n >= 0),
    validationSplit: num(values['val-split'], 'val-split', (n) => n >= 0 && n < 1),
    seed: num(values.seed, 'seed', intAtLeast(0)),
    balance: parseBalance(str(values.balance)),
    warmupViews: num(values['warmup-views'], 'warmup-views', (n) => Number.isInteger(n) && n >= 1 && n <= 32),
  };
  const fit = parseFit(values.fit);
  const inputSize = parseSize(values['input-size'], 'input-size');
  parseTestSplit(values);
  const augmentSpec = str(values.augment);
  if (augmentSpec !== undefined) parseAugment(augmentSpec);
  const dist = distributed();
  // Rank 0 writes everything; the other workers train and keep quiet.
  const out = dist?.rank ? str(values.out) ?? 'graft-model' : await outFolder(values, 'graft-model');
  const json = Boolean(values.json) || Boolean(dist?.rank);
  const log = (line: string) => { if (!json) console.log(line); };
  const backend = await initBackend(str(values.backend));
  const started = Date.now();
  let base: LoadedModel;
  let frozen: FrozenBody | undefined;
  try {
    base = await loadModel(baseSpec, { inputSize, keepUpTo: str(values.cut), cut: str(values.cut), onDownload: downloadProgress(json) });
  } catch (e) {
    if (!(e instanceof OnnxUnsupported)) throw e;
    // A graph with an op that has no layer form: its body runs frozen (onnxruntime or the tfjs
    // GraphModel) and the head trains on its features, through the same path as every base.
    const trains = [...(values.unfreeze !== undefined && values.unfreeze !== 'none' ? ['unfreeze'] : []), 'lr-mult', 'layer-groups', 'bn-stats', 'schedule', 'label-smoothing', 'keep-old', 'extend', 'old-data', 'replay', 'input-size', 'augment', 'warmup-views']
      .filter((k) => k === 'unfreeze' || values[k] !== undefined);
    if (trains.length || (values['finetune-epochs'] !== undefined && Number(values['finetune-epochs']) > 0)) {
      const all = [...trains.map((k) => `--${k}`), ...(values['finetune-epochs'] !== undefined ? ['--finetune-epochs'] : [])];
      throw new GraftError('UNSUPPORTED', `${baseSpec} cannot be trained: its ${e.message}, so Graft cannot rebuild it as layers${str(values.cut) ? ` up to the cut ${str(values.cut)}` : ''}, and ${all.join(', ')} need${all.length === 1 ? 's' : ''} a body that trains or runs in tfjs.`, {
        fix: `Cut before that node (graft inspect ${baseSpec} lists the nodes), or drop ${all.join(', ')} to train a head on the frozen body's features.` });
    }
    const graph = await graphModelJson(baseSpec);
    frozen = graph ? await GraphBody.load(baseSpec, str(values.cut)) : await OnnxBody.load(resolve(baseSpec), str(values.cut));
    if (values.cut === undefined) {
      // No cut: before the classifier (the last matrix product's input), as for every base.
      const f = frozen;
      const last = f instanceof OnnxBody ? [...f.graph.nodes].reverse().find((n) => n.opType === 'Gemm' || n.opType === 'MatMul')?.inputs[0]
        : [...f.nodes].reverse().find((n) => n.op === 'MatMul' || n.op === '_FusedMatMul')?.inputs[0];
      if (last && last !== f.info.output) {
        await f.dispose();
        frozen = graph ? await GraphBody.load(baseSpec, last) : await OnnxBody.load(resolve(baseSpec), last);
      }
    }
    log(`${baseSpec}: its ${e.message}, so the body cannot be rebuilt as layers; it stays frozen and runs on ${graph ? 'the tfjs GraphModel' : 'onnxruntime'}, cut at ${frozen.info.output}: features [${frozen.info.featureShape.join(', ')}]`);
    base = await frozenBase(frozen);
    options.cut = 'features';
    options.finetuneEpochs = 0;
  }
  if (base.imported) {
    const i = base.imported;
    const c = options.cut;
    if (c !== undefined) {
      const layer = String(resolveCut(base, c));
      if (!base.model.layers.some((l) => l.name === layer)) {
        const close = closeNames(c, [...i.layerOf.keys()]);
        throw new GraftError('LAYER_NOT_FOUND', `${baseSpec} has no node or value "${c}".${close.length ? ` Close names: ${close.join(', ')}.` : ''}`, { fix: `graft inspect ${baseSpec} lists the nodes and their outputs.` });
      }
      options.cut = layer;
    }
    if (values.preprocess === undefined && !base.meta) log(`no --preprocess: the graph gets the pixels' raw values 0-255; torchvision and timm models want --preprocess imagenet, Keras/TF ones often unit or symmetric`);
    log(`base: ${baseSpec} is ${i.format === 'onnx' ? 'an ONNX graph' : 'a tfjs GraphModel'} (input ${i.layout}, ${i.imageShape.join('x')}), rebuilt as ${base.model.layers.length} tfjs layers that train like any other${i.truncated ? ` (up to the cut: its ${i.truncated})` : ''}`);
  }
  const dataOpts = dataOptions(values, frozen ? [null, ...frozen.info.imageShape] : base.model, base.meta?.preprocessing, decodeProgress(json));
  const seed = options.seed ?? DEFAULTS.seed;
  const loaded = await loadTrainingData(values, dataOpts, seed);
  const { skipped, trainedFrom: trainedFromSpec } = loaded;
  let { data, validation, test: testRaw } = loaded;
  const oldData = values['old-data'] ? await loadData(str(values['old-data'])!, dataOpts) : undefined;
  const images = isBytes(data.x);
  // A frozen body: its features of every split, once; the head trains on them.
  const pixels = frozen ? parsePreprocess(values.preprocess, [null, ...frozen.info.imageShape]) : undefined;
  let featureSeconds = 0;
  if (frozen) {
    const f = frozen;
    const t0 = Date.now();
    const of = async (d: Dataset) => ({ ...(await f.features(d, pixels)), source: d.source, skipped: d.skipped });
    data = await of(data);
    validation = validation && await of(validation);
    testRaw = testRaw && await of(testRaw);
    featureSeconds = (Date.now() - t0) / 1000;
    log(`body features: ${featureSeconds.toFixed(1)} s with ${f.info.kind === 'onnx' ? 'onnxruntime' : 'the GraphModel'}`);
  }
  const streamed = streamLine(data);
  if (streamed) log(streamed);
  const augment = augmentSpec !== undefined ? parseAugment(augmentSpec) : images ? { ...AUGMENT_DEFAULTS } : undefined;
  if ((options.warmupViews ?? 1) > 1 && (!augment || isIdentity(augment) || data.sampleShape.length !== 3)) {
    throw new GraftError('BAD_ARGUMENT', '--warmup-views needs image data and augmentation.', { fix: 'Drop --warmup-views, or give images and --augment default.' });
  }
  log(`backend: ${backend.name} (${backend.reason})`);
  log(`base: ${baseSpec}${inputSize ? ` at ${inputSize.join('x')}` : ''}; data: ${data.source}, ${data.labels.length} samples, classes ${data.classNames.join(', ')}`);
  if (base.truncatedAt) log(`${baseSpec} at ${inputSize!.join('x')}: the layers after ${base.truncatedAt} only run at the original size and were left out`);
  for (const line of skippedLines(skipped)) log(line);
  const testCopies = loaded.testCopiesOfTraining?.count ? loaded.testCopiesOfTraining : undefined;
  const copiesWords = testCopies && `duplicates: ${testCopies.count} of the ${testCopies.of} test images are also training images (e.g. ${testCopies.examples[0]}), so the test accuracy overstates how the model does on new images; keep each image in one of the folders`;
  if (copiesWords) log(copiesWords);
  const counts = classCounts(data);
  const imbalance = classImbalance(data);
  const tiny = data.classNames.filter((_, i) => counts[i] > 0 && counts[i] < 5);
  if (tiny.length) log(`few images: ${tiny.map((c) => `${c} has ${counts[data.classNames.indexOf(c)]}`).join(', ')}; with under 5 images in a class the head's regularisation is cross-validated on fewer folds (under 2: not at all), and its test figures mean little. Add images to these classes.`);
  if (imbalance >= DEFAULTS.imbalanceRatio) {
    const how = options.balance ?? DEFAULTS.balance;
    const weighted = 'the loss weights each class by n/(k*n_class)';
    const words = {
      none: 'not corrected (--balance none)',
      sample: 'every class is sampled as often as the largest (--balance sample)',
      auto: `${weighted}, unless a fitted head's cross-validation prefers it unweighted (its line below says which; --balance weights or none decides)`,
      weights: `${weighted} (--balance weights)`,
    }[how];
    log(`class imbalance: ${data.classNames.map((c, i) => `${c} ${counts[i]}`).join(', ')} (largest/smallest ${imbalance.toFixed(1)}x); ${words}`);
  }
  const cleanOptions = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const trainedOn = dataPrint(data);
  agree('data', { data: trainedOn, validation: validation ? dataPrint(validation) : null });
  if (resumeFrom) agree('checkpoint', { checkpoint: basename(resumeFrom.path), phase: resumeFrom.state.phase, epochsDone: resumeFrom.state.epochsDone, batch: resumeFrom.state.position?.batch ?? 0 });
  if (dist) {
    const batch = options.batchSize ?? DEFAULTS.batchSize;
    const parts = Array.from({ length: dist.worldSize }, (_, r) => shardRange(batch, r, dist.worldSize)).map(([a, b]) => b - a);
    log(`workers: ${dist.worldSize}, data-parallel on c10d/Gloo (rendezvous ${dist.master}): each batch of ${batch} is split ${dist.worldSize <= 8 ? parts.join(' + ') : `${parts[parts.length - 1]} or so per worker`}, gradients are summed, BatchNorm trains on the whole batch's statistics; rank 0 writes the files`);
  }
  if (resumeFrom) for (const c of assertSameRun(resumeFrom, trainedOn, cleanOptions, Boolean(values['resume-anyway']))) log(`going on although ${c} (--resume-anyway)`);
  const progress = progressCallbacks(process.stderr, json);
  let stop = false;
  const onInterrupt = () => {
    if (stop) process.exit(130);
    stop = true;
    if (!dist?.rank) process.stderr.write('\nStopping after this batch and writing a checkpoint (Ctrl-C again to quit at once)...\n');
  };
  process.on('SIGINT', onInterrupt);
  // The run's own record (graft.json's recipe and the JSON) comes from the same call, in transfer.
  const precision = runPrecision();
  log(`precision: ${precision.precision} (${precision.why})${frozen ? `; the frozen body's features come from ${frozen.info.kind === 'onnx' ? 'onnxruntime' : 'the tfjs GraphModel'}, in fp32` : ''}`);
  if (resumeFrom) log(resumeFrom.state.checkPending
    ? `resuming from ${resumeFrom.path}: it stopped during the check of fine-tuning against the warm-up head, so the warm-up and the check run again (they reach the same decision as an uninterrupted run)`
    : `resuming from ${resumeFrom.path}: ${resumeFrom.state.phase}, ${resumeFrom.state.epochsDone} epoch(s) done${resumeFrom.state.position ? `, ${resumeFrom.state.position.batch} batches into the next` : ''}`);
  // A frozen body's features go to the head as they are.
  const givenPreprocessing = frozen ? { inputShape: frozen.info.featureShape, description: 'the frozen body\'s features' } : parsePreprocess(values.preprocess, base.model.inputs[0].shape);
  const transferOptions = {
    ...cleanOptions, preprocessing: givenPreprocessing, validation, resumeFrom, shouldStop: () => stop, augment: frozen ? undefined : augment, diskCache: !values['no-cache'] && !frozen,
    checkpoints: {
      dir: join(out, 'checkpoints'), run: { argv: withoutFlags(argv, DIST_FLAGS).filter((a) => a !== '--json' && a !== '--resume-anyway'), out: resolve(out), data: trainedOn, options: cleanOptions, precision: precisionGiven() ? defaultPrecision() : undefined },
      keep: num(values['keep-checkpoints'], 'keep-checkpoints', intAtLeast(1)) ?? 3,
      everyMinutes: num(values['checkpoint-minutes'], 'checkpoint-minutes', (n) => n > 0) ?? 5,
    },
    callbacks: { ...progress, onPhaseStart: (info: PhaseInfo) => { log(phaseLine(info)); return progress.onPhaseStart?.(info); }, onNotice: (m: string) => log(`note: ${m}`) },
    onFineTuneFold: (fold: number, folds: number) => log(`fine-tune check, fold ${fold}/${folds}: fit the head on the other folds, fine-tune, score both on this fold`),
  };
  const t = oldData ? await transferWithForgetting(base, data, { ...transferOptions, oldData }) : await transfer(base, data, transferOptions);
  process.off('SIGINT', onInterrupt);
  // Training is over on every worker: rank 0 goes on alone (test scores, saving), the others are done.
  if (dist) {
    // The workers hold the same weights (the same updates of the same sums): checked, cheaply.
    const sums = new Float64Array([weightSum(t.grafted.model), 0]);
    sums[1] = -sums[0];
    allreduce(sums, 'max');
    if (sums[0] !== -sums[1]) log(`note: the workers' weights differ (sums ${sums[0]} and ${-sums[1]}); rank 0's are saved. Please report this.`);
    leaveRun();
    if (dist.rank) {
      await frozen?.dispose();
      return t.result.interrupted ? 130 : 0;
    }
  }
  await frozen?.dispose();
  const { grafted, result, preprocessing } = t;
  // A frozen body: graft.json refers to it (path, hash, cut) and keeps the pixels' preprocessing.
  const meta = frozen ? frozenMeta(t.meta, frozen, pixels) : t.meta;
  if (frozen) meta.metrics = { ...meta.metrics, featureSeconds };
  if (result.interrupted) {
    const s = result.interrupted;
    console.error(s.checkPending
      ? `Stopped during the check of fine-tuning against the warm-up head, before any fine-tune step; checkpoint written to ${join(out, 'checkpoints')}. A resumed run redoes the warm-up and the check.`
      : `Stopped in the ${s.phase} phase, epoch ${s.epochsDone + 1}${s.position ? `, after batch ${s.position.batch}` : ''}; checkpoint written to ${join(out, 'checkpoints')}.`);
    console.error(`Resume with: graft train --resume ${out}${dist ? ` --workers ${dist.worldSize} (or any number of workers)` : ''}`);
    return 130;
  }
  if (testRaw) {
    // Scored as the saved model (fp32 weights) predicts by default: in fp32, whatever precision
    // trained it. bf16 prediction is graft predict/evaluate --precision bf16's to choose.
    const ev = await withPrecision('fp32', () => evaluate(grafted.model, alignClasses(testRaw, t.classNames), preprocessing));
    meta.metrics = { ...meta.metrics, testAccuracy: ev.accuracy, testLoss: ev.loss, testSamples: ev.count };
    meta.evaluation = { ...ev, on: testRaw.source };
  }
  meta.metrics = { ...meta.metrics, seconds: (Date.now() - started) / 1000 };
  meta.trainingData = { spec: /^[a-z][a-z-]*:/i.test(trainedFromSpec) && !/^[a-z]:[\\/]/i.test(trainedFromSpec) ? trainedFromSpec : resolve(trainedFromSpec), samples: data.labels.length, ...(values['test-split'] !== undefined ? { testSplit: true } : {}) };
  meta.uncertainty = uncertainty(meta, result);
  if (images) meta.preprocessing = { ...meta.preprocessing, imageFit: fit ?? base.meta?.preprocessing.imageFit ?? 'crop' };
  if (result.diverged) meta.diverged = result.diverged;
  // A diverged run leaves --out as it was; its last good weights go beside it.
  const savedTo = result.diverged ? await partialOut(out) : out;
  await saveModel(t.model, savedTo, meta);
  if (result.diverged) {
    const d = result.diverged;
    console.error(`graft train: ${d.message} The ${d.phase} phase stopped at epoch ${d.epoch}; the weights of the last good epoch were put back and saved to ${savedTo}/ (${out} was left as it was).\n  fix: ${d.fix}`);
    return 1;
  }
  if (json) {
    const onnx = base.imported?.format === 'onnx' ? await exportInBaseFormat(out, base.imported.layout, true).catch((e: Error) => ({ notWritten: e.message.split('\n')[0] })) : undefined;
    const graphModel = base.imported?.format === 'tfjs-graph' ? { dir: join(out, 'graph-model'), ...(await graphModelInBaseFormat(out, t.model, meta, data)) } : undefined;
    console.log(JSON.stringify({
      backend: backend.name, out, workers: dist?.worldSize ?? 1, ...(onnx ? { onnx } : {}), ...(graphModel ? { graphModel } : {}), ...(frozen ? { body: frozen.info.kind === 'onnx' ? 'onnxruntime' : 'tfjs-graph' } : {}), validationAccuracy: meta.metrics.validationAccuracy ?? null, testAccuracy: meta.metrics.testAccuracy ?? null, skipped,
      cut: meta.base?.cut, classNames: meta.classNames, heads: meta.heads.map((h) => h.name),
      metrics: meta.metrics, forgetting: meta.forgetting ?? null, featureSeconds: result.featureSeconds, featureCache: result.featureCache ?? null, memoryNote: result.memoryNote ?? null,
      headFit: result.headFit ?? null, lrFinder: result.lrFinder ? { suggestion: result.lrFinder.suggestion, minimumAt: result.lrFinder.minimumAt, stopped: result.lrFinder.stopped } : null, fineTuneCheck: result.fineTuneCheck ?? null, uncertainty: meta.uncertainty ?? null,
      precision: result.recipe.precision, testCopiesOfTraining: loaded.testCopiesOfTraining ?? null,
      phases: result.phases, history: result.history,
    }));
  } else {
    if ('forgetting' in t) log(formatForgetting(t.forgetting as ForgettingReport));
    const fc = result.featureCache;
    if (result.memoryNote) log(result.memoryNote);
    if (fc) log(`body features: ${fc.hits ? `${fc.hits} set(s) read from the disk cache` : ''}${fc.hits && fc.misses ? ', ' : ''}${fc.misses ? `${fc.misses} set(s) computed and kept in the disk cache` : ''} (${result.featureSeconds.toFixed(1)} s; graft cache ls)`);
    if (result.lrFinder) log(`learning-rate finder: lowest smoothed loss at ${result.lrFinder.minimumAt.toExponential(1)} over ${result.lrFinder.lrs.length} steps; fine-tuned at ${result.lrFinder.suggestion.toExponential(1)}`);
    if (result.fineTuneCheck) log(result.fineTuneCheck.words);
    for (const line of accuracyLines(meta, result)) log(line);
    if (copiesWords) log(copiesWords);
    if (frozen) log(`saved ${out}/: the head (model.json + weights.bin) and graft.json, which points at ${frozen.info.path} (sha256 ${frozen.info.sha256.slice(0, 12)}...); graft predict runs both`);
    else log(`saved ${out}/ (model.json + weights.bin load in plain tfjs; graft.json holds classes, preprocessing, history)`);
    if (base.imported?.format === 'onnx') {
      try {
        await exportInBaseFormat(out, base.imported.layout, false);
      } catch (e) {
        log(`model.onnx not written (the model itself is saved and predicts): ${(e as Error).message.split('\n')[0]}`);
      }
    }
    if (base.imported?.format === 'tfjs-graph') {
      const g = await graphModelInBaseFormat(out, t.model, meta, data);
      log(`wrote ${join(out, 'graph-model')}/ (model.json + weights.bin), the base's format: tfjs loadGraphModel runs it; checked against the model on ${g.samples} samples: largest difference ${g.maxAbsDiff.toExponential(1)}`);
    }
    if (meta.heads.length > 1) log(`the model has two outputs: ${meta.heads.map((h) => `"${h.name}" (${h.outputLayer}, classes ${h.classNames.join(', ')})`).join(' and ')}; graft predict --head old|new|all`);
  }
  return 0;
}

/** The sum of every weight, in float64: equal on workers that hold equal weights. */
function weightSum(model: LayersModel): number {
  let sum = 0;
  for (const w of model.weights) for (const v of w.read().dataSync() as Float32Array) sum += v;
  return sum;
}

/** A GraphModel base's result in its own format: out/graph-model/, checked on up to 16 training samples. */
async function graphModelInBaseFormat(out: string, model: LayersModel, meta: GraftMeta, data: Dataset): Promise<{ maxAbsDiff: number; samples: number }> {
  const n = Math.min(16, data.labels.length);
  const x = batchValues(data, Int32Array.from({ length: n }, (_, i) => i), meta.preprocessing);
  const r = await writeGraphModel(join(out, 'graph-model'), model, meta, x, n);
  return { ...r, samples: n };
}

/**
 * An ONNX base's result in its own format: model.onnx beside model.json, with the graph's
 * input layout, written and checked by graft export (its JSON when `json`).
 */
async function exportInBaseFormat(out: string, layout: 'NCHW' | 'NHWC', json: boolean): Promise<unknown> {
  const argv = [out, '--layout', layout.toLowerCase()];
  if (!json) {
    console.log(`writing ${join(out, 'model.onnx')}, the base's format (${layout} input, after the same preprocessing):`);
    await exportModel([...argv]);
    return undefined;
  }
  const lines: string[] = [];
  const was = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.map(String).join(' ')); };
  try {
    await exportModel([...argv, '--json']);
  } finally {
    console.log = was;
  }
  return JSON.parse(lines[lines.length - 1] ?? 'null');
}

/** Cross-validation accuracy with its spread and the test accuracy with its 95% interval, for words, JSON and the report. */
function uncertainty(meta: GraftMeta, result: FineTuneResult): Record<string, unknown> {
  const m = meta.metrics ?? {};
  const out: Record<string, unknown> = {};
  const f = result.headFit;
  if (f?.chosenBy === 'cross-validation') out.crossValidation = { of: 'warm-up head', folds: f.folds, accuracy: f.cvAccuracy, std: f.cvAccuracyStd };
  const c = result.fineTuneCheck;
  if (c?.method === 'cross-validation') out.fineTuneCrossValidation = { folds: c.folds, warmUp: c.warmUpAccuracy, fineTune: c.fineTuneAccuracy };
  if (typeof m.testAccuracy === 'number' && typeof m.testSamples === 'number') {
    const w = wilson(Math.round(m.testAccuracy * m.testSamples), m.testSamples);
    out.test = { accuracy: m.testAccuracy, samples: m.testSamples, wilson95: [w.low, w.high] };
  }
  return out;
}

function accuracyLines(meta: GraftMeta, result: FineTuneResult): string[] {
  const m = meta.metrics ?? {};
  const lines: string[] = [];
  const f = result.headFit;
  if (f?.chosenBy === 'cross-validation') {
    lines.push(`cross-validated accuracy of the warm-up head: ${(100 * f.cvAccuracy!).toFixed(1)}% +- ${(100 * f.cvAccuracyStd!).toFixed(1)} points (${f.folds} folds of the training set${result.fineTuneCheck?.method === 'cross-validation' ? '; the fine-tune check\'s 3 folds fit it on two thirds of the images, so the two figures differ' : ''})`);
  }
  if (typeof m.validationAccuracy === 'number') lines.push(`validation accuracy ${percent(m.validationAccuracy)}`);
  else if (f?.chosenBy === 'cross-validation') lines.push('no validation split: the training set is small, so choices were made by cross-validation on it (--val-split or --val-data to hold data out)');
  else if (result.recipe.warmupStop) {
    const w = result.phases.find((p) => p.phase === 'warm-up');
    lines.push(`no validation split: the training set is small; the head (trained by steps, not fitted: it has hidden layers or its own loss) trained to its training-loss plateau${w ? ` (${w.stoppedBy === 'plateau' ? `reached at epoch ${w.epochsRun}` : `not reached in ${w.epochsRun} epochs`})` : ''}; the fine-tune was not checked against it (that needs a linear head or validation data: --val-split)`);
  } else lines.push('no validation split and no cross-validation: a class has too few images for either, so the defaults were used and nothing was checked; add images (at least 5 per class lets Graft cross-validate)');
  if (!result.fineTuneCheck && result.phases.some((p) => p.phase === 'fine-tune') && result.recipe.keepBetterSkipped) lines.push(`the fine-tune was not checked against the warm-up head: ${result.recipe.keepBetterSkipped}`);
  if (typeof m.testAccuracy === 'number' && typeof m.testSamples === 'number') lines.push(`test accuracy ${accuracyWords(m.testAccuracy, m.testSamples)}${(result.recipe.precision as { used?: string } | undefined)?.used === 'bf16' ? ' (scored in fp32, as the saved model predicts by default)' : ''}`);
  return lines;
}
