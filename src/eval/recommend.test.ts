import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recommend, type VariantResult } from './recommend.js';

const row = (name: string, size: number, acc: number, modelBytes = 100000, seconds = 10): VariantResult => ({ name, size, accuracyMean: acc, accuracyStd: 0.01, seconds, trainableParams: 1000, modelBytes });

test('scratch catches up at the largest size: transfer is optional, with the size ratio and where it stops paying', () => {
  const words = recommend([
    row('scratch', 10, 0.40, 30000), row('full-recipe', 10, 0.75, 100000), row('knn', 10, 0.70, 100000, 1),
    row('scratch', 100, 0.85, 30000), row('full-recipe', 100, 0.90, 100000),
    row('scratch', 1000, 0.975, 30000), row('full-recipe', 1000, 0.98, 100000), row('linear-probe', 1000, 0.975, 100000, 2),
  ]);
  assert.match(words, /With 1000 labels per class, training from scratch \(97.5%\) is within 0.5 point of the best transfer variant \(full-recipe, 98.0%\) and 3.3x smaller: transfer is optional here\./);
  assert.match(words, /With 10 labels per class, transfer is 35.0 points better/);
  assert.match(words, /stops paying off between 100 and 1000 labels per class/);
  assert.match(words, /linear-probe is within 1 point of the best and the quickest/);
});

test('scratch ahead at the largest size is said so', () => {
  const words = recommend([row('scratch', 10, 0.24), row('lp-ft', 10, 0.7), row('scratch', 1000, 0.9892), row('lp-ft', 1000, 0.9881)]);
  assert.match(words, /training from scratch \(98.9%\) is 0.1 points better than the best transfer variant \(lp-ft, 98.8%\)/);
});

test('scratch clearly ahead at the largest size (MobileNetV2 on Fashion-MNIST): train from scratch, and where transfer stops paying', () => {
  const words = recommend([
    row('scratch', 10, 0.438), row('linear-probe', 10, 0.7078), row('lp-ft', 10, 0.70),
    row('scratch', 100, 0.7151), row('lp-ft', 100, 0.7722),
    row('scratch', 1000, 0.8914), row('lp-ft', 1000, 0.8672), row('knn', 1000, 0.833),
  ]);
  assert.match(words, /training from scratch \(89.1%\) is 2.4 points better than the best transfer variant \(lp-ft, 86.7%\): here the pretrained features cost accuracy; train from scratch\./);
  assert.match(words, /With 10 labels per class, transfer is 27.0 points better \(linear-probe 70.8% vs scratch 43.8%\)/);
  assert.match(words, /Transfer stops paying off between 100 and 1000 labels per class\./);
  assert.doesNotMatch(words, /every size/);
});

test('transfer wins everywhere', () => {
  const words = recommend([row('scratch', 10, 0.3), row('warm-up', 10, 0.8), row('scratch', 100, 0.6), row('warm-up', 100, 0.9)]);
  assert.match(words, /still beats training from scratch \(60.0%\) by 30.0 points: use it/);
  assert.match(words, /Transfer pays off at every size tried/);
});

test('pretrained features that do not help', () => {
  const words = recommend([row('scratch', 10, 0.5), row('lp-ft', 10, 0.502), row('scratch', 100, 0.8), row('lp-ft', 100, 0.801)]);
  assert.match(words, /At every size tried, scratch is as good/);
});

test('without a scratch run there is no verdict, only the best variant', () => {
  assert.match(recommend([row('knn', 10, 0.6), row('warm-up', 10, 0.7)]), /Best: warm-up .*Add the scratch variant/);
  assert.equal(recommend([]), 'No results to compare.');
});
