import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XMLValidator } from 'fast-xml-parser';
import { adoptModel } from '../model/batch-norm.js';
import { compareTransfer, VARIANTS } from './compare.js';
import { initBackend } from '../engine/backend.js';
import { learningCurveSvg } from '../report/compare-chart.js';
import { type LoadedModel } from '../model/load.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();

async function tinyBase(): Promise<LoadedModel> {
  return { model: await adoptModel(tinyCnn(2, 3)), source: 'tiny', meta: { format: 'graft/1', classNames: [], preprocessing: PIXELS, heads: [], versions: {}, createdAt: '' } };
}

test('compare runs every variant at every size with numbers in range, and a valid SVG learning curve', async () => {
  const base = await tinyBase();
  const r = await compareTransfer(base, textureImages(12, 3, 1), textureImages(6, 3, 2), {
    cut: 'r2', sizes: [4, 8], seeds: 2, warmupEpochs: 2, finetuneEpochs: 1, reload: tinyBase,
  });
  assert.deepEqual(r.variants.map((v) => `${v.name}@${v.size}`), [4, 8].flatMap((s) => VARIANTS.map((n) => `${n}@${s}`)));
  for (const v of r.variants) {
    assert.ok(v.accuracyMean >= 0 && v.accuracyMean <= 1, `${v.name} accuracy ${v.accuracyMean}`);
    assert.ok(v.accuracyStd >= 0 && v.accuracyStd <= 0.5);
    assert.ok(v.seconds >= 0 && v.modelBytes > 0);
  }
  assert.equal(r.variants.find((v) => v.name === 'knn')!.trainableParams, 0);
  assert.ok(r.variants.find((v) => v.name === 'linear-probe')!.trainableParams < r.variants.find((v) => v.name === 'scratch')!.trainableParams);
  assert.ok(r.recommendation.length > 20);
  assert.ok(r.timing.featuresSeconds >= 0 && r.timing.totalSeconds > 0);
  const svg = learningCurveSvg(r.variants);
  assert.equal(XMLValidator.validate(svg), true);
  assert.equal((svg.match(/class="variant"/g) ?? []).length, VARIANTS.length);
});

test('compare refuses sizes larger than the data and single-class data', async () => {
  const base = await tinyBase();
  await assert.rejects(compareTransfer(base, textureImages(5, 3), textureImages(3, 3), { cut: 'r2', sizes: [3, 10], reload: tinyBase }),
    (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /Size 10 labels per class is more than the data has: class "t0" has 5/.test(e.message));
  await assert.rejects(compareTransfer(base, textureImages(5, 1), textureImages(3, 1), { cut: 'r2', sizes: [2], reload: tinyBase }), { code: 'BAD_DATA' });
});
