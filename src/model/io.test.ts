import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, readFile, readdir, writeFile, mkdir, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, extname } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { adoptModel } from './batch-norm.js';
import { graft } from './graft.js';
import { initBackend } from '../engine/backend.js';
import { loadModel } from './load.js';
import { saveModel, writeDirAtomic, writeFileAtomic } from './io.js';
import { versions, type GraftMeta } from './meta.js';
import { FreezableBatchNormalization } from './batch-norm.js';
import { tinyCnn } from '../../test/fixtures.js';

await initBackend();

const meta = (): GraftMeta => ({
  format: 'graft/1', classNames: ['a', 'b', 'c'], preprocessing: { inputShape: [8, 8, 1], scale: 1 / 255 },
  heads: [{ name: 'new', outputLayer: 'head_output', classNames: ['a', 'b', 'c'], layers: [] }], versions: versions(), createdAt: new Date().toISOString(),
});

async function serve(dir: string): Promise<{ url: string; close: () => void }> {
  const server = createServer(async (req, res) => {
    try {
      const body = await readFile(join(dir, decodeURIComponent(req.url!.split('?')[0])));
      res.writeHead(200, { 'content-type': extname(req.url!) === '.json' ? 'application/json' : 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

async function grafted() {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3, hidden: [4] } });
  return g.model;
}

test('save then load gives identical predictions, graft.json and freezable BatchNorm', async () => {
  const model = await grafted();
  const dir = join(await mkdtemp(join(tmpdir(), 'graft-io-')), 'model');
  await saveModel(model, dir, meta());
  assert.deepEqual((await readdir(dir)).sort(), ['graft.json', 'model.json', 'weights.bin']);
  const loaded = await loadModel(dir);
  assert.deepEqual(loaded.meta?.classNames, ['a', 'b', 'c']);
  assert.ok(loaded.model.layers.filter((l) => l.getClassName() === 'BatchNormalization').every((l) => l instanceof FreezableBatchNormalization));
  const x = tf.randomUniform([3, 8, 8, 1], 0, 1, 'float32', 5);
  const want = (model.predict(x) as tf.Tensor).dataSync();
  const got = (loaded.model.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(Array.from(got), Array.from(want));
  const viaJson = await loadModel(join(dir, 'model.json'));
  assert.deepEqual(Array.from((viaJson.model.predict(x) as tf.Tensor).dataSync()), Array.from(want));
  x.dispose();
});

test('plain tf.loadLayersModel loads the saved directory over http, and so does Graft from a URL', async () => {
  const model = await grafted();
  const dir = join(await mkdtemp(join(tmpdir(), 'graft-io-')), 'model');
  await saveModel(model, dir, meta());
  const server = await serve(dir);
  try {
    const plain = await tfl.loadLayersModel(`${server.url}/model.json`);
    const viaGraft = await loadModel(`${server.url}/`);
    assert.equal(viaGraft.meta?.format, 'graft/1');
    const x = tf.randomUniform([2, 8, 8, 1], 0, 1, 'float32', 6);
    const want = Array.from((model.predict(x) as tf.Tensor).dataSync());
    assert.deepEqual(Array.from((plain.predict(x) as tf.Tensor).dataSync()), want);
    assert.deepEqual(Array.from((viaGraft.model.predict(x) as tf.Tensor).dataSync()), want);
    await assert.rejects(loadModel(`${server.url}/missing/`), { code: 'NETWORK' });
    x.dispose();
  } finally {
    server.close();
  }
});

test('bad model files are refused with BAD_MODEL or MODEL_NOT_FOUND', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-io-'));
  const good = join(root, 'good');
  await saveModel(await grafted(), good, meta());
  const json = await readFile(join(good, 'model.json'), 'utf8');
  const weights = await readFile(join(good, 'weights.bin'));
  const cases: Array<[string, string | null, Uint8Array | null, string]> = [
    ['garbage-json', '{"modelTopology": ', weights, 'BAD_MODEL'],
    ['no-topology', '{"weightsManifest": []}', weights, 'BAD_MODEL'],
    ['truncated-weights', json, weights.subarray(0, weights.length - 8), 'BAD_MODEL'],
    ['missing-weights', json, null, 'BAD_MODEL'],
    ['unknown-layer', json.replace(/"class_name":"Activation"/, '"class_name":"MyCustomLayer"'), weights, 'BAD_MODEL'],
  ];
  for (const [name, modelJson, w, code] of cases) {
    const dir = join(root, name);
    await mkdir(dir);
    if (modelJson !== null) await writeFile(join(dir, 'model.json'), modelJson);
    if (w) await writeFile(join(dir, 'weights.bin'), w);
    await assert.rejects(loadModel(dir), (e: Error & { code?: string }) => e.code === code && (name !== 'unknown-layer' || /MyCustomLayer/.test(e.message)), name);
  }
  await assert.rejects(loadModel(join(root, 'nope')), { code: 'MODEL_NOT_FOUND' });
});

test('a failed save leaves the existing model untouched', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-io-'));
  const dir = join(root, 'model');
  await saveModel(await grafted(), dir, meta());
  const before = await readFile(join(dir, 'weights.bin'));
  // A file name that cannot be created (a directory is in the way) makes the write fail midway.
  await assert.rejects(writeDirAtomic(dir, { 'model.json': '{}', 'sub/x.bin': new Uint8Array(4) }, { replace: true }), { code: 'WRITE_FAILED' });
  assert.deepEqual(await readFile(join(dir, 'weights.bin')), before);
  assert.deepEqual((await readdir(root)).sort(), ['model'], 'no temporary directories left behind');
  if (process.getuid?.() !== 0) {
    await chmod(root, 0o500);
    await assert.rejects(saveModel(await grafted(), dir, meta()), { code: 'WRITE_FAILED' });
    await chmod(root, 0o700);
    assert.deepEqual(await readFile(join(dir, 'weights.bin')), before);
  }
});

test('saveModel, called from the library, never replaces what Graft did not write: the current folder, a foreign folder or file, a symlink, a Graft model with the user\'s files in it', async () => {
  const model = await grafted();
  const root = await mkdtemp(join(tmpdir(), 'graft-io-safe-'));
  const { symlink, stat } = await import('node:fs/promises');
  const foreign = join(root, 'notes');
  await mkdir(foreign);
  await writeFile(join(foreign, 'keep.txt'), 'mine');
  const file = join(root, 'afile.txt');
  await writeFile(file, 'mine too');
  const link = join(root, 'link');
  await symlink(foreign, link);
  const mixed = join(root, 'model');
  await saveModel(model, mixed, meta());
  await writeFile(join(mixed, 'notes.txt'), 'the user\'s');
  const cwd = process.cwd();
  process.chdir(foreign);
  try {
    await assert.rejects(saveModel(model, '.', meta()), /the current folder/);
  } finally {
    process.chdir(cwd);
  }
  for (const [dir, why] of [[foreign, /no Graft model/], [file, /is a file/], [link, /symbolic link/], [mixed, /Graft did not write/]] as const) {
    await assert.rejects(saveModel(model, dir, meta()), (e: Error & { code?: string }) => e.code === 'OUT_NOT_SAFE' && why.test(e.message), dir);
  }
  assert.equal(await readFile(join(foreign, 'keep.txt'), 'utf8'), 'mine');
  assert.equal(await readFile(file, 'utf8'), 'mine too');
  assert.ok((await stat(link)).isDirectory());
  assert.equal(await readFile(join(mixed, 'notes.txt'), 'utf8'), 'the user\'s');
  // Its own model folder, and nothing else in it: replaced.
  const own = join(root, 'own');
  await saveModel(model, own, meta());
  await saveModel(model, own, meta());
  assert.deepEqual((await readdir(own)).sort(), ['graft.json', 'model.json', 'weights.bin']);
});

test('the public writers replace only what they may: never the current folder, a foreign folder or file, a folder for a file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-io-'));
  const work = join(root, 'work');
  await mkdir(work);
  await writeFile(join(work, 'mine.txt'), 'a user file');
  const cwd = process.cwd();
  process.chdir(work);
  try {
    // writeDirAtomic('.') and ('') emptied the current folder.
    for (const d of ['.', '', work, root]) await assert.rejects(writeDirAtomic(d, { 'a.json': '{}' }), { code: 'OUT_NOT_SAFE' }, JSON.stringify(d));
    assert.deepEqual(await readdir(work), ['mine.txt']);
  } finally {
    process.chdir(cwd);
  }
  // A folder with files this write does not hold is refused, and left as it was.
  await assert.rejects(writeDirAtomic(work, { 'a.json': '{}' }), (e: Error & { code?: string }) => e.code === 'OUT_NOT_SAFE' && /mine\.txt/.test(e.message));
  assert.equal(await readFile(join(work, 'mine.txt'), 'utf8'), 'a user file');
  // Its own files again, or an empty or new folder: written.
  const out = join(root, 'out');
  await writeDirAtomic(out, { 'a.json': '1' });
  await writeDirAtomic(out, { 'a.json': '2' });
  assert.equal(await readFile(join(out, 'a.json'), 'utf8'), '2');
  await assert.rejects(writeDirAtomic(join(work, 'mine.txt'), { 'a.json': '{}' }), { code: 'OUT_NOT_SAFE' });
  // writeFileAtomic: an existing file only with { replace: true }; a folder never.
  await assert.rejects(writeFileAtomic(join(work, 'mine.txt'), 'gone'), { code: 'OUT_NOT_SAFE' });
  assert.equal(await readFile(join(work, 'mine.txt'), 'utf8'), 'a user file');
  await assert.rejects(writeFileAtomic(work, 'x', { replace: true }), { code: 'OUT_NOT_SAFE' });
  await writeFileAtomic(join(root, 'new.txt'), 'one');
  await writeFileAtomic(join(root, 'new.txt'), 'two', { replace: true });
  assert.equal(await readFile(join(root, 'new.txt'), 'utf8'), 'two');
});
