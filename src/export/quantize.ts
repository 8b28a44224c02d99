// Smaller, faster exports: fp16 (weights and compute in half precision, fp32 in and out) and
// int8 in ONNX's QDQ form (QuantizeLinear / DequantizeLinear pairs around every quantizable
// op, which onnxruntime fuses into integer kernels: QLinearConv, QGemm, QLinearAdd, ...).
//
// int8, as onnxruntime's own static quantizer does it:
// - BatchNormalization after a Conv is folded into the Conv's weights and bias;
// - activations: uint8, asymmetric, one scale per tensor, from the min and max the fp32 graph
//   reaches on calibration images (the user's own); a Relu or Clip(0, 6) right after a Conv or
//   Gemm is dropped, the Conv's output taking the activation's range, so the quantization's
//   clamp does its work;
// - weights: symmetric, one scale per output channel, stored as uint8 around 128 (WeightForm);
//   biases int32 at scale input scale x weight scale.

import { GraftError } from '../errors.js';
import { ort } from '../model/onnx.js';
import { makeRng } from '../data/random.js';
import { DT, encodeModel, floatTensor, halfTensor, int32Tensor, int8Tensor, type Graph, type Model, type Node, type Tensor } from './onnx-proto.js';

const floatsOf = (t: Tensor): Float32Array => {
  if (t.dataType !== DT.FLOAT) throw new Error(`${t.name} is not float`);
  return new Float32Array(t.raw.buffer.slice(t.raw.byteOffset, t.raw.byteOffset + t.raw.byteLength));
};

function index(g: Graph) {
  const inits = new Map(g.initializers.map((t) => [t.name, t]));
  const consumers = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) { if (!consumers.has(i)) consumers.set(i, []); consumers.get(i)!.push(n); }
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const isOutput = new Set(g.outputs.map((o) => o.name));
  return { inits, consumers, producer, isOutput };
}

/** Conv followed by BatchNormalization (the Conv's only consumer): one Conv with scaled weights. */
export function foldBatchNorm(graph: Graph): Graph {
  const g: Graph = { ...graph, nodes: graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs] })) };
  const { inits, consumers, producer, isOutput } = index(g);
  const drop = new Set<Node>();
  const replace = new Map<string, Tensor>();
  const added: Tensor[] = [];
  for (const bn of g.nodes) {
    if (bn.opType !== 'BatchNormalization') continue;
    const conv = producer.get(bn.inputs[0]);
    if (!conv || conv.opType !== 'Conv' || consumers.get(conv.outputs[0])?.length !== 1 || isOutput.has(conv.outputs[0])) continue;
    const [gamma, beta, mean, variance] = bn.inputs.slice(1).map((n) => inits.get(n));
    const w = inits.get(conv.inputs[1]);
    if (!gamma || !beta || !mean || !variance || !w) continue;
    const eps = (bn.attrs?.epsilon as { float: number } | undefined)?.float ?? 1e-5;
    const [ga, be, mu, va] = [gamma, beta, mean, variance].map(floatsOf);
    const wv = floatsOf(replace.get(w.name) ?? w);
    const co = w.dims[0];
    const per = wv.length / co;
    const bias = conv.inputs[2] ? floatsOf(inits.get(conv.inputs[2])!) : new Float32Array(co);
    const nb = new Float32Array(co);
    for (let c = 0; c < co; c++) {
      const s = ga[c] / Math.sqrt(va[c] + eps);
      for (let i = 0; i < per; i++) wv[c * per + i] *= s;
      nb[c] = (bias[c] - mu[c]) * s + be[c];
    }
    const wName = `${w.name}_folded`;
    const bName = `${bn.outputs[0]}/folded_bias`;
    added.push(floatTensor(wName, w.dims, wv), floatTensor(bName, [co], nb));
    conv.inputs = [conv.inputs[0], wName, bName];
    conv.outputs = [bn.outputs[0]];
    drop.add(bn);
  }
  const nodes = g.nodes.filter((n) => !drop.has(n));
  const used = new Set(nodes.flatMap((n) => n.inputs));
  return { ...g, nodes, initializers: [...g.initializers, ...added].filter((t) => used.has(t.name)) };
}

/**
 * A zero Pad on height and width read only by a Conv: the Conv pads itself (Keras' MobileNetV2
 * pads before its stride-2 convolutions). Exact; and it keeps the int8 chain unbroken.
 */
export function foldPad(graph: Graph): Graph {
  const g: Graph = { ...graph, nodes: graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: n.attrs && { ...n.attrs } })) };
  const { inits, consumers, isOutput } = index(g);
  const drop = new Set<Node>();
  for (const pad of g.nodes) {
    if (pad.opType !== 'Pad' || (pad.attrs?.mode ?? 'constant') !== 'constant' || pad.inputs.length > 2) continue;
    const readers = consumers.get(pad.outputs[0]) ?? [];
    if (readers.length !== 1 || readers[0].opType !== 'Conv' || readers[0].inputs[0] !== pad.outputs[0] || isOutput.has(pad.outputs[0])) continue;
    const t = inits.get(pad.inputs[1]);
    if (!t || t.dataType !== DT.INT64) continue;
    const p = Array.from(new BigInt64Array(t.raw.buffer.slice(t.raw.byteOffset, t.raw.byteOffset + t.raw.byteLength)), Number);
    if (p.length !== 8 || p[0] || p[1] || p[4] || p[5]) continue;
    const conv = readers[0];
    const cp = (conv.attrs?.pads as number[] | undefined) ?? [0, 0, 0, 0];
    if (conv.attrs?.auto_pad && conv.attrs.auto_pad !== 'NOTSET') continue;
    conv.attrs = { ...conv.attrs, pads: [cp[0] + p[2], cp[1] + p[3], cp[2] + p[6], cp[3] + p[7]] };
    conv.inputs[0] = pad.inputs[0];
    drop.add(pad);
  }
  const nodes = g.nodes.filter((n) => !drop.has(n));
  const used = new Set(nodes.flatMap((n) => n.inputs));
  return { ...g, nodes, initializers: g.initializers.filter((t) => used.has(t.name)) };
}

/** Every float value the nodes produce, except the graph's outputs. */
function activationValues(g: Graph): string[] {
  const out = new Set(g.outputs.map((o) => o.name));
  return g.nodes.flatMap((n) => n.outputs).filter((v) => !out.has(v));
}

/** The min and max of each value over the calibration batches, by running the fp32 graph. */
export type RangeMethod = 'minmax' | 'mse';

/** Fake-quantization error of `v` under uint8 range [lo, hi]. */
function quantError(v: Float32Array, lo: number, hi: number): number {
  const { scale, zeroPoint } = uint8Params([lo, hi]);
  let e = 0;
  for (let i = 0; i < v.length; i++) {
    const q = Math.min(255, Math.max(0, Math.round(v[i] / scale) + zeroPoint));
    const d = (q - zeroPoint) * scale - v[i];
    e += d * d;
  }
  return e;
}

/**
 * The range of `sample` with the least quantization error (the min-max range shrunk by 1 down
 * to 0.2): a few outliers then no longer take most of the 256 levels.
 */
function mseRange(sample: Float32Array, lo: number, hi: number): [number, number] {
  let best: [number, number] = [lo, hi];
  let bestErr = quantError(sample, lo, hi);
  for (let r = 0.98; r >= 0.2; r -= 0.02) {
    const e = quantError(sample, lo * r, hi * r);
    if (e < bestErr) { bestErr = e; best = [lo * r, hi * r]; }
  }
  return best;
}

const SAMPLE_CAP = 1 << 16;

export async function calibrate(g: Graph, batches: AsyncIterable<{ x: Float32Array; dims: number[] }> | Iterable<{ x: Float32Array; dims: number[] }>, threads = 0, method: RangeMethod = 'mse'): Promise<Map<string, [number, number]>> {
  const names = [g.inputs[0].name, ...activationValues(g)];
  const probe: Graph = { ...g, outputs: [...g.outputs, ...names.slice(1).map((name) => ({ name, dataType: DT.FLOAT }))] };
  const o = await ort();
  const session = await o.InferenceSession.create(encodeModel({ graph: probe, opset: 13, producer: 'graft', producerVersion: 'calibration', metadata: {} }), { intraOpNumThreads: threads, graphOptimizationLevel: 'disabled' });
  const ranges = new Map<string, [number, number]>();
  const samples = new Map<string, { values: Float32Array; filled: number; seen: number }>();
  const rng = makeRng(5);
  let seen = 0;
  try {
    for await (const b of batches) {
      const result = await session.run({ [g.inputs[0].name]: new o.Tensor('float32', b.x, b.dims) }, names.slice(1));
      const all: [string, ArrayLike<number>][] = [[names[0], b.x], ...names.slice(1).map((n) => [n, result[n].data as Float32Array] as [string, Float32Array])];
      for (const [n, v] of all) {
        let lo = Infinity;
        let hi = -Infinity;
        for (let i = 0; i < v.length; i++) { const x = v[i]; if (x < lo) lo = x; if (x > hi) hi = x; }
        const r = ranges.get(n);
        ranges.set(n, r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi]);
        if (method === 'mse') {
          // A uniform sample of each value (reservoir), for the error-minimising range.
          let s = samples.get(n);
          if (!s) { s = { values: new Float32Array(SAMPLE_CAP), filled: 0, seen: 0 }; samples.set(n, s); }
          const stride = Math.max(1, Math.floor(v.length / 4096));
          for (let i = (seen * 7919) % stride; i < v.length; i += stride) {
            s.seen++;
            if (s.filled < SAMPLE_CAP) s.values[s.filled++] = v[i];
            else { const j = Math.floor(rng() * s.seen); if (j < SAMPLE_CAP) s.values[j] = v[i]; }
          }
        }
      }
      seen++;
    }
  } finally {
    await session.release();
  }
  if (!seen) throw new GraftError('BAD_DATA', 'No calibration samples: int8 quantization needs images to measure the value ranges on.', { fix: 'Give --calibration <data> (a few hundred training images).' });
  if (method === 'mse') for (const [n, s] of samples) ranges.set(n, mseRange(s.values.subarray(0, s.filled), ...ranges.get(n)!));
  return ranges;
}

/** Ops whose activation inputs get a Q/DQ pair (onnxruntime has integer kernels or drops the pair). */
const QUANTIZED_INPUTS = new Set(['Conv', 'Gemm', 'Add', 'Concat', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Transpose', 'Flatten', 'Reshape']);

function uint8Params(range: [number, number]): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, range[0]);
  const hi = Math.max(0, range[1]);
  const scale = hi - lo > 0 ? (hi - lo) / 255 : 1;
  return { scale, zeroPoint: Math.min(255, Math.max(0, Math.round(-lo / scale))) };
}

/**
 * How int8 weights are stored (activations are uint8 in every form):
 * - 'uint8': uint8 with zero point 128, the default. onnxruntime's U8U8 kernels widen both
 *   operands to 16 bits and add in 32: the same results on every x86 CPU.
 * - 'int8': int8 in [-127, 127]. onnxruntime's U8S8 kernels: with VNNI (AVX512-VNNI, AVX-VNNI)
 *   32-bit sums and fast; without it (vpmaddubsw) pairs of u8 x s8 products add in 16 bits with
 *   saturation. Measured by bench/int8.ts, MobileNetV2 on the photo fixture: 79.5% with VNNI,
 *   76.9% on AVX2 only (qemu's EPYC-Milan), where uint8 weights gave 79.5% on both.
 * - 'int8-reduced': int8 in [-64, 64] (onnxruntime's reduce_range): no saturation, one bit
 *   less: 74.4% on the same photos on both CPUs. Kept for the bench.
 */
export type WeightForm = 'uint8' | 'int8' | 'int8-reduced';

/** The int8 QDQ graph of a (batch-norm folded) fp32 graph with calibrated ranges. */
export function quantizeInt8(folded: Graph, ranges: Map<string, [number, number]>, options: { skipOps?: string[]; skipNodes?: string[]; weights?: WeightForm } = {}): Graph {
  const form = options.weights ?? 'uint8';
  const qmax = form === 'int8-reduced' ? 64 : 127;
  const skip = new Set(options.skipOps ?? []);
  const skipNodes = new Set(options.skipNodes ?? []);
  const g: Graph = { ...folded, nodes: folded.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs] })), initializers: [...folded.initializers] };
  let { inits, consumers, producer, isOutput } = index(g);
  const quantizes = (n: Node) => QUANTIZED_INPUTS.has(n.opType) && !skip.has(n.opType) && !skipNodes.has(n.name);
  // Relu / Clip(0, 6) right after Conv or Gemm: the Conv writes the activation's output directly,
  // and the Q/DQ pair every reader puts on it does the clamping; so only where all readers quantize.
  const dropped = new Set<Node>();
  for (const a of g.nodes) {
    if (a.opType !== 'Relu' && a.opType !== 'Clip') continue;
    const p = producer.get(a.inputs[0]);
    if (!p || (p.opType !== 'Conv' && p.opType !== 'Gemm') || consumers.get(a.inputs[0])?.length !== 1 || isOutput.has(a.inputs[0])) continue;
    if (a.opType === 'Clip') {
      const lo = inits.get(a.inputs[1]);
      if (!lo || floatsOf(lo)[0] !== 0) continue;
    }
    if (!ranges.has(a.outputs[0]) || isOutput.has(a.outputs[0]) || !(consumers.get(a.outputs[0]) ?? []).every(quantizes)) continue;
    p.outputs = [a.outputs[0]];
    dropped.add(a);
  }
  g.nodes = g.nodes.filter((n) => !dropped.has(n));
  ({ inits, consumers, producer, isOutput } = index(g));

  // The classifier (a Gemm whose output reaches a graph output through Softmax or Identity only)
  // keeps fp32 weights: heads fitted by L-BFGS on sparse features carry a few weights 20-50x
  // the 99th percentile, and one int8 scale per class then rounds most weights to 0 (MNIST 5-9:
  // 95.3% instead of 98.1%). It is a sliver of the compute.
  const classifiers = new Set<Node>();
  for (const n of g.nodes) {
    if (n.opType !== 'Gemm') continue;
    let v = n.outputs[0];
    for (let hops = 0; hops < 3 && !isOutput.has(v); hops++) {
      const next = consumers.get(v);
      if (next?.length !== 1 || !['Softmax', 'Identity'].includes(next[0].opType)) break;
      v = next[0].outputs[0];
    }
    if (isOutput.has(v)) classifiers.add(n);
  }
  const nodes: Node[] = [];
  const added: Tensor[] = [];
  const qdq = new Map<string, { dq: string; scale: number }>();
  const actParams = (v: string) => {
    const known = qdq.get(v);
    if (known) return known;
    const r = ranges.get(v);
    if (!r) return undefined;
    const { scale, zeroPoint } = uint8Params(r);
    const s = `${v}/q_scale`;
    const z = `${v}/q_zero_point`;
    added.push(floatTensor(s, [], [scale]), int8Tensor(z, [], [zeroPoint], true));
    const q = `${v}/quantized`;
    const dq = `${v}/dequantized`;
    nodes.push({ opType: 'QuantizeLinear', inputs: [v, s, z], outputs: [q], name: `${v}/QuantizeLinear` });
    nodes.push({ opType: 'DequantizeLinear', inputs: [q, s, z], outputs: [dq], name: `${v}/DequantizeLinear` });
    const entry = { dq, scale };
    qdq.set(v, entry);
    return entry;
  };
  const weightDq = (name: string, inScale: number, biasName?: string): { w: string; b?: string } => {
    const t = inits.get(name)!;
    const w = floatsOf(t);
    const co = t.dims[0];
    const per = w.length / co;
    const scales = new Float32Array(co);
    const q = new Int8Array(w.length);
    for (let c = 0; c < co; c++) {
      let m = 0;
      for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(w[c * per + i]));
      scales[c] = m > 0 ? m / qmax : 1;
    }
    for (let c = 0; c < co; c++) {
      const s = scales[c];
      for (let i = 0; i < per; i++) q[c * per + i] = Math.max(-qmax, Math.min(qmax, Math.round(w[c * per + i] / s)));
    }
    if (form === 'uint8') {
      const u = Uint8Array.from(q, (v) => v + 128);
      added.push(int8Tensor(`${name}/int8`, t.dims, u, true), floatTensor(`${name}/scale`, [co], scales), int8Tensor(`${name}/zero_point`, [co], new Uint8Array(co).fill(128), true));
    } else added.push(int8Tensor(`${name}/int8`, t.dims, q), floatTensor(`${name}/scale`, [co], scales), int8Tensor(`${name}/zero_point`, [co], new Int8Array(co)));
    nodes.push({ opType: 'DequantizeLinear', inputs: [`${name}/int8`, `${name}/scale`, `${name}/zero_point`], outputs: [`${name}/dequantized`], name: `${name}/DequantizeLinear`, attrs: { axis: 0 } });
    const out: { w: string; b?: string } = { w: `${name}/dequantized` };
    if (biasName) {
      const bias = floatsOf(inits.get(biasName)!);
      const bs = Float32Array.from(scales, (s) => s * inScale);
      const bq = Int32Array.from(bias, (v, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / bs[c]))));
      added.push(int32Tensor(`${biasName}/int32`, [co], bq), floatTensor(`${biasName}/scale`, [co], bs), int32Tensor(`${biasName}/zero_point`, [co], new Int32Array(co)));
      nodes.push({ opType: 'DequantizeLinear', inputs: [`${biasName}/int32`, `${biasName}/scale`, `${biasName}/zero_point`], outputs: [`${biasName}/dequantized`], name: `${biasName}/DequantizeLinear`, attrs: { axis: 0 } });
      out.b = `${biasName}/dequantized`;
    }
    return out;
  };
  for (const n of g.nodes) {
    if (quantizes(n)) {
      const act = n.inputs[0];
      const a = inits.has(act) ? undefined : actParams(act);
      if (a) {
        if (classifiers.has(n)) n.inputs = [a.dq, ...n.inputs.slice(1)];
        else if ((n.opType === 'Conv' || n.opType === 'Gemm') && inits.has(n.inputs[1]) && (n.opType !== 'Gemm' || (n.attrs?.transB === 1 && !n.attrs?.transA))) {
          const { w, b } = weightDq(n.inputs[1], a.scale, n.inputs[2] && inits.has(n.inputs[2]) ? n.inputs[2] : undefined);
          n.inputs = [a.dq, w, ...(b ? [b] : n.inputs.slice(2))];
        } else {
          n.inputs = n.inputs.map((i) => (inits.has(i) ? i : actParams(i)?.dq ?? i));
        }
      }
    }
    nodes.push(n);
  }
  const used = new Set(nodes.flatMap((n) => n.inputs));
  // Each Q/DQ pair and weight DQ was pushed just before its first reader: the order stays topological.
  return { ...g, nodes, initializers: [...g.initializers, ...added].filter((t) => used.has(t.name)) };
}

/** fp16 weights and compute, with fp32 input and outputs (a Cast at each end). */
export function toFloat16(g: Graph): Graph {
  const input = g.inputs[0].name;
  const outs = new Set(g.outputs.map((o) => o.name));
  const rename = (v: string) => (v === input ? `${input}/fp16` : outs.has(v) ? `${v}/fp16` : v);
  const nodes: Node[] = [{ opType: 'Cast', inputs: [input], outputs: [`${input}/fp16`], name: `${input}/Cast`, attrs: { to: DT.FLOAT16 } }];
  for (const n of g.nodes) nodes.push({ ...n, inputs: n.inputs.map(rename), outputs: n.outputs.map(rename) });
  for (const o of g.outputs) nodes.push({ opType: 'Cast', inputs: [`${o.name}/fp16`], outputs: [o.name], name: `${o.name}/Cast`, attrs: { to: DT.FLOAT } });
  const initializers = g.initializers.map((t) => (t.dataType === DT.FLOAT ? halfTensor(t.name, t.dims, floatsOf(t)) : t));
  return { ...g, nodes, initializers };
}

export function encode(g: Graph, metadata: Record<string, string>, producerVersion: string, opset = 13): Uint8Array {
  const m: Model = { graph: g, opset, producer: 'graft', producerVersion, metadata };
  return encodeModel(m);
}
