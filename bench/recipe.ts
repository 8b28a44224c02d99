// npm run bench:recipe: the time to accuracy a user feels. `graft train` with its defaults,
// in fp32 and with --precision bf16, on Fashion-MNIST at 1,000 labels per class with the zoo's
// MobileNetV2 at 96x96 (nsfwjs-mobilenet-v2, cut at block_13_expand_relu), against
// bench/recipe_torch.py: the same two-phase recipe in plain PyTorch (Debian's python3-torch),
// as its tutorials write it, on the same pretrained weights and image folders. Each side's
// wall time from start to the end of training; PyTorch's time to each Graft run's test
// accuracy is the end of its first epoch at or above it (its test set is scored after every
// epoch, off the clock). Graft's time includes its process start, decoding every image once,
// the body's features, both phases and the test set's evaluation. Last line: one JSON object.
//
// Data: apt-get install dataset-fashion-mnist; npm run data:fashion -- --per-class 1000 --test-per-class 1000

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const data = process.env.BENCH_DATA ?? join(root, 'data', 'fashion-mnist');
const BASE = ['--base', 'nsfwjs-mobilenet-v2', '--input-size', '96', '--per-class', '1000', '--no-cache'];

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; seconds: number; code: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: root, maxBuffer: 256 << 20, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, seconds: (performance.now() - t0) / 1000, code: err ? (typeof err.code === 'number' ? err.code : 1) : 0 });
    });
  });
}

const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

/** The zoo model's weights to the cut, for the PyTorch side: weights.bin + manifest.json. */
async function dumpWeights(dir: string): Promise<void> {
  await initBackend('wasm');
  const base = await loadModel('nsfwjs-mobilenet-v2', { inputSize: [96, 96], keepUpTo: 'block_13_expand_relu' });
  const manifest: Array<{ layer: string; shape: number[]; offset: number }> = [];
  const parts: Float32Array[] = [];
  let offset = 0;
  for (const l of base.model.layers) {
    for (const w of l.weights) {
      const v = w.read().dataSync() as Float32Array;
      manifest.push({ layer: l.name, shape: w.shape as number[], offset });
      parts.push(v);
      offset += v.length;
    }
  }
  const all = new Float32Array(offset);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  await writeFile(join(dir, 'weights.bin'), new Uint8Array(all.buffer));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
}

if (!existsSync(join(data, 'train')) || !existsSync(join(data, 'test'))) {
  console.error(`bench:recipe needs ${data}/train and /test: apt-get install dataset-fashion-mnist, then npm run data:fashion -- --per-class 1000 --test-per-class 1000`);
  process.exit(1);
}
const dir = await mkdtemp(join(tmpdir(), 'graft-bench-recipe-'));
try {
  const graft: Record<string, { seconds: number; testAccuracy: number | null; precision: unknown; error?: string }> = {};
  for (const precision of ['fp32', 'bf16']) {
    const r = await run(process.execPath, [join(root, 'bin', 'graft.js'), 'train', ...BASE, '--data', data, '--out', join(dir, precision), '--precision', precision, '--json']);
    if (r.code !== 0) {
      graft[precision] = { seconds: r.seconds, testAccuracy: null, precision, error: r.stderr.trim().split('\n').slice(-2).join(' ') };
    } else {
      const o = lastJson(r.stdout);
      graft[precision] = { seconds: +r.seconds.toFixed(1), testAccuracy: o.metrics.testAccuracy ?? null, precision: o.precision };
    }
    console.log(`graft ${precision}: ${JSON.stringify(graft[precision])}`);
  }
  await dumpWeights(dir);
  const t = await run('/usr/bin/python3', [join(root, 'bench', 'recipe_torch.py'), data, dir]);
  type Epoch = { phase: string; epoch: number; seconds: number; valAccuracy: number; testAccuracy: number };
  const torch = t.code === 0 ? lastJson(t.stdout) as { epochs: Epoch[]; seconds: number; testAccuracy: number; torch: string } : undefined;
  console.log(`torch: ${torch ? JSON.stringify(torch) : `failed: ${t.stderr.trim().split('\n').slice(-2).join(' ')}`}`);
  const toReach = (acc: number | null) => (acc === null || !torch ? null : torch.epochs.find((e) => e.testAccuracy >= acc)?.seconds ?? null);
  const ratio = (p: string) => {
    const reach = toReach(graft[p].testAccuracy);
    return reach ? +(graft[p].seconds / reach).toFixed(2) : null;
  };
  console.log(JSON.stringify({
    bench: 'recipe', task: 'Fashion-MNIST, 1,000 labels per class (9,000 train + 1,000 validation), 10,000 test images', base: 'nsfwjs-mobilenet-v2 at 96x96, cut at block_13_expand_relu',
    graft, torch: torch ?? `failed: ${t.stderr.trim().split('\n').slice(-1)[0]}`,
    torchSecondsToGraftAccuracy: { fp32: toReach(graft.fp32.testAccuracy), bf16: toReach(graft.bf16.testAccuracy) },
    // Graft's wall time over PyTorch's time to the same test accuracy (null: PyTorch never reached it); target <= 0.5.
    ratioVsTorch: { fp32: ratio('fp32'), bf16: ratio('bf16') },
    ratioVsTorchTotal: torch ? { fp32: +(graft.fp32.seconds / torch.seconds).toFixed(2), bf16: +(graft.bf16.seconds / torch.seconds).toFixed(2) } : null,
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
