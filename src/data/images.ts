// Image folders (one sub-folder per class, as Keras' image_dataset_from_directory and
// torchvision's ImageFolder) and single image files, decoded with sharp (libvips; its
// binaries ship inside npm packages). EXIF orientation is applied, grey and RGBA become the
// model's channel count, images are resized to the model's input by centre crop, padding or
// stretching, and kept as bytes (0-255): the model's own preprocessing runs per batch.
// Files that cannot be used are listed with their reason and skipped, never fatal.

import { DiskSamples } from './disk-samples.js';
import { availableParallelism } from 'node:os';
import { readdir, stat } from 'node:fs/promises';
import { READ_LIMITS, readBounded } from './bounded-read.js';
import { errnoWords } from './csv.js';
import { basename, extname, join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { GraftError } from '../errors.js';
import type { Dataset, SkippedFile } from './dataset.js';
import { makeRng, shuffle } from './random.js';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'];

export type Fit = 'crop' | 'pad' | 'stretch';

export interface ImageOptions {
  /** Output height and width (the model's input). */
  size: [number, number];
  /** 1 (grey) or 3 (RGB): the model's input channels. Default 3. */
  channels?: 1 | 3;
  /** How the aspect ratio is matched: centre crop (default), pad with black, or stretch. */
  fit?: Fit;
  /** Images decoded at once (default: the number of cores). */
  concurrency?: number;
  /** Called after each decoded file, for progress. */
  onFile?: (done: number, total: number) => void;
  /** Decode at most `n` files per class, chosen with `seed` (a quick run on a big folder). */
  perClass?: { n: number; seed: number };
  /**
   * Keep the decoded images on disk and read them per batch (datasets bigger than memory):
   * true, false, or 'auto' (default): when they would take more than IMAGE_DEFAULTS.streamAboveMB.
   */
  stream?: boolean | 'auto';
}

export const IMAGE_DEFAULTS = {
  /** Decoded images above this many MB are streamed from disk ($GRAFT_STREAM_ABOVE_MB). */
  streamAboveMB: Number(process.env.GRAFT_STREAM_ABOVE_MB ?? 2048),
};

export interface DecodedImage {
  pixels: Uint8Array;
}

// Each decode uses one libvips thread; parallelism comes from decoding several files at once
// on libuv's thread pool (UV_THREADPOOL_SIZE, 4 by default, raised by the graft launcher).
sharp.concurrency(1);
sharp.cache(false);

const FIT: Record<Fit, 'cover' | 'contain' | 'fill'> = { crop: 'cover', pad: 'contain', stretch: 'fill' };

export function isImageFile(path: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(path).toLowerCase());
}

/** A path for messages: relative to the working directory when inside it. */
function shown(p: string): string {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
}

export function shortReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  // libvips puts the detail on later lines, in an order that varies from run to run
  // ("has corrupt header:" alone on the first, "VipsJpeg: premature end of JPEG image"
  // after it): keep every distinct line, without the decoder's name, in one sentence.
  const parts: string[] = [];
  for (const line of m.replace(/^Input (buffer|file) /, '').split('\n')) {
    for (const piece of line.split(/:\s+(?=Vips\w+:)/)) {
      const t = piece.replace(/^Vips\w+:\s*/, '').replace(/:\s*$/, '').trim();
      if (t && !parts.includes(t)) parts.push(t);
    }
  }
  const r = parts.slice(0, 3).join('; ');
  return r.length > 200 ? `${r.slice(0, 199)}…` : r || 'cannot be decoded';
}

/** Decodes one image file's bytes to size x size x channels bytes; throws with a short reason. */
export async function decodeImage(bytes: Buffer, o: ImageOptions): Promise<Uint8Array> {
  if (bytes.length === 0) throw new Error('empty file (0 bytes)');
  const [h, w] = o.size;
  const channels = o.channels ?? 3;
  // failOn 'truncated': a cut-off JPEG or PNG is an error, not a half-grey picture.
  let img = sharp(bytes, { failOn: 'truncated', animated: false, limitInputPixels: 268_402_689 })
    .rotate() // EXIF orientation
    .flatten({ background: { r: 255, g: 255, b: 255 } }); // RGBA: composite over white
  img = channels === 1 ? img.greyscale() : img.toColourspace('srgb');
  const { data, info } = await img
    .resize(w, h, { fit: FIT[o.fit ?? 'crop'], position: 'centre', background: { r: 0, g: 0, b: 0 }, kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== w || info.height !== h) throw new Error(`decoded to ${info.width}x${info.height}, expected ${w}x${h}`);
  if (info.channels === channels) return new Uint8Array(data.buffer, data.byteOffset, data.length);
  // sharp keeps one channel for grey input even in sRGB; repeat it.
  const out = new Uint8Array(h * w * channels);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < channels; c++) out[i * channels + c] = data[i * info.channels + Math.min(c, info.channels - 1)];
  return out;
}

interface Found { path: string; label: number }

function pickPerClass(files: Found[], classes: number, n: number, seed: number): Found[] {
  const rng = makeRng(seed);
  const by: Found[][] = Array.from({ length: classes }, () => []);
  for (const f of files) by[f.label].push(f);
  return by.flatMap((b) => shuffle(b, rng).slice(0, n)).sort((a, b) => a.label - b.label || a.path.localeCompare(b.path, 'en', { numeric: true }));
}

/** Every non-hidden file under `dir`, sub-folders included, in natural order. */
export async function walk(dir: string, out: string[] = []): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((cause: NodeJS.ErrnoException) => {
    throw new GraftError('BAD_DATA', `The folder ${dir} cannot be listed: ${errnoWords(cause)}.`, {
      fix: cause.code === 'EACCES' ? `Give yourself read permission (chmod u+rx "${dir}"), or move it out of the data folder.` : 'Check the data folder.', cause });
  });
  entries.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else out.push(p);
  }
  return out;
}

export async function isDir(p: string): Promise<boolean> {
  try { return (await stat(p)).isDirectory(); } catch { return false; }
}

/** The class sub-folders of `root`, in natural order. */
export async function classFolders(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/**
 * `root/train`, `root/val` (or `validation`) and `root/test` when the user split the folders
 * themselves; undefined when `root` holds class folders directly.
 */
export async function splitFolders(root: string): Promise<{ train: string; validation?: string; test?: string } | undefined> {
  const names = await classFolders(root);
  if (!names.includes('train')) return undefined;
  const pick = (...c: string[]) => c.find((n) => names.includes(n));
  const v = pick('val', 'valid', 'validation');
  const t = pick('test');
  const rest = names.filter((n) => !['train', v, t].includes(n));
  if (rest.length) return undefined; // "train" is then just a class name
  return { train: join(root, 'train'), validation: v && join(root, v), test: t && join(root, t) };
}

/** sha1 of a sample's values as the model sees them (decoded, fitted, channels): equal values, equal hash. */
export function pixelHash(v: Uint8Array | Float32Array): string {
  return createHash('sha1').update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).digest('hex');
}

/**
 * Decodes the files, each into its row. With `classNames` (a labelled set), an image that is
 * the same as an earlier one once decoded (a folder loaded twice, a copy in another class) is
 * skipped with its reason: counted twice, it would be weighed twice in training and, split off
 * for testing, scored on an image the model was trained on (the page reported 100% for a model
 * that scored 72% on real test photos).
 */
async function decodeAll(files: Found[], o: ImageOptions, skipped: SkippedFile[], classNames?: string[]): Promise<{ x: Uint8Array | DiskSamples; labels: Int32Array; paths: string[] }> {
  const [h, w] = o.size;
  const per = h * w * (o.channels ?? 3);
  const stream = o.stream === true || ((o.stream ?? 'auto') === 'auto' && (files.length * per) / 1024 ** 2 > IMAGE_DEFAULTS.streamAboveMB);
  // Streamed: each image goes to its row of the file as soon as it is decoded; only the
  // images being decoded are in memory.
  const disk = stream ? DiskSamples.create(per) : undefined;
  // In memory: each image goes straight to its row too (one copy of the data, not two).
  const rows = disk ? undefined : new Uint8Array(files.length * per);
  const decoded: boolean[] = new Array(files.length).fill(false);
  const hashes: string[] = new Array(files.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const f = files[i];
      try {
        const pixels = await decodeImage(await readBounded(f.path, { limit: READ_LIMITS.image, what: 'The image' }), o);
        if (classNames) hashes[i] = pixelHash(pixels);
        if (disk) disk.writeRow(i, pixels);
        else rows!.set(pixels, i * per);
        decoded[i] = true;
      } catch (e) {
        skipped.push({ path: shown(f.path), reason: shortReason(e) });
      }
      o.onFile?.(++done, files.length);
    }
  };
  const k = Math.max(1, Math.min(o.concurrency ?? availableParallelism() * 2, files.length));
  await Promise.all(Array.from({ length: k }, worker));
  let keep = files.map((_, i) => i).filter((i) => decoded[i]);
  if (classNames) {
    // Copies in one class: the first is used, the others named. Copies in several classes: the
    // labels contradict each other and no majority makes one right, so none is used.
    const groups = new Map<string, number[]>();
    for (const i of keep) groups.set(hashes[i], [...(groups.get(hashes[i]) ?? []), i]);
    const drop = new Set<number>();
    for (const g of groups.values()) {
      if (g.length < 2) continue;
      const classes = [...new Set(g.map((i) => files[i].label))];
      if (classes.length > 1) {
        const where = classes.map((c) => `"${classNames[c]}"`).join(' and ');
        for (const i of g) {
          drop.add(i);
          skipped.push({ path: shown(files[i].path), reason: `the same image is in the classes ${where} (${g.filter((j) => j !== i).map((j) => shown(files[j].path)).slice(0, 2).join(', ')}): its labels disagree, so no copy is used; keep it in one class` });
        }
      } else {
        for (const i of g.slice(1)) {
          drop.add(i);
          skipped.push({ path: shown(files[i].path), reason: `a copy of ${shown(files[g[0]].path)} (the same image once decoded): used once` });
        }
      }
    }
    keep = keep.filter((i) => !drop.has(i));
  }
  const labels = Int32Array.from(keep, (i) => files[i].label);
  const paths = keep.map((i) => files[i].path);
  skipped.sort((a, b) => a.path.localeCompare(b.path));
  if (disk) return { x: disk.withRows(keep), labels, paths };
  // Close the gaps of skipped files, in place.
  keep.forEach((i, j) => { if (i !== j) rows!.copyWithin(j * per, i * per, (i + 1) * per); });
  return { x: rows!.subarray(0, keep.length * per), labels, paths };
}

/**
 * Loads a folder of class sub-folders. Unusable files (unreadable, truncated, empty, not an
 * image, outside a class folder) are listed in `skipped` with their reason.
 * `classNames` fixes the class order (e.g. the model's) instead of the folder names.
 */
/** Refuses an image size that is not two whole numbers of at least 1 (a library caller's mistake). */
export function checkImageSize(size: unknown): void {
  if (!Array.isArray(size) || size.length !== 2 || size.some((v) => !Number.isInteger(v) || v < 1 || v > 4096)) {
    throw new GraftError('BAD_OPTION', `The image size must be [height, width], whole numbers from 1 to 4096; got ${JSON.stringify(size)}.`, { fix: 'Use the model input size, e.g. [224, 224].' });
  }
}

export async function loadImageFolder(root: string, o: ImageOptions & { classNames?: string[] }): Promise<Dataset & { files: string[] }> {
  checkImageSize(o.size);
  if (!(await isDir(root))) throw new GraftError('BAD_DATA', `${root} is not a folder.`, { fix: 'Give a folder with one sub-folder of images per class.' });
  const found = await classFolders(root);
  if (!found.length) {
    throw new GraftError('BAD_DATA', `${root} has no class sub-folders.`, {
      fix: `Put the images of each class in their own sub-folder, e.g. ${join(root, 'cat')}/1.jpg and ${join(root, 'dog')}/1.jpg.` });
  }
  const classNames = o.classNames ?? found;
  const skipped: SkippedFile[] = [];
  const files: Found[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (entry.isFile() && !entry.name.startsWith('.')) skipped.push({ path: shown(join(root, entry.name)), reason: 'not inside a class folder' });
  }
  for (const name of found) {
    const label = classNames.indexOf(name);
    const inFolder: string[] = [];
    await walk(join(root, name), inFolder);
    for (const p of inFolder) {
      if (label < 0) skipped.push({ path: shown(p), reason: `class "${name}" is not one of the model's classes` });
      else if (!isImageFile(p)) skipped.push({ path: shown(p), reason: `unsupported file type "${extname(p) || basename(p)}" (use ${IMAGE_EXTENSIONS.join(', ')})` });
      else files.push({ path: p, label });
    }
  }
  const chosen = o.perClass ? pickPerClass(files, classNames.length, o.perClass.n, o.perClass.seed) : files;
  const { x, labels, paths } = await decodeAll(chosen, o, skipped, classNames);
  const [h, w] = o.size;
  return {
    x, labels, classNames, sampleShape: [h, w, o.channels ?? 3], source: root, skipped,
    /** The file of each sample, in order (for predict's output). */
    files: paths,
  };
}

/** One or more single image files (for predict), in the order given. */
export async function loadImageFiles(paths: string[], o: ImageOptions): Promise<Dataset & { files: string[] }> {
  checkImageSize(o.size);
  const skipped: SkippedFile[] = [];
  const files = paths.map((path) => ({ path, label: 0 }));
  const decoded = await decodeAll(files, o, skipped);
  const [h, w] = o.size;
  return {
    x: decoded.x, labels: decoded.labels, classNames: ['?'], sampleShape: [h, w, o.channels ?? 3], source: paths.length === 1 ? paths[0] : `${paths.length} images`, skipped,
    files: decoded.paths,
  };
}

/**
 * Image files with their classes (graft serve's projects), decoded as an image folder is:
 * the same pipeline, skipped files listed with their reason.
 */
export async function loadLabeledImages(files: { path: string; label: number }[], classNames: string[], o: ImageOptions, source: string): Promise<Dataset & { files: string[] }> {
  checkImageSize(o.size);
  const skipped: SkippedFile[] = [];
  const decoded = await decodeAll(files, o, skipped, classNames);
  const [h, w] = o.size;
  return { x: decoded.x, labels: decoded.labels, classNames, sampleShape: [h, w, o.channels ?? 3], source, skipped, files: decoded.paths };
}

/** The image size and channels a model input shape [null, h, w, c] asks for, or undefined. */
export function imageInput(shape: (number | null)[] | undefined): { size: [number, number]; channels: 1 | 3 } | undefined {
  if (!shape || shape.length !== 4) return undefined;
  const [, h, w, c] = shape;
  if (!h || !w || (c !== 1 && c !== 3)) return undefined;
  return { size: [h, w], channels: c };
}
