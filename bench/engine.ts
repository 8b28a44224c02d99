// npm run bench:engine: MobileNetV2 alpha 1.0 (the zoo's Keras-layout mobilenet-v2, cut at
// out_relu, + GAP + Dense(10) softmax), 96x96x3, batch 32, on this machine, in this run:
//   predict; head training on cached body features; training with a frozen body inside the
//   step; full fine-tune (every layer, BatchNorm in training mode)
// for the native engine (one call per step) in fp32 and in bf16 (--precision bf16: bf16
// convolutions and matrix products, fp32 master weights), tfjs per-op on wasm with the native convolution
// and matmul kernels, tfjs wasm alone (per-op, Graft's JS gradient kernels),
// tfjs cpu (capped to one or two small steps) and the PyTorch twin (Debian python3-torch, 2
// threads, channels_last, torchvision's MobileNetV2 + the same head, Adam), in fp32 and under
// torch.autocast('cpu', torch.bfloat16) (its error where it cannot run). Each engine runs
// in its own process, so its peak RSS is its own. Last line: one JSON object.
//
// BENCH_STEPS (default 8) timed steps per mode for native and torch; wasm and cpu run fewer.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { adoptModel } from '../src/model/batch-norm.js';
import { graft } from '../src/model/graft.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { setNativeEnabled, nativeStatus } from '../src/engine/native.js';
import { unfreeze, freezeBody } from '../src/model/freeze.js';
import { runEpoch, type LayerGroup } from '../src/train/loop.js';
import { AdamW } from '../src/train/optimizer.js';
import { NativeNet } from '../src/engine/native.js';
import { nativePlan } from '../src/model/native-plan.js';
import { setNativeKernels } from '../src/engine/native-kernels.js';
import { makeRng } from '../src/data/random.js';
import type { Dataset } from '../src/data/dataset.js';

const BATCH = 32;
const SIZE = 96;
const CLASSES = 10;
const STEPS = Number(process.env.BENCH_STEPS ?? 8);
type Mode = 'predict' | 'head' | 'frozenBody' | 'finetune';
const MODES: Mode[] = ['predict', 'head', 'frozenBody', 'finetune'];

interface EngineResult {
  engine: string;
  imagesPerSecond: Partial<Record<Mode, number | null>>;
  batch: Partial<Record<Mode, number>>;
  steps: Partial<Record<Mode, number>>;
  peakRssMB: number;
  /** tfjs tensors and RSS after the first and the last timed fine-tune step (flat = no leak). */
  tensorsFirstLast?: [number, number];
  rssFirstLastMB?: [number, number];
  note?: string;
}

const rssMB = () => process.memoryUsage().rss / 1024 ** 2;

function randomSet(n: number, shape: number[], seed: number): Dataset {
  const rng = makeRng(seed);
  const per = shape.reduce((a, b) => a * b, 1);
  return { x: Float32Array.from({ length: n * per }, () => rng()), sampleShape: shape, labels: Int32Array.from({ length: n }, (_, i) => i % CLASSES), classNames: Array.from({ length: CLASSES }, (_, i) => `c${i}`), source: 'random' };
}

/** Times `steps` training steps (after a quarter as many untimed) through Graft's own loop; img/s. */
async function trainRate(model: tfl.LayersModel, groups: LayerGroup[], data: Dataset, batch: number, steps: number, native: boolean, precision: 'fp32' | 'bf16', track?: { tensors: number[]; rss: number[] }): Promise<number> {
  const net = native ? new NativeNet(nativePlan(model, groups), { precision }) : undefined;
  const optimizer = new AdamW();
  const times: number[] = [];
  const warm = Math.max(1, Math.floor(steps / 4));
  // The data holds a few batches (as PyTorch's twin reuses one): epochs repeat until enough steps.
  const perEpoch = Math.floor(data.labels.length / batch);
  const sub = { ...data, x: (data.x as Float32Array).subarray(0, perEpoch * batch * data.sampleShape.reduce((a, b) => a * b, 1)), labels: data.labels.subarray(0, perEpoch * batch) };
  const rng = makeRng(1);
  for (let e = 0; times.length < steps + warm; e++) {
    await runEpoch({
      model, data: sub, groups, optimizer, batchSize: batch, rng, lrAt: () => 1e-4, firstStep: e * perEpoch, native: net,
      onBatch: () => { times.push(performance.now()); track?.tensors.push(tf.memory().numTensors); track?.rss.push(rssMB()); },
      pause: () => times.length >= steps + warm,
    });
  }
  net?.syncWeights();
  net?.dispose();
  optimizer.dispose();
  return ((times.length - warm) * batch) / ((times[times.length - 1] - times[warm - 1]) / 1000);
}

async function predictRate(model: tfl.LayersModel, x: Float32Array, batch: number, steps: number, native: boolean, precision: 'fp32' | 'bf16'): Promise<number> {
  if (native) {
    const net = new NativeNet(nativePlan(model), { precision });
    net.predict(x, batch);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) net.predict(x, batch);
    net.dispose();
    return (steps * batch) / ((performance.now() - t0) / 1000);
  }
  const xt = tf.tensor(x, [batch, SIZE, SIZE, 3]);
  const once = async () => { const y = model.predict(xt) as tf.Tensor; await y.data(); y.dispose(); };
  await once();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await once();
  xt.dispose();
  return (steps * batch) / ((performance.now() - t0) / 1000);
}

/** One engine and one mode, in this process (so the peak RSS is that mode's). */
async function runEngine(engine: string, only: Mode): Promise<EngineResult> {
  // native: the native training step (one call per batch); native-per-op: tfjs per-op on wasm
  // with the native convolution and matmul kernels; wasm: wasm's own kernels and Graft's JS
  // gradient kernels; cpu: tfjs' pure-JS backend.
  // native-bf16: the native engine with --precision bf16.
  const native = engine === 'native' || engine === 'native-bf16';
  const precision = engine === 'native-bf16' ? 'bf16' : 'fp32';
  const perOp = engine === 'native-per-op';
  await initBackend(native || perOp ? 'wasm' : engine);
  if ((native || perOp) && !nativeStatus().available) throw new Error(`native engine ${nativeStatus().reason}`);
  setNativeKernels(perOp);
  setNativeEnabled(native);
  const base = await loadModel('mobilenet-v2', { inputSize: [SIZE, SIZE], keepUpTo: 'out_relu' });
  const g = graft(await adoptModel(base.model), { cut: 'out_relu', head: { numClasses: CLASSES, dropout: 0, seed: 1 } });
  const res: EngineResult = { engine, imagesPerSecond: {}, batch: {}, steps: {}, peakRssMB: 0 };
  // cpu is pure JavaScript (~0.1 img/s for a full step): one or two small steps only.
  const plan: Record<Mode, [number, number]> = engine === 'cpu'
    ? { predict: [BATCH, 1], head: [BATCH, 3], frozenBody: [2, 1], finetune: [2, 1] }
    : engine === 'wasm' || perOp
      ? { predict: [BATCH, 3], head: [BATCH, STEPS], frozenBody: [BATCH, 2], finetune: [16, 2] }
      : { predict: [BATCH, STEPS * 3], head: [BATCH, STEPS * 25], frozenBody: [BATCH, STEPS], finetune: [BATCH, STEPS] };
  const images = randomSet(only === 'head' ? 1 : 2 * BATCH, [SIZE, SIZE, 3], 2);
  for (const mode of MODES.filter((m) => m === only)) {
    const [batch, steps] = plan[mode];
    res.batch[mode] = batch;
    res.steps[mode] = steps;
    if (mode === 'predict') {
      res.imagesPerSecond.predict = await predictRate(g.model, (images.x as Float32Array).subarray(0, batch * SIZE * SIZE * 3), batch, steps, native, precision);
    } else if (mode === 'head') {
      const feats = randomSet(20 * batch, g.headModel.inputs[0].shape.slice(1) as number[], 3);
      freezeBody(g);
      res.imagesPerSecond.head = await trainRate(g.headModel, [{ layers: g.head.layers, lrMult: 1 }], feats, batch, steps, native, precision);
    } else if (mode === 'frozenBody') {
      freezeBody(g);
      res.imagesPerSecond.frozenBody = await trainRate(g.model, [{ layers: g.head.layers, lrMult: 1 }], images, batch, steps, native, precision);
    } else {
      unfreeze(g, 'all');
      const track = { tensors: [] as number[], rss: [] as number[] };
      res.imagesPerSecond.finetune = await trainRate(g.model, [{ layers: g.body.layers, lrMult: 0.1 }, { layers: g.head.layers, lrMult: 1 }], images, batch, steps, native, precision, track);
      res.tensorsFirstLast = [track.tensors[1] ?? track.tensors[0], track.tensors[track.tensors.length - 1]];
      res.rssFirstLastMB = [Math.round(track.rss[1] ?? track.rss[0]), Math.round(track.rss[track.rss.length - 1])];
    }
  }
  res.peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
  return res;
}

// The PyTorch twin: argv[1] 'fp32', or 'bf16' (each mode under torch.autocast('cpu',
// torch.bfloat16); a mode autocast cannot run reports its error). One JSON line.
const TORCH = `
import json, resource, sys, time, torch, torchvision
torch.set_num_threads(2)
B, S, K, STEPS = ${BATCH}, ${SIZE}, ${CLASSES}, ${STEPS}
bf16 = sys.argv[1] == 'bf16'
def cast(): return torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16)
body = torchvision.models.mobilenet_v2().features.to(memory_format=torch.channels_last)
head = torch.nn.Linear(1280, K)
x = torch.rand(B, 3, S, S).contiguous(memory_format=torch.channels_last)
y = torch.arange(B) % K
def model(x): return head(body(x).mean((2, 3)))
def rate(step, n):
    step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n * B / (time.perf_counter() - t)
out, errors = {}, {}
def run(mode, step, n):
    try:
        out[mode] = rate(step, n)
    except Exception as e:
        out[mode] = None
        errors[mode] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
body.eval()
def predict():
    with torch.no_grad(), cast(): torch.softmax(model(x).float(), 1)
run('predict', predict, STEPS)
with torch.no_grad(), cast(): feats = body(x)
opt = torch.optim.Adam(head.parameters(), lr=1e-4, eps=1e-7)
def head_step():
    opt.zero_grad()
    with cast(): logits = head(feats.mean((2, 3)))
    torch.nn.functional.cross_entropy(logits.float(), y).backward(); opt.step()
run('head', head_step, STEPS * 25)
def step():
    opt.zero_grad()
    with cast(): logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward(); opt.step()
for p in body.parameters(): p.requires_grad_(False)
run('frozenBody', step, STEPS)
for p in body.parameters(): p.requires_grad_(True)
body.train()
opt = torch.optim.Adam(list(body.parameters()) + list(head.parameters()), lr=1e-4, eps=1e-7)
run('finetune', step, STEPS)
print(json.dumps({**out, 'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'errors': errors}))
`;

function torchResult(precision: 'fp32' | 'bf16'): EngineResult | string {
  try {
    const line = execFileSync('/usr/bin/python3', ['-c', TORCH, precision], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').at(-1)!;
    const o = JSON.parse(line) as Record<Mode, number | null> & { rss: number; errors: Record<string, string> };
    const errors = Object.entries(o.errors);
    return {
      engine: precision === 'bf16' ? 'torch-bf16' : 'torch', imagesPerSecond: { predict: o.predict, head: o.head, frozenBody: o.frozenBody, finetune: o.finetune },
      batch: { predict: BATCH, head: BATCH, frozenBody: BATCH, finetune: BATCH }, steps: {}, peakRssMB: Math.round(o.rss),
      ...(errors.length ? { note: errors.map(([m, e]) => `${m}: ${e}`).join('; ') } : {}),
    };
  } catch (e) {
    return `reference missing: /usr/bin/python3 with python3-torch and python3-torchvision (bench/setup-reference.sh) (${String((e as Error).message).split('\n')[0]})`;
  }
}

function child(engine: string, mode: Mode): EngineResult | string {
  try {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--engine', engine, mode], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').at(-1)!) as EngineResult;
  } catch (e) {
    return `failed: ${String((e as Error).message).split('\n').slice(0, 3).join(' ')}`;
  }
}

const at = process.argv.indexOf('--engine');
if (at > 0) {
  console.log(JSON.stringify(await runEngine(process.argv[at + 1], process.argv[at + 2] as Mode)));
} else {
  const engines = (process.env.BENCH_ENGINES ?? 'native,native-bf16,native-per-op,wasm,cpu').split(',');
  const results: Record<string, EngineResult | string> = {};
  for (const e of engines) {
    const t0 = Date.now();
    const parts = MODES.map((m) => child(e, m));
    const failed = parts.find((p) => typeof p === 'string');
    results[e] = failed ?? (parts as EngineResult[]).reduce((acc, p) => {
      const q = p;
      return {
        ...acc, ...q, imagesPerSecond: { ...acc.imagesPerSecond, ...q.imagesPerSecond }, batch: { ...acc.batch, ...q.batch }, steps: { ...acc.steps, ...q.steps },
        peakRssMB: Math.max(acc.peakRssMB, q.peakRssMB), peakRssByMode: { ...(acc as { peakRssByMode?: object }).peakRssByMode, [Object.keys(q.imagesPerSecond)[0]]: q.peakRssMB },
      } as EngineResult;
    });
    console.log(`${e}: ${typeof results[e] === 'string' ? results[e] : JSON.stringify((results[e] as EngineResult).imagesPerSecond)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  results.torch = torchResult('fp32');
  console.log(`torch: ${typeof results.torch === 'string' ? results.torch : JSON.stringify(results.torch.imagesPerSecond)}`);
  results['torch-bf16'] = torchResult('bf16');
  const tb = results['torch-bf16'];
  console.log(`torch-bf16 (autocast): ${typeof tb === 'string' ? tb : `${JSON.stringify(tb.imagesPerSecond)}${tb.note ? ` (${tb.note})` : ''}`}`);
  const r = (v: number | null | undefined) => (v == null ? null : +v.toFixed(1));
  const ok = (e: string) => (typeof results[e] === 'object' ? results[e] as EngineResult : undefined);
  const torch = ok('torch');
  // The fp32 ratios compare Graft's best fp32 engine with PyTorch fp32; the bf16 ones native-bf16
  // with PyTorch fp32 (the issue's targets) and with PyTorch's autocast bf16 where it runs.
  const fp32Engines = engines.filter((e) => e !== 'native-bf16');
  const best = (mode: Mode) => Math.max(...fp32Engines.map((e) => ok(e)?.imagesPerSecond[mode] ?? 0));
  const ratio = (mode: Mode) => (torch?.imagesPerSecond[mode] ? +(best(mode) / torch.imagesPerSecond[mode]!).toFixed(2) : null);
  const bf16 = ok('native-bf16');
  const torchBf16 = ok('torch-bf16');
  const over = (a: number | null | undefined, b: number | null | undefined) => (a && b ? +(a / b).toFixed(2) : null);
  console.log(JSON.stringify({
    bench: 'engine', network: 'MobileNetV2 alpha 1.0 (zoo mobilenet-v2 to out_relu) + GAP + Dense(10)', input: `${SIZE}x${SIZE}x3`, batch: BATCH,
    reference: typeof results.torch === 'string' ? results.torch : 'ok',
    imagesPerSecond: Object.fromEntries(Object.entries(results).map(([e, v]) => [e, typeof v === 'string' ? v : Object.fromEntries(MODES.map((m) => [m, r(v.imagesPerSecond[m])]))])),
    batchUsed: Object.fromEntries(Object.entries(results).map(([e, v]) => [e, typeof v === 'string' ? null : v.batch])),
    peakRssMB: Object.fromEntries(Object.entries(results).map(([e, v]) => [e, typeof v === 'string' ? null : v.peakRssMB])),
    tensorsFirstLast: Object.fromEntries(engines.map((e) => [e, ok(e)?.tensorsFirstLast ?? null])),
    rssFirstLastMB: Object.fromEntries(engines.map((e) => [e, ok(e)?.rssFirstLastMB ?? null])),
    ratioVsTorch: {
      predict: ratio('predict'), head: ratio('head'), frozenBody: ratio('frozenBody'), finetune: ratio('finetune'),
      predictBf16: over(bf16?.imagesPerSecond.predict, torch?.imagesPerSecond.predict), finetuneBf16: over(bf16?.imagesPerSecond.finetune, torch?.imagesPerSecond.finetune),
    },
    ratioVsTorchBf16: Object.fromEntries(MODES.map((m) => [m, over(bf16?.imagesPerSecond[m], torchBf16?.imagesPerSecond[m])])),
    torchBf16Errors: torchBf16?.note ?? null,
    peakRssByModeMB: Object.fromEntries(engines.map((e) => [e, (ok(e) as { peakRssByMode?: object } | undefined)?.peakRssByMode ?? null])),
    rssVsTorch: torch && ok('native') ? +(ok('native')!.peakRssMB / torch.peakRssMB).toFixed(2) : null,
  }));
}
