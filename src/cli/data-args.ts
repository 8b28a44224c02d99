// The data options the commands share: IDX labels, the CSV label column, and for images the
// model's input size and how to fit pictures to it.

import { DiskSamples } from '#internal/data/disk-samples.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GraftError, type Dataset, type Preprocessing } from 'graft';
import { alignClasses, loadData, type DataOptions } from '#internal/data/load.js';
import { imageInput, splitFolders, type Fit } from '#internal/data/images.js';
import { count, stratifiedSplit, takePerClass, type SkippedFile } from '#internal/data/dataset.js';
import { copiesIn, sampleName, withoutCopiesOf } from '#internal/data/duplicates.js';
import { intAtLeast, num, str, type Options } from './args.js';
import { preprocessPreset } from '#internal/data/preprocess.js';

export const DATA_ARGS: Options = {
  labels: { type: 'string' }, 'label-column': { type: 'string' }, fit: { type: 'string' }, stream: { type: 'boolean' },
};

export const PREPROCESS_USAGE = `--preprocess <how>      how pixels (0-255) become model inputs, for a base without graft.json
                          (Keras .h5/.keras, ONNX, GraphModel, plain tfjs): unit (x/255), symmetric
                          (x/127.5 - 1: Keras MobileNet, Inception), imagenet (x/255, then the
                          ImageNet mean and std per channel: torchvision, timm), none (raw 0-255);
                          default: the base's graft.json, else none`;

/** A named input transform for a base model that carries none. */
export function parsePreprocess(value: unknown, inputShape: (number | null)[]): Preprocessing | undefined {
  const v = str(value);
  if (v === undefined) return undefined;
  const p = preprocessPreset(v, inputShape);
  if (!p) throw new GraftError('BAD_ARGUMENT', `--preprocess "${v}" is not understood.`, { fix: 'Use unit, symmetric, imagenet or none.' });
  return p;
}

export const FIT_USAGE = `--fit <how>             images: crop (centre crop, default) | pad (black bars) | stretch, to
                          the model's input size
  --stream                keep the decoded images on disk and read them per batch (for data
                          bigger than memory); automatic above 2048 MB ($GRAFT_STREAM_ABOVE_MB)`;

export function parseFit(value: unknown): Fit | undefined {
  const v = str(value);
  if (v === undefined || v === 'crop' || v === 'pad' || v === 'stretch') return v;
  throw new GraftError('BAD_ARGUMENT', `--fit "${v}" is not understood.`, { fix: 'Use crop, pad or stretch.' });
}

/** Parses "96" or "96x128" (height x width). */
export function parseSize(value: unknown, name: string): [number, number] | undefined {
  const v = str(value);
  if (v === undefined) return undefined;
  const m = /^(\d+)(?:x(\d+))?$/.exec(v.trim());
  if (!m) throw new GraftError('BAD_ARGUMENT', `--${name} "${v}" is not a size.`, { fix: `Give --${name} 96 or 96x128 (height x width).` });
  return [Number(m[1]), Number(m[2] ?? m[1])];
}

export function dataOptions(values: Record<string, unknown>, model: tfl.LayersModel | (number | null)[], preprocessing?: Preprocessing, onFile?: DataOptions['onFile']): DataOptions {
  const image = imageInput(Array.isArray(model) ? model : model.inputs[0].shape);
  const fit = parseFit(values.fit) ?? preprocessing?.imageFit;
  return {
    labels: str(values.labels), labelColumn: str(values['label-column']),
    image: image && { ...image, fit, stream: values.stream ? true : 'auto' }, onFile,
  };
}

/** A line saying that images are streamed from disk, when they are. */
export function streamLine(d: Dataset): string | undefined {
  if (!(d.x instanceof DiskSamples)) return undefined;
  return `images: ${d.labels.length.toLocaleString('en-US')} kept on disk at the model's input size (${(d.x.length / 1024 ** 2).toFixed(0)} MB), read per batch`;
}

/** Lines about skipped files for the terminal (all of them are in --json). */
export function skippedLines(skipped: SkippedFile[] | undefined, shown = 10): string[] {
  if (!skipped?.length) return [];
  const lines = [`left out ${skipped.length} file(s), each with its reason:`];
  for (const s of skipped.slice(0, shown)) lines.push(`  ${s.path}: ${s.reason}`);
  if (skipped.length > shown) lines.push(`  ... and ${skipped.length - shown} more (all are listed with --json)`);
  return lines;
}

/** A progress line on a terminal while images decode. */
export function decodeProgress(json: boolean): DataOptions['onFile'] {
  if (json || !process.stderr.isTTY) return undefined;
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    if (done === total || now - last > 200) {
      last = now;
      process.stderr.write(`\r  decoding images ${done}/${total}${done === total ? '\n' : ''}`);
    }
  };
}

/** The skipped files of several datasets, each path once (splits of one folder share them). */
export function mergeSkipped(...sets: (Dataset | undefined)[]): SkippedFile[] {
  return [...new Map(sets.flatMap((d) => d?.skipped ?? []).map((f) => [f.path, f])).values()];
}

export interface TrainingData {
  /** Everything loaded from --data (or its train/ folder), before --per-class and --test-split. */
  all: Dataset;
  data: Dataset;
  validation?: Dataset;
  /** Test data with its own class order (align it to the model's classes before use). */
  test?: Dataset;
  skipped: SkippedFile[];
  /** What the training samples were read from: --data, or its train/ folder. */
  trainedFrom: string;
  /** Test samples that are also in the training data (the same values), with up to 5 of them named. */
  testCopiesOfTraining?: { count: number; of: number; examples: string[] };
}

/** --test-split, checked against --test-data (call it before any work to fail early). */
export function parseTestSplit(values: Record<string, unknown>): number | undefined {
  const testSplit = num(values['test-split'], 'test-split', (n) => n > 0 && n < 1);
  if (testSplit && values['test-data']) throw new GraftError('BAD_ARGUMENT', 'Give --test-split or --test-data, not both.', { fix: 'Drop one of them.' });
  return testSplit;
}

/**
 * --data (a folder with train/ val/ test/ folders, or one dataset), --per-class, --val-data,
 * --test-data and --test-split, as graft train reads them for every kind of base.
 */
export async function loadTrainingData(values: Record<string, unknown>, o: DataOptions, seed: number): Promise<TrainingData> {
  const dataSpec = str(values.data)!;
  const perClass = num(values['per-class'], 'per-class', intAtLeast(1));
  const testSplit = parseTestSplit(values);
  const folders = await splitFolders(dataSpec).catch(() => undefined);
  const all = await loadData(folders?.train ?? dataSpec, { ...o, perClass: perClass === undefined ? undefined : { n: perClass, seed } });
  let data = perClass === undefined ? all : takePerClass(all, perClass, seed);
  const classOpts = { ...o, classNames: data.classNames };
  const valSpec = str(values['val-data']) ?? folders?.validation;
  const testSpec = str(values['test-data']) ?? (testSplit ? undefined : folders?.test);
  // A validation image that is also a training image is left out of it (it would pick the
  // epoch and the kept model on what was trained on); test images that are training images are
  // counted and said (the test figure then overstates).
  const validation = valSpec ? withoutCopiesOf(data, alignClasses(await loadData(valSpec, classOpts), data.classNames), 'validation data') : undefined;
  let test = testSpec ? await loadData(testSpec, classOpts) : undefined;
  if (testSplit) ({ rest: data, split: test } = stratifiedSplit(data, testSplit, seed));
  const testCopies = test && !testSplit ? copiesIn(data, test) : [];
  return {
    all, data, validation, test, skipped: mergeSkipped(all, validation, test), trainedFrom: folders?.train ?? dataSpec,
    testCopiesOfTraining: test ? { count: testCopies.length, of: count(test), examples: testCopies.slice(0, 5).map((i) => sampleName(test!, i)) } : undefined,
  };
}
