// Checkpoints: the training state (phase, epoch, position inside the epoch, optimizer slots,
// random state, history) and every weight, written atomically to <out>/checkpoints/ckpt-N,
// the last K kept. With the run's own options saved beside them, `graft train --resume <out>`
// goes on where a killed or interrupted run stopped.

import { readdir, rm } from 'node:fs/promises';
import { READ_LIMITS, readBounded } from '../data/bounded-read.js';
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { GraftError } from '../errors.js';
import { writeDirAtomic } from '../model/io.js';
import { sizeOf, type Layer } from '../model/layers.js';
import type { TrainingState } from './phase.js';
import { variableKeys } from './weights.js';

export interface Checkpoint {
  state: TrainingState;
  /** What started the run (e.g. the command-line options), to start it again the same way. */
  run: Record<string, unknown>;
  weights: Map<string, { shape: number[]; values: Float32Array }>;
  path: string;
}

interface Manifest {
  format: 'graft-checkpoint/1';
  state: TrainingState;
  run: Record<string, unknown>;
  weights: { key: string; shape: number[]; offset: number; length: number }[];
  writtenAt: string;
}

const NAME = /^ckpt-(\d{6})$/;

async function list(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => NAME.test(n)).sort();
}

export async function writeCheckpoint(dir: string, layers: Layer[], state: TrainingState, run: Record<string, unknown>, keep = 3): Promise<string> {
  const existing = await list(dir);
  const next = existing.length ? Number(NAME.exec(existing[existing.length - 1])![1]) + 1 : 1;
  const entries: Manifest['weights'] = [];
  const chunks: Buffer[] = [];
  let offset = 0;
  const add = (key: string, shape: number[], values: Float32Array) => {
    entries.push({ key, shape, offset, length: values.length });
    chunks.push(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    offset += values.byteLength;
  };
  for (const [v, key] of variableKeys(layers)) add(key, v.shape as number[], v.read().dataSync() as Float32Array);
  // Optimizer slots go to the binary file too; the JSON keeps their keys, steps and shapes.
  for (const slot of state.optimizer.slots) {
    add(`optimizer:m:${slot.key}`, slot.shape, slot.m);
    add(`optimizer:v:${slot.key}`, slot.shape, slot.v);
  }
  const light = { ...state, optimizer: { slots: state.optimizer.slots.map(({ key, step, shape }) => ({ key, step, shape })) } };
  const manifest = { format: 'graft-checkpoint/1', state: light, run, weights: entries, writtenAt: new Date().toISOString() };
  const path = join(dir, `ckpt-${String(next).padStart(6, '0')}`);
  await writeDirAtomic(path, { 'checkpoint.json': JSON.stringify(manifest), 'weights.bin': Buffer.concat(chunks) }, { replace: true });
  for (const old of existing.slice(0, Math.max(0, existing.length + 1 - keep))) await rm(join(dir, old), { recursive: true, force: true });
  return path;
}

/** The newest readable checkpoint in `dir`, or undefined when there is none. */
export async function readLatestCheckpoint(dir: string): Promise<Checkpoint | undefined> {
  const names = await list(dir);
  for (const name of names.reverse()) {
    const path = join(dir, name);
    try {
      const manifest = JSON.parse((await readBounded(join(path, 'checkpoint.json'), { limit: READ_LIMITS.modelJson, what: 'The checkpoint' })).toString('utf8')) as Manifest;
      const bin = await readBounded(join(path, 'weights.bin'), { limit: READ_LIMITS.checkpoint, what: 'The checkpoint' });
      if (manifest.format !== 'graft-checkpoint/1') continue;
      const weights = new Map<string, { shape: number[]; values: Float32Array }>();
      for (const w of manifest.weights) {
        if (w.offset + 4 * w.length > bin.byteLength) throw new Error('truncated weights');
        weights.set(w.key, { shape: w.shape, values: new Float32Array(bin.buffer.slice(bin.byteOffset + w.offset, bin.byteOffset + w.offset + 4 * w.length)) });
      }
      for (const slot of manifest.state.optimizer.slots) {
        slot.m = weights.get(`optimizer:m:${slot.key}`)!.values;
        slot.v = weights.get(`optimizer:v:${slot.key}`)!.values;
      }
      return { state: manifest.state, run: manifest.run, weights, path };
    } catch {
      // A damaged checkpoint (e.g. a crash while the disk filled): fall back to the one before.
    }
  }
  return undefined;
}

/** Puts checkpointed weights back into the layers; every layer weight must be present. */
export function applyCheckpoint(layers: Layer[], c: Checkpoint): void {
  for (const [v, key] of variableKeys(layers)) {
    const w = c.weights.get(key);
    if (!w || w.values.length !== sizeOf(v.shape)) {
      throw new GraftError('BAD_MODEL', `Checkpoint ${c.path} has no weight "${key}" of shape [${v.shape.join(', ')}]: it belongs to another model or run.`, {
        fix: 'Resume with the same base model and options, or start a new run in another output directory (--out).' });
    }
  }
  for (const [v, key] of variableKeys(layers)) {
    const value = tf.tensor(c.weights.get(key)!.values, v.shape as number[]);
    v.write(value);
    value.dispose();
  }
}
