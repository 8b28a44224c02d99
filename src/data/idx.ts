// IDX files (the MNIST format): a magic number giving the element type and rank, the
// dimensions, then the values. Graft reads unsigned-byte IDX image and label files.

import { READ_LIMITS, readBounded } from './bounded-read.js';
import { errnoWords } from './csv.js';
import { GraftError } from '../errors.js';
import type { Dataset } from './dataset.js';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export function parseIdx(buf: Uint8Array, where: string): IdxArray {
  const bad = (what: string) => new GraftError('BAD_DATA', `${where} is not a valid IDX file: ${what}.`, {
    fix: 'Give an uncompressed IDX file (gunzip *.gz files first).' });
  if (buf.byteLength < 4) throw bad(`only ${buf.byteLength} bytes`);
  if (buf[0] === 0x1f && buf[1] === 0x8b) throw bad('it is gzip-compressed');
  if (buf[0] !== 0 || buf[1] !== 0) throw bad('the magic number does not start with two zero bytes');
  if (buf[2] !== 0x08) throw bad(`element type 0x${buf[2].toString(16)} is not unsigned byte (0x08)`);
  const rank = buf[3];
  if (rank < 1 || rank > 4) throw bad(`rank ${rank} is not between 1 and 4`);
  if (buf.byteLength < 4 + 4 * rank) throw bad('the header is truncated');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const n = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * rank;
  if (buf.byteLength - start !== n) throw bad(`the header promises ${n} values (${dims.join('x')}) but ${buf.byteLength - start} bytes follow`);
  return { dims, data: buf.subarray(start) };
}

export async function readIdx(path: string): Promise<IdxArray> {
  let buf: Buffer;
  try {
    buf = await readBounded(path, { limit: READ_LIMITS.idx, what: 'The IDX file' });
  } catch (cause) {
    if (cause instanceof GraftError) throw cause;
    throw new GraftError('BAD_DATA', `Cannot read ${path}: ${errnoWords(cause)}.`, { fix: 'Check the path and its permissions.', cause });
  }
  return parseIdx(buf, path);
}

/** The conventional labels file next to an images file (train-images-idx3-ubyte -> train-labels-idx1-ubyte). */
export function labelsPathFor(imagesPath: string): string {
  return imagesPath.replace(/images-idx3/, 'labels-idx1').replace(/images/, 'labels');
}

/**
 * An image dataset from IDX images [n, h, w] (or [n, h, w, c]) and labels [n]. Only the
 * classes in `keep` (label values) are kept when given; class names are the label values.
 */
export async function loadIdxDataset(imagesPath: string, labelsPath = labelsPathFor(imagesPath), keep?: number[]): Promise<Dataset> {
  const images = await readIdx(imagesPath);
  const labels = await readIdx(labelsPath);
  if (images.dims.length < 3) {
    throw new GraftError('BAD_DATA', `${imagesPath} has shape ${images.dims.join('x')}; image IDX files are [n, height, width] or [n, height, width, channels].`);
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0]) {
    throw new GraftError('BAD_DATA', `${labelsPath} holds ${labels.dims.join('x')} labels for ${images.dims[0]} images in ${imagesPath}.`, {
      fix: 'Pair each images file with its own labels file (--labels).' });
  }
  const sampleShape = images.dims.length === 3 ? [...images.dims.slice(1), 1] : images.dims.slice(1);
  const values = [...new Set(labels.data)].sort((a, b) => a - b).filter((v) => !keep || keep.includes(v));
  if (keep) {
    const missing = keep.filter((k) => !values.includes(k));
    if (missing.length) throw new GraftError('BAD_DATA', `${labelsPath} has no samples of class ${missing.join(', ')}.`);
  }
  const classOf = new Map(values.map((v, i) => [v, i]));
  const s = sampleShape.reduce((a, b) => a * b, 1);
  const rows: number[] = [];
  labels.data.forEach((v, i) => { if (classOf.has(v)) rows.push(i); });
  const x = new Float32Array(rows.length * s);
  const y = new Int32Array(rows.length);
  rows.forEach((r, i) => {
    x.set(images.data.subarray(r * s, (r + 1) * s), i * s);
    y[i] = classOf.get(labels.data[r])!;
  });
  return { x, sampleShape, labels: y, classNames: values.map(String), source: imagesPath };
}
