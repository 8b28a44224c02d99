// npm run bench:data: how fast image files become model inputs (read, decode, EXIF, resize,
// to RGB, preprocessed into a batch tensor), in parallel and on one file at a time, against
// the forward-pass rate of the body that consumes them (mobilenet-v2 cut at
// block_13_expand_relu). The input pipeline must not be the bottleneck. Last line: JSON.

import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { cutBody } from '../src/model/cut.js';
import { initBackend } from '../src/engine/backend.js';
import { loadImageFolder } from '../src/data/images.js';
import { loadModel } from '../src/model/load.js';
import { batchTensor } from '../src/data/preprocess.js';
import { makeRng } from '../src/data/random.js';

const FILES = Number(process.env.BENCH_FILES ?? 240);

/** Photo-like JPEGs: 640x480, smooth colour fields plus noise, some with EXIF rotation. */
async function makePhotos(dir: string): Promise<void> {
  const rng = makeRng(1);
  for (let i = 0; i < FILES; i++) {
    const cls = join(dir, `c${i % 4}`);
    await mkdir(cls, { recursive: true });
    const w = 640;
    const h = 480;
    const px = Buffer.alloc(w * h * 3);
    const a = rng() * 255;
    const b = rng() * 255;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      px[o] = (a + x / 3) % 256;
      px[o + 1] = (b + y / 2) % 256;
      px[o + 2] = (rng() * 64 + (x ^ y)) % 256;
    }
    let img = sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 });
    if (i % 5 === 0) img = img.withMetadata({ orientation: 6 });
    await writeFile(join(cls, `${i}.jpg`), await img.toBuffer());
  }
}

async function pipelineRate(dir: string, size: number, concurrency: number): Promise<number> {
  const t0 = performance.now();
  const d = await loadImageFolder(dir, { size: [size, size], channels: 3, concurrency });
  const p = { inputShape: [size, size, 3], scale: 1 / 255 };
  for (let i = 0; i < d.labels.length; i += 32) {
    const ix = Array.from({ length: Math.min(32, d.labels.length - i) }, (_, k) => i + k);
    batchTensor(d, ix, p).dispose();
  }
  return d.labels.length / ((performance.now() - t0) / 1000);
}

async function forwardRate(size: number): Promise<number> {
  const base = await loadModel('mobilenet-v2', size === 224 ? {} : { inputSize: [size, size] });
  const body = cutBody(base.model, 'block_13_expand_relu').model;
  const x = tf.randomUniform([32, size, size, 3]);
  tf.tidy(() => body.predict(x));
  const reps = size === 224 ? 2 : 4;
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) {
    const y = body.predict(x) as tf.Tensor;
    await y.data();
    y.dispose();
  }
  x.dispose();
  return (32 * reps) / ((performance.now() - t0) / 1000);
}

const backend = await initBackend();
const dir = await mkdtemp(join(tmpdir(), 'graft-bench-data-'));
try {
  await makePhotos(dir);
  const cores = availableParallelism();
  const results: Record<string, { parallel: number; oneAtATime: number; forward: number; ratioVsForward: number; speedupParallel: number }> = {};
  for (const size of [96, 224]) {
    const parallel = await pipelineRate(dir, size, cores * 2);
    const oneAtATime = await pipelineRate(dir, size, 1);
    const forward = await forwardRate(size);
    results[`${size}x${size}`] = {
      parallel: +parallel.toFixed(1), oneAtATime: +oneAtATime.toFixed(1), forward: +forward.toFixed(1),
      ratioVsForward: +(parallel / forward).toFixed(2), speedupParallel: +(parallel / oneAtATime).toFixed(2),
    };
    console.log(`${size}x${size}: ${parallel.toFixed(0)} img/s decoded+resized+preprocessed (${oneAtATime.toFixed(0)} one at a time); body forward ${forward.toFixed(0)} img/s on ${backend.name}`);
  }
  console.log(JSON.stringify({
    bench: 'data', files: FILES, source: '640x480 JPEG, 1 in 5 with EXIF orientation 6', cores, uvThreadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
    backend: backend.name, body: 'mobilenet-v2 cut at block_13_expand_relu, batch 32', imagesPerSecond: results,
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
