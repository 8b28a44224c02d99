// npm run bench:precision: bf16 against fp32 in accuracy, the way a user runs Graft. Each task
// runs the real `graft` command with its defaults, --precision fp32 and --precision bf16, seeds
// 1-3 (each run computes its body features: --no-cache). train scores its test set in fp32 (the
// saved model is fp32, and predicts in fp32 by default); for the bf16 runs the saved model is also
// scored predicting in bf16 (graft evaluate --precision bf16), reported beside:
//   demo           graft demo (digits-cnn to MNIST 5-9), test accuracy on 4,861 digits
//   fashion-100    graft train, nsfwjs-mobilenet-v2 at 96x96, Fashion-MNIST 100 labels per class,
//                  test accuracy on data/fashion-mnist/test
//   photos         graft train, mobilenet-v2, the photo fixture (scripts/photo-fixture.mjs)
// The issue's bar: bf16's mean test accuracy over the seeds within 0.5 points of fp32's.
// BENCH_TASKS=demo,photos limits the tasks; BENCH_SEEDS=1,2 the seeds. Last line: one JSON object.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
interface Task { name: string; args: (out: string) => string[]; accuracy: (o: Record<string, any>) => number; needs?: string; test?: string }
const TASKS: Task[] = [
  { name: 'demo', args: () => ['demo'], accuracy: (o) => o.newTask.testAccuracy },
  { name: 'fashion-100', args: (out) => ['train', '--base', 'nsfwjs-mobilenet-v2', '--input-size', '96', '--data', 'data/fashion-mnist', '--per-class', '100', '--no-cache', '--out', out], accuracy: (o) => o.metrics.testAccuracy, needs: 'data/fashion-mnist', test: 'data/fashion-mnist/test' },
  { name: 'photos', args: (out) => ['train', '--base', 'mobilenet-v2', '--data', 'data/photos', '--no-cache', '--out', out], accuracy: (o) => o.metrics.testAccuracy, needs: 'data/photos', test: 'data/photos/test' },
];
const only = process.env.BENCH_TASKS?.split(',');
const seeds = (process.env.BENCH_SEEDS ?? '1,2,3').split(',').map(Number);

function graft(args: string[]): Promise<{ stdout: string; stderr: string; seconds: number; code: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'bin', 'graft.js'), ...args], { cwd: root, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      resolve({ stdout, stderr, seconds: (performance.now() - t0) / 1000, code: err ? (typeof err.code === 'number' ? err.code : 1) : 0 });
    });
  });
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const dir = await mkdtemp(join(tmpdir(), 'graft-bench-precision-'));
const results: Record<string, unknown> = {};
const predictBf16: Record<string, number[]> = {};
try {
  for (const task of TASKS.filter((t) => !only || only.includes(t.name))) {
    if (task.needs && !existsSync(join(root, task.needs))) { results[task.name] = `skipped: ${task.needs} missing (see docs/small-data.md and docs/fashion-mnist.md)`; continue; }
    const acc: Record<string, number[]> = { fp32: [], bf16: [] };
    const secs: Record<string, number[]> = { fp32: [], bf16: [] };
    // Which model the keep-better check kept in each run ('fine-tune' | 'warm-up'; null: no check).
    const kept: Record<string, (string | null)[]> = { fp32: [], bf16: [] };
    for (const seed of seeds) {
      for (const precision of ['fp32', 'bf16']) {
        const out = join(dir, `${task.name}-${precision}-${seed}`);
        const r = await graft([...task.args(out), '--seed', String(seed), '--precision', precision, '--json']);
        if (r.code !== 0) throw new Error(`${task.name} ${precision} seed ${seed} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
        const o = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
        acc[precision].push(task.accuracy(o));
        secs[precision].push(+r.seconds.toFixed(1));
        kept[precision].push(o.fineTuneCheck?.kept ?? null);
        let inBf16 = '';
        if (precision === 'bf16' && task.test) {
          // train scores its test set in fp32 (the saved model is fp32); this is the same model predicting in bf16.
          const e = await graft(['evaluate', out, task.test, '--precision', 'bf16', '--json']);
          if (e.code !== 0) throw new Error(`${task.name} seed ${seed}: graft evaluate --precision bf16 failed: ${e.stderr.trim().split('\n').slice(-2).join(' ')}`);
          predictBf16[task.name] = [...(predictBf16[task.name] ?? []), JSON.parse(e.stdout.trim().split('\n').at(-1)!).accuracy];
          inBf16 = `; predicting in bf16 ${(100 * predictBf16[task.name].at(-1)!).toFixed(2)}%`;
        }
        console.log(`${task.name} seed ${seed} ${precision}: test accuracy ${(100 * task.accuracy(o)).toFixed(2)}% in ${r.seconds.toFixed(0)} s${inBf16}${o.fineTuneCheck ? `; kept the ${o.fineTuneCheck.kept}` : ''}`);
      }
    }
    const diff = 100 * (mean(acc.bf16) - mean(acc.fp32));
    results[task.name] = {
      seeds, testAccuracy: acc, seconds: secs, kept, meanFp32: +(100 * mean(acc.fp32)).toFixed(2), meanBf16: +(100 * mean(acc.bf16)).toFixed(2),
      bf16MinusFp32Points: +diff.toFixed(2), within: Math.abs(diff) <= 0.5, timeRatioBf16: +(mean(secs.bf16) / mean(secs.fp32)).toFixed(2),
      ...(predictBf16[task.name] ? { bf16TrainedPredictingInBf16: predictBf16[task.name], predictBf16MinusFp32Points: +(100 * (mean(predictBf16[task.name]) - mean(acc.fp32))).toFixed(2) } : {}),
    };
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ bench: 'precision', bar: 'mean bf16 test accuracy within 0.5 points of fp32', results }));
