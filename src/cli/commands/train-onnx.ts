// graft train --base model.onnx | graph-model dir: the body stays frozen (onnxruntime, or the
// tfjs GraphModel); the head trains on its features and is saved with a reference to the body.

import { outFolder } from '../out-args.js';
import { isBytes } from '../../data/disk-samples.js';
import { resolve } from 'node:path';
import { GraftError, GraphBody, OnnxBody, alignClasses, evaluate, initBackend, saveModel, transferOnnx, DEFAULTS, type PhaseInfo } from '../../index.js';
import { intAtLeast, num, percent, str } from '../args.js';
import { decodeProgress, loadTrainingData, parseFit, parsePreprocess, parseTestSplit, skippedLines } from '../data-args.js';
import { phaseLine, progressCallbacks } from '../progress.js';
import { isOnnxPath } from '../external-body.js';
import { parseHead } from './train.js';

const NOT_FOR_ONNX = ['finetune-epochs', 'unfreeze', 'keep-old', 'extend', 'old-data', 'replay', 'resume', 'input-size', 'lr-mult', 'bn-stats', 'augment', 'warmup-views'];

export async function trainOnnx(values: Record<string, unknown>): Promise<number> {
  const baseSpec = str(values.base)!;
  const dataSpec = str(values.data)!;
  const given = NOT_FOR_ONNX.filter((k) => values[k] !== undefined && !(k === 'finetune-epochs' && Number(values[k]) === 0));
  if (given.length) {
    throw new GraftError('BAD_ARGUMENT', `An ONNX or GraphModel body cannot be trained in tfjs, so ${given.map((k) => `--${k}`).join(', ')} cannot apply: Graft computes its features and trains the head on them (the warm-up phase).`, {
      fix: 'Drop those options; to fine-tune the body, export it as a Keras .h5/.keras file or a tfjs LayersModel and use that as --base.' });
  }
  parseTestSplit(values);
  const json = Boolean(values.json);
  const log = (line: string) => { if (!json) console.log(line); };
  const out = await outFolder(values, 'graft-model');
  const backend = await initBackend(str(values.backend));
  const started = Date.now();
  // graft train sends only .onnx files and GraphModels here.
  const body = isOnnxPath(baseSpec) ? await OnnxBody.load(resolve(baseSpec), str(values.cut)) : await GraphBody.load(baseSpec, str(values.cut));
  const kind = body.info.kind === 'onnx' ? 'ONNX' : 'tfjs GraphModel';
  const [h, w, c] = body.info.imageShape;
  const fit = parseFit(values.fit);
  const seed = num(values.seed, 'seed', intAtLeast(0)) ?? DEFAULTS.seed;
  const dataOpts = { labels: str(values.labels), labelColumn: str(values['label-column']), image: { size: [h, w] as [number, number], channels: (c === 1 ? 1 : 3) as 1 | 3, fit }, onFile: decodeProgress(json) };
  const loaded = await loadTrainingData(values, dataOpts, seed);
  const { data, validation, skipped } = loaded;
  const test = loaded.test && alignClasses(loaded.test, data.classNames);
  const preprocessing = parsePreprocess(values.preprocess, [null, h, w, c]);
  log(`backend: ${backend.name} for the head; ${body.info.kind === 'onnx' ? 'onnxruntime' : backend.name} for the body`);
  log(`base: ${baseSpec} (${kind}, input ${body.info.input} ${body.info.layout}), cut at ${body.info.output}: features [${body.info.featureShape.join(', ')}]; the body stays frozen`);
  log(`data: ${data.source}, ${data.labels.length} samples, classes ${data.classNames.join(', ')}`);
  for (const line of skippedLines(skipped)) log(line);
  const progress = progressCallbacks(process.stderr, json);
  const t = await transferOnnx(body, data, {
    cut: str(values.cut), head: parseHead(str(values.head)), preprocessing, validation, seed,
    warmupEpochs: num(values['warmup-epochs'], 'warmup-epochs', intAtLeast(1)), lr: num(values.lr, 'lr', (n) => n > 0 && n < 10),
    batchSize: num(values['batch-size'], 'batch-size', intAtLeast(1)), validationSplit: num(values['val-split'], 'val-split', (n) => n >= 0 && n < 1),
    balance: str(values.balance) as 'auto' | undefined,
    callbacks: { ...progress, onPhaseStart: (info: PhaseInfo) => { log(phaseLine(info)); return progress.onPhaseStart?.(info); } },
  });
  const { meta } = t;
  if (test) {
    const features = await body.features(test, preprocessing);
    const ev = await evaluate(t.grafted.model, features, undefined);
    meta.metrics = { ...meta.metrics, testAccuracy: ev.accuracy, testLoss: ev.loss, testSamples: ev.count };
    meta.evaluation = { ...ev, on: test.source };
  }
  await body.dispose();
  if (fit || isBytes(data.x)) meta.preprocessing = { ...meta.preprocessing, imageFit: fit ?? 'crop' };
  meta.metrics = { ...meta.metrics, seconds: (Date.now() - started) / 1000 };
  await saveModel(t.grafted.model, out, meta);
  if (json) {
    console.log(JSON.stringify({ backend: backend.name, body: body.info.kind === 'onnx' ? 'onnxruntime' : 'tfjs-graph', out, validationAccuracy: meta.metrics.validationAccuracy ?? null, testAccuracy: meta.metrics.testAccuracy ?? null, skipped, cut: meta.base?.cut, classNames: meta.classNames, metrics: meta.metrics, featureSeconds: t.featureSeconds, history: t.result.history }));
  } else {
    log(`body features: ${t.featureSeconds.toFixed(1)} s with ${body.info.kind === 'onnx' ? 'onnxruntime' : 'the GraphModel'}`);
    log(`validation accuracy ${percent(meta.metrics.validationAccuracy as number | null)}${test ? `, test accuracy ${percent(meta.metrics.testAccuracy as number)}` : ''}`);
    log(`saved ${out}/: the head (model.json + weights.bin) and graft.json, which points at ${body.info.path} (sha256 ${body.info.sha256.slice(0, 12)}...); graft predict runs both`);
  }
  return 0;
}
