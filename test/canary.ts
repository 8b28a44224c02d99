// A canary tree: files and folders whose hashes are taken before and after a hostile run, to
// prove that nothing outside the output folder changed.

import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes a small tree of files under `dir` (it may exist). */
export async function plantCanary(dir: string): Promise<void> {
  await mkdir(join(dir, 'sub', 'deeper'), { recursive: true });
  await writeFile(join(dir, 'notes.txt'), 'keep me\n');
  await writeFile(join(dir, 'sub', 'data.bin'), Buffer.from([0, 1, 2, 3, 255]));
  await writeFile(join(dir, 'sub', 'deeper', 'graft.json'), '{"format":"not-graft"}');
}

/** One hash of every path, type, size and content under `dir`, except the names in `skip`. */
export async function hashTree(dir: string, skip: string[] = []): Promise<string> {
  const h = createHash('sha256');
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const path = join(d, name);
      const r = join(rel, name);
      if (skip.includes(r)) continue;
      const info = await lstat(path);
      h.update(`${r}\0${info.mode}\0`);
      if (info.isDirectory()) await walk(path, r);
      else if (info.isSymbolicLink()) h.update(await readlink(path));
      else if (info.isFile()) h.update(await readFile(path));
    }
  };
  await walk(dir, '');
  return h.digest('hex');
}
