// What a checkpoint was trained on, so that --resume goes on only with the same run: the data
// (sample count, classes, a hash of every value and label) and the options as resolved. A
// changed run is refused with what changed, unless the user says to go on.

import { createHash } from 'node:crypto';
import { DiskSamples } from '../data/disk-samples.js';
import type { Dataset } from '../data/dataset.js';
import { GraftError } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';

export interface DataPrint {
  samples: number;
  classNames: string[];
  sampleShape: number[];
  sha256: string;
}

export function dataPrint(d: Dataset): DataPrint {
  const h = createHash('sha256');
  h.update(JSON.stringify({ shape: d.sampleShape, classes: d.classNames }));
  h.update(new Uint8Array(d.labels.buffer, d.labels.byteOffset, d.labels.byteLength));
  if (d.x instanceof DiskSamples) d.x.forEachChunk((c) => h.update(c));
  else h.update(new Uint8Array(d.x.buffer, d.x.byteOffset, d.x.byteLength));
  return { samples: d.labels.length, classNames: d.classNames, sampleShape: d.sampleShape, sha256: h.digest('hex') };
}

/** The differences between the checkpoint's run and this one, in words; empty when the same. */
export function runChanges(checkpoint: Checkpoint, data: DataPrint, options: Record<string, unknown>): string[] {
  const then = checkpoint.run.data as DataPrint | undefined;
  const changes: string[] = [];
  if (!then) changes.push('the checkpoint records no data fingerprint (it was written by an older Graft)');
  else {
    if (then.samples !== data.samples) changes.push(`the training data had ${then.samples} samples and now has ${data.samples}`);
    if (JSON.stringify(then.classNames) !== JSON.stringify(data.classNames)) changes.push(`the classes were ${then.classNames.join(', ')} and are now ${data.classNames.join(', ')}`);
    if (JSON.stringify(then.sampleShape) !== JSON.stringify(data.sampleShape)) changes.push(`samples were [${then.sampleShape.join(', ')}] and are now [${data.sampleShape.join(', ')}]`);
    if (!changes.length && then.sha256 !== data.sha256) changes.push('the training data\'s values or labels changed (same count and classes)');
  }
  const before = checkpoint.run.options as Record<string, unknown> | undefined;
  if (before) {
    for (const k of new Set([...Object.keys(before), ...Object.keys(options)])) {
      if (JSON.stringify(before[k]) !== JSON.stringify(options[k])) changes.push(`option ${k} was ${JSON.stringify(before[k]) ?? 'unset'} and is now ${JSON.stringify(options[k]) ?? 'unset'}`);
    }
  }
  return changes;
}

export function assertSameRun(checkpoint: Checkpoint, data: DataPrint, options: Record<string, unknown>, anyway: boolean): string[] {
  const changes = runChanges(checkpoint, data, options);
  if (changes.length && !anyway) {
    throw new GraftError('RESUME_MISMATCH', `The run in ${checkpoint.path} cannot go on as it was: ${changes.join('; ')}.`, {
      fix: 'Start a new run with another --out, or add --resume-anyway to go on with the changed run (its epoch position and statistics may not fit).' });
  }
  return changes;
}
