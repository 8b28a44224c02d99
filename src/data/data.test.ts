import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alignClasses, loadData } from './load.js';
import { assertTrainable, classCounts, stratifiedSplit, takePerClass } from './dataset.js';
import { loadIdxDataset, parseIdx } from './idx.js';
import { loadMnist } from './mnist.js';
import { parseCsv } from './csv.js';
import { standardization } from './preprocess.js';

function idx(dims: number[], values: number[], type = 0x08): Uint8Array {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = type;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(values)]);
}

test('IDX: a valid file parses, and each kind of damage is a BAD_DATA error', () => {
  const ok = parseIdx(idx([2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]), 'ok');
  assert.deepEqual(ok.dims, [2, 2, 2]);
  assert.deepEqual(Array.from(ok.data), [1, 2, 3, 4, 5, 6, 7, 8]);
  const bad: Array<[string, Uint8Array, RegExp]> = [
    ['empty', new Uint8Array(0), /only 0 bytes/],
    ['gzip', new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0]), /gzip/],
    ['magic', new Uint8Array([1, 0, 8, 1, 0, 0, 0, 1, 5]), /magic/],
    ['float', idx([1], [0, 0, 0, 0], 0x0d), /element type/],
    ['truncated header', idx([2, 2], []).subarray(0, 9), /header is truncated/],
    ['truncated data', idx([2, 2, 2], [1, 2, 3]), /promises 8 values/],
  ];
  for (const [name, buf, re] of bad) assert.throws(() => parseIdx(buf, name), (e: Error & { code?: string }) => e.code === 'BAD_DATA' && re.test(e.message), name);
});

test('IDX datasets: labels pair with images, classes are filtered and renumbered', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-data-'));
  await writeFile(join(dir, 'x-images-idx3-ubyte'), idx([4, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7]));
  await writeFile(join(dir, 'x-labels-idx1-ubyte'), idx([4], [7, 3, 7, 9]));
  const d = await loadIdxDataset(join(dir, 'x-images-idx3-ubyte'), undefined, [7, 9]);
  assert.deepEqual(d.classNames, ['7', '9']);
  assert.deepEqual(Array.from(d.labels), [0, 0, 1]);
  assert.deepEqual(d.sampleShape, [1, 2, 1]);
  assert.deepEqual(Array.from(d.x as Float32Array), [0, 1, 4, 5, 6, 7]);
  await writeFile(join(dir, 'y-labels-idx1-ubyte'), idx([3], [1, 2, 3]));
  await assert.rejects(loadIdxDataset(join(dir, 'x-images-idx3-ubyte'), join(dir, 'y-labels-idx1-ubyte')), { code: 'BAD_DATA' });
  await assert.rejects(loadData(join(dir, 'nothing.bin')), { code: 'BAD_DATA' });
});

test('MNIST from the offline package: digit ranges, counts and pixel range', async () => {
  const d = await loadMnist('test', [5, 6, 7, 8, 9]);
  assert.equal(d.labels.length, 4861);
  assert.deepEqual(d.classNames, ['5', '6', '7', '8', '9']);
  assert.deepEqual(d.sampleShape, [28, 28, 1]);
  assert.equal(Math.max(...d.x.subarray(0, 784)), 255);
  const small = takePerClass(d, 10, 1);
  assert.deepEqual(classCounts(small), [10, 10, 10, 10, 10]);
  assert.deepEqual(classCounts(takePerClass(d, 10, 1)), classCounts(small));
});

test('CSV: numeric features and a named label column; clear errors with line and column', () => {
  const d = parseCsv('a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n', 'pets.csv', { labelColumn: 'kind' });
  assert.deepEqual(d.classNames, ['cat', 'dog']);
  assert.deepEqual(Array.from(d.labels), [0, 1, 0]);
  assert.deepEqual(Array.from(d.x as Float32Array), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(d.featureNames, ['a', 'b']);
  assert.throws(() => parseCsv('a,b,label\n1,x,0\n', 'f.csv'), /line 2, column 2 \("b"\): "x" is not a finite number/);
  assert.throws(() => parseCsv('a,b,label\n1,2\n', 'f.csv'), /line 2 has 2 cells/);
  assert.throws(() => parseCsv('a,b\n1,2\n', 'f.csv', { labelColumn: 'y' }), /no column "y"/);
  assert.throws(() => parseCsv('a,b\n', 'f.csv'), /no data rows/);
  const numericLabels = parseCsv('x,label\n1,10\n2,9\n3,10\n', 'n.csv');
  assert.deepEqual(numericLabels.classNames, ['9', '10'], 'numeric labels sort as numbers');
});

test('splits are stratified and repeatable; standardisation uses the data given', () => {
  const d = parseCsv(`f,label\n${Array.from({ length: 40 }, (_, i) => `${i},${i % 4 === 0 ? 'a' : 'b'}`).join('\n')}\n`, 's.csv');
  const { rest, split } = stratifiedSplit(d, 0.2, 5);
  assert.deepEqual(classCounts(split), [2, 6]);
  assert.deepEqual(classCounts(rest), [8, 24]);
  assert.deepEqual(Array.from(stratifiedSplit(d, 0.2, 5).split.x as Float32Array), Array.from(split.x as Float32Array));
  const s = standardization(rest);
  const mean = Array.from(rest.x as Float32Array).reduce((a, b) => a + b, 0) / rest.x.length;
  assert.ok(Math.abs(s.mean![0] - mean) < 1e-9);
  assert.throws(() => stratifiedSplit(d, 1.5, 1), { code: 'BAD_OPTION' });
});

test('trainability and class alignment checks', () => {
  const one = parseCsv('f,label\n1,a\n2,a\n', 'one.csv');
  assert.throws(() => assertTrainable(one), (e: Error & { code?: string }) => e.code === 'BAD_DATA' && /at least 2/.test(e.message));
  const d = parseCsv('f,label\n1,b\n2,c\n', 'd.csv');
  assert.deepEqual(Array.from(alignClasses(d, ['a', 'b', 'c']).labels), [1, 2]);
  assert.throws(() => alignClasses(d, ['a', 'b']), { code: 'CLASS_MISMATCH' });
});

test('library loaders refuse bad arguments by name: loadModel(42), an image size of [-1, 32] or NaN, loadMnist("trian"), takePerClass(-1), a head dropout of 5', async () => {
  const { loadModel } = await import('../model/load.js');
  const { loadImageFolder } = await import('./images.js');
  const { loadMnist } = await import('./mnist.js');
  const { takePerClass } = await import('./dataset.js');
  const { buildHead } = await import('../model/head.js');
  const code = (c: string, why: RegExp) => (e: Error & { code?: string }) => e.code === c && why.test(e.message);
  await assert.rejects(loadModel(42 as unknown as string), code('BAD_ARGUMENT', /a string/));
  await assert.rejects(loadImageFolder('.', { size: [-1, 32] }), code('BAD_OPTION', /image size/));
  await assert.rejects(loadImageFolder('.', { size: [NaN, NaN] }), code('BAD_OPTION', /image size/));
  await assert.rejects(loadMnist('trian' as 'train', [1]), code('BAD_OPTION', /split/));
  const d = await loadMnist('test', [1, 2]);
  assert.throws(() => takePerClass(d, -1, 1), code('BAD_OPTION', /per class/));
  assert.throws(() => takePerClass(d, NaN, 1), code('BAD_OPTION', /per class/));
  assert.throws(() => buildHead([null, 4, 4, 8], { numClasses: 3, dropout: 5 }), code('BAD_OPTION', /dropout/));
});
