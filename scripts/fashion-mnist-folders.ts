// Writes Fashion-MNIST (Debian's dataset-fashion-mnist: gzip IDX files in
// /usr/share/datasets/fashion-mnist) as PNG class folders, the layout graft train and
// graft compare read: <out>/train/<class>/<n>.png and <out>/test/<class>/<n>.png.
//
//   npm run data:fashion -- [--out data/fashion-mnist] [--per-class N] [--test-per-class N]
//
// Install the data first: apt-get install --no-install-recommends dataset-fashion-mnist

import { gunzipSync } from 'node:zlib';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { parseIdx } from '../src/data/idx.js';

const CLASSES = ['T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle_boot'];
const SRC = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';

async function idx(name: string) {
  const path = join(SRC, name);
  let gz: Buffer;
  try {
    gz = await readFile(path);
  } catch {
    throw new Error(`${path} is missing. Install it: apt-get install --no-install-recommends dataset-fashion-mnist (or set FASHION_MNIST_DIR).`);
  }
  return parseIdx(gunzipSync(gz), path);
}

async function writeSplit(prefix: string, out: string, perClass: number): Promise<number> {
  const images = await idx(`${prefix}-images-idx3-ubyte.gz`);
  const labels = await idx(`${prefix}-labels-idx1-ubyte.gz`);
  const [n, h, w] = images.dims;
  const taken = CLASSES.map(() => 0);
  for (const c of CLASSES) await mkdir(join(out, c), { recursive: true });
  let written = 0;
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const y = labels.data[i];
    if (taken[y] >= perClass) continue;
    taken[y]++;
    const px = Buffer.from(images.data.subarray(i * h * w, (i + 1) * h * w));
    jobs.push(sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer().then((b) => writeFile(join(out, CLASSES[y], `${i}.png`), b)));
    written++;
    if (jobs.length >= 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return written;
}

const { values } = parseArgs({ options: { out: { type: 'string' }, 'per-class': { type: 'string' }, 'test-per-class': { type: 'string' } } });
const out = values.out ?? 'data/fashion-mnist';
const t0 = Date.now();
const train = await writeSplit('train', join(out, 'train'), Number(values['per-class'] ?? Infinity));
const test = await writeSplit('t10k', join(out, 'test'), Number(values['test-per-class'] ?? Infinity));
console.log(`wrote ${train} training and ${test} test images as PNG class folders under ${out}/ in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
