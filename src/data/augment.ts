// Data augmentation for image batches, on the raw values (0-255) before the model's
// preprocessing: random resized crop, horizontal flip and a small rotation in one bilinear
// resampling pass, then brightness, contrast and saturation jitter. Seeded: a run repeats.

import { DiskSamples, isBytes } from './disk-samples.js';
import { GraftError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { makeRng } from './random.js';

export interface AugmentOptions {
  /** Smallest crop area as a fraction of the image (random resized crop); 1 turns it off. */
  crop: number;
  /** Mirror left-right with probability 1/2. */
  flip: boolean;
  /** Largest rotation either way, in degrees; 0 turns it off. */
  rotate: number;
  /** Brightness, contrast and saturation change by up to this fraction; 0 turns it off. */
  jitter: number;
}

/** Milder than torchvision's RandomResizedCrop (0.08): Graft's images are already at model size. */
export const AUGMENT_DEFAULTS: AugmentOptions = { crop: 0.6, flip: true, rotate: 10, jitter: 0.2 };
export const NO_AUGMENT: AugmentOptions = { crop: 1, flip: false, rotate: 0, jitter: 0 };

export function isIdentity(o: AugmentOptions): boolean {
  return o.crop >= 1 && !o.flip && o.rotate === 0 && o.jitter === 0;
}

/** "default", "none", or key=value parts: crop=0.5,flip=no,rotate=15,jitter=0.1. */
export function parseAugment(spec: string): AugmentOptions {
  if (spec === 'default' || spec === 'on') return { ...AUGMENT_DEFAULTS };
  if (spec === 'none' || spec === 'off') return { ...NO_AUGMENT };
  const o = { ...NO_AUGMENT };
  for (const part of spec.split(',')) {
    const [k, v] = part.split('=');
    const n = Number(v);
    const bad = () => new GraftError('BAD_ARGUMENT', `--augment part "${part}" is not understood.`, {
      fix: 'Use default, none, or e.g. crop=0.6,flip,rotate=10,jitter=0.2 (crop: smallest area 0.05-1; rotate: degrees 0-45; jitter 0-0.9).' });
    if (k === 'flip') o.flip = v === undefined || v === 'yes' || v === 'true' ? true : v === 'no' || v === 'false' ? false : (() => { throw bad(); })();
    else if (k === 'crop' && n >= 0.05 && n <= 1) o.crop = n;
    else if (k === 'rotate' && n >= 0 && n <= 45) o.rotate = n;
    else if (k === 'jitter' && n >= 0 && n < 1) o.jitter = n;
    else throw bad();
  }
  return o;
}

export function describeAugment(o: AugmentOptions): string {
  if (isIdentity(o)) return 'none';
  const parts: string[] = [];
  if (o.crop < 1) parts.push(`random crop ${Math.round(o.crop * 100)}-100% of the area`);
  if (o.flip) parts.push('horizontal flip');
  if (o.rotate) parts.push(`rotation up to ${o.rotate} degrees`);
  if (o.jitter) parts.push(`brightness/contrast/saturation +-${Math.round(o.jitter * 100)}%`);
  return parts.join(', ');
}

/**
 * Augments `n` samples of shape [h, w, c] in `buf` in place. `max` clamps the values (255 for
 * pixels). `seed` fixes every random choice.
 */
export function augmentBatch(buf: Float32Array, n: number, shape: number[], o: AugmentOptions, seed: number, max = 255): void {
  if (shape.length !== 3 || isIdentity(o)) return;
  const [h, w, c] = shape;
  const per = h * w * c;
  const rng = makeRng(seed);
  const src = new Float32Array(per);
  for (let s = 0; s < n; s++) {
    const img = buf.subarray(s * per, (s + 1) * per);
    src.set(img);
    // Geometry: a crop box (area fraction, aspect ratio 3/4-4/3), flip, rotation.
    const area = o.crop + (1 - o.crop) * rng();
    const aspect = Math.exp(Math.log(3 / 4) + (Math.log(4 / 3) - Math.log(3 / 4)) * rng());
    const cw = Math.min(1, Math.sqrt(area * aspect));
    const ch = Math.min(1, Math.sqrt(area / aspect));
    const cx = cw / 2 + (1 - cw) * rng();
    const cy = ch / 2 + (1 - ch) * rng();
    const flip = o.flip && rng() < 0.5 ? -1 : 1;
    const angle = ((2 * rng() - 1) * o.rotate * Math.PI) / 180;
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    const geometric = o.crop < 1 || flip < 0 || angle !== 0;
    if (geometric) {
      for (let v = 0; v < h; v++) {
        for (let u = 0; u < w; u++) {
          const du = flip * ((u + 0.5) / w - 0.5);
          const dv = (v + 0.5) / h - 0.5;
          // Rotate in pixel units so that non-square images rotate without shearing.
          const ru = (du * w * cos - dv * h * sin) / w;
          const rv = (du * w * sin + dv * h * cos) / h;
          const x = Math.min(w - 1, Math.max(0, (cx + ru * cw) * w - 0.5));
          const y = Math.min(h - 1, Math.max(0, (cy + rv * ch) * h - 0.5));
          const x0 = Math.floor(x);
          const y0 = Math.floor(y);
          const x1 = Math.min(w - 1, x0 + 1);
          const y1 = Math.min(h - 1, y0 + 1);
          const fx = x - x0;
          const fy = y - y0;
          const o00 = (y0 * w + x0) * c;
          const o01 = (y0 * w + x1) * c;
          const o10 = (y1 * w + x0) * c;
          const o11 = (y1 * w + x1) * c;
          const out = (v * w + u) * c;
          for (let k = 0; k < c; k++) {
            img[out + k] = (src[o00 + k] * (1 - fx) + src[o01 + k] * fx) * (1 - fy) + (src[o10 + k] * (1 - fx) + src[o11 + k] * fx) * fy;
          }
        }
      }
    }
    if (o.jitter > 0) {
      const bright = 1 + (2 * rng() - 1) * o.jitter;
      const contrast = 1 + (2 * rng() - 1) * o.jitter;
      const sat = 1 + (2 * rng() - 1) * o.jitter;
      let mean = 0;
      for (let i = 0; i < per; i++) mean += img[i];
      mean = (mean / per) * bright;
      for (let p = 0; p < h * w; p++) {
        let grey = 0;
        for (let k = 0; k < c; k++) grey += img[p * c + k];
        grey /= c;
        for (let k = 0; k < c; k++) {
          let val = img[p * c + k] * bright;
          if (c > 1) val = grey * bright + (val - grey * bright) * sat;
          val = mean + (val - mean) * contrast;
          img[p * c + k] = Math.min(max, Math.max(0, val));
        }
      }
    }
  }
}

/**
 * The dataset followed by `views - 1` augmented copies of it (seeded), for a warm-up on cached
 * features that still sees augmentation: each view's features are computed once (and kept in
 * the disk cache, since the copies repeat with the seed).
 */
export function augmentedViews(d: Dataset, views: number, o: AugmentOptions, seed: number): Dataset {
  if (views <= 1 || d.sampleShape.length !== 3 || isIdentity(o)) return d;
  const n = d.labels.length;
  const per = d.x.length / Math.max(1, n);
  const bytes = isBytes(d.x);
  // A streamed dataset gets its views on disk too; in-memory data, in memory.
  const disk = d.x instanceof DiskSamples ? DiskSamples.create(per) : undefined;
  const x = disk ? undefined : bytes ? new Uint8Array(d.x.length * views) : new Float32Array(d.x.length * views);
  const chunk = 64;
  const buf = new Float32Array(chunk * per);
  const row = new Uint8Array(per);
  for (let v = 0; v < views; v++) {
    for (let start = 0; start < n; start += chunk) {
      const k = Math.min(chunk, n - start);
      const part = buf.subarray(0, k * per);
      part.set(d.x.subarray(start * per, (start + k) * per));
      if (v > 0) augmentBatch(part, k, d.sampleShape, o, seed * 7919 + v * 104729 + start, bytes ? 255 : Infinity);
      const at = (v * n + start) * per;
      if (disk) {
        for (let i = 0; i < k; i++) {
          for (let j = 0; j < per; j++) row[j] = Math.round(part[i * per + j]);
          disk.writeRow(v * n + start + i, row);
        }
      } else if (bytes) for (let i = 0; i < part.length; i++) x![at + i] = Math.round(part[i]);
      else x!.set(part, at);
    }
  }
  const labels = new Int32Array(n * views);
  for (let v = 0; v < views; v++) labels.set(d.labels, v * n);
  return { ...d, x: disk ? disk.withRows(Array.from({ length: n * views }, (_, i) => i)) : x!, labels, source: `${d.source} (+${views - 1} augmented view${views > 2 ? 's' : ''})` };
}
