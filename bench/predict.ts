// npm run bench:predict: prediction speed of MobileNetV2 alpha 1.0 (the zoo's mobilenet-v2 cut
// at out_relu + GAP + Dense(10) softmax, as bench:engine) at 96x96 and 224x224, batch 1
// (latency, median of many single-image calls) and batch 32 (images per second), on:
//   native    Graft's libtorch engine (one call per batch)
//   ortFp32   graft export's fp32 ONNX file on onnxruntime-node
//   ortFp16   graft export --quantize fp16 (fp32 in and out)
//   ortInt8   graft export --quantize int8 (QDQ, calibrated on 64 random images: speed only;
//             the default --fp32-layers auto, which may leave the most sensitive layer fp32)
//   ortInt8All --quantize int8 --fp32-layers none: every layer int8
//   ortInt8S8, ortInt8S8All  the same with --int8-weights int8 (onnxruntime's U8S8 kernels:
//             fastest with VNNI; the two above store uint8 weights, U8U8, the default)
//   torch     PyTorch fp32 (Debian python3-torch, torchvision's MobileNetV2, channels_last,
//             no_grad, eval), the reference
// all with 2 threads, in this run. Last line: one JSON object with every figure and
// ratioVsTorch (img/s at batch 32 and 1 / latency at batch 1, each against torch).
//
// BENCH_ROUNDS (default 5) timed batch-32 calls per engine and size; batch 1 runs 8x as many.

import { execFileSync } from 'node:child_process';
import { adoptModel } from '../src/model/batch-norm.js';
import { graft } from '../src/model/graft.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { NativeNet } from '../src/engine/native.js';
import { nativePlan } from '../src/model/native-plan.js';
import { exportOnnx } from '../src/export/export.js';
import type { GraftMeta } from '../src/model/meta.js';
import { makeRng } from '../src/data/random.js';

const SIZES = [96, 224];
const BATCH = 32;
const CLASSES = 10;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
type Engine = 'native' | 'ortFp32' | 'ortFp16' | 'ortInt8' | 'ortInt8All' | 'ortInt8S8' | 'ortInt8S8All' | 'torch';

interface Figure { batch32ImagesPerSecond: number | null; batch1LatencyMs: number | null; batch1ImagesPerSecond: number | null }

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function measure(run: (x: Float32Array, n: number) => Promise<unknown> | unknown, size: number): Promise<Figure> {
  const rng = makeRng(size);
  const per = size * size * 3;
  const x32 = Float32Array.from({ length: BATCH * per }, () => rng());
  const x1 = x32.slice(0, per);
  await run(x32, BATCH);
  const t = performance.now();
  for (let i = 0; i < ROUNDS; i++) await run(x32, BATCH);
  const rate = (ROUNDS * BATCH) / ((performance.now() - t) / 1000);
  await run(x1, 1);
  const lat: number[] = [];
  for (let i = 0; i < ROUNDS * 8; i++) {
    const s = performance.now();
    await run(x1, 1);
    lat.push(performance.now() - s);
  }
  const m = median(lat);
  return { batch32ImagesPerSecond: +rate.toFixed(1), batch1LatencyMs: +m.toFixed(2), batch1ImagesPerSecond: +(1000 / m).toFixed(1) };
}

const TORCH = `
import json, sys, time, statistics, torch, torchvision
torch.set_num_threads(2)
out = {}
for S in ${JSON.stringify(SIZES)}:
    body = torchvision.models.mobilenet_v2().features.to(memory_format=torch.channels_last).eval()
    head = torch.nn.Linear(1280, ${CLASSES}).eval()
    def model(x): return torch.softmax(head(body(x).mean((2, 3))), 1)
    with torch.no_grad():
        x = torch.rand(${BATCH}, 3, S, S).contiguous(memory_format=torch.channels_last)
        model(x); model(x)
        t = time.perf_counter()
        for _ in range(${ROUNDS}): model(x)
        rate = ${ROUNDS} * ${BATCH} / (time.perf_counter() - t)
        x1 = x[:1].contiguous(memory_format=torch.channels_last)
        model(x1)
        lat = []
        for _ in range(${ROUNDS * 8}):
            s = time.perf_counter(); model(x1); lat.append((time.perf_counter() - s) * 1000)
        m = statistics.median(lat)
    out[str(S)] = {'batch32ImagesPerSecond': round(rate, 1), 'batch1LatencyMs': round(m, 2), 'batch1ImagesPerSecond': round(1000 / m, 1)}
print(json.dumps(out))
`;

async function main(): Promise<void> {
  await initBackend();
  const ort = await import('onnxruntime-node');
  const figures: Record<string, Partial<Record<Engine, Figure | string>>> = {};
  for (const size of SIZES) {
    const base = await loadModel('mobilenet-v2', { inputSize: [size, size], keepUpTo: 'out_relu' });
    const g = graft(await adoptModel(base.model), { cut: 'out_relu', head: { numClasses: CLASSES, dropout: 0, seed: 1 } });
    const classNames = Array.from({ length: CLASSES }, (_, i) => `c${i}`);
    const meta: GraftMeta = { format: 'graft/1', classNames, preprocessing: { inputShape: [size, size, 3] }, heads: [{ name: 'new', outputLayer: g.model.outputNames[0], classNames, layers: [] }], versions: {}, createdAt: '' };
    const row: Partial<Record<Engine, Figure | string>> = {};
    try {
      const net = new NativeNet(nativePlan(g.model));
      row.native = await measure((x, n) => net.predict(x, n), size);
      net.dispose();
    } catch (e) {
      row.native = `not run: ${(e as Error).message}`;
    }
    console.log(`${size}x${size} native: ${JSON.stringify(row.native)}`);
    const rng = makeRng(7);
    const calibration = { x: Float32Array.from({ length: 64 * size * size * 3 }, () => rng()), sampleShape: [size, size, 3], labels: new Int32Array(64), classNames, source: 'random' };
    for (const [engine, quantize, keepSensitive, weights] of [['ortFp32', 'none', true, 'uint8'], ['ortFp16', 'fp16', true, 'uint8'], ['ortInt8', 'int8', true, 'uint8'], ['ortInt8All', 'int8', false, 'uint8'], ['ortInt8S8', 'int8', true, 'int8'], ['ortInt8S8All', 'int8', false, 'int8']] as const) {
      const { bytes, keptFp32 } = await exportOnnx(g.model, meta, { quantize, calibration, calibrationSamples: 64, keepSensitive, weights });
      if (keptFp32) console.log(`${size}x${size} ${engine}: kept in fp32: ${keptFp32.layer}`);
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      row[engine] = await measure((x, n) => session.run({ input: new ort.Tensor('float32', x, [n, size, size, 3]) }), size);
      await session.release();
      console.log(`${size}x${size} ${engine}: ${JSON.stringify(row[engine])}`);
    }
    g.model.dispose();
    figures[String(size)] = row;
  }
  let torch: Record<string, Figure> | string;
  try {
    torch = JSON.parse(execFileSync('/usr/bin/python3', ['-c', TORCH], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').at(-1)!);
  } catch (e) {
    torch = `reference missing: /usr/bin/python3 with python3-torch and python3-torchvision (bench/setup-reference.sh) (${String((e as Error).message).split('\n')[0]})`;
  }
  for (const size of SIZES) {
    figures[String(size)].torch = typeof torch === 'string' ? torch : torch[String(size)];
    console.log(`${size}x${size} torch: ${JSON.stringify(figures[String(size)].torch)}`);
  }
  const ratioVsTorch: Record<string, Record<string, { batch32: number | null; batch1: number | null }>> = {};
  const fastest: Record<string, { engine: string; batch32VsTorch: number | null; batch1LatencyBelowTorch: boolean | null }> = {};
  for (const size of SIZES) {
    const row = figures[String(size)];
    const t = typeof row.torch === 'object' ? row.torch : undefined;
    ratioVsTorch[String(size)] = {};
    let best: { engine: string; rate: number } | undefined;
    for (const e of ['native', 'ortFp32', 'ortFp16', 'ortInt8', 'ortInt8All', 'ortInt8S8', 'ortInt8S8All'] as const) {
      const f = typeof row[e] === 'object' ? (row[e] as Figure) : undefined;
      ratioVsTorch[String(size)][e] = {
        batch32: f && t ? +(f.batch32ImagesPerSecond! / t.batch32ImagesPerSecond!).toFixed(2) : null,
        batch1: f && t ? +(t.batch1LatencyMs! / f.batch1LatencyMs!).toFixed(2) : null,
      };
      if (f && (!best || f.batch32ImagesPerSecond! > best.rate)) best = { engine: e, rate: f.batch32ImagesPerSecond! };
    }
    const bf = best ? (row[best.engine as Engine] as Figure) : undefined;
    fastest[String(size)] = {
      engine: best?.engine ?? 'none',
      batch32VsTorch: best && t ? +(best.rate / t.batch32ImagesPerSecond!).toFixed(2) : null,
      batch1LatencyBelowTorch: bf && t ? bf.batch1LatencyMs! < t.batch1LatencyMs! : null,
    };
  }
  console.log(JSON.stringify({
    bench: 'predict', model: 'MobileNetV2 alpha 1.0 + GAP + Dense(10)', threads: 2, rounds: ROUNDS, batch: BATCH,
    reference: typeof torch === 'string' ? torch : 'ok', figures, ratioVsTorch, fastest,
    target: 'fastest path >= 3x torch fp32 img/s at batch 32, batch-1 latency below torch',
  }));
}

await main();
