// graft export <model-dir>: the trained model as an ONNX file (fp32, fp16, or int8 calibrated
// on the user's images), checked on onnxruntime against the tfjs model before it is called done.

import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from 'node:path';
import { calibrationWarnings, checkExport, exportOnnx, splitCalibration, type ExportCheck, type Quantization } from '#internal/export/export.js';
import { alignClasses, loadData } from '#internal/data/load.js';
import { GraftError, loadModel, type Dataset, type GraftMeta } from 'graft';
import { isDir } from '#internal/data/images.js';
import { writeFileAtomic } from '#internal/model/io.js';
import type { OnnxExportRecord } from '#internal/model/meta.js';
import { intAtLeast, num, parse, str } from '../args.js';
import { DATA_ARGS, decodeProgress, skippedLines } from '../data-args.js';
import { outFile } from '../out-args.js';
import { copiesIn } from '#internal/data/duplicates.js';
import { savedDataOptions } from '../external-body.js';
import { cpuFeatures, cpuLine } from '#internal/engine/cpu.js';

export const usage = `graft export <model-dir> [--format onnx] [--out <file.onnx>] [--quantize none|fp16|int8] [--json]

  <model-dir>     a model written by graft train (or a zoo name, with --out)
  --format        onnx (the only format so far; opset 13, runs on onnxruntime in Node, browsers,
                  Python, C#, Java, C++)
  --out           the file to write (default <model-dir>/model.onnx, model.fp16.onnx or
                  model.int8.onnx); an existing file is replaced only when it is this model's
                  export, recorded in its graft.json and unchanged since
  --quantize      none (fp32, default) | fp16 (half the size; fp32 in and out) | int8 (static,
                  QDQ, per-channel weights, calibrated on your images; the body a quarter the
                  size, the classifier and the one most sensitive layer stay fp32)
  --calibration   int8: the images to calibrate on (default: the training data recorded in
                  graft.json, when it is still there): a class-folder tree, a folder, CSV, IDX
  --calibration-samples  int8: at most this many, drawn at random (default 256)
  --fp32-layers   int8: auto (default: the one layer whose int8 form is over a third of the
                  error stays fp32; on MobileNetV2 the first depthwise convolution, at about
                  a third of int8's speed-up) | none (every layer int8: fastest)
  --int8-weights  int8: uint8 (default: onnxruntime's U8U8 kernels, the same results on every
                  x86 CPU) | int8 (its U8S8 kernels: about 1.5x faster than uint8 on CPUs with
                  VNNI, AVX512-VNNI or AVX-VNNI; without VNNI their 16-bit sums saturate, and
                  MobileNetV2 on 39 test photos scored 30 instead of 31 on an AVX2-only CPU).
                  The check below runs on this CPU only; the words name its features
  --test-data     labelled data to measure the export on: accuracy of the export and of the
                  tfjs model, and how often their top class agrees (default: images the export
                  was not calibrated on: for int8 the training data graft.json records when
                  --calibration is other data, else a part of the calibration data held out of
                  it (the rest over --calibration-samples, or a fifth); for fp32 and fp16 the
                  training data graft.json records; else random inputs). int8 also warns when
                  the calibration images are flat colours, copies, or fewer than the classes
  --include-preprocessing  the graph takes raw pixel values (0-255) and applies graft.json's
                  preprocessing itself (resizing to the input size stays outside)
  --layout        nhwc (default: [batch, height, width, channels], as the tfjs model) | nchw
                  ([batch, channels, height, width], as PyTorch exports)
  --head          new | old | all: which head of a multi-head model (--keep-old) to export
                  (default new; all: one output per head)
  --json          print { out, bytes, quantization, int8?: { weights }, check: { samples, maxAbsDiff,
                  top1Agreement, accuracy?, cpu: { model, simd, vnni } }, caveat? }

A model folder's graft.json records each export (file, sha256, the weights it came from):
graft predict and graft evaluate run an exported file directly (graft predict model.onnx photos/),
and run a model folder's current fp32 export on onnxruntime by themselves.`;

export const summary = 'the trained model as an ONNX file (fp32, fp16 or int8 calibrated on your images)';

const SUFFIX: Record<Quantization, string> = { none: 'model.onnx', fp16: 'model.fp16.onnx', int8: 'model.int8.onnx' };
/** ModelProto.producer_name = "graft" (field 2), near the start of every file graft export writes. */
const ONNX_MARKER = '\u0012\u0005graft';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function oneOf<T extends string>(value: unknown, flag: string, allowed: readonly T[], fallback: T): T {
  const v = str(value);
  if (v === undefined) return fallback;
  if (!allowed.includes(v as T)) throw new GraftError('BAD_ARGUMENT', `${flag} "${v}" is not understood.`, { fix: `Use ${allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}` : allowed[0]}.` });
  return v as T;
}

/** Random raw inputs for the check when no data is given (pixel values for images). */
function randomData(shape: number[], classes: string[], n = 64): Dataset {
  const per = shape.reduce((a, b) => a * b, 1);
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const image = shape.length === 3;
  return { x: Float32Array.from({ length: n * per }, () => (image ? Math.floor(rnd() * 256) : rnd() * 4 - 2)), sampleShape: shape, labels: new Int32Array(n), classNames: classes, source: 'random inputs' };
}

/** How graft.json names an export: relative to the model folder when inside it, else absolute. */
function recordName(dir: string, out: string): string {
  const abs = resolve(out);
  const rel = relative(dir, abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

/**
 * An existing --out is replaced only when it is an export of this model that its graft.json
 * records, unchanged since (same sha256): not another model's export, not a file that merely
 * looks like one.
 */
async function assertReplaceable(out: string, dir: string | undefined, records: OnnxExportRecord[], given: string): Promise<void> {
  const existing = await lstat(out).catch(() => undefined);
  if (!existing) return;
  const bytes = await readFile(out);
  const mine = dir && records.some((r) => r.file === recordName(dir, out) && r.sha256 === sha256(bytes));
  if (!mine) {
    throw new GraftError('OUT_NOT_SAFE', `--out ${JSON.stringify(given)} exists and is not an export of this model recorded in its graft.json (unchanged since): Graft only replaces its own files.`, {
      fix: `Pass a new file name, e.g. --out ${join(dirname(given), `${basename(given, extname(given))}-2.onnx`)}, or remove that file yourself if you no longer need it.` });
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: 'string' }, out: { type: 'string' }, quantize: { type: 'string' }, calibration: { type: 'string' }, 'calibration-samples': { type: 'string' }, 'fp32-layers': { type: 'string' }, 'int8-weights': { type: 'string' },
    'test-data': { type: 'string' }, 'include-preprocessing': { type: 'boolean' }, layout: { type: 'string' }, head: { type: 'string' }, ...DATA_ARGS,
  }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 1) { console.error(`graft export needs one model directory.\n\nUsage:\n${usage}`); return 2; }
  const json = Boolean(values.json);
  const log = (s: string) => (json ? process.stderr : process.stdout).write(`${s}\n`);
  oneOf(values.format, '--format', ['onnx'] as const, 'onnx');
  const quantize = oneOf(values.quantize, '--quantize', ['none', 'fp16', 'int8'] as const, 'none');
  const layout = oneOf(values.layout, '--layout', ['nhwc', 'nchw'] as const, 'nhwc');
  const head = oneOf(values.head, '--head', ['new', 'old', 'all'] as const, 'new');
  const samples = num(values['calibration-samples'], 'calibration-samples', intAtLeast(1));
  const fp32Layers = oneOf(values['fp32-layers'], '--fp32-layers', ['auto', 'none'] as const, 'auto');
  const int8Weights = oneOf(values['int8-weights'], '--int8-weights', ['uint8', 'int8'] as const, 'uint8');
  if (quantize !== 'int8' && (values.calibration !== undefined || samples !== undefined || values['fp32-layers'] !== undefined || values['int8-weights'] !== undefined)) {
    throw new GraftError('BAD_ARGUMENT', `--calibration, --calibration-samples, --fp32-layers and --int8-weights are for --quantize int8; this export is ${quantize === 'none' ? 'fp32' : 'fp16'}.`, { fix: 'Add --quantize int8, or leave them out.' });
  }
  const spec = positionals[0];
  const local = await isDir(spec);
  // A zoo name or URL loads here; a path that is neither is named as missing before --out is asked for.
  const { model, meta } = await loadModel(spec);
  if (!meta) throw new GraftError('BAD_MODEL', `${spec} has no graft.json, so its class names and preprocessing are unknown.`, { fix: 'Export a model written by graft train, or a zoo model.' });
  const given = str(values.out) ?? (values.out === undefined && local ? join(spec, SUFFIX[quantize]) : undefined);
  if (given === undefined) throw new GraftError('BAD_ARGUMENT', `${spec} is not a model folder here, so graft export needs --out.`, { fix: `Pass --out ${basename(spec).replace(/[^A-Za-z0-9_-]/g, '_') || 'model'}.onnx.` });
  if (!/\.onnx$/i.test(given) || /[\\/]$/.test(given)) throw new GraftError('BAD_ARGUMENT', `--out "${given}" does not end in .onnx.`, { fix: `Pass a file name ending in .onnx, e.g. --out ${join(given.replace(/[\\/]+$/, '') || '.', 'model.onnx')}.` });
  const dir = local ? resolve(spec) : undefined;
  const protect = [
    { spec: str(values.calibration), what: 'the calibration data (--calibration)' }, { spec: str(values['test-data']), what: 'the test data (--test-data)' },
    { spec: meta.trainingData?.spec, what: 'the training data graft.json records' },
  ];
  const out = await outFile(given, { example: 'model.onnx', marker: ONNX_MARKER, protect });
  await assertReplaceable(out, dir, meta.exports ?? [], given);
  const parent = dirname(resolve(given));
  if (!(await isDir(parent))) await mkdir(parent, { recursive: true });

  const loadOptions = savedDataOptions(values, model, meta, decodeProgress(json));
  const load = async (what: string, dataSpec: string, classNames?: string[]) => {
    const d = await loadData(dataSpec, { ...loadOptions, classNames });
    for (const line of skippedLines(d.skipped)) log(`${what}: ${line}`);
    return d;
  };
  let calibration: Dataset | undefined;
  let calibrationSpec = str(values.calibration);
  if (quantize === 'int8') {
    if (!calibrationSpec) {
      calibrationSpec = meta.trainingData?.spec;
      if (!calibrationSpec) throw new GraftError('BAD_OPTION', `--quantize int8 calibrates on your images, and ${spec}'s graft.json records no training data.`, { fix: 'Give --calibration <data>: a few hundred images like those it will see.' });
      if (meta.trainingData?.testSplit) log(`calibration: ${calibrationSpec} includes the images graft train --test-split held out for testing; give --calibration to keep them out`);
      try {
        calibration = await load('calibration', calibrationSpec);
      } catch (e) {
        throw new GraftError('BAD_DATA', `--quantize int8 calibrates on the training data recorded in graft.json (${calibrationSpec}), and it cannot be read: ${(e as Error).message.split('\n')[0]}`, { fix: 'Give --calibration <data>: a few hundred images like those it will see.', cause: e });
      }
    } else calibration = await load('calibration', calibrationSpec);
    if (!calibration.labels.length) throw new GraftError('BAD_DATA', `The calibration data ${calibrationSpec} holds no usable samples${calibration.skipped?.length ? ` (${calibration.skipped.length} file(s) skipped: ${calibration.skipped[0].path}: ${calibration.skipped[0].reason})` : ''}.`, { fix: 'Give --calibration a folder of images like those the model will see.' });
  }
  const calibrationIssues = calibration ? calibrationWarnings(calibration, meta.classNames.length).warnings : [];
  if (calibration && calibration.labels.length < 32) calibrationIssues.unshift(`only ${calibration.labels.length} calibration sample${calibration.labels.length === 1 ? '' : 's'} (int8's value ranges are measured on them; a few dozen or more give steadier ones)`);
  // Copies were left out as the folder was read; they count against the set all the same.
  const copies = calibration?.skipped?.filter((x) => /^a copy of |^the same image is in the classes /.test(x.reason)).length ?? 0;
  if (copies) calibrationIssues.push(`${copies} calibration image${copies === 1 ? ' was a copy' : 's were copies'} of others and left out`);
  const testSpec = str(values['test-data']);
  const classNames = head === 'old' ? meta.heads.find((h) => h.name === 'old')?.classNames ?? meta.classNames : meta.classNames;
  const test = testSpec ? alignClasses(await load('test data', testSpec, classNames), classNames) : undefined;
  // The check must not run on the images int8 was calibrated on (it says little there).
  const overlap = calibration && test ? copiesIn(calibration, test).length : 0;
  if (overlap) calibrationIssues.push(`${overlap} of the ${test!.labels.length} --test-data samples are calibration samples too, so the check runs partly on what int8 was calibrated on and says less than it seems`);
  if (calibrationIssues.length) log(`calibration: ${calibrationIssues.join('; ')}. Give --calibration a few hundred images like those the model will see.`);
  if (test && !test.labels.length) throw new GraftError('BAD_DATA', `--test-data ${testSpec} holds no samples of the model's classes (${classNames.slice(0, 8).join(', ')}${classNames.length > 8 ? ', ...' : ''}).`, { fix: 'Give test data with one sub-folder per class of the model.' });
  // Without test data the check runs on images int8 was not calibrated on: the training data
  // graft.json records where --calibration is other data, else a part of the calibration data
  // held out of it (checked on its own calibration images, 12 copies of one grey image "agreed
  // on 100%" and the file scored 50%).
  let checkOn: Dataset | undefined = test;
  let calibrateOn = calibration;
  let checkFrom = test ? 'the test data' : '';
  if (!checkOn && calibration) {
    const training = meta.trainingData?.spec && meta.trainingData.spec !== calibrationSpec
      ? await loadData(meta.trainingData.spec, { ...loadOptions, classNames: undefined }).catch(() => undefined) : undefined;
    if (training && training.labels.length) { checkOn = training; checkFrom = 'the training data graft.json records, not calibrated on'; }
    else {
      const { calibrate, heldOut } = splitCalibration(calibration, samples ?? 256, 0);
      if (heldOut) { calibrateOn = calibrate; checkOn = heldOut; checkFrom = `held out of the calibration data: not among the ${calibrate.labels.length} calibrated on`; }
      else { checkOn = calibration; checkFrom = 'the calibration samples themselves (under 5: none to hold out), so it says little'; }
    }
  }
  if (!checkOn && meta.trainingData?.spec) { checkOn = await loadData(meta.trainingData.spec, { ...loadOptions, classNames: undefined }).catch(() => undefined); if (checkOn) checkFrom = 'the training data graft.json records'; }
  if (!checkOn) { checkOn = randomData(model.inputs[0].shape.slice(1) as number[], classNames); checkFrom = 'random inputs: no data to check on (--test-data to give some)'; }

  const started = Date.now();
  const exported = await exportOnnx(model, meta, { quantize, layout, head, includePreprocessing: Boolean(values['include-preprocessing']), calibration: calibrateOn, calibrationSamples: samples ?? 256, keepSensitive: fp32Layers === 'auto', weights: int8Weights });
  // Checked before it is written: an export onnxruntime cannot run is not left behind.
  const check: ExportCheck = await checkExport(exported.bytes, model, meta, checkOn, Boolean(test));
  await writeFileAtomic(out, exported.bytes, { replace: true });
  const seconds = (Date.now() - started) / 1000;

  let recorded = false;
  let notRecorded = '';
  if (dir) {
    const weights = await readFile(join(dir, 'weights.bin')).catch(() => undefined);
    const metaLink = await lstat(join(dir, 'graft.json')).catch(() => undefined);
    if (!weights) notRecorded = 'the folder has no weights.bin';
    else if (!metaLink?.isFile()) notRecorded = 'its graft.json is not a plain file (a link is not replaced)';
    else {
      const file = recordName(dir, out);
      const record: OnnxExportRecord = {
        file, quantization: quantize, ...(quantize === 'int8' ? { int8Weights } : {}), layout, includesPreprocessing: Boolean(values['include-preprocessing']), heads: exported.info.outputs.map((o) => o.head),
        sha256: sha256(exported.bytes), weightsSha256: sha256(weights), createdAt: new Date().toISOString(),
      };
      const raw = JSON.parse(await readFile(join(dir, 'graft.json'), 'utf8')) as GraftMeta;
      raw.exports = [...(raw.exports ?? []).filter((e) => e.file !== file), record];
      await writeFileAtomic(join(dir, 'graft.json'), JSON.stringify(raw, null, 2), { replace: true });
      recorded = true;
    }
  }
  const mb = (n: number) => `${(n / 1024 ** 2).toFixed(2)} MB`;
  // The check ran on this CPU's kernels; int8 weights give other results where VNNI differs.
  const cpu = cpuFeatures();
  const caveat = quantize === 'int8' && int8Weights === 'int8'
    ? (cpu.vnni
      ? 'int8 weights: this CPU has VNNI, so the check ran on onnxruntime\'s 32-bit sums; on an x86 CPU without VNNI (AVX2 only) its 16-bit sums can saturate and this file can score lower there. --int8-weights uint8 gives the same results on every CPU.'
      : 'int8 weights: this CPU has no VNNI, so the check ran on onnxruntime\'s 16-bit sums, which can saturate; a CPU with VNNI scores this file differently. --int8-weights uint8 gives the same results on every CPU.')
    : undefined;
  if (json) {
    console.log(JSON.stringify({ out, bytes: exported.bytes.length, quantization: quantize, layout, head, includesPreprocessing: Boolean(values['include-preprocessing']),
      outputs: exported.info.outputs, calibration: calibration ? { on: calibrationSpec, samples: exported.calibratedOn, keptFp32: exported.keptFp32 ?? null, warnings: calibrationIssues } : null,
      ...(quantize === 'int8' ? { int8: { weights: int8Weights, sameOnEveryCpu: int8Weights === 'uint8' } } : {}),
      check: { ...check, on: checkOn.source, from: checkFrom, cpu: { model: cpu.model, simd: cpu.simd, vnni: cpu.vnni } }, ...(caveat ? { caveat } : {}), recorded, seconds }));
    return 0;
  }
  const what = quantize === 'none' ? 'fp32' : quantize === 'fp16' ? 'fp16 (fp32 in and out)'
    : `int8 (QDQ, ${int8Weights === 'uint8' ? 'uint8 weights: the same results on every x86 CPU' : 'int8 weights: fastest with VNNI'}, calibrated on ${exported.calibratedOn} samples of ${calibrationSpec})`;
  log(`wrote ${out}: ONNX opset 13, ${what}, ${mb(exported.bytes.length)}`);
  const k = exported.keptFp32;
  if (k) log(`kept in fp32: ${k.layer}, the most sensitive layer (with it in int8 the logits differ from fp32 by ${k.error.toFixed(4)} on average, without ${k.errorWithout.toFixed(4)})`);
  log(`input ${exported.info.input.name} [batch, ${exported.info.input.shape.join(', ')}] (${layout}${values['include-preprocessing'] ? ', raw pixel values 0-255: preprocessing inside' : `, after preprocessing: ${meta.preprocessing.description ?? 'see graft.json'}`})`);
  for (const o of exported.info.outputs) log(`output ${o.name} [batch, ${o.classNames.length}]: ${meta.heads.length > 1 ? `${o.head} head, ` : ''}classes ${o.classNames.join(', ')}`);
  for (const h of check.perHead) {
    const acc = h.accuracy ? `; accuracy ${(100 * h.accuracy.onnx).toFixed(1)}% (the tfjs model ${(100 * h.accuracy.tfjs).toFixed(1)}%)` : '';
    log(`checked on onnxruntime against the tfjs model${check.perHead.length > 1 ? ` (${h.head} head)` : ''} on ${check.samples} samples of ${checkOn.source}${checkFrom && checkFrom !== 'the test data' ? ` (${checkFrom})` : ''}: top class agrees on ${(100 * h.top1Agreement).toFixed(1)}%, largest probability difference ${h.maxAbsDiff.toExponential(1)}${acc}`);
  }
  log(`the check ran on this CPU: ${cpuLine(cpu)}`);
  if (caveat) log(caveat);
  if (recorded) log(`recorded in ${join(spec, 'graft.json')}${quantize === 'none' && exported.info.outputs.some((o) => o.head === 'new') ? `; graft predict ${spec} and graft evaluate ${spec} now run it on onnxruntime (--engine native or tfjs to not)` : ''}`);
  else if (notRecorded) log(`not recorded in graft.json: ${notRecorded}`);
  return 0;
}
