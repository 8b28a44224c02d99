import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { adoptModel } from '../model/batch-norm.js';
import { evaluate } from '../eval/evaluate.js';
import { fineTune } from './fine-tune.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { makeRng } from '../data/random.js';
import { lbfgs } from './lbfgs.js';
import { crossValidateL2, fitSoftmax, foldStandardization, predictSoftmax, softmaxObjective, standardization, standardize, stratifiedFolds, type Problem } from './logistic.js';
import { nativeStatus } from '../engine/native.js';
import { pairedStandardError, pairedValidation, pairedVerdict, tCritical90, verdict } from './keep-better.js';
import { accuracyWords, wilson } from '../eval/interval.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();

/** Gaussian classes: k means in d dimensions, `signal` of the dimensions informative. */
function blobs(n: number, d: number, k: number, seed: number, signal = d, sep = 1, meanSeed = seed): Problem & { x: Float64Array } {
  const mr = makeRng(meanSeed);
  const rng = makeRng(seed);
  const gauss = (r = rng) => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const means = Array.from({ length: k }, () => Array.from({ length: d }, (_, j) => (j < signal ? sep * gauss(mr) : 0)));
  const x = new Float64Array(n * d);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % k;
    for (let j = 0; j < d; j++) x[i * d + j] = means[labels[i]][j] + gauss();
  }
  return { x, n, d, k, labels };
}

test('L-BFGS minimises a badly scaled quadratic to its gradient tolerance', () => {
  const scale = [1, 10, 100, 1000];
  const r = lbfgs((x, g) => { let f = 0; x.forEach((v, i) => { f += 0.5 * scale[i] * (v - i) ** 2; g[i] = scale[i] * (v - i); }); return f; }, new Float64Array(4), { gradientTolerance: 1e-8 });
  assert.ok(r.converged, 'converged');
  assert.ok(r.gradientNorm < 1e-8, `gradient ${r.gradientNorm}`);
  r.x.forEach((v, i) => assert.ok(Math.abs(v - i) < 1e-8, `x[${i}] = ${v}`));
});

test('the softmax head fit converges: the gradient of the regularised loss is ~0 at its answer', () => {
  const p = blobs(120, 8, 3, 1);
  const fit = fitSoftmax(p, 0.01);
  assert.ok(fit.optimizer.converged && fit.optimizer.gradientNorm < 1e-5, JSON.stringify(fit.optimizer));
  // Check the gradient independently, by central differences of the objective written out here.
  const loss = (kernel: Float64Array, bias: Float64Array) => {
    const probs = predictSoftmax({ ...fit, kernel, bias }, p.x, p.n, p.d);
    let l = 0;
    for (let i = 0; i < p.n; i++) l -= Math.log(probs[i * p.k + p.labels[i]]) / p.n;
    return l + 0.005 * kernel.reduce((a, w) => a + w * w, 0);
  };
  for (const j of [0, 5, 13, 23]) {
    const up = Float64Array.from(fit.kernel); up[j] += 1e-5;
    const down = Float64Array.from(fit.kernel); down[j] -= 1e-5;
    const g = (loss(up, fit.bias) - loss(down, fit.bias)) / 2e-5;
    assert.ok(Math.abs(g) < 1e-4, `d loss / d w[${j}] = ${g}`);
  }
});

/**
 * Two classes told apart by x0 - x1 only: both carry a large shared nuisance z, x0 also the
 * label. Weak regularisation finds the difference (near-perfect); strong regularisation pulls
 * the weights toward the class means' difference (mostly x0), which z swamps. So the right
 * strength is known, and far apart from the wrong one.
 */
function nuisance(n: number, seed: number): Problem & { x: Float64Array } {
  const rng = makeRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rng() + 1e-12)) * Math.cos(2 * Math.PI * rng());
  const x = new Float64Array(n * 2);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    const z = 3 * gauss();
    x[2 * i] = (labels[i] ? 0.5 : -0.5) + z + 0.1 * gauss();
    x[2 * i + 1] = z + 0.1 * gauss();
  }
  return { x, n, d: 2, k: 2, labels };
}

test('cross-validation picks an L2 strength whose accuracy on fresh data is near the best strength', () => {
  for (const seed of [1, 2, 3]) {
    const train = nuisance(200, seed);
    const fresh = nuisance(4000, seed + 50);
    const grid = [1e-4, 1e-3, 1e-2, 0.1, 1, 10];
    const cv = crossValidateL2(train, { folds: 5, seed: 1, grid });
    const s = standardization(train.x, train.d);
    const onFresh = (l2: number) => {
      const fit = fitSoftmax({ ...train, x: standardize(train.x, train.d, s) }, l2);
      const probs = predictSoftmax(fit, standardize(fresh.x, fresh.d, s), fresh.n, fresh.d);
      let hits = 0;
      for (let i = 0; i < fresh.n; i++) if ((probs[2 * i + 1] > probs[2 * i] ? 1 : 0) === fresh.labels[i]) hits++;
      return hits / fresh.n;
    };
    const all = grid.map(onFresh);
    const chosen = onFresh(cv.best.l2);
    assert.ok(Math.max(...all) - Math.min(...all) > 0.2, `the problem must make the strength matter: ${all.map((a) => a.toFixed(3))}`);
    assert.ok(chosen >= Math.max(...all) - 0.02, `seed ${seed}: chose ${cv.best.l2} (${chosen}); fresh accuracy by strength ${all.map((a) => a.toFixed(3))}`);
    assert.ok(Math.abs(cv.best.accuracy - chosen) < 0.08, `the CV estimate ${cv.best.accuracy} should be near the fresh accuracy ${chosen}`);
  }
});

test('stratified folds keep every class in every fold', () => {
  const labels = Int32Array.from({ length: 23 }, (_, i) => (i < 5 ? 0 : i < 12 ? 1 : 2));
  const folds = stratifiedFolds(labels, 3, 5, 1);
  for (let f = 0; f < 5; f++) {
    const classes = new Set([...labels].filter((_, i) => folds[i] === f));
    assert.equal(classes.size, 3, `fold ${f} has classes ${[...classes]}`);
  }
});

test('folding the standardisation into the dense weights gives the same probabilities on raw features', () => {
  const p = blobs(60, 5, 3, 7);
  for (let i = 0; i < p.x.length; i++) p.x[i] = p.x[i] * 40 + 300;
  const s = standardization(p.x, p.d);
  const fit = fitSoftmax({ ...p, x: standardize(p.x, p.d, s) }, 0.01);
  const want = predictSoftmax(fit, standardize(p.x, p.d, s), p.n, p.d);
  const folded = foldStandardization(fit, s);
  const got = predictSoftmax({ ...fit, kernel: Float64Array.from(folded.kernel), bias: Float64Array.from(folded.bias) }, p.x, p.n, p.d);
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-4, `prob ${i}: ${v} vs ${want[i]}`));
});

test('the fitted warm-up writes a head that the saved tfjs model applies, with no tensor left behind', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 4, seed: 5 } });
  const before = tf.memory().numTensors;
  const r = await fineTune(g, textureImages(30, 4, 1), { preprocessing: PIXELS, finetuneEpochs: 0, seed: 3 });
  assert.equal(tf.memory().numTensors, before, 'no tensors left');
  assert.equal(r.recipe.warmup, 'fit');
  const f = r.headFit!;
  assert.ok(f.converged, JSON.stringify(f));
  assert.equal(f.chosenBy, 'cross-validation', '30 per class is small data');
  assert.equal(f.folds, 5);
  assert.equal(r.validation, null, 'no validation split on small data');
  // The tfjs model alone (body + dense with the standardisation folded in) reproduces the fit's training accuracy.
  const data = textureImages(30, 4, 1);
  const probs = tf.tidy(() => tf.argMax(g.model.predict(tf.tensor(Float32Array.from(data.x as Float32Array, (v) => v / 255), [data.labels.length, 8, 8, 1])) as tf.Tensor, 1).dataSync());
  const acc = [...probs].filter((y, i) => y === data.labels[i]).length / data.labels.length;
  assert.ok(Math.abs(acc - f.trainAccuracy) < 1e-9, `model ${acc} vs fit ${f.trainAccuracy}`);
});

test('keep the better: fine-tuning is kept only when better than the warm-up head by more than the margin', () => {
  assert.equal(verdict('validation', 0.8, 0.81).kept, 'fine-tune');
  assert.equal(verdict('validation', 0.8, 0.8).kept, 'warm-up');
  assert.equal(verdict('cross-validation', 0.7, 0.74, 3, 0.05).kept, 'warm-up', 'a win within one standard error is no evidence');
  assert.equal(verdict('cross-validation', 0.7, 0.76, 3, 0.05).kept, 'fine-tune');
  // The margin is a one-sided paired t-test at 90%: 1.886 standard errors with 3 folds.
  assert.equal(tCritical90(2), 1.886);
  assert.ok(tCritical90(1000) > 1.28 && tCritical90(1000) < 1.29 && tCritical90(11) < tCritical90(10));
  assert.ok(Math.abs(pairedStandardError([0.5, 0.6, 0.7], [0.6, 0.6, 0.9]) - Math.sqrt(0.01 / 3)) < 1e-12);
  const v = verdict('cross-validation', 0.75, 0.6, 3);
  assert.equal(v.kept, 'warm-up');
  assert.match(v.words, /did not beat the warm-up head .* 3-fold cross-validation .*60\.0% vs 75\.0%.*kept the warm-up head/);
});

/** Per-image right/wrong of two models on n images: both right on `both`, only the first on `onlyA`, only the second on `onlyB`. */
function pairs(n: number, both: number, onlyA: number, onlyB: number): [Uint8Array, Uint8Array] {
  const a = new Uint8Array(n), b = new Uint8Array(n);
  for (let i = 0; i < both; i++) a[i] = b[i] = 1;
  for (let i = both; i < both + onlyA; i++) a[i] = 1;
  for (let i = both + onlyA; i < both + onlyA + onlyB; i++) b[i] = 1;
  return [a, b];
}

/** P(X >= k) for X ~ Binomial(m, 1/2), summed term by term. */
function upperTail(m: number, k: number): number {
  let s = 0;
  for (let j = k; j <= m; j++) {
    let logC = 0;
    for (let i = 1; i <= j; i++) logC += Math.log(m - j + i) - Math.log(i);
    s += Math.exp(logC - m * Math.LN2);
  }
  return s;
}

test('keep the better on a validation set: McNemar\'s exact one-sided 10% test on the images only one model gets right', () => {
  const keep = (n: number, both: number, onlyWarm: number, onlyTuned: number) => {
    const v = pairedValidation(...pairs(n, both, onlyWarm, onlyTuned));
    const p = pairedVerdict(v);
    // The margin says the same as the counts: kept exactly when the accuracy gain exceeds it.
    assert.equal(p.kept, v.fineTuneAccuracy - v.warmUpAccuracy > v.margin ? 'fine-tune' : 'warm-up');
    return { v, kept: p.kept, words: p.words };
  };
  // 3 fine-tune-only images, none the other way, on 100: a coin gives 3 of 3 with P = 1/8 > 10%.
  let { v, kept } = keep(100, 80, 0, 3);
  assert.ok(Math.abs(upperTail(3, 3) - 0.125) < 1e-12);
  assert.equal(v.onlyFineTune, 3);
  assert.equal(v.onlyWarmUp, 0);
  assert.ok(Math.abs(v.fineTuneAccuracy - 0.83) < 1e-12 && Math.abs(v.warmUpAccuracy - 0.8) < 1e-12);
  assert.ok(Math.abs(v.margin - 0.045) < 1e-12);
  assert.equal(kept, 'warm-up');
  // 4 of 4: P = 1/16, kept.
  ({ v, kept } = keep(100, 80, 0, 4));
  assert.ok(Math.abs(v.margin - 0.035) < 1e-12);
  assert.equal(kept, 'fine-tune');
  // A tie on every image keeps the warm-up head (as the strict rule did).
  ({ v, kept } = keep(100, 90, 0, 0));
  assert.equal(kept, 'warm-up');
  assert.ok(v.margin > 0);
  // Many disagreements: 60 vs 40 is significant, 56 vs 44 is not; the rule agrees with the tails summed here.
  assert.ok(upperTail(100, 60) <= 0.1 && upperTail(100, 56) > 0.1);
  assert.equal(keep(200, 50, 40, 60).kept, 'fine-tune');
  assert.equal(keep(200, 50, 44, 56).kept, 'warm-up');
  // At every split of 30 disagreements, kept exactly when the fine-tune-only count's tail is <= 10%.
  for (let b = 0; b <= 30; b++) assert.equal(keep(60, 10, 30 - b, b).kept, upperTail(30, b) <= 0.1 ? 'fine-tune' : 'warm-up', `b=${b} of 30`);
  assert.match(keep(100, 80, 0, 3).words, /did not beat the warm-up head by more than chance on the validation set \(83\.0% vs 80\.0%\): of the 3 validation images only one of them got right, fine-tuning got 3 and the head 0, and McNemar's test \(one-sided, 10%\) needs more than 3 disagreements/);
  assert.match(keep(100, 80, 1, 7).words, /fine-tuning beat the warm-up head on the validation set \(87\.0% vs 81\.0%\): of the 8 validation images .* fine-tuning got 7 and the head 1, more than chance gives/);
  assert.match(keep(100, 80, 4, 6).words, /fine-tuning got 6 and the head 4, and McNemar's test \(one-sided, 10%\) needs 8 of 10 before/);
  assert.match(keep(100, 80, 0, 0).words, /got the same images right on the validation set \(80\.0%\); kept the warm-up head/);
});

test('on small data the fine-tune is cross-validated against the warm-up head and the better one kept', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r1', head: { numClasses: 4, seed: 5 } });
  const folds: number[] = [];
  const r = await fineTune(g, textureImages(12, 4, 2), { preprocessing: PIXELS, finetuneEpochs: 2, batchSize: 16, seed: 3, onFineTuneFold: (f) => { folds.push(f); } });
  const c = r.fineTuneCheck!;
  assert.equal(c.method, 'cross-validation');
  assert.deepEqual(folds, [1, 2, 3]);
  assert.equal(c.warmUpFolds!.length, 3);
  assert.equal(c.kept, c.fineTuneAccuracy > c.warmUpAccuracy ? 'fine-tune' : 'warm-up');
  assert.equal(r.phases.some((p) => p.phase === 'fine-tune'), c.kept === 'fine-tune', 'the final fine-tune runs only when it won');
});

test('Wilson intervals: known values and the ends', () => {
  const w = wilson(29, 39);
  assert.ok(Math.abs(w.low - 0.5885) < 1e-3 && Math.abs(w.high - 0.8541) < 1e-3, JSON.stringify(w));
  const all = wilson(10, 10);
  assert.equal(all.high, 1);
  assert.ok(all.low > 0.69 && all.low < 0.73, `10 of 10: low ${all.low}`);
  assert.equal(wilson(0, 10).low, 0);
  assert.match(accuracyWords(29 / 39, 39), /74\.4% \(95% interval 58\.9-85\.4%, 29 of 39\)/);
});

test('with a validation set of 200 or more, the fine-tune ends with the weights of its epoch of lowest validation loss', async () => {
  const g = graft(await adoptModel(tinyCnn(3, 2)), { cut: 'r2', head: { numClasses: 4, seed: 5 } });
  const validation = textureImages(60, 4, 9);
  // A learning rate far too high: the validation loss jumps around from epoch to epoch.
  const r = await fineTune(g, textureImages(30, 4, 1), {
    preprocessing: PIXELS, validation, finetuneEpochs: 6, lr: 1.5, finetuneLrFactor: 1, lrRatio: 1, schedule: 'constant', patience: 100, batchSize: 16, seed: 3, keepBetter: false,
  });
  const ft = r.history.filter((h) => h.phase === 'fine-tune');
  assert.equal(ft.length, 6);
  const best = ft.reduce((b, h) => (h.valLoss! < b.valLoss! - 1e-4 ? h : b));
  const now = await evaluate(g.model, validation, PIXELS);
  assert.ok(Math.abs(now.loss - best.valLoss!) < 1e-4, `model's validation loss ${now.loss}, best epoch ${best.epoch}'s ${best.valLoss}, losses ${ft.map((h) => h.valLoss!.toFixed(3))}`);
  console.log(`validation losses ${ft.map((h) => h.valLoss!.toFixed(3))}, best epoch ${best.epoch}`);
  const summary = r.phases.find((p) => p.phase === 'fine-tune')!;
  assert.ok(best.epoch < 6, 'the run must end worse than its best epoch for this test to test anything');
  assert.equal(summary.bestEpoch, best.epoch);
  assert.equal(r.validation!.loss, best.valLoss);
});

test('the softmax objective on native matrix products equals the plain loops (loss and gradient, weighted, float32 features)', { skip: nativeStatus().available ? false : `native engine ${nativeStatus().reason}` }, () => {
  const p = blobs(700, 40, 6, 3);
  const rng = makeRng(4);
  const weights = Float64Array.from({ length: p.n }, () => 0.5 + rng());
  for (const problem of [p, { ...p, weights }, { ...p, x: Float32Array.from(p.x) }]) {
    assert.ok(problem.n * problem.d * problem.k >= 1e5, 'large enough for the native path');
    const theta = Float64Array.from({ length: (p.d + 1) * p.k }, () => rng() - 0.5);
    const [ga, gb] = [new Float64Array(theta.length), new Float64Array(theta.length)];
    const a = softmaxObjective(problem, 0.03)(theta, ga);
    const b = softmaxObjective(problem, 0.03, true)(theta, gb);
    assert.ok(Math.abs(a - b) <= 1e-12 * Math.abs(b), `loss ${a} vs ${b}`);
    let worst = 0;
    for (let i = 0; i < ga.length; i++) worst = Math.max(worst, Math.abs(ga[i] - gb[i]) / (Math.abs(gb[i]) + 1e-12));
    assert.ok(worst <= 1e-9, `gradient differs by ${worst} relative`);
    assert.ok(gb.some((g) => g !== 0));
  }
});
