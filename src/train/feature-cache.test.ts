import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../engine/backend.js';
import { adoptModel } from '../model/batch-norm.js';
import { cutBody } from '../model/cut.js';
import { graft } from '../model/graft.js';
import { fineTune } from './fine-tune.js';
import { cachedFeatureDataset, clearCache, listCache, modelFingerprint } from './feature-cache.js';
import { PIXELS, textureImages, tinyCnn } from '../../test/fixtures.js';

async function withCacheDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'graft-cache-'));
  const before = { dir: process.env.GRAFT_CACHE_DIR, max: process.env.GRAFT_CACHE_MAX_MB };
  process.env.GRAFT_CACHE_DIR = dir;
  try {
    return await work(dir);
  } finally {
    if (before.dir === undefined) delete process.env.GRAFT_CACHE_DIR; else process.env.GRAFT_CACHE_DIR = before.dir;
    if (before.max === undefined) delete process.env.GRAFT_CACHE_MAX_MB; else process.env.GRAFT_CACHE_MAX_MB = before.max;
    await rm(dir, { recursive: true, force: true });
  }
}

test('feature cache: a second pass reads the same features from disk; other data, another cut or other weights miss', async () => {
  await initBackend();
  await withCacheDir(async () => {
    const model = await adoptModel(tinyCnn(3, 4));
    const body = cutBody(model, 'r2').model;
    const data = textureImages(10, 3, 1);
    const a = await cachedFeatureDataset(body, data, PIXELS, 16);
    assert.equal(a.hit, false);
    const b = await cachedFeatureDataset(body, data, PIXELS, 16);
    assert.equal(b.hit, true);
    assert.deepEqual(b.features.x, a.features.x);
    assert.deepEqual(b.features.sampleShape, a.features.sampleShape);
    const other = textureImages(10, 3, 2);
    assert.equal((await cachedFeatureDataset(body, other, PIXELS, 16)).hit, false, 'other data');
    assert.equal((await cachedFeatureDataset(cutBody(model, 'p1').model, data, PIXELS, 16)).hit, false, 'another cut');
    assert.equal((await cachedFeatureDataset(body, data, { ...PIXELS, scale: 1 / 128 }, 16)).hit, false, 'other preprocessing');
    const print = modelFingerprint(body);
    const w = model.getLayer('c1').getWeights();
    model.getLayer('c1').setWeights([tf.add(w[0], 1e-3), w[1]]);
    assert.notEqual(modelFingerprint(body), print, 'changed weights change the fingerprint');
    assert.equal((await cachedFeatureDataset(body, data, PIXELS, 16)).hit, false, 'changed weights');
    assert.equal((await listCache()).length, 5);
    const cleared = await clearCache();
    assert.equal(cleared.entries, 5);
    assert.ok(cleared.bytes > 0);
    assert.equal((await listCache()).length, 0);
  });
});

test('feature cache: the size budget drops the least recently used entries; fineTune reuses features across runs', async () => {
  await initBackend();
  await withCacheDir(async (dir) => {
    const model = await adoptModel(tinyCnn(3, 4));
    const body = cutBody(model, 'r2').model;
    // Each entry: 30 samples x 2x2x8... r2 is 4x4x8 = 128 floats -> 15 KB.
    process.env.GRAFT_CACHE_MAX_MB = String(40 / 1024);
    for (let seed = 1; seed <= 4; seed++) await cachedFeatureDataset(body, textureImages(10, 3, seed), PIXELS, 16);
    const left = await listCache();
    assert.ok(left.length >= 1 && left.length < 4, `entries within the budget: ${left.length}`);
    assert.ok(left.reduce((s, e) => s + e.bytes, 0) <= 40 * 1024);
    assert.equal(left[0].data, textureImages(10, 3, 4).source, 'the newest entry stays');
    delete process.env.GRAFT_CACHE_MAX_MB;
    await clearCache();

    const run = async () => {
      const g = graft(await adoptModel(tinyCnn(3, 4)), { cut: 'r2', head: { numClasses: 3, dropout: 0, seed: 3 } });
      return fineTune(g, textureImages(20, 3, 1), { preprocessing: PIXELS, warmup: 'sgd', keepBetter: false, warmupEpochs: 2, finetuneEpochs: 0, diskCache: true, seed: 3, validationSplit: 0.1 });
    };
    const first = await run();
    const second = await run();
    assert.deepEqual(first.featureCache, { hits: 0, misses: 2 });
    assert.deepEqual(second.featureCache, { hits: 2, misses: 0 });
    assert.deepEqual(second.history.map((h) => h.loss), first.history.map((h) => h.loss), 'the same training from cached features');
    assert.ok((await readdir(join(dir, 'features'))).length === 4);
  });
});
