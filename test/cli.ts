// Running the real `graft` launcher in tests, and small real image folders for them.

import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { makeRng } from '../src/data/random.js';

export const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin', 'graft.js');

/** Runs `graft args...` from the repository root; the feature cache goes to a temporary folder. */
export function graft(args: string[], options: { env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: root, maxBuffer: 64 << 20, env: { ...process.env, GRAFT_CACHE_DIR: process.env.GRAFT_CACHE_DIR ?? join(tmpdir(), 'graft-test-cache'), ...options.env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

export const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

/** `dir/<colour>/<i>.<ext>`: noisy images of one colour per class (red, green, blue), size x size. */
export async function colourFolder(dir: string, size: number, perClass: number, seed: number, ext: 'png' | 'jpg'): Promise<void> {
  const rng = makeRng(seed);
  const colours: Record<string, number[]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] };
  for (const [name, rgb] of Object.entries(colours)) {
    await mkdir(join(dir, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const px = Buffer.alloc(size * size * 3);
      for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) px[p * 3 + c] = Math.max(0, Math.min(255, rgb[c] + (rng() - 0.5) * 120));
      const img = sharp(px, { raw: { width: size, height: size, channels: 3 } });
      await writeFile(join(dir, name, `${i}.${ext}`), await (ext === 'png' ? img.png() : img.jpeg()).toBuffer());
    }
  }
}
