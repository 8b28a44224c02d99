// npm run bench:bodies: feature extraction through a frozen MobileNetV2 (96x96x3, batch 32,
// features of the last conv block), three ways on this machine: onnxruntime-node on an ONNX
// export of torchvision's MobileNetV2, tfjs (Graft's backend) on the zoo's Keras-layout
// MobileNetV2, and PyTorch itself (Debian python3-torch, 2 threads, channels_last) as the
// reference, all in this run. Random weights: speed does not depend on them. Last line: JSON.

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { cutBody } from '../src/model/cut.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/model/load.js';
import { OnnxBody } from '../src/model/onnx.js';

const BATCH = 32;
const REPS = Number(process.env.BENCH_REPS ?? 5);

const EXPORT = `
import sys, time, torch, torchvision
torch.set_num_threads(2)
m = torchvision.models.mobilenet_v2().features.eval()
x = torch.rand(${BATCH}, 3, 96, 96)
torch.onnx.export(m, x, sys.argv[1], input_names=['pixels'], output_names=['features'], opset_version=13, dynamic_axes={'pixels': {0: 'batch'}, 'features': {0: 'batch'}})
xc = x.contiguous(memory_format=torch.channels_last)
mc = m.to(memory_format=torch.channels_last)
with torch.no_grad():
    for _ in range(2): mc(xc)
    t = time.perf_counter()
    for _ in range(${REPS}): mc(xc)
    print((${BATCH} * ${REPS}) / (time.perf_counter() - t))
`;

async function rate(run: () => Promise<void>): Promise<number> {
  await run();
  const t0 = performance.now();
  for (let r = 0; r < REPS; r++) await run();
  return (BATCH * REPS) / ((performance.now() - t0) / 1000);
}

const backend = await initBackend();
const dir = await mkdtemp(join(tmpdir(), 'graft-bench-bodies-'));
try {
  const onnxPath = join(dir, 'mobilenet_v2_features.onnx');
  let torchRate: number | null = null;
  let reference = 'ok';
  try {
    torchRate = Number(execFileSync('/usr/bin/python3', ['-c', EXPORT, onnxPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').at(-1));
  } catch {
    reference = 'reference missing: /usr/bin/python3 with python3-torch and python3-torchvision (bench/setup-reference.sh)';
  }
  let ortRate: number | null = null;
  if (torchRate !== null) {
    const body = await OnnxBody.load(onnxPath);
    const x = new Float32Array(BATCH * 96 * 96 * 3).map(() => Math.random());
    ortRate = await rate(async () => { await body.run(x, BATCH); });
    await body.dispose();
  }
  const base = await loadModel('mobilenet-v2', { inputSize: [96, 96], keepUpTo: 'out_relu' });
  const tfBody = cutBody(base.model, 'out_relu').model;
  const xt = tf.randomUniform([BATCH, 96, 96, 3]);
  const tfjsRate = await rate(async () => { const y = tfBody.predict(xt) as tf.Tensor; await y.data(); y.dispose(); });
  xt.dispose();
  const r = (v: number | null) => (v === null ? null : +v.toFixed(1));
  console.log(`MobileNetV2 features, 96x96, batch ${BATCH}: onnxruntime-node ${r(ortRate) ?? '-'} img/s, tfjs ${backend.name} ${r(tfjsRate)} img/s, PyTorch ${r(torchRate) ?? '-'} img/s`);
  console.log(JSON.stringify({
    bench: 'bodies', network: 'MobileNetV2 alpha 1.0 features (random weights)', input: '96x96x3', batch: BATCH, reps: REPS, reference,
    imagesPerSecond: { onnxruntime: r(ortRate), tfjs: r(tfjsRate), tfjsBackend: backend.name, torch: r(torchRate) },
    ratioVsTorch: { onnxruntime: torchRate && ortRate ? +(ortRate / torchRate).toFixed(2) : null, tfjs: torchRate ? +(tfjsRate / torchRate).toFixed(2) : null },
    fastest: ortRate !== null && ortRate > tfjsRate ? 'onnxruntime' : `tfjs ${backend.name}`,
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
