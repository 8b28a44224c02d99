import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeImage, loadImageFolder, shortReason, splitFolders } from './images.js';
import { assertTrainable, classCounts, concat, stratifiedSplit, subset } from './dataset.js';
import { DiskSamples } from './disk-samples.js';
import { batchValues } from './preprocess.js';
import { augmentedViews } from './augment.js';
import { featureKey } from '../train/feature-cache.js';
import { loadData } from './load.js';
import { GraftError } from '../errors.js';

/** A w x h RGB image: left half `left`, right half `right`. */
function halves(w: number, h: number, left: number[], right: number[]): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set(x < w / 2 ? left : right, (y * w + x) * 3);
  return px;
}

const RED = [255, 0, 0];
const BLUE = [0, 0, 255];
const at = (p: Uint8Array, w: number, x: number, y: number, c = 3) => Array.from(p.subarray((y * w + x) * c, (y * w + x) * c + c));
const near = (a: number[], b: number[], tol = 40) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

test('decodeImage applies EXIF orientation', async () => {
  const raw = halves(40, 20, RED, BLUE);
  const plain = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  const rotated = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
  const a = await decodeImage(plain, { size: [8, 8], fit: 'stretch' });
  assert.ok(near(at(a, 8, 0, 0), RED) && near(at(a, 8, 7, 0), BLUE), 'no EXIF: red left, blue right');
  const b = await decodeImage(rotated, { size: [8, 8], fit: 'stretch' });
  // Orientation 6 = turn 90 degrees clockwise to display: the left half goes on top.
  assert.ok(near(at(b, 8, 0, 0), RED) && near(at(b, 8, 7, 0), RED), `EXIF 6: top row red, got ${at(b, 8, 7, 0)}`);
  assert.ok(near(at(b, 8, 0, 7), BLUE), `EXIF 6: bottom row blue, got ${at(b, 8, 0, 7)}`);
});

test('decodeImage: grey to RGB, RGBA over white, RGB to grey, crop and pad', async () => {
  const grey = await sharp(Buffer.alloc(10 * 10, 100), { raw: { width: 10, height: 10, channels: 1 } }).png().toBuffer();
  const g = await decodeImage(grey, { size: [4, 4] });
  assert.equal(g.length, 4 * 4 * 3);
  assert.deepEqual(at(g, 4, 2, 2), [100, 100, 100]);
  const clear = await sharp(Buffer.alloc(10 * 10 * 4, 0), { raw: { width: 10, height: 10, channels: 4 } }).png().toBuffer();
  assert.deepEqual(at(await decodeImage(clear, { size: [4, 4] }), 4, 1, 1), [255, 255, 255], 'transparent pixels become white');
  const red = await sharp(halves(40, 20, RED, RED), { raw: { width: 40, height: 20, channels: 3 } }).png().toBuffer();
  const one = await decodeImage(red, { size: [4, 4], channels: 1 });
  assert.equal(one.length, 16, 'one channel for a grey model');
  assert.ok(one[0] > 30 && one[0] < 200, `red in grey is a middle grey: ${one[0]}`);
  const crop = await decodeImage(red, { size: [8, 8], fit: 'crop' });
  assert.deepEqual(at(crop, 8, 0, 0), RED, 'crop fills the square');
  const pad = await decodeImage(red, { size: [8, 8], fit: 'pad' });
  assert.deepEqual(at(pad, 8, 4, 0), [0, 0, 0], 'pad: black bars above and below');
  assert.deepEqual(at(pad, 8, 4, 4), RED);
});

test('shortReason: every line of a libvips error in one sentence, whatever their order', () => {
  // The order of libvips' lines varies between runs: CI once saw the header line alone first.
  const cases: [string, RegExp][] = [
    ['Input buffer has corrupt header: VipsJpeg: premature end of JPEG image\nVipsJpeg: Bogus marker length\nVipsJpeg: premature end of JPEG image', /^has corrupt header; premature end of JPEG image; Bogus marker length$/],
    ['Input buffer has corrupt header:\nVipsJpeg: premature end of JPEG image\n', /^has corrupt header; premature end of JPEG image$/],
    ['Input buffer contains unsupported image format', /^contains unsupported image format$/],
  ];
  for (const [m, want] of cases) assert.match(shortReason(new Error(m)), want, m);
  assert.equal(shortReason(new Error('\n')), 'cannot be decoded');
  assert.ok(shortReason(new Error('x'.repeat(500))).length <= 200);
});

test('loadImageFolder: JPEG, PNG, WebP and GIF; bad files listed with reasons and skipped', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-img-'));
  try {
    const img = (rgb: number[]) => sharp(halves(12, 12, rgb, rgb), { raw: { width: 12, height: 12, channels: 3 } });
    await mkdir(join(root, 'red', 'nested'), { recursive: true });
    await mkdir(join(root, 'blue'));
    await writeFile(join(root, 'red', 'a.jpg'), await img(RED).jpeg().toBuffer());
    await writeFile(join(root, 'red', 'b.webp'), await img(RED).webp().toBuffer());
    await writeFile(join(root, 'red', 'nested', 'c.gif'), await img(RED).gif().toBuffer());
    await writeFile(join(root, 'blue', 'a.png'), await img(BLUE).png().toBuffer());
    await writeFile(join(root, 'blue', 'b.JPEG'), await img(BLUE).jpeg().toBuffer());
    const full = await img(BLUE).resize(64, 64).jpeg().toBuffer();
    await writeFile(join(root, 'blue', 'truncated.jpg'), full.subarray(0, Math.floor(full.length / 2)));
    await writeFile(join(root, 'blue', 'empty.png'), Buffer.alloc(0));
    await writeFile(join(root, 'blue', 'text.jpg'), 'this is not a picture');
    await writeFile(join(root, 'blue', 'notes.txt'), 'hello');
    await writeFile(join(root, 'blue', '.DS_Store'), 'hidden files are ignored');
    await writeFile(join(root, 'stray.png'), await img(RED).png().toBuffer());
    const d = await loadData(root, { image: { size: [6, 6], channels: 3 } });
    assert.deepEqual(d.classNames, ['blue', 'red']);
    assert.deepEqual(classCounts(d), [2, 3]);
    assert.deepEqual(d.sampleShape, [6, 6, 3]);
    assert.ok(d.x instanceof Uint8Array);
    for (let i = 0; i < d.labels.length; i++) {
      assert.ok(near(at(d.x as Uint8Array, 6, 3, 3 + i * 6), d.labels[i] === 0 ? BLUE : RED), `sample ${i} has its class colour`);
    }
    const reasons = Object.fromEntries(d.skipped!.map((s) => [s.path.split('/').pop(), s.reason]));
    assert.deepEqual(Object.keys(reasons).sort(), ['empty.png', 'notes.txt', 'stray.png', 'text.jpg', 'truncated.jpg']);
    assert.match(reasons['empty.png'], /empty/);
    assert.match(reasons['notes.txt'], /unsupported/);
    assert.match(reasons['stray.png'], /class folder/);
    assert.match(reasons['truncated.jpg'], /truncat|premature|end/i);
    assert.match(reasons['text.jpg'], /unsupported image format|not a known/i);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('image folders: split folders are found; an empty class, one class or no images stop before training', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-img-'));
  try {
    const png = await sharp(Buffer.alloc(4 * 4 * 3, 9), { raw: { width: 4, height: 4, channels: 3 } }).png().toBuffer();
    for (const split of ['train', 'val', 'test']) for (const c of ['x', 'y']) {
      await mkdir(join(root, split, c), { recursive: true });
      if (!(split === 'train' && c === 'y')) await writeFile(join(root, split, c, '1.png'), png);
    }
    const s = await splitFolders(root);
    assert.deepEqual(s, { train: join(root, 'train'), validation: join(root, 'val'), test: join(root, 'test') });
    assert.equal(await splitFolders(join(root, 'train')), undefined);
    const train = await loadImageFolder(s!.train, { size: [4, 4] });
    assert.throws(() => assertTrainable(train), (e: GraftError) => e.code === 'BAD_DATA' && /y/.test(e.message));
    await writeFile(join(root, 'train', 'y', 'broken.png'), 'nope');
    const still = await loadImageFolder(s!.train, { size: [4, 4] });
    assert.equal(still.skipped!.length, 1);
    assert.throws(() => assertTrainable(still), /without samples: y/);
    assert.throws(() => assertTrainable(train), /samples of 1 class only \(x\)/);
    await mkdir(join(root, 'empty'));
    await assert.rejects(loadImageFolder(join(root, 'empty'), { size: [4, 4] }), (e: GraftError) => e.code === 'BAD_DATA' && /no class sub-folders/.test(e.message));
    await assert.rejects(loadData(root + '/nothing-here', { image: { size: [4, 4], channels: 3 } }), /does not exist/);
    await assert.rejects(loadData(root), /does not take images/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a streamed image folder reads per batch from disk the same values, labels and views as one in memory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-stream-'));
  try {
    for (const [name, colour] of [['red', RED], ['blue', BLUE]] as const) {
      await mkdir(join(dir, name));
      for (let i = 0; i < 7; i++) {
        const px = halves(12, 10, colour, [i * 30, 255 - i * 30, 60]);
        await sharp(px, { raw: { width: 12, height: 10, channels: 3 } }).png().toFile(join(dir, name, `${i}.png`));
      }
    }
    await writeFile(join(dir, 'red', 'broken.png'), 'not a png');
    const mem = await loadImageFolder(dir, { size: [8, 8], stream: false });
    const disk = await loadImageFolder(dir, { size: [8, 8], stream: true });
    assert.ok(mem.x instanceof Uint8Array);
    assert.ok(disk.x instanceof DiskSamples, 'stream: true keeps the images on disk');
    assert.equal(disk.x.length, mem.x.length);
    assert.deepEqual(disk.labels, mem.labels);
    assert.deepEqual(disk.skipped, mem.skipped, 'the broken file is skipped either way');
    const all = Array.from({ length: mem.labels.length }, (_, i) => i);
    const order = [...all].reverse();
    assert.deepEqual(batchValues(disk, order, undefined), batchValues(mem, order, undefined), 'a batch in any order reads the same values');
    assert.throws(() => (disk.x as DiskSamples).subarray(1, 10), /whole rows/);
    // Subsets, splits and concatenations stay on disk (views), with the same values.
    const { rest, split } = stratifiedSplit(disk, 0.3, 4);
    const memSplit = stratifiedSplit(mem, 0.3, 4);
    assert.ok(rest.x instanceof DiskSamples && split.x instanceof DiskSamples);
    assert.deepEqual(split.x.subarray(), memSplit.split.x);
    const both = concat(subset(disk, [0, 1]), subset(disk, [5]));
    assert.ok(both.x instanceof DiskSamples);
    assert.deepEqual(both.x.subarray(), concat(subset(mem, [0, 1]), subset(mem, [5])).x);
    // The feature cache sees the same data whether it is streamed or not.
    assert.equal(featureKey('body', disk, undefined), featureKey('body', mem, undefined));
    assert.notEqual(featureKey('body', subset(disk, [0]), undefined), featureKey('body', disk, undefined));
    const o = { crop: 0.8, flip: true, rotate: 5, jitter: 0.1 };
    const viewsDisk = augmentedViews(disk, 3, o, 9);
    const viewsMem = augmentedViews(mem, 3, o, 9);
    assert.ok(viewsDisk.x instanceof DiskSamples, 'augmented views of streamed data go to disk too');
    assert.deepEqual(viewsDisk.x.subarray(), viewsMem.x);
    assert.deepEqual(viewsDisk.labels, viewsMem.labels);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
