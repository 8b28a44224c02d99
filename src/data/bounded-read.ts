// Bounded file reads: only regular files are opened (a FIFO, device or socket, also behind a
// symbolic link, is refused without blocking), and a file's size is checked against a per-kind
// limit before a byte is read, so no input can hang Graft or fill its memory.

import { constants } from 'node:fs';
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { GraftError } from '../errors.js';

const MB = 1024 * 1024;

/** Largest file Graft reads, per kind (bytes). */
export const READ_LIMITS = {
  modelJson: 256 * MB,
  graftJson: 16 * MB,
  shard: 2048 * MB,
  image: 64 * MB,
  csv: 2048 * MB,
  idx: 4096 * MB,
  keras: 4096 * MB,
  onnx: 4096 * MB,
  checkpoint: 4096 * MB,
};

function kind(s: Stats): string {
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

const size = (n: number) => (n >= MB ? `${(n / MB).toFixed(1)} MB` : `${n} bytes`);

async function linkNote(path: string): Promise<string> {
  const l = await lstat(path).catch(() => undefined);
  if (!l?.isSymbolicLink()) return '';
  return ` (a symbolic link to ${await realpath(path).catch(() => '?')})`;
}

/**
 * Reads the whole of `path` when it is a regular file of at most `limit` bytes. Throws
 * NOT_A_FILE or TOO_LARGE (GraftError); other failures (ENOENT, EACCES) as Node's errors.
 */
export async function readBounded(path: string, options: { limit: number; what: string }): Promise<Buffer> {
  const { fh, s } = await openRegular(path, options, 'Check that this is the right file; a file this large is not what Graft expects here.');
  try {
    // Exactly the size stat gave: a file that grows while being read is not followed.
    const buf = Buffer.alloc(s.size);
    for (let off = 0; off < s.size;) {
      const { bytesRead } = await fh.read(buf, off, s.size - off, off);
      if (bytesRead === 0) return buf.subarray(0, off);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

/** Opens `path` when it is a regular file of at most `limit` bytes (closed again when it is not); NOT_A_FILE or TOO_LARGE otherwise. */
async function openRegular(path: string, options: { limit: number; what: string }, tooLargeFix: string): Promise<{ fh: FileHandle; s: Stats }> {
  // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENXIO' || e.code === 'EOPNOTSUPP') throw notAFile(path, options.what, 'a socket', await linkNote(path));
    throw e;
  });
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw notAFile(path, options.what, kind(s), await linkNote(path));
    if (s.size > options.limit) throw new GraftError('TOO_LARGE', `${options.what} ${path} is ${size(s.size)}; Graft reads at most ${size(options.limit)} for it.`, { fix: tooLargeFix });
    return { fh, s };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

function notAFile(path: string, what: string, is: string, link: string): GraftError {
  return new GraftError('NOT_A_FILE', `${what} ${path}${link} is ${is}, not a regular file; Graft reads only regular files.`, {
    fix: 'Point at the file itself (copy it out of the pipe or device first).' });
}

/** Checks that `path` is a regular file within `limit` before a library opens it itself. */
export async function assertRegularFile(path: string, options: { limit: number; what: string }): Promise<Stats> {
  const { fh, s } = await openRegular(path, options, 'Check that this is the right file.');
  await fh.close();
  return s;
}
