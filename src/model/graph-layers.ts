// A tfjs GraphModel (a TensorFlow graph: inference only, tfjs cannot train it) rebuilt as a
// LayersModel, so it trains like any base. TensorFlow graphs are NHWC as tfjs layers are, so
// weights go over as they are (Conv2D [kh, kw, in, out], depthwise [kh, kw, in, multiplier]).
// The converter's fused ops split back into layers: _FusedConv2D and FusedDepthwiseConv2dNative
// (BiasAdd, then Relu / Relu6 / Elu / LeakyRelu), _FusedMatMul; the grappler's rewrites of
// small sums are scalar or per-channel constants (Rescaling, a frozen 1x1 depthwise conv).
// The batch size the graph fixes (often 1) does not matter to the layers.

import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { affine, artifactsOf, layerNameFor, OnnxUnsupported } from './onnx-layers.js';

type Sym = tfl.SymbolicTensor;
interface TfNode { name: string; op: string; input?: string[]; attr?: Record<string, TfAttr> }
interface TfAttr { s?: string; i?: string | number; f?: number; b?: boolean; list?: { i?: (string | number)[]; s?: string[]; f?: number[] }; shape?: { dim?: { size: string | number }[] }; type?: string }
type Val = { kind: 'sym'; t: Sym } | { kind: 'const'; t: tf.Tensor };

const str = (a?: TfAttr) => (a?.s !== undefined ? Buffer.from(a.s, 'base64').toString('utf8') : undefined);
const ints = (a?: TfAttr) => a?.list?.i?.map(Number);
const strs = (a?: TfAttr) => a?.list?.s?.map((s) => Buffer.from(s, 'base64').toString('utf8'));
const clean = (name: string) => name.replace(/^\^/, '').replace(/:0$/, '');

export interface GraphLayersResult {
  model: tfl.LayersModel;
  imageShape: [number, number, number];
  /** Node names -> layer names (the same, but for nodes that became aliases). */
  layerOf: Map<string, string>;
}

/**
 * Builds layers for what `outputs` (default: the signature's first output) depends on.
 * Throws OnnxUnsupported (an op and its node) for a node without a layer form.
 */
export function graphToLayers(topology: unknown, weights: tf.NamedTensorMap, where: string, outputs?: string[], inputSize?: [number, number]): GraphLayersResult {
  const nodes = ((topology as { node?: TfNode[] }).node ?? []);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const placeholders = nodes.filter((n) => n.op === 'Placeholder');
  if (placeholders.length !== 1) throw new GraftError('BAD_MODEL', `${where} has ${placeholders.length} inputs; Graft uses bodies with one image input.`, { fix: 'Use a single-input model.' });
  const ph = placeholders[0];
  const dims = (ph.attr?.shape?.shape as TfAttr['shape'])?.dim?.map((d) => Number(d.size)) ?? [];
  let [h, w, c] = dims.slice(1);
  if (inputSize) [h, w] = inputSize;
  if (dims.length !== 4 || !(h > 0 && w > 0 && c > 0)) {
    throw new GraftError('BAD_MODEL', `${where} has the input ${ph.name} of shape [${dims.join(', ')}]; Graft needs an image input [batch, H, W, C] of a fixed size.`, { fix: 'Give the size with --input-size, or convert the model with a fixed input size.' });
  }
  const wanted = (outputs ?? [lastOutput(nodes)]).map(clean);
  const needed = new Set<string>();
  const stack = [...wanted];
  while (stack.length) {
    const n = byName.get(stack.pop()!);
    if (!n || needed.has(n.name)) continue;
    needed.add(n.name);
    for (const i of n.input ?? []) if (!i.startsWith('^')) stack.push(clean(i).replace(/:\d+$/, ''));
  }
  const input = tfl.input({ shape: [h, w, c], name: layerNameFor(ph.name) });
  const vals = new Map<string, Val>([[ph.name, { kind: 'sym', t: input }]]);
  const layerOf = new Map<string, string>([[ph.name, input.sourceLayer.name]]);
  const used = new Set<string>([input.sourceLayer.name]);
  const made: tf.Tensor[] = [];

  for (const node of nodes) {
    if (!needed.has(node.name) || node.op === 'Placeholder') continue;
    const fail = (detail: string): never => { throw new OnnxUnsupported(node.name, node.op, detail); };
    const base = layerNameFor(node.name);
    const uniq = (n: string) => { let s = n; let k = 1; while (used.has(s)) s = `${n}_${k++}`; used.add(s); return s; };
    let helpers = 0;
    const helper = () => uniq(`${base}__${++helpers}`);
    const ins = (node.input ?? []).filter((i) => !i.startsWith('^')).map(clean);
    const val = (i: number): Val => {
      const name = ins[i];
      if (name === undefined) fail(`no input ${i}`);
      if (/:\d+$/.test(name)) fail(`it reads the output ${name} of a node with several outputs`);
      const v = vals.get(name);
      if (!v) fail(`its input "${name}" is not computed by an op Graft can rebuild`);
      return v!;
    };
    const sym = (i: number): Sym => { const v = val(i); if (v.kind !== 'sym') fail(`its input "${ins[i]}" is a constant where Graft expects an activation`); return (v as { t: Sym }).t; };
    const konst = (i: number): tf.Tensor => { const v = val(i); if (v.kind !== 'const') fail(`its input "${ins[i]}" is not a constant`); return (v as { t: tf.Tensor }).t; };
    const data = (t: tf.Tensor) => t.dataSync() as Float32Array;
    const apply = (layer: tfl.layers.Layer, x: Sym | Sym[], ws?: (Float32Array | number[])[]): Sym => {
      const out = layer.apply(x) as Sym;
      if (ws) {
        const ts = layer.weights.map((lw, k) => tf.tensor(ws[k], lw.shape as number[]));
        layer.setWeights(ts);
        ts.forEach((t) => t.dispose());
      }
      return out;
    };
    const set = (t: Sym) => { vals.set(node.name, { kind: 'sym', t }); layerOf.set(node.name, t.sourceLayer.name); };
    const a = node.attr ?? {};
    const padding = (): 'same' | 'valid' | [[number, number], [number, number]] => {
      const p = str(a.padding);
      if (p === 'SAME') return 'same';
      if (p === 'VALID') return 'valid';
      if (p === 'EXPLICIT') { const e = ints(a.explicit_paddings) ?? []; return [[e[2], e[3]], [e[4], e[5]]]; }
      return fail(`padding ${p}`);
    };
    const nhwc = () => { const f = str(a.data_format); if (f && f !== 'NHWC') fail(`data format ${f}`); };
    const activationOf = (ops: string[]): { act?: string; alpha?: number } => {
      const rest = ops.filter((o) => o !== 'BiasAdd');
      if (rest.length === 0) return {};
      if (rest.length > 1) fail(`fused ops ${ops.join(', ')}`);
      const m: Record<string, string> = { Relu: 'relu', Relu6: 'relu6', Elu: 'elu', Sigmoid: 'sigmoid', Tanh: 'tanh' };
      if (rest[0] === 'LeakyRelu') return { act: 'leaky', alpha: a.leakyrelu_alpha?.f ?? 0.2 };
      return m[rest[0]] ? { act: m[rest[0]] } : fail(`the fused activation ${rest[0]}`);
    };
    const finish = (t: Sym, act?: { act?: string; alpha?: number }) => {
      if (!act?.act) return t;
      if (act.act === 'leaky') return apply(tfl.layers.leakyReLU({ alpha: act.alpha ?? 0.2, name: uniq(base) }), t);
      return t;
    };

    switch (node.op) {
      case 'Const':
        if (!weights[node.name]) fail('a constant without data in the weights');
        vals.set(node.name, { kind: 'const', t: weights[node.name] });
        break;
      case 'Identity':
      case 'StopGradient':
      case 'NoOp': {
        const v = val(0);
        vals.set(node.name, v);
        if (v.kind === 'sym') layerOf.set(node.name, v.t.sourceLayer.name);
        break;
      }
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative': {
        nhwc();
        const x = sym(0);
        const k = konst(1);
        const strides = ints(a.strides) ?? [1, 1, 1, 1];
        const dil = ints(a.dilations) ?? [1, 1, 1, 1];
        if (k.shape.length !== 4 || [...strides, ...dil].some((v) => !Number.isInteger(v) || v < 1 || v > 1024)) fail(`strides [${strides.join(', ')}] or dilations [${dil.join(', ')}] outside 1..1024, or a kernel of shape [${k.shape.join(', ')}] (the file is damaged or was edited)`);
        const fused = strs(a.fused_ops) ?? [];
        if (fused.length && fused[0] !== 'BiasAdd') fail(`fused ops ${fused.join(', ')}`);
        const bias = fused[0] === 'BiasAdd' ? data(konst(2)) : undefined;
        const act = activationOf(fused);
        let pad = padding();
        let xin = x;
        if (Array.isArray(pad)) { xin = apply(tfl.layers.zeroPadding2d({ padding: pad, name: helper() }), x); pad = 'valid'; }
        const depthwise = node.op.includes('Depthwise');
        const cfg = { kernelSize: [k.shape[0], k.shape[1]], strides: [strides[1], strides[2]], dilationRate: [dil[1], dil[2]], padding: pad, useBias: Boolean(bias),
          activation: act.act && act.act !== 'leaky' ? act.act : undefined, name: act.act === 'leaky' ? helper() : uniq(base) };
        const layer = depthwise ? tfl.layers.depthwiseConv2d({ ...cfg, depthMultiplier: k.shape[3] } as never) : tfl.layers.conv2d({ ...cfg, filters: k.shape[3] } as never);
        set(finish(apply(layer, xin, bias ? [data(k), bias] : [data(k)]), act));
        break;
      }
      case 'MatMul':
      case '_FusedMatMul': {
        const x = sym(0);
        const k = konst(1);
        if (a.transpose_a?.b) fail('transpose_a');
        const fused = strs(a.fused_ops) ?? [];
        const bias = fused[0] === 'BiasAdd' ? data(konst(2)) : undefined;
        const act = activationOf(fused);
        const transposed = Boolean(a.transpose_b?.b);
        const kd = transposed ? tf.tidy(() => tf.transpose(k).dataSync() as Float32Array) : data(k);
        const outF = (transposed ? k.shape[0] : k.shape[1]) as number;
        const layer = tfl.layers.dense({ units: outF, useBias: Boolean(bias), activation: act.act && act.act !== 'leaky' ? act.act as 'relu' : undefined, name: act.act === 'leaky' ? helper() : uniq(base) });
        set(finish(apply(layer, x, bias ? [kd, bias] : [kd]), act));
        break;
      }
      case 'FusedBatchNorm':
      case 'FusedBatchNormV2':
      case 'FusedBatchNormV3': {
        const x = sym(0);
        const [scale, offset, mean, variance] = [1, 2, 3, 4].map((i) => data(konst(i)));
        set(apply(tfl.layers.batchNormalization({ axis: -1, epsilon: a.epsilon?.f ?? 1e-3, name: uniq(base) }), x, [scale, offset, mean, variance]));
        break;
      }
      case 'Relu':
      case 'Relu6':
      case 'Sigmoid':
      case 'Tanh':
      case 'Elu':
      case 'Softmax': {
        const x = sym(0);
        const name = uniq(base);
        const layer = node.op === 'Relu6' ? tfl.layers.reLU({ maxValue: 6, name }) : node.op === 'Softmax' ? tfl.layers.softmax({ name }) : tfl.layers.activation({ activation: node.op.toLowerCase() as 'relu', name });
        set(apply(layer, x));
        break;
      }
      case 'Maximum':
      case 'Minimum': {
        // clip_by_value as the converter writes relu6: Maximum(x, 0), Minimum(., 6).
        const p = val(0);
        const q = val(1);
        const xs = p.kind === 'sym' ? p : q;
        const ks = p.kind === 'sym' ? q : p;
        if (xs.kind !== 'sym' || ks.kind !== 'const' || ks.t.size !== 1) fail(`a ${node.op} that is not of an activation and a scalar`);
        const v = data((ks as { t: tf.Tensor }).t)[0];
        const x = (xs as { t: Sym }).t;
        const producerOp = byName.get(ins[p.kind === 'sym' ? 0 : 1])?.op;
        if (node.op === 'Maximum' && v === 0) set(apply(tfl.layers.activation({ activation: 'relu', name: uniq(base) }), x));
        else if (node.op === 'Minimum' && v === 6 && (producerOp === 'Relu' || (producerOp === 'Maximum'))) set(apply(tfl.layers.reLU({ maxValue: 6, name: uniq(base) }), x));
        else fail(`a ${node.op} with ${v}; Graft rebuilds Maximum(x, 0) (ReLU) and Minimum of a ReLU with 6 (ReLU6)`);
        break;
      }
      case 'LeakyRelu':
        set(apply(tfl.layers.leakyReLU({ alpha: a.alpha?.f ?? 0.2, name: uniq(base) }), sym(0)));
        break;
      case 'Add':
      case 'AddV2':
      case 'BiasAdd':
      case 'Sub':
      case 'Mul':
      case 'RealDiv': {
        const p = val(0);
        const q = val(1);
        const op = node.op === 'AddV2' || node.op === 'BiasAdd' ? 'Add' : node.op === 'RealDiv' ? 'Div' : node.op;
        if (p.kind === 'sym' && q.kind === 'sym') {
          if (op === 'Sub' || op === 'Div') fail(`a ${node.op} of two activations`);
          set(apply(op === 'Add' ? tfl.layers.add({ name: uniq(base) }) : tfl.layers.multiply({ name: uniq(base) }), [p.t, q.t]));
          break;
        }
        if (p.kind === 'const' && q.kind === 'const') {
          vals.set(node.name, { kind: 'const', t: keep(made, tf.tidy(() => ({ Add: tf.add, Sub: tf.sub, Mul: tf.mul, Div: tf.div } as Record<string, (u: tf.Tensor, v: tf.Tensor) => tf.Tensor>)[op](p.t, q.t))) });
          break;
        }
        const xFirst = p.kind === 'sym';
        const x = (xFirst ? p : q) as { t: Sym };
        const kt = ((xFirst ? q : p) as { t: tf.Tensor }).t;
        if (!xFirst && op === 'Div') fail('a constant divided by an activation');
        const kv = data(kt);
        const channels = x.t.shape[x.t.shape.length - 1] as number;
        if (kv.length === 1) {
          const v = kv[0];
          const { scale: [scale], shift: [offset] } = affine(op, xFirst, [v]);
          set(apply(tfl.layers.rescaling({ scale, offset, name: uniq(base) } as never), x.t));
          break;
        }
        if (kv.length !== channels || (x.t.shape.length !== 4 && x.t.shape.length !== 2)) fail(`a ${node.op} with a constant of shape [${kt.shape.join(', ')}] on a value of shape [${x.t.shape.slice(1).join(', ')}]`);
        const { scale, shift } = affine(op, xFirst, kv);
        if (x.t.shape.length === 2) {
          // [batch, F]: as [batch, 1, 1, F] through the 1x1 depthwise, then flat again.
          const r = apply(tfl.layers.reshape({ targetShape: [1, 1, channels], name: helper() }), x.t);
          const y = apply(tfl.layers.depthwiseConv2d({ kernelSize: 1, useBias: true, trainable: node.op === 'BiasAdd', name: helper() }), r, [scale, shift]);
          set(apply(tfl.layers.flatten({ name: uniq(base) }), y));
        } else set(apply(tfl.layers.depthwiseConv2d({ kernelSize: 1, useBias: true, trainable: node.op === 'BiasAdd', name: uniq(base) }), x.t, [scale, shift]));
        break;
      }
      case 'Mean':
      case 'Max': {
        const x = sym(0);
        const axes = Array.from(data(konst(1))).map((v) => (v < 0 ? v + 4 : v)).sort();
        if (x.shape.length !== 4 || axes.join() !== '1,2') fail(`a ${node.op.toLowerCase()} over axes [${axes.join(', ')}]`);
        const layer = node.op === 'Mean' ? tfl.layers.globalAveragePooling2d({ name: a.keep_dims?.b ? helper() : uniq(base) }) : tfl.layers.globalMaxPooling2d({ name: a.keep_dims?.b ? helper() : uniq(base) });
        let t = apply(layer, x);
        if (a.keep_dims?.b) t = apply(tfl.layers.reshape({ targetShape: [1, 1, x.shape[3] as number], name: uniq(base) }), t);
        set(t);
        break;
      }
      case 'MaxPool':
      case 'AvgPool': {
        nhwc();
        const x = sym(0);
        const k = ints(a.ksize) ?? fail('no ksize');
        const s = ints(a.strides) ?? [1, 1, 1, 1];
        const pad = padding();
        if (Array.isArray(pad)) fail('explicit padding of a pool');
        const cfg = { poolSize: [k[1], k[2]] as [number, number], strides: [s[1], s[2]] as [number, number], padding: pad as 'same', name: uniq(base) };
        set(apply(node.op === 'MaxPool' ? tfl.layers.maxPooling2d(cfg) : tfl.layers.averagePooling2d(cfg), x));
        break;
      }
      case 'Pad':
      case 'PadV2': {
        const x = sym(0);
        const p = Array.from(data(konst(1)));
        if (node.op === 'PadV2' && data(konst(2))[0] !== 0) fail('padding with a value other than 0');
        if (p.length !== 8 || p[0] || p[1] || p[6] || p[7]) fail(`paddings [${p.join(', ')}]`);
        set(apply(tfl.layers.zeroPadding2d({ padding: [[p[2], p[3]], [p[4], p[5]]], name: uniq(base) }), x));
        break;
      }
      case 'ConcatV2': {
        const n = ins.length - 1;
        if (n === 1) {
          // One input: that input (tfjs' Concatenate refuses fewer than 2).
          const v = val(0);
          vals.set(node.name, v);
          if (v.kind === 'sym') layerOf.set(node.name, v.t.sourceLayer.name);
          break;
        }
        const axis = data(konst(n))[0];
        const xs = Array.from({ length: n }, (_, i) => sym(i));
        const rank = xs[0].shape.length;
        if ((axis < 0 ? axis + rank : axis) !== rank - 1) fail(`a concatenation over axis ${axis}; Graft rebuilds it over channels`);
        set(apply(tfl.layers.concatenate({ axis: -1, name: uniq(base) }), xs));
        break;
      }
      case 'Reshape':
      case 'Squeeze': {
        const x = sym(0);
        const shape = x.shape.slice(1) as number[];
        const total = shape.reduce((p, q) => p * q, 1);
        let target: number[];
        if (node.op === 'Reshape') {
          const s = Array.from(data(konst(1))).slice(1);
          const known = s.filter((v) => v !== -1).reduce((p, q) => p * q, 1);
          target = s.map((v) => (v === -1 ? total / known : v));
        } else {
          const sq = ints(a.squeeze_dims) ?? [];
          target = shape.filter((d, i) => !(sq.length ? sq.includes(i + 1) || sq.includes(i + 1 - 4) : d === 1));
        }
        if (target.reduce((p, q) => p * q, 1) !== total) fail(`a reshape of [${shape.join(', ')}] to [${target.join(', ')}]`);
        if (target.length === 1 && shape.length === 3 && shape[0] * shape[1] !== 1 && shape[2] !== 1) {
          set(apply(tfl.layers.flatten({ name: uniq(base) }), x));
        } else if (target.join() === shape.join()) {
          vals.set(node.name, { kind: 'sym', t: x });
          layerOf.set(node.name, x.sourceLayer.name);
        } else set(apply(target.length === 1 ? tfl.layers.flatten({ name: uniq(base) }) : tfl.layers.reshape({ targetShape: target, name: uniq(base) }), x));
        break;
      }
      default:
        fail('an op Graft does not rebuild as layers');
    }
  }
  const outs = wanted.map((n) => {
    const v = vals.get(n);
    if (!v || v.kind !== 'sym') throw new GraftError('LAYER_NOT_FOUND', `${where}: "${n}" is not a node computed from the input.`, { fix: 'Cut at a node on the path from the input (graft inspect lists them).' });
    return v.t;
  });
  made.forEach((t) => t.dispose());
  const model = tfl.model({ inputs: input, outputs: outs.length === 1 ? outs[0] : outs, name: layerNameFor(where.replace(/\.json$/i, '')) });
  return { model, imageShape: [h, w, c], layerOf };
}

function keep(made: tf.Tensor[], t: tf.Tensor): tf.Tensor {
  made.push(t);
  return t;
}

/** The last node that is not a constant: the graph's output when it has one. */
function lastOutput(nodes: TfNode[]): string {
  const read = new Set(nodes.flatMap((n) => (n.input ?? []).map((i) => clean(i).replace(/:\d+$/, ''))));
  const ends = nodes.filter((n) => n.op !== 'Const' && !read.has(n.name));
  return (ends[0] ?? nodes[nodes.length - 1]).name;
}

export interface GraphImport {
  artifacts: tf.io.ModelArtifacts;
  layerOf: Map<string, string>;
  imageShape: [number, number, number];
  truncated?: string;
}

/** A GraphModel's artifacts as LayersModel artifacts: the whole graph, or up to `upTo` when a later node has no layer form. */
export async function graphArtifacts(a: tf.io.ModelArtifacts, where: string, options: { upTo?: string; inputSize?: [number, number] } = {}): Promise<GraphImport> {
  const weights = tf.io.decodeWeights(a.weightData as ArrayBuffer, a.weightSpecs ?? []);
  try {
    let built: GraphLayersResult;
    let truncated: string | undefined;
    try {
      built = graphToLayers(a.modelTopology, weights, where, undefined, options.inputSize);
    } catch (e) {
      if (!(e instanceof OnnxUnsupported) || !options.upTo) throw e;
      built = graphToLayers(a.modelTopology, weights, where, [options.upTo], options.inputSize);
      truncated = e.message;
    }
    const out = await artifactsOf(built.model);
    return { artifacts: { ...out, format: 'graph-model', generatedBy: a.generatedBy, convertedBy: 'graft' }, layerOf: built.layerOf, imageShape: built.imageShape, truncated };
  } finally {
    Object.values(weights).forEach((t) => t.dispose());
  }
}
