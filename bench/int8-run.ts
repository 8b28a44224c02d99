// bench/int8.ts' child: runs every ONNX file of a folder on onnxruntime-node over the samples
// saved beside them, and writes each file's probabilities. Started natively and under
// `qemu-x86_64 -cpu EPYC-Milan` (AVX2 without AVX512 or VNNI), so that onnxruntime picks its
// kernels from the CPU flags it sees, as it would on such a machine.
//
//   node dist/bench/int8-run.js DIR [ROUNDS]   DIR: samples.f32, samples.json, *.onnx -> *.probs.f32, run.json

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dataset } from '../src/data/dataset.js';
import { OnnxModel } from '../src/export/onnx-run.js';

const dir = process.argv[2];
const ROUNDS = Number(process.argv[3] ?? 1);
const meta = JSON.parse(await readFile(join(dir, 'samples.json'), 'utf8')) as { sampleShape: number[]; classNames: string[]; n: number };
const raw = await readFile(join(dir, 'samples.f32'));
const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
const d: Dataset = { x, sampleShape: meta.sampleShape, labels: new Int32Array(meta.n), classNames: meta.classNames, source: dir };
const seconds: Record<string, number> = {};
for (const f of (await readdir(dir)).filter((n) => n.endsWith('.onnx')).sort()) {
  const m = await OnnxModel.fromBytes(await readFile(join(dir, f)), f, 2);
  try {
    // The fastest of ROUNDS passes over the samples (the first also warms the session up).
    let probs: Float32Array = new Float32Array(0);
    let best = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      const t = performance.now();
      [probs] = await m.predict(d);
      best = Math.min(best, (performance.now() - t) / 1000);
    }
    seconds[f] = best;
    await writeFile(join(dir, f.replace(/\.onnx$/, '.probs.f32')), Buffer.from(probs.buffer, probs.byteOffset, probs.byteLength));
  } finally {
    await m.dispose();
  }
}
await writeFile(join(dir, 'run.json'), JSON.stringify({ seconds }));
