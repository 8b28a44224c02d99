// npm run bench:scale: data-parallel fine-tuning on this machine, in this run. MobileNetV2
// alpha 1.0 at 96x96 (the zoo's mobilenet-v2 cut at out_relu + GAP + Dense(10)), every layer
// training (BatchNorm in training mode, so synchronized across workers), global batch 32:
//   1 worker with 1 thread; 2 workers with 1 thread each (c10d/Gloo over 127.0.0.1, 16 images
//   each per step); 1 worker with 2 threads.
// Each worker is its own process, running the real training loop (runEpoch, the native step).
// Reported: global images per second; per step, the time the workers waited on the gradient
// all-reduce after backward (what backward did not hide), and a bare all-reduce of the same
// gradient bytes over the same group. Last line: one JSON object.
//
// BENCH_STEPS (default 8) timed steps per configuration, after 2 untimed ones.

import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { adoptModel, FreezableBatchNormalization } from '../src/model/batch-norm.js';
import { graft } from '../src/model/graft.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { NativeNet, nativeStatus } from '../src/engine/native.js';
import { allreduce, distributed, joinRun, leaveRun, shardRange } from '../src/engine/dist.js';
import { unfreeze } from '../src/model/freeze.js';
import { nativePlan } from '../src/model/native-plan.js';
import { makeRng } from '../src/data/random.js';

const BATCH = 32;
const SIZE = 96;
const CLASSES = 10;
const STEPS = Number(process.env.BENCH_STEPS ?? 8);

interface WorkerResult { rank: number; seconds: number; waitMs: number[]; bareAllreduceMs: number; gradientMB: number; loss: number }

/** One worker: 2 untimed and STEPS timed steps of its shard of the global batch. */
async function worker(rank: number, world: number, port: number, bn: string): Promise<WorkerResult> {
  await initBackend('wasm');
  if (!nativeStatus().available) throw new Error(`native engine ${nativeStatus().reason}`);
  if (world > 1) joinRun({ rank, worldSize: world, master: `127.0.0.1:${port}`, timeoutSeconds: 120 });
  const base = await loadModel('mobilenet-v2', { inputSize: [SIZE, SIZE], keepUpTo: 'out_relu' });
  const g = graft(await adoptModel(base.model), { cut: 'out_relu', head: { numClasses: CLASSES, dropout: 0, seed: 1 } });
  unfreeze(g, 'all');
  // bn 'keep' (graft train --bn-stats keep): BatchNorm trains gamma and beta on its moving statistics, nothing to synchronize.
  if (bn === 'keep') for (const l of g.model.layers) if (l instanceof FreezableBatchNormalization) l.keepStatistics = true;
  const net = new NativeNet(nativePlan(g.model, [{ layers: g.body.layers }, { layers: g.head.layers }]));
  const rng = makeRng(2);
  const per = SIZE * SIZE * 3;
  const [s, e] = shardRange(BATCH, rank, world);
  const x = Float32Array.from({ length: (e - s) * per }, () => rng());
  const y = Int32Array.from({ length: e - s }, (_, i) => (s + i) % CLASSES);
  const lrs = Float64Array.from([1e-5, 1e-4]);
  const waitMs: number[] = [];
  let loss = 0;
  let t0 = 0;
  for (let i = 0; i < STEPS + 2; i++) {
    if (i === 2) t0 = performance.now();
    const r = net.trainStep(x, y, lrs, 0, undefined, undefined, world > 1 ? { globalN: BATCH, pause: false } : undefined);
    loss = r.loss;
    if (i >= 2 && r.allreduceWaitMs !== undefined) waitMs.push(r.allreduceWaitMs);
  }
  const seconds = (performance.now() - t0) / 1000;
  const params = g.model.trainableWeights.reduce((a, w) => a + w.shape.reduce((p: number, q) => p * (q ?? 1), 1), 0);
  let bareAllreduceMs = 0;
  if (distributed()) {
    const buf = new Float32Array(params);
    allreduce(buf);
    const b0 = performance.now();
    for (let i = 0; i < 5; i++) allreduce(buf);
    bareAllreduceMs = (performance.now() - b0) / 5;
  }
  net.dispose();
  leaveRun();
  return { rank, seconds, waitMs, bareAllreduceMs, gradientMB: (params * 4) / 2 ** 20, loss };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function config(workers: number, threads: number, bn: string): Promise<Record<string, unknown>> {
  const port = await freePort();
  const self = fileURLToPath(import.meta.url);
  const results = await Promise.all(Array.from({ length: workers }, (_, r) => new Promise<WorkerResult>((resolve, reject) => {
    const c = spawn(process.execPath, [self, 'worker', String(r), String(workers), String(port), bn], { env: { ...process.env, GRAFT_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`worker ${r} exited with ${code}`))));
  })));
  const seconds = Math.max(...results.map((r) => r.seconds));
  const waits = results.flatMap((r) => r.waitMs).sort((a, b) => a - b);
  const median = (a: number[]) => (a.length ? a[Math.floor(a.length / 2)] : null);
  return {
    workers, threadsEach: threads, batchNorm: bn === 'keep' ? 'moving statistics (nothing to synchronize)' : 'training (synchronized)', imagesPerSecond: Math.round((BATCH * STEPS) / seconds), msPerStep: Math.round((1000 * seconds) / STEPS),
    allreduceWaitMsMedian: median(waits), bareAllreduceMs: workers > 1 ? Number(results[0].bareAllreduceMs.toFixed(2)) : null,
    gradientMB: Number(results[0].gradientMB.toFixed(1)), lossesAgree: results.every((r) => r.loss === results[0].loss),
  };
}

if (process.argv[2] === 'worker') {
  const [rank, world, port] = process.argv.slice(3, 6).map(Number);
  console.log(JSON.stringify(await worker(rank, world, port, process.argv[6])));
} else {
  const cpu = execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).toString().trim();
  const rows: Array<Record<string, unknown> & { imagesPerSecond: number; allreduceWaitMsMedian: number | null }> = [];
  for (const bn of ['sync', 'keep']) {
    for (const [w, t] of [[1, 1], [2, 1], [1, 2]]) {
      const r = await config(w, t, bn) as (typeof rows)[number];
      console.log(`BatchNorm ${bn === 'sync' ? 'training' : 'on moving statistics'}, ${w} worker(s) x ${t} thread(s): ${r.imagesPerSecond} img/s, ${r.msPerStep} ms/step${w > 1 ? `, waited ${r.allreduceWaitMsMedian?.toFixed(1)} ms/step on the gradient all-reduce after backward (a bare all-reduce of ${r.gradientMB} MB: ${r.bareAllreduceMs} ms)` : ''}`);
      rows.push(r);
    }
  }
  const ratio = (a: number, b: number) => Number((rows[a].imagesPerSecond / rows[b].imagesPerSecond).toFixed(2));
  console.log(JSON.stringify({
    bench: 'scale', model: 'mobilenet-v2 96x96, full fine-tune', globalBatch: BATCH, steps: STEPS, cpu, configs: rows,
    ratios: {
      syncBn: { twoWorkersVsOne: ratio(1, 0), twoWorkersVsTwoThreads: ratio(1, 2), twoThreadsVsOne: ratio(2, 0) },
      keptBn: { twoWorkersVsOne: ratio(4, 3), twoWorkersVsTwoThreads: ratio(4, 5), twoThreadsVsOne: ratio(5, 3) },
    },
  }));
}
