// graft compare: is transfer learning worth it on this data? The same split and a comparable
// budget for: the same architecture from random initialisation (scratch), k-nearest neighbours
// and a linear probe on frozen features, the head warm-up alone, the full recipe (warm-up then
// fine-tune), and LP-FT (linear probe, then full fine-tune), at several labels-per-class sizes
// and seeds. All frozen-feature variants share one forward pass per image.

import { knnAccuracy } from './knn.js';
import { accuracyOf } from '../train/keep-better.js';
import { recalibrateBatchNorm } from '../train/batch-norm-stats.js';
import { inMemory } from '../data/disk-samples.js';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { assertTrainable, classCounts, takePerClass, type Dataset, sampleSize } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { adoptModel } from '../model/batch-norm.js';
import { cutBody } from '../model/cut.js';
import { graft, type Grafted } from '../model/graft.js';
import { HEAD_DEFAULTS } from '../model/head.js';
import { paramCount, weightCount, type LayerRef } from '../model/layers.js';
import type { LoadedModel } from '../model/load.js';
import { DEFAULTS } from '../train/defaults.js';
import { fineTune } from '../train/fine-tune.js';
import { cachedFeatureDataset, modelFingerprint } from '../train/feature-cache.js';
import { featureDataset } from '../train/predict.js';
import { defaultCut, resolveCut } from '../train/transfer.js';
import { withDefaults } from '../options.js';
import { recommend, type VariantResult } from './recommend.js';

export const VARIANTS = ['scratch', 'knn', 'linear-probe', 'warm-up', 'full-recipe', 'lp-ft'] as const;
export type VariantName = (typeof VARIANTS)[number];

export const COMPARE_DEFAULTS = {
  sizes: [10, 100, 1000], seeds: 3, warmupEpochs: 3, finetuneEpochs: 2, variants: [...VARIANTS] as VariantName[],
  /**
   * Heads trained on cached features (linear probe, warm-up, and the warm-up phase of the full
   * recipe and LP-FT) run at least this many steps: at 10 labels per class, 5 epochs are 5
   * steps, and the linear probe stopped at 27% where k-NN on the same features had 71%
   * (MobileNetV2 on Fashion-MNIST). They cost little; scratch and fine-tune epochs are not
   * raised.
   */
  minHeadSteps: 300,
};

export interface CompareOptions {
  cut?: LayerRef;
  sizes?: number[];
  seeds?: number;
  warmupEpochs?: number;
  finetuneEpochs?: number;
  variants?: VariantName[];
  /** Loads a fresh copy of the base (variants that fine-tune must not share weights). */
  reload: () => Promise<LoadedModel>;
  onProgress?: (line: string) => void;
  /** Keep and reuse the frozen body's features in the disk cache (graft compare turns it on). */
  diskCache?: boolean;
  /** Pixel preprocessing for a base without graft.json (an ONNX file, a Keras file). */
  preprocessing?: Preprocessing;
}

export interface CompareResult {
  variants: VariantResult[];
  recommendation: string;
  sizes: number[];
  seeds: number;
  timing: { featuresSeconds: number; perVariant: Record<string, number>; totalSeconds: number };
  cut: string;
}

interface Run { accuracy: number; seconds: number; trainableParams: number; modelBytes: number }

const bytesOf = (layers: { weights: { shape: (number | null)[] }[] }[]) => 4 * weightCount(layers.flatMap((l) => l.weights));
const trainableOf = (g: Grafted) => weightCount(g.model.layers.filter((l) => l.trainable).flatMap((l) => l.trainableWeights));

export async function compareTransfer(base: LoadedModel, data: Dataset, test: Dataset, options: CompareOptions): Promise<CompareResult> {
  const o = withDefaults(COMPARE_DEFAULTS, options);
  assertTrainable(data);
  const counts = classCounts(data);
  const fewest = Math.min(...counts);
  const tooBig = o.sizes.filter((s) => s > fewest);
  if (!o.sizes.length || o.sizes.some((s) => !Number.isInteger(s) || s < 1) || tooBig.length) {
    throw new GraftError('BAD_OPTION', tooBig.length
      ? `Size ${tooBig.join(', ')} labels per class is more than the data has: class "${data.classNames[counts.indexOf(fewest)]}" has ${fewest}.`
      : `Sizes must be whole numbers of labels per class; got ${o.sizes.join(', ')}.`, { fix: `Use --sizes up to ${fewest}.` });
  }
  const started = Date.now();
  const cut = String(resolveCut(base, o.cut) ?? defaultCut(base));
  const p = o.preprocessing ?? base.meta?.preprocessing;
  const body = cutBody(base.model, cut).model;
  const sizes = [...o.sizes].sort((a, b) => a - b);
  const epochs = o.warmupEpochs + o.finetuneEpochs;
  const perVariant: Record<string, number> = {};
  const runs = new Map<string, Run[]>();
  const t0 = Date.now();
  const bodyPrint = o.diskCache ? modelFingerprint(body) : undefined;
  const describe = `${base.source} cut at ${cut}`;
  const featuresOf = async (d: Dataset) => bodyPrint ? (await cachedFeatureDataset(body, d, p, 128, { bodyPrint, describe })).features : featureDataset(body, d, p);
  const testFeatures = await featuresOf(test);
  let featuresSeconds = (Date.now() - t0) / 1000;
  const suggested = cut === base.meta?.zoo?.suggestedCuts?.[0] ? base.meta?.zoo?.suggestedHead : undefined;
  // k-NN sees the features the way the head does: pooled over space unless the head flattens
  // (MobileNetV2 at 96x96 cut at block_13_expand_relu: 576 numbers instead of 20,736; the
  // flattened distances cost 122 s per 1,000 training images against 10,000 test images).
  const pooledViews = new Map<Dataset, Dataset>();
  const knnView = (d: Dataset): Dataset => {
    if ((suggested?.pooling ?? HEAD_DEFAULTS.pooling) === 'flatten' || d.sampleShape.length !== 3) return d;
    let v = pooledViews.get(d);
    if (!v) {
      const [h, w, c] = d.sampleShape;
      const x = new Float32Array(d.labels.length * c);
      const f = inMemory(d.x);
      for (let i = 0; i < d.labels.length; i++) for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) x[i * c + k] += f[(i * h * w + p) * c + k] / (h * w);
      v = { ...d, x, sampleShape: [c] };
      pooledViews.set(d, v);
    }
    return v;
  };
  const numClasses = data.classNames.length;
  for (let seed = 1; seed <= o.seeds; seed++) {
    const pool = takePerClass(data, sizes[sizes.length - 1], seed);
    const f0 = Date.now();
    const poolFeatures = await featuresOf(pool);
    featuresSeconds += (Date.now() - f0) / 1000;
    for (const size of sizes) {
      const train = takePerClass(pool, size, seed);
      const features = takePerClass(poolFeatures, size, seed);
      const cached = { train: features };
      const common = { preprocessing: p, validationSplit: 0, seed, patience: 1e9 };
      const headEpochs = (least: number) => Math.max(least, Math.ceil(o.minHeadSteps / Math.ceil(train.labels.length / DEFAULTS.batchSize)));
      for (const name of o.variants) {
        const v0 = Date.now();
        let run: Run;
        if (name === 'knn') {
          const tr = knnView(features);
          const te = knnView(testFeatures);
          const acc = knnAccuracy({ x: inMemory(tr.x) as Float32Array, labels: tr.labels }, { x: inMemory(te.x) as Float32Array, labels: te.labels }, sampleSize(tr)).accuracy;
          run = { accuracy: acc, seconds: 0, trainableParams: 0, modelBytes: bytesOf(body.layers) + features.x.length * 4 };
        } else if (name === 'linear-probe' || name === 'warm-up') {
          const head = name === 'linear-probe' ? { ...suggested, hidden: [], dropout: 0, numClasses, seed } : { seed, ...suggested, numClasses };
          const g = graft(base.model, { cut, head });
          await fineTune(g, train, { ...common, warmupEpochs: headEpochs(epochs), finetuneEpochs: 0, cachedFeatures: cached });
          run = { accuracy: await accuracyOf(g.headModel, testFeatures, undefined), seconds: 0, trainableParams: g.head.layers.reduce((n, l) => n + paramCount(l), 0), modelBytes: bytesOf(g.model.layers) };
        } else if (name === 'scratch') {
          const fresh = await adoptModel(await tfl.models.modelFromJSON(base.model.toJSON(null, false) as never) as tfl.LayersModel);
          // From scratch there are no statistics worth keeping: BatchNorm trains on batch
          // statistics, and afterwards its moving averages are set to the mean of the batch
          // statistics over the training data ("precise BN"). Without that, few steps leave the
          // averages near their initial values: inference near chance (21% on MNIST 5-9 at
          // 100/class with momentum 0.99; MobileNetV2 from scratch at 10 Fashion-MNIST images
          // per class 10.00% with the statistics kept).
          const g = graft(fresh, { cut, head: { seed, ...suggested, numClasses } });
          await fineTune(g, train, { ...common, warmupEpochs: 0, finetuneEpochs: epochs, unfreeze: 'all', lrRatio: 1, batchNormStatistics: 'update' });
          await recalibrateBatchNorm(g.model, train, p);
          run = { accuracy: await accuracyOf(g.model, test, p), seconds: 0, trainableParams: trainableOf(g), modelBytes: bytesOf(g.model.layers) };
        } else {
          const copy = await o.reload();
          const head = name === 'lp-ft' ? { ...suggested, hidden: [], dropout: 0, numClasses, seed } : { seed, ...suggested, numClasses };
          const g = graft(copy.model, { cut, head });
          // LP-FT always fine-tunes (it is the variant); the full recipe keeps fine-tuning only when it wins, as graft train does.
          await fineTune(g, train, { ...common, warmupEpochs: o.warmupEpochs > 0 ? headEpochs(o.warmupEpochs) : 0, finetuneEpochs: o.finetuneEpochs, cachedFeatures: cached, keepBetter: name !== 'lp-ft' });
          run = { accuracy: await accuracyOf(g.model, test, p), seconds: 0, trainableParams: trainableOf(g), modelBytes: bytesOf(g.model.layers) };
        }
        run.seconds = (Date.now() - v0) / 1000;
        perVariant[name] = (perVariant[name] ?? 0) + run.seconds;
        const key = `${name}@${size}`;
        runs.set(key, [...(runs.get(key) ?? []), run]);
        o.onProgress?.(`seed ${seed}, ${size}/class, ${name}: ${(100 * run.accuracy).toFixed(2)}% (${run.seconds.toFixed(1)} s)`);
      }
    }
  }
  const variants: VariantResult[] = [];
  for (const size of sizes) {
    for (const name of o.variants) {
      const rs = runs.get(`${name}@${size}`)!;
      const mean = rs.reduce((a, r) => a + r.accuracy, 0) / rs.length;
      const std = Math.sqrt(rs.reduce((a, r) => a + (r.accuracy - mean) ** 2, 0) / rs.length);
      variants.push({ name, size, accuracyMean: mean, accuracyStd: std, seconds: rs.reduce((a, r) => a + r.seconds, 0) / rs.length, trainableParams: rs[0].trainableParams, modelBytes: rs[0].modelBytes });
    }
  }
  return {
    variants, recommendation: recommend(variants), sizes, seeds: o.seeds, cut,
    timing: { featuresSeconds, perVariant, totalSeconds: (Date.now() - started) / 1000 },
  };
}

