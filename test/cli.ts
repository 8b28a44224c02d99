// Running the real `graft` launcher in tests, and small real image folders for them.

import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/** This machine's CPU flags line from /proc/cpuinfo. */
export const cpuFlags = () => /^flags\s*:.*$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[0] ?? '';

/** Whether Debian's qemu-user is here, to run graft on an emulated CPU of another kind. */
export const hasQemu = () => spawnSync('qemu-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * `graft args...` on an emulated x86 CPU (qemu-x86_64 -cpu MODEL: EPYC-Milan has AVX2 but no
 * AVX512 and no VNNI), so that every library that picks kernels by CPU flags picks that CPU's.
 * Slow (about 30x): for a few images.
 */
export function graftOnCpu(model: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('qemu-x86_64', ['-cpu', model, process.execPath, bin, ...args], { cwd: root, maxBuffer: 64 << 20, env: { ...process.env, GRAFT_CACHE_DIR: process.env.GRAFT_CACHE_DIR ?? join(tmpdir(), 'graft-test-cache') } }, (err, stdout, stderr) => {
      // qemu warns once per thread about CPUID bits TCG does not emulate (pcid, rdseed, ...).
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr: stderr.split('\n').filter((l) => !l.startsWith('qemu-x86_64: warning: TCG doesn')).join('\n') });
    });
  });
}

interface KeepBetterCheck {
  method: 'validation' | 'cross-validation'; folds?: number; warmUpAccuracy: number; fineTuneAccuracy: number; margin?: number;
  onlyFineTune?: number; onlyWarmUp?: number; kept: 'fine-tune' | 'warm-up'; words: string;
}

/**
 * The keep-better check as a run recorded it agrees with itself, whichever way it went: the kept
 * model is the one its own figures pick (fine-tuning wins by more than its margin), and the words
 * give those figures and name that model. A tie can go either way on another CPU (the last bits
 * of a float sum), so a test asserts this, not one branch; head-fit.test.ts forces each branch.
 */
export function assertKeepBetterAgrees(c: KeepBetterCheck, method: KeepBetterCheck['method']): void {
  const pct = (a: number) => `${(100 * a).toFixed(1)}%`;
  const what = JSON.stringify(c);
  if (c.method !== method) throw new Error(`the check ran by ${c.method}, not ${method}: ${what}`);
  if (typeof c.margin !== 'number' || !(c.margin >= 0)) throw new Error(`no margin recorded: ${what}`);
  const picks = c.fineTuneAccuracy - c.warmUpAccuracy > c.margin ? 'fine-tune' : 'warm-up';
  if (c.kept !== picks) throw new Error(`kept ${c.kept}, but its figures pick ${picks}: ${what}`);
  if (!c.words.endsWith(c.kept === 'fine-tune' ? 'kept the fine-tuned model' : 'kept the warm-up head')) throw new Error(`the words name another model than the one kept: ${what}`);
  if (!c.words.includes(pct(c.fineTuneAccuracy))) throw new Error(`the words leave out the fine-tune's accuracy: ${what}`);
  if (method === 'validation') {
    if (!c.words.includes('on the validation set')) throw new Error(`the words do not say the check was on the validation set: ${what}`);
    const m = (c.onlyFineTune ?? NaN) + (c.onlyWarmUp ?? NaN);
    if (!(m >= 0)) throw new Error(`no per-image counts recorded: ${what}`);
    if (m > 0 && !c.words.includes(`fine-tuning got ${c.onlyFineTune} and the head ${c.onlyWarmUp}`)) throw new Error(`the words leave out the counts: ${what}`);
    if (m === 0 && c.fineTuneAccuracy !== c.warmUpAccuracy) throw new Error(`no image differs, yet the accuracies do: ${what}`);
  } else {
    if (!c.words.includes(`by ${c.folds}-fold cross-validation`)) throw new Error(`the words do not say the folds: ${what}`);
    if (!c.words.includes(pct(c.warmUpAccuracy))) throw new Error(`the words leave out the warm-up head's accuracy: ${what}`);
  }
}

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
