// Fuzz: a few hundred seeded corruptions of model.json, weight shards, CSV and IDX files, and
// of uploaded images' bytes. Each must end in a GraftError or a clean load: no other
// exception, no hang, nothing written, and an existing file beside them untouched.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraftError, initBackend, loadCsv, loadIdxDataset, loadModel, parseIdx } from '../../src/index.js';
import { makeRng, type Rng } from '../../src/data/random.js';
import { JobRunner } from '../../src/web/jobs.js';
import { Catalog } from '../../src/web/catalog.js';

const zoo = fileURLToPath(new URL('../../../zoo/digits-cnn/', import.meta.url));
const TIMEOUT_MS = 10000;

type Outcome = 'graft-error' | 'ok';

async function outcome(work: () => Promise<unknown>, what: string): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`hang: ${what}`)), TIMEOUT_MS); });
  try {
    await Promise.race([work(), timeout]);
    return 'ok';
  } catch (e) {
    if (e instanceof GraftError) return 'graft-error';
    throw new Error(`${what}: not a GraftError: ${(e as Error).stack}`);
  } finally {
    clearTimeout(timer);
  }
}

function truncate(buf: Buffer, rng: Rng): Buffer {
  return buf.subarray(0, Math.floor(rng() * buf.length));
}

function flip(buf: Buffer, rng: Rng, n: number): Buffer {
  const out = Buffer.from(buf);
  for (let i = 0; i < n; i++) out[Math.floor(rng() * out.length)] = Math.floor(rng() * 256);
  return out;
}

function garbage(rng: Rng, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rng() * 256)));
}

/** Replaces one random value deep in a JSON document with a value of the wrong type. */
function wrongType(doc: unknown, rng: Rng): unknown {
  const copy = JSON.parse(JSON.stringify(doc));
  const paths: Array<[Record<string, unknown>, string]> = [];
  const walk = (node: unknown) => {
    if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
        paths.push([node as Record<string, unknown>, k]);
        walk(v);
      }
    }
  };
  walk(copy);
  const [parent, key] = paths[Math.floor(rng() * paths.length)];
  const choices = [null, 'x', -1, 0, [], {}, true, [null], 3.5];
  parent[key] = choices[Math.floor(rng() * choices.length)];
  return copy;
}

async function snapshotDir(dir: string): Promise<string> {
  const names = (await readdir(dir)).sort();
  return JSON.stringify(await Promise.all(names.map(async (n) => [n, (await readFile(join(dir, n))).toString('base64')])));
}

test('fuzzed model files end in GraftError or load, never crash, hang or write', async () => {
  await initBackend();
  const json = await readFile(join(zoo, 'model.json'));
  const weights = await readFile(join(zoo, 'weights.bin'));
  const doc = JSON.parse(json.toString('utf8'));
  const rng = makeRng(2026);
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-'));
  await writeFile(join(dir, 'existing.txt'), 'keep me');
  const cases: Array<[string, Buffer, Buffer]> = [];
  for (let i = 0; i < 60; i++) cases.push([`truncated model.json ${i}`, truncate(json, rng), weights]);
  for (let i = 0; i < 50; i++) cases.push([`flipped model.json ${i}`, flip(json, rng, 1 + Math.floor(rng() * 8)), weights]);
  for (let i = 0; i < 20; i++) cases.push([`garbage model.json ${i}`, garbage(rng, Math.floor(rng() * 4000)), weights]);
  for (let i = 0; i < 60; i++) cases.push([`wrong-typed model.json ${i}`, Buffer.from(JSON.stringify(wrongType(doc, rng))), weights]);
  for (let i = 0; i < 30; i++) cases.push([`truncated weights ${i}`, json, truncate(weights, rng)]);
  for (let i = 0; i < 10; i++) cases.push([`extended weights ${i}`, json, Buffer.concat([weights, garbage(rng, 1 + Math.floor(rng() * 64))])]);
  const counts = { 'graft-error': 0, ok: 0 };
  for (const [what, m, w] of cases) {
    const modelDir = join(dir, 'model');
    await rm(modelDir, { recursive: true, force: true });
    await mkdir(modelDir);
    await writeFile(join(modelDir, 'model.json'), m);
    await writeFile(join(modelDir, 'weights.bin'), w);
    const before = await snapshotDir(modelDir);
    if (process.env.GRAFT_FUZZ_TRACE) console.error(what);
    counts[await outcome(() => loadModel(modelDir), what)]++;
    assert.equal(await snapshotDir(modelDir), before, `${what}: files changed`);
  }
  assert.equal(await readFile(join(dir, 'existing.txt'), 'utf8'), 'keep me');
  assert.ok(counts['graft-error'] >= 200, `most cases must be refused: ${JSON.stringify(counts)}`);
  await rm(dir, { recursive: true, force: true });
});

test('fuzzed CSV and IDX files end in GraftError or a consistent dataset', async () => {
  const rng = makeRng(7);
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-'));
  const csv = Buffer.from(`a,b,c,label\n${Array.from({ length: 30 }, (_, i) => `${i},${i * 2},${(i % 7) / 3},${i % 3 === 0 ? 'x' : 'y'}`).join('\n')}\n`);
  const idxHead = (dims: number[]) => { const h = Buffer.alloc(4 + 4 * dims.length); h[2] = 8; h[3] = dims.length; dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i)); return h; };
  const images = Buffer.concat([idxHead([6, 2, 2]), garbage(rng, 24)]);
  const labels = Buffer.concat([idxHead([6]), Buffer.from([1, 2, 1, 2, 1, 2])]);
  let errors = 0;
  let total = 0;
  const check = async (what: string, work: () => Promise<{ x: { length: number }; labels: Int32Array; sampleShape: number[]; classNames: string[] }>) => {
    total++;
    let result: Awaited<ReturnType<typeof work>> | undefined;
    const o = await outcome(async () => { result = await work(); }, what);
    if (o === 'graft-error') { errors++; return; }
    const size = result!.sampleShape.reduce((a, b) => a * b, 1);
    assert.equal(result!.x.length, result!.labels.length * size, `${what}: inconsistent shapes`);
    assert.ok(result!.labels.every((y) => y >= 0 && y < result!.classNames.length), `${what}: label out of range`);
  };
  for (let i = 0; i < 40; i++) {
    const p = join(dir, `t${i}.csv`);
    await writeFile(p, i < 15 ? truncate(csv, rng) : i < 30 ? flip(csv, rng, 3) : garbage(rng, 200));
    await check(`csv ${i}`, () => loadCsv(p));
  }
  for (let i = 0; i < 40; i++) {
    const ip = join(dir, `i${i}-images-idx3-ubyte`);
    const lp = join(dir, `i${i}-labels-idx1-ubyte`);
    await writeFile(ip, i < 15 ? truncate(images, rng) : i < 30 ? flip(images.subarray(0, 16), rng, 2) : garbage(rng, 40));
    await writeFile(lp, i % 2 ? truncate(labels, rng) : labels);
    await check(`idx ${i}`, () => loadIdxDataset(ip, lp));
  }
  for (let i = 0; i < 20; i++) assert.throws(() => parseIdx(garbage(rng, i), `g${i}`), GraftError);
  assert.ok(errors >= 50, `most corrupt files are refused: ${errors}/${total}`);
  await rm(dir, { recursive: true, force: true });
});

test('uploaded images with wrong bytes are refused before training', async () => {
  await initBackend();
  const rng = makeRng(11);
  const runner = new JobRunner(new Catalog());
  for (let i = 0; i < 30; i++) {
    const magic = garbage(rng, 12);
    magic[0] = i % 2 ? 0x89 : magic[0]; // half of them nearly PNG
    const image = { magic: magic.toString('base64'), pixels: new Array(784).fill(0) };
    await assert.rejects(runner.submit({ base: 'digits-cnn', classes: [{ name: 'a', images: [image] }, { name: 'b', images: [image] }] }), { code: 'BAD_IMAGE' });
  }
});
