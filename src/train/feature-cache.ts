// A disk cache of frozen-body features. The key is a hash of the body (its topology and every
// weight value, so a cut at another layer or fine-tuned weights give another key), the
// preprocessing, and the decoded input samples (so the same files decoded the same way hit,
// and a changed file misses). A second run, or graft compare, on the same data and body skips
// the forward pass. Entries beyond the size budget are dropped, least recently used first.

import { broadcast, distributed } from '../engine/dist.js';
import { DiskSamples } from '../data/disk-samples.js';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { writeFileAtomic } from '../model/io.js';
import { featureDataset } from './predict.js';
import { nativeStatus, resolvePrecision } from '../engine/native.js';

export interface CacheEntry {
  key: string;
  /** What the body was: its source and output layer. */
  body: string;
  data: string;
  count: number;
  featureShape: number[];
  /** The precision the body computed them in (absent in entries written before bf16: fp32). */
  precision?: 'fp32' | 'bf16';
  bytes: number;
  createdAt: string;
  lastUsed: string;
}

export const CACHE_DEFAULTS = {
  /** Size budget in bytes; GRAFT_CACHE_MAX_MB overrides. */
  maxBytes: 2048 * 1024 * 1024,
};

/** $GRAFT_CACHE_DIR, else $XDG_CACHE_HOME/graft, else ~/.cache/graft; features live in features/. */
export function cacheDir(): string {
  const base = process.env.GRAFT_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'graft');
  return join(base, 'features');
}

function maxBytes(): number {
  const mb = Number(process.env.GRAFT_CACHE_MAX_MB);
  return Number.isFinite(mb) && mb >= 0 ? mb * 1024 * 1024 : CACHE_DEFAULTS.maxBytes;
}

/** Hash of a model's topology and weights. */
export function modelFingerprint(model: tfl.LayersModel): string {
  const h = createHash('sha256');
  // The model's own name is left out: tfjs numbers unnamed models per process (model1, model2...).
  const topology = model.toJSON(undefined, false) as { config?: { name?: string } };
  if (topology.config) topology.config = { ...topology.config, name: undefined };
  h.update(JSON.stringify(topology));
  for (const w of model.weights) {
    const v = w.read().dataSync() as Float32Array;
    h.update(w.originalName);
    h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return h.digest('hex');
}

export function featureKey(bodyPrint: string, d: Dataset, p: Preprocessing | undefined, precision: 'fp32' | 'bf16' = 'fp32'): string {
  const h = createHash('sha256');
  h.update(bodyPrint);
  // bf16 features differ from fp32 ones in the third digit: their own entries (fp32 keys unchanged).
  if (precision === 'bf16') h.update('precision:bf16');
  h.update(JSON.stringify({ p: p ? { scale: p.scale, offset: p.offset, mean: p.mean, std: p.std } : null, shape: d.sampleShape, type: d.x instanceof DiskSamples ? 'Uint8Array' : d.x.constructor.name }));
  // The same values give the same key whether they are held in memory or streamed from disk.
  if (d.x instanceof DiskSamples) d.x.forEachChunk((c) => h.update(c));
  else h.update(new Uint8Array(d.x.buffer, d.x.byteOffset, d.x.byteLength));
  return h.digest('hex').slice(0, 40);
}

export interface CachedFeatures {
  features: Dataset;
  hit: boolean;
  key: string;
  seconds: number;
}

/**
 * The body's features of `d`, from the disk cache when there, else computed and stored.
 * `bodyPrint` lets a caller that asks several times hash the body once.
 */
export async function cachedFeatureDataset(body: tfl.LayersModel, d: Dataset, p: Preprocessing | undefined, batchSize: number,
  o: { bodyPrint?: string; describe?: string } = {}): Promise<CachedFeatures> {
  const t0 = Date.now();
  const dir = cacheDir();
  // The precision the body's features are computed in here (fp32 without the native engine).
  const precision = nativeStatus().available ? resolvePrecision().precision : 'fp32';
  const key = featureKey(o.bodyPrint ?? modelFingerprint(body), d, p, precision);
  const bin = join(dir, `${key}.bin`);
  const metaPath = join(dir, `${key}.json`);
  const read = async (): Promise<Float32Array | undefined> => {
    try {
      const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CacheEntry;
      const buf = await readFile(bin);
      const per = meta.featureShape.reduce((a, b) => a * b, 1);
      if (meta.count !== d.labels.length || buf.byteLength !== meta.count * per * 4 || JSON.stringify(meta.featureShape) !== JSON.stringify(featureShape)) return undefined;
      const now = new Date();
      // An entry written before entries recorded their precision: this key says it.
      if (!meta.precision) await writeFileAtomic(metaPath, JSON.stringify({ ...meta, precision }, null, 1), { replace: true }).catch(() => undefined);
      await utimes(metaPath, now, now).catch(() => undefined);
      return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    } catch {
      return undefined;  // Not cached (or unreadable): compute.
    }
  };
  const featureShape = body.outputs[0].shape.slice(1) as number[];
  const hitWith = (x: Float32Array): CachedFeatures => ({
    features: { x, sampleShape: featureShape, labels: d.labels, classNames: d.classNames, source: `features of ${d.source}` }, hit: true, key, seconds: (Date.now() - t0) / 1000 });
  // A data-parallel run: rank 0's cache decides for every worker; a hit is sent to the others,
  // a miss is computed by all of them (sharded) and stored by rank 0 alone.
  const dist = distributed();
  if (dist) {
    const cached = dist.rank === 0 ? await read() : undefined;
    const flag = new Float64Array([cached ? 1 : 0]);
    broadcast(flag, 0);
    if (flag[0]) {
      const x = cached ?? new Float32Array(d.labels.length * featureShape.reduce((a, b) => a * b, 1));
      broadcast(x, 0);
      return hitWith(x);
    }
  } else {
    const cached = await read();
    if (cached) return hitWith(cached);
  }
  const features = await featureDataset(body, d, p, batchSize);
  const x = features.x as Float32Array;
  if (x.byteLength <= maxBytes() && !dist?.rank) {
    try {
      await mkdir(dir, { recursive: true });
      await writeFileAtomic(bin, new Uint8Array(x.buffer, x.byteOffset, x.byteLength), { replace: true });
      const now = new Date().toISOString();
      const entry: CacheEntry = {
        key, body: o.describe ?? `${body.name} -> ${body.outputs[0].name}`, data: d.source, count: d.labels.length,
        featureShape: features.sampleShape, precision, bytes: x.byteLength, createdAt: now, lastUsed: now,
      };
      await writeFileAtomic(metaPath, JSON.stringify(entry, null, 1), { replace: true });
      await evict(maxBytes(), key);
    } catch {
      // A cache that cannot be written (read-only home, full disk) must not stop training.
    }
  }
  return { features, hit: false, key, seconds: (Date.now() - t0) / 1000 };
}

/** Every cache entry, most recently used first. */
export async function listCache(): Promise<CacheEntry[]> {
  const dir = cacheDir();
  let names: string[];
  try { names = await readdir(dir); } catch { return []; }
  const out: CacheEntry[] = [];
  for (const n of names.filter((f) => f.endsWith('.json') && !f.startsWith('.'))) {
    try {
      const entry = JSON.parse(await readFile(join(dir, n), 'utf8')) as CacheEntry;
      const s = await stat(join(dir, n));
      const b = await stat(join(dir, `${entry.key}.bin`));
      out.push({ ...entry, bytes: b.size, lastUsed: s.mtime.toISOString() });
    } catch {
      // A half-written or foreign file: not an entry.
    }
  }
  return out.sort((a, b) => b.lastUsed.localeCompare(a.lastUsed));
}

async function evict(budget: number, keep: string): Promise<void> {
  const entries = await listCache();
  let total = entries.reduce((s, e) => s + e.bytes, 0);
  for (const e of entries.slice().reverse()) {
    if (total <= budget) break;
    if (e.key === keep) continue;
    await removeEntry(e.key);
    total -= e.bytes;
  }
}

async function removeEntry(key: string): Promise<void> {
  const dir = cacheDir();
  await rm(join(dir, `${key}.json`), { force: true });
  await rm(join(dir, `${key}.bin`), { force: true });
}

/** Removes every entry (or those whose key starts with `prefix`); returns how many and the bytes freed. */
export async function clearCache(prefix = ''): Promise<{ entries: number; bytes: number }> {
  const entries = (await listCache()).filter((e) => e.key.startsWith(prefix));
  for (const e of entries) await removeEntry(e.key);
  if (!prefix) {
    // Leftover temporary files of interrupted writes.
    for (const n of await readdir(cacheDir()).catch(() => [] as string[])) if (n.startsWith('.')) await rm(join(cacheDir(), n), { force: true });
  }
  return { entries: entries.length, bytes: entries.reduce((s, e) => s + e.bytes, 0) };
}
