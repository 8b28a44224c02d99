// graft compare: is transfer learning overkill here? Measures the alternatives on your data.

import { outFolder } from '../out-args.js';
import { join } from 'node:path';
import { alignClasses, loadData } from '#internal/data/load.js';
import { splitFolders } from '#internal/data/images.js';
import { compareTransfer, COMPARE_DEFAULTS, VARIANTS, type CompareResult, type VariantName } from '#internal/eval/compare.js';
import { GraftError, loadModel } from 'graft';
import { learningCurveSvg } from '#internal/report/compare-chart.js';
import { stratifiedSplit } from '#internal/data/dataset.js';
import { writeDirAtomic } from '#internal/model/io.js';
import { intAtLeast, num, parse, str } from '../args.js';
import { DATA_ARGS, FIT_USAGE, PREPROCESS_USAGE, dataOptions, decodeProgress, mergeSkipped, parsePreprocess, parseSize, skippedLines } from '../data-args.js';

export const usage = `graft compare --base <model> --data <data> [options]

Trains, on the same split and a comparable budget: the same architecture from random weights
(scratch), k-nearest neighbours and a linear probe on frozen features, the head warm-up alone,
the full recipe (warm-up then fine-tune), and LP-FT (linear probe, then fine-tune), at several
training-set sizes, and says in words whether transfer learning pays off.

  --base <model>        pretrained model (zoo name, directory, model.json or URL, Keras, ONNX
                        or tfjs GraphModel; --cut takes a graph's node names)
  --data <data>         labelled data: a folder of class sub-folders of images (or train/ and
                        test/ folders of those), mnist-train:<digits>, .csv, IDX images
  --test-data <data>    test data (default: mnist-test for mnist-train, the folder's test/,
                        else 20% held out)
  --input-size <n|hxw>  run a fully convolutional base at another input size (e.g. 96)
  ${FIT_USAGE.replace('--fit <how>            ', '--fit <how>          ')}
  --no-cache            do not keep or reuse body features in the disk cache (graft cache)
  --cut <layer>         where to cut (default: the base's suggested cut)
  ${PREPROCESS_USAGE}
  --sizes <list>        labels per class, comma-separated (default ${COMPARE_DEFAULTS.sizes.join(',')})
  --seeds <n>           repeats with other subsets and initial weights (default ${COMPARE_DEFAULTS.seeds})
  --variants <list>     a subset of ${VARIANTS.join(',')}
  --warmup-epochs <n>   (default ${COMPARE_DEFAULTS.warmupEpochs}); every variant gets warm-up + fine-tune epochs in all
  --finetune-epochs <n> (default ${COMPARE_DEFAULTS.finetuneEpochs})
  --out <dir>           write compare.json, compare.svg (learning curves) and compare.html
  --json                print { variants: [...], recommendation, timing }`;

export const summary = 'is transfer learning worth it here? scratch vs k-NN vs linear probe vs warm-up vs full recipe vs LP-FT';

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

export function compareTable(r: CompareResult): string {
  const head = ['variant', 'labels/class', 'accuracy', '± (seeds)', 'seconds', 'trainable params', 'model KB'];
  const rows = r.variants.map((v) => [v.name, String(v.size), pct(v.accuracyMean), pct(v.accuracyStd), v.seconds.toFixed(1), v.trainableParams.toLocaleString('en-US'), (v.modelBytes / 1024).toFixed(0)]);
  const all = [head, ...rows];
  const w = head.map((_, c) => Math.max(...all.map((row) => row[c].length)));
  return all.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('  ')).join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    base: { type: 'string' }, data: { type: 'string' }, 'test-data': { type: 'string' }, cut: { type: 'string' }, sizes: { type: 'string' },
    seeds: { type: 'string' }, variants: { type: 'string' }, 'warmup-epochs': { type: 'string' }, 'finetune-epochs': { type: 'string' },
    out: { type: 'string' }, 'input-size': { type: 'string' }, 'no-cache': { type: 'boolean' }, preprocess: { type: 'string' }, ...DATA_ARGS,
  }, usage);
  if (values.help) { console.log(usage); return 0; }
  const baseSpec = str(values.base);
  const dataSpec = str(values.data);
  if (!baseSpec || !dataSpec) throw new GraftError('BAD_ARGUMENT', 'graft compare needs --base and --data.', { fix: `Usage:\n${usage}` });
  const json = Boolean(values.json);
  const out = values.out === undefined ? undefined : await outFolder(values, undefined, { kind: 'compare' });
  const sizes = str(values.sizes)?.split(',').map((s) => num(s, 'sizes', intAtLeast(1))!);
  const variants = str(values.variants)?.split(',') as VariantName[] | undefined;
  const unknown = variants?.filter((v) => !(VARIANTS as readonly string[]).includes(v));
  if (unknown?.length) throw new GraftError('BAD_ARGUMENT', `Unknown variant ${unknown.join(', ')}.`, { fix: `Choose from ${VARIANTS.join(', ')}.` });
  const inputSize = parseSize(values['input-size'], 'input-size');
  const base = await loadModel(baseSpec, { inputSize, keepUpTo: str(values.cut), cut: str(values.cut) });
  const opts = dataOptions(values, base.model, base.meta?.preprocessing, decodeProgress(json));
  const folders = await splitFolders(dataSpec).catch(() => undefined);
  let data = await loadData(folders?.train ?? dataSpec, opts);
  let test;
  const testSpec = str(values['test-data']) ?? folders?.test ?? (/^mnist-train/.test(dataSpec) ? dataSpec.replace('mnist-train', 'mnist-test') : undefined);
  if (testSpec) test = alignClasses(await loadData(testSpec, { ...opts, classNames: data.classNames }), data.classNames);
  else ({ rest: data, split: test } = stratifiedSplit(data, 0.2, 1));
  const skipped = mergeSkipped(data, test);
  if (!json) for (const line of skippedLines(skipped)) process.stderr.write(`${line}\n`);
  const result = await compareTransfer(base, data, test, {
    cut: str(values.cut), sizes, variants, seeds: num(values.seeds, 'seeds', intAtLeast(1)),
    warmupEpochs: num(values['warmup-epochs'], 'warmup-epochs', intAtLeast(0)), finetuneEpochs: num(values['finetune-epochs'], 'finetune-epochs', intAtLeast(0)),
    reload: () => loadModel(baseSpec, { inputSize, keepUpTo: str(values.cut), cut: str(values.cut) }), diskCache: !values['no-cache'],
    preprocessing: parsePreprocess(values.preprocess, base.model.inputs[0].shape),
    onProgress: (line) => { if (!json) process.stderr.write(`  ${line}\n`); },
  });
  if (out !== undefined) {
    const svg = learningCurveSvg(result.variants);
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>graft compare</title></head><body style="font-family:system-ui,sans-serif;max-width:900px;margin:auto">`
      + `<h1>Is transfer learning worth it here?</h1><p>${result.recommendation.replace(/</g, '&lt;')}</p>${svg}<pre>${compareTable(result).replace(/</g, '&lt;')}</pre></body></html>`;
    await writeDirAtomic(out, { 'compare.json': JSON.stringify({ format: 'graft-compare/1', ...result }, null, 2), 'compare.svg': svg, 'compare.html': html }, { replace: true });
  }
  if (json) {
    console.log(JSON.stringify({ ...result, skipped }));
    return 0;
  }
  console.log(compareTable(result));
  console.log(`\n${result.recommendation}`);
  const t = result.timing;
  console.log(`\nTime: ${t.totalSeconds.toFixed(1)} s in all; body features (one pass per image, shared by k-NN, linear probe, warm-up, full recipe and LP-FT): ${t.featuresSeconds.toFixed(1)} s; ${Object.entries(t.perVariant).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')}.`);
  if (out) console.log(`wrote ${join(out, 'compare.json')}, compare.svg and compare.html`);
  return 0;
}
