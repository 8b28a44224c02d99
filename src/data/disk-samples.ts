// Samples kept on disk and read per batch: a dataset bigger than memory. Decoded images (bytes
// at the model's input size) are written to one file as they are decoded, and every read of a
// batch reads its rows from there (the OS page cache keeps what fits). The file is unlinked
// as soon as it is open, so it vanishes with the process, even after SIGKILL.
//
// DiskSamples stands in for the Uint8Array of Dataset.x: `length` and row-aligned `subarray`
// behave the same; subsets and concatenations of the same file are views (row maps), not copies.

import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { GraftError } from '../errors.js';

interface Store {
  fd: number;
  path: string;
}

const closer = new FinalizationRegistry<number>((fd) => { try { closeSync(fd); } catch { /* already closed */ } });

/** Where streamed samples go: $GRAFT_STREAM_DIR, else the system's temporary folder. */
function streamDir(): string {
  return process.env.GRAFT_STREAM_DIR ?? tmpdir();
}

export class DiskSamples {
  private constructor(private readonly store: Store, readonly rowSize: number, readonly rows: Int32Array) {}

  /** An empty file for rows of `rowSize` bytes. */
  static create(rowSize: number): DiskSamples {
    const path = join(streamDir(), `graft-samples-${process.pid}-${randomBytes(6).toString('hex')}.u8`);
    let fd: number;
    try {
      fd = openSync(path, 'w+');
      unlinkSync(path);
    } catch (e) {
      throw new GraftError('BAD_DATA', `Cannot write the streamed dataset to ${path} (${(e as Error).message}).`, {
        fix: 'Set GRAFT_STREAM_DIR to a folder with free space, or drop --stream to keep the images in memory.', cause: e });
    }
    const store: Store = { fd, path };
    const d = new DiskSamples(store, rowSize, new Int32Array(0));
    closer.register(store, fd);
    return d;
  }

  /** Writes row `row` of the file (any order; rows not written read as zeros). */
  writeRow(row: number, values: Uint8Array): void {
    if (values.length !== this.rowSize) throw new Error(`DiskSamples: a row has ${this.rowSize} bytes, got ${values.length}`);
    writeSync(this.store.fd, values, 0, values.length, row * this.rowSize);
  }

  /** The samples of the given file rows, in that order (a view). */
  withRows(rows: ArrayLike<number>): DiskSamples {
    return new DiskSamples(this.store, this.rowSize, Int32Array.from(rows));
  }

  /** Number of values, as a typed array's length: samples * rowSize. */
  get length(): number {
    return this.rows.length * this.rowSize;
  }

  /** Samples [start / rowSize, end / rowSize), read from disk. Offsets must be whole rows. */
  subarray(start = 0, end = this.length): Uint8Array {
    const s = this.rowSize;
    if (start % s || end % s) throw new Error(`DiskSamples: reads must be whole rows of ${s} values (asked for ${start}..${end})`);
    const out = new Uint8Array(Math.max(0, end - start));
    for (let i = start / s, o = 0; i < end / s; i++, o += s) {
      // Consecutive file rows in one read.
      let k = 1;
      while (i + k < end / s && this.rows[i + k] === this.rows[i] + k) k++;
      let got = 0;
      while (got < k * s) got += readSync(this.store.fd, out, o + got, k * s - got, this.rows[i] * s + got) || fail(this.store.path);
      i += k - 1;
      o += (k - 1) * s;
    }
    return out;
  }

  /** The samples at `indices` of this view (a view). */
  pick(indices: ArrayLike<number>): DiskSamples {
    return this.withRows(Array.from(indices, (i) => this.rows[i]));
  }

  /** This view's samples followed by `other`'s, when both live in the same file. */
  concat(other: DiskSamples): DiskSamples | undefined {
    if (other.store !== this.store || other.rowSize !== this.rowSize) return undefined;
    const rows = new Int32Array(this.rows.length + other.rows.length);
    rows.set(this.rows);
    rows.set(other.rows, this.rows.length);
    return new DiskSamples(this.store, this.rowSize, rows);
  }

  /** Calls `f` with consecutive chunks of whole samples (for hashing or copying without holding them all). */
  forEachChunk(f: (chunk: Uint8Array) => void, samplesPerChunk = 256): void {
    for (let i = 0; i < this.rows.length; i += samplesPerChunk) f(this.subarray(i * this.rowSize, Math.min(this.rows.length, i + samplesPerChunk) * this.rowSize));
  }
}

function fail(path: string): never {
  throw new GraftError('BAD_DATA', `The streamed dataset file ${path} ended early.`, { fix: 'Run again; make sure the temporary folder (GRAFT_STREAM_DIR) is not cleaned while Graft runs.' });
}

/** Sample values held in memory or on disk. */
export type Samples = Float32Array | Uint8Array | DiskSamples;

/** True for image bytes (0-255), in memory or on disk. */
export function isBytes(x: Samples): x is Uint8Array | DiskSamples {
  return x instanceof Uint8Array || x instanceof DiskSamples;
}

/** The values in memory (for the few consumers that need every value at once, e.g. CSV statistics). */
export function inMemory(x: Samples): Float32Array | Uint8Array {
  return x instanceof DiskSamples ? x.subarray() : x;
}
