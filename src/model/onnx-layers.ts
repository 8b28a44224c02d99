// An ONNX CNN rebuilt as a tfjs LayersModel, so that it trains like any other base: on the
// native engine and in tfjs, frozen, unfrozen, in layer groups, with BatchNorm frozen or
// training. The ONNX graph is NCHW; the layers are NHWC, so weights are transposed (conv
// kernels [O, I, kh, kw] -> [kh, kw, I, O]), axes renumbered, and a Dense after a Flatten of a
// spatial map has its rows reordered to the NHWC flattening.
//
// Ops without a Keras layer of their own are composed of layers the native engine runs:
// HardSigmoid(x) = ReLU6(6 alpha x + 6 beta) / 6 (two Rescaling and a ReLU6), HardSwish(x) =
// x * HardSigmoid(x); a per-channel constant Mul/Add/Sub/Div is a frozen 1x1 depthwise conv;
// explicit pads other than tfjs' 'same' are a ZeroPadding2D before the layer. Each node's last
// layer carries the node's name (made a valid tfjs name), so a cut names the ONNX node.

import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import type { OnnxAttr, OnnxFullNode, OnnxModelGraph } from './onnx-read.js';

type Sym = tfl.SymbolicTensor;
interface SymVal {
  kind: 'sym';
  t: Sym;
  /** The ONNX shape without the batch: [C, H, W] or [F]. */
  shape: number[];
  /** A [C, 1, 1] value held as [batch, C] (a global pool not yet reshaped). */
  flat?: boolean;
  /** A Flatten of a [C, H, W] map in NHWC order: a Dense reading it reorders its rows. */
  flattenedFrom?: [number, number, number];
  /** Known to be >= 0 (after a ReLU): zero padding equals -infinity padding for a max pool. */
  nonneg?: boolean;
  /** The graph's NHWC input, before its Transpose to NCHW ([H, W, C] in `shape`). */
  nhwcInput?: boolean;
  /** A Transpose to NHWC ([H, W, C] in `shape`): read only by a flatten, in the layers' order. */
  nhwcView?: boolean;
}
interface ConstVal { kind: 'const'; dims: number[]; data: Float32Array }
type Val = SymVal | ConstVal;

/** Why a graph cannot be rebuilt: the op and the node. */
export class OnnxUnsupported extends Error {
  constructor(readonly node: string, readonly op: string, readonly detail: string) {
    super(`${op} node "${node}": ${detail}`);
  }
}

/**
 * `x op k` (or `k op x` when the constant comes first) as `x * scale + shift`, one pair per
 * value of k: Add, Sub, Mul and Div by a scalar or per-channel constant.
 */
export function affine(op: string, xFirst: boolean, k: ArrayLike<number>): { scale: number[]; shift: number[] } {
  const scale = new Array<number>(k.length).fill(1);
  const shift = new Array<number>(k.length).fill(0);
  for (let i = 0; i < k.length; i++) {
    const v = k[i];
    if (op === 'Mul') scale[i] = v;
    else if (op === 'Div') scale[i] = 1 / v;
    else if (op === 'Add') shift[i] = v;
    else if (xFirst) shift[i] = -v;
    else { scale[i] = -1; shift[i] = v; }
  }
  return { scale, shift };
}

/** A valid tfjs layer name for an ONNX node or value name. */
export function layerNameFor(name: string): string {
  const s = name.replace(/[^-A-Za-z0-9._/]/g, '_').replace(/^[^A-Za-z0-9]+/, '');
  return s || 'node';
}

export interface OnnxLayersResult {
  model: tfl.LayersModel;
  /** ONNX node names and value names -> the layer that computes them. */
  layerOf: Map<string, string>;
  /** Layer weight names (layer/kernel) -> the ONNX initializer they were made from. */
  weightSources: Map<string, string>;
  /** Input [height, width, channels] and the ONNX layout it came in. */
  imageShape: [number, number, number];
  layout: 'NCHW' | 'NHWC';
}

/**
 * Builds the layers for the values `outputs` (default: the graph's first output) depend on.
 * Throws OnnxUnsupported naming the first node that has no layer form.
 */
export function onnxToLayers(g: OnnxModelGraph, where: string, outputs?: string[], inputSize?: [number, number]): OnnxLayersResult {
  if (g.inputs.length !== 1) throw new GraftError('BAD_MODEL', `${where} has ${g.inputs.length} inputs; Graft uses bodies with one image input.`, { fix: 'Export the model with a single image input.' });
  const input = g.inputs[0];
  const d = input.dims.slice(1);
  if (d.length !== 3) throw new GraftError('BAD_MODEL', `${where} has the input ${input.name} of shape [${input.dims.join(', ')}]; Graft needs an image input [batch, 3, H, W] or [batch, H, W, 3].`, { fix: 'Export the model with an image input.' });
  // NCHW unless the last dimension looks like channels (1 or 3) and the first does not.
  const isChannels = (v: number | string) => v === 1 || v === 3;
  const nchw = !(isChannels(d[2]) && !isChannels(d[0]));
  let [c, h, w] = nchw ? d : [d[2], d[0], d[1]];
  if (inputSize) [h, w] = inputSize;
  if (typeof h === 'number' && typeof w === 'number' && typeof c === 'number' && (h > 8192 || w > 8192 || c > 64)) {
    throw new GraftError('BAD_MODEL', `${where} declares the input ${input.name} of shape [${input.dims.join(', ')}]: ${h}x${w} with ${c} channels is not an image size Graft trains on (at most 8192x8192, 64 channels).`, { fix: 'Export the model with its real input size, or give --input-size.' });
  }
  if (typeof c !== 'number' || typeof h !== 'number' || typeof w !== 'number' || !(h > 0 && w > 0 && c > 0)) {
    throw new GraftError('BAD_MODEL', `${where} has the input ${input.name} of shape [${input.dims.join(', ')}], whose image size is not fixed.`, { fix: 'Give the size with --input-size (e.g. --input-size 224), or export the model with a fixed height and width.' });
  }
  const producer = new Map<string, OnnxFullNode>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, n);
  const readers = new Map<string, OnnxFullNode[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
  const wanted = outputs ?? [g.outputs[0].name];

  // The nodes the wanted values depend on, in graph order.
  const needed = new Set<OnnxFullNode>();
  const stack = [...wanted];
  while (stack.length) {
    const v = stack.pop()!;
    const n = producer.get(v);
    if (!n || needed.has(n)) continue;
    needed.add(n);
    stack.push(...n.inputs.filter(Boolean));
  }

  const inputT = tfl.input({ shape: [h, w, c], name: layerNameFor(input.name) });
  const vals = new Map<string, Val>();
  const raw: SymVal = { kind: 'sym', t: inputT, shape: [c, h, w] };
  vals.set(input.name, nchw ? raw : { ...raw, shape: [h, w, c], nhwcInput: true });
  for (const [name, t] of g.initializers) vals.set(name, { kind: 'const', dims: t.dims, data: t.values });
  const used = new Set<string>([inputT.sourceLayer.name]);
  const layerOf = new Map<string, string>();
  const weightSources = new Map<string, string>();

  for (const node of g.nodes) {
    if (!needed.has(node)) continue;
    const base = layerNameFor(node.name || node.outputs[0]);
    let counter = 0;
    const uniq = (n: string) => { let s = n; let k = 1; while (used.has(s)) s = `${n}_${k++}`; used.add(s); return s; };
    const finalName = uniq(base);
    const helper = () => uniq(`${base}__${++counter}`);
    const fail = (detail: string): never => { throw new OnnxUnsupported(node.name || node.outputs[0], node.opType, detail); };
    // A graph no runtime could run: refused as damaged, not treated as an op to run elsewhere.
    const damaged = (detail: string): never => {
      throw new GraftError('BAD_MODEL', `${where}: the ${node.opType} node "${node.name || node.outputs[0]}" has ${detail}: the file is damaged or was edited.`, { fix: 'Export the model again (torch.onnx.export) and copy the whole .onnx file.' });
    };
    const attr = (k: string): OnnxAttr | undefined => node.attrs.get(k);
    const int = (k: string, dflt: number) => attr(k)?.i ?? dflt;
    const flt = (k: string, dflt: number) => attr(k)?.f ?? dflt;
    const intsA = (k: string) => attr(k)?.ints;
    const inVal = (i: number): Val | undefined => (node.inputs[i] ? vals.get(node.inputs[i]) : undefined);
    const sym = (i: number): SymVal => {
      const v = inVal(i);
      if (!v && !producer.has(node.inputs[i])) damaged(`the input "${node.inputs[i]}", which no node produces and no initializer holds`);
      if (!v) fail(`its input "${node.inputs[i]}" comes from a node that is later in the graph or was not rebuilt (a cycle, or an op Graft cannot rebuild before it)`);
      if (v!.kind !== 'sym') fail(`its input "${node.inputs[i]}" is a constant where Graft expects an activation`);
      if ((v as SymVal).nhwcInput) fail('it reads the NHWC input directly; Graft expects a Transpose to NCHW first');
      if ((v as SymVal).nhwcView && !['Flatten', 'Reshape'].includes(node.opType)) fail('it reads a channels-last transpose; Graft rebuilds one only before a flatten');
      return v as SymVal;
    };
    const constant = (i: number, what: string): ConstVal => {
      const v = inVal(i);
      if (!v || v.kind !== 'const') fail(`its ${what} ("${node.inputs[i]}") is not a constant`);
      return v as ConstVal;
    };
    /** A [C, 1, 1] value as a 4-d tensor (reshaping a pooled [batch, C]). */
    const as4d = (v: SymVal): SymVal => {
      if (!v.flat) return v;
      const t = tfl.layers.reshape({ targetShape: [1, 1, v.shape[0]], name: helper() }).apply(v.t) as Sym;
      return { kind: 'sym', t, shape: v.shape, nonneg: v.nonneg };
    };
    const apply = (layer: tfl.layers.Layer, x: Sym | Sym[], weights?: (Float32Array | number[])[], sources?: string[]): Sym => {
      const out = layer.apply(x) as Sym;
      sources?.forEach((src, i) => { if (src && layer.weights[i]) weightSources.set(layer.weights[i].originalName, src); });
      if (weights) {
        const ts = layer.weights.map((lw, i) => tf.tensor(weights[i], lw.shape as number[]));
        layer.setWeights(ts);
        ts.forEach((t) => t.dispose());
      }
      return out;
    };
    const set = (v: Val) => {
      vals.set(node.outputs[0], v);
      if (v.kind === 'sym') {
        const layer = v.t.sourceLayer.name;
        layerOf.set(node.outputs[0], layer);
        if (node.name) layerOf.set(node.name, layer);
      }
    };
    const alias = (v: Val) => set(v);
    const rank4 = (v: SymVal) => v.shape.length === 3;

    switch (node.opType) {
      case 'Identity':
        alias(inVal(0) ?? sym(0));
        break;
      case 'Constant': {
        const t = attr('value')?.t;
        const f = attr('value_float')?.f ?? attr('value_floats')?.floats;
        const i = attr('value_int')?.i ?? attr('value_ints')?.ints;
        if (t) set({ kind: 'const', dims: t.dims, data: t.values });
        else if (f !== undefined) set({ kind: 'const', dims: Array.isArray(f) ? [f.length] : [], data: Float32Array.from(Array.isArray(f) ? f : [f]) });
        else if (i !== undefined) set({ kind: 'const', dims: Array.isArray(i) ? [i.length] : [], data: Float32Array.from(Array.isArray(i) ? i : [i]) });
        else fail('a constant of a kind Graft does not read');
        break;
      }
      case 'Transpose': {
        const v = inVal(0);
        const perm = intsA('perm') ?? [];
        if (v?.kind === 'sym' && v.nhwcInput && perm.join() === '0,3,1,2') { set({ kind: 'sym', t: v.t, shape: [c as number, h as number, w as number] }); break; }
        // NCHW -> NHWC before a flatten (as Graft's own export writes it): the layers' order already.
        const flatNext = (readers.get(node.outputs[0]) ?? []).every((r) => r.opType === 'Flatten' || r.opType === 'Reshape');
        if (v?.kind === 'sym' && v.shape.length === 3 && perm.join() === '0,2,3,1' && flatNext) { set({ ...as4d(v), shape: [v.shape[1], v.shape[2], v.shape[0]], nhwcView: true }); break; }
        fail(`a transpose (perm [${perm.join(', ')}]) Graft cannot express as layers`);
        break;
      }
      case 'Conv': {
        const x = as4d(sym(0));
        if (!rank4(x)) fail('a convolution of a tensor that is not [batch, C, H, W]');
        const W = constant(1, 'weight');
        const B = node.inputs[2] ? constant(2, 'bias') : undefined;
        const [O, Ig, kh, kw] = W.dims;
        if (W.dims.length !== 4) fail(`a ${W.dims.length - 2}-d convolution`);
        const group = int('group', 1);
        const strides = intsA('strides') ?? [1, 1];
        const dil = intsA('dilations') ?? [1, 1];
        const [C, H, Wd] = x.shape;
        checkWindow(damaged, [kh, kw], strides, dil);
        const pads = convPads(node, fail, damaged, [H, Wd], [kh, kw], strides, dil);
        const { padding, input } = padFor(x, pads, [H, Wd], [kh, kw], strides, dil, helper, false, fail);
        const outH = Math.floor((H + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) / strides[0]) + 1;
        const outW = Math.floor((Wd + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) / strides[1]) + 1;
        if (outH < 1 || outW < 1) fail(`a ${kh}x${kw} convolution on a ${H}x${Wd} map leaves nothing (the input size is too small for the layers from here: cut before this node, or give a larger --input-size)`);
        const common = { kernelSize: [kh, kw], strides, padding, dilationRate: dil, useBias: Boolean(B), name: finalName };
        let t: Sym;
        if (group === 1) {
          if (Ig !== C) damaged(`a weight for ${Ig} input channels on a value of ${C}`);
          const k = new Float32Array(W.data.length);
          for (let o = 0; o < O; o++) for (let i = 0; i < Ig; i++) for (let y = 0; y < kh; y++) for (let xx = 0; xx < kw; xx++) {
            k[((y * kw + xx) * Ig + i) * O + o] = W.data[((o * Ig + i) * kh + y) * kw + xx];
          }
          t = apply(tfl.layers.conv2d({ ...common, filters: O } as never), input, B ? [k, B.data] : [k], node.inputs.slice(1, 3));
        } else if (group === C && Ig === 1 && O % C === 0) {
          const m = O / C;
          const k = new Float32Array(W.data.length);
          for (let ch = 0; ch < C; ch++) for (let j = 0; j < m; j++) for (let y = 0; y < kh; y++) for (let xx = 0; xx < kw; xx++) {
            k[((y * kw + xx) * C + ch) * m + j] = W.data[((ch * m + j) * kh + y) * kw + xx];
          }
          t = apply(tfl.layers.depthwiseConv2d({ ...common, depthMultiplier: m } as never), input, B ? [k, B.data] : [k], node.inputs.slice(1, 3));
        } else fail(`a grouped convolution (group ${group} of ${C} channels); Graft rebuilds plain and depthwise convolutions`);
        set({ kind: 'sym', t: t!, shape: [O, outH, outW] });
        break;
      }
      case 'BatchNormalization': {
        const x = sym(0);
        const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => constant(i, ['', 'scale', 'bias', 'mean', 'variance'][i]).data);
        const t = apply(tfl.layers.batchNormalization({ axis: -1, epsilon: flt('epsilon', 1e-5), momentum: flt('momentum', 0.9), name: finalName }), x.t, [scale, bias, mean, variance], node.inputs.slice(1, 5));
        set({ ...x, t, nonneg: false });
        break;
      }
      case 'Relu':
        set({ ...sym(0), t: apply(tfl.layers.activation({ activation: 'relu', name: finalName }), sym(0).t), nonneg: true });
        break;
      case 'LeakyRelu':
        set({ ...sym(0), t: apply(tfl.layers.leakyReLU({ alpha: flt('alpha', 0.01), name: finalName }), sym(0).t), nonneg: false });
        break;
      case 'Sigmoid':
      case 'Tanh':
      case 'Softplus': {
        const x = sym(0);
        set({ ...x, t: apply(tfl.layers.activation({ activation: node.opType.toLowerCase() as 'sigmoid', name: finalName }), x.t), nonneg: node.opType === 'Sigmoid' || node.opType === 'Softplus' });
        break;
      }
      case 'Elu': {
        if (flt('alpha', 1) !== 1) fail(`ELU with alpha ${flt('alpha', 1)}`);
        const x = sym(0);
        set({ ...x, t: apply(tfl.layers.activation({ activation: 'elu', name: finalName }), x.t), nonneg: false });
        break;
      }
      case 'Softmax': {
        const x = sym(0);
        const axis = int('axis', g.opset >= 13 ? -1 : 1);
        if (x.shape.length !== 1 || (axis !== -1 && axis !== 1)) fail(`a softmax over axis ${axis} of a ${x.shape.length + 1}-d tensor`);
        set({ ...x, t: apply(tfl.layers.softmax({ name: finalName }), x.t), nonneg: true });
        break;
      }
      case 'Clip': {
        const x = sym(0);
        const lo = node.inputs[1] ? constant(1, 'minimum').data[0] : attr('min')?.f ?? -Infinity;
        const hi = node.inputs[2] ? constant(2, 'maximum').data[0] : attr('max')?.f ?? Infinity;
        if (lo !== 0 || !(hi === 6 || hi >= 3.4e38)) fail(`a clip to [${lo}, ${hi}]; Graft rebuilds ReLU (0, inf) and ReLU6 (0, 6)`);
        const t = apply(hi === 6 ? tfl.layers.reLU({ maxValue: 6, name: finalName }) : tfl.layers.activation({ activation: 'relu', name: finalName }), x.t);
        set({ ...x, t, nonneg: true });
        break;
      }
      case 'HardSigmoid':
      case 'HardSwish': {
        const x = sym(0);
        const alpha = node.opType === 'HardSwish' ? 1 / 6 : flt('alpha', 0.2);
        const beta = node.opType === 'HardSwish' ? 0.5 : flt('beta', 0.5);
        const last = node.opType === 'HardSigmoid';
        let t = apply(tfl.layers.rescaling({ scale: 6 * alpha, offset: 6 * beta, name: helper() } as never), x.t);
        t = apply(tfl.layers.reLU({ maxValue: 6, name: helper() }), t);
        t = apply(tfl.layers.rescaling({ scale: 1 / 6, offset: 0, name: last ? finalName : helper() } as never), t);
        if (!last) t = apply(tfl.layers.multiply({ name: finalName }), [x.t, t]);
        set({ ...x, t, nonneg: last });
        break;
      }
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div': {
        const a = inVal(0);
        const b = inVal(1);
        if (!a || !b) fail('an input Graft cannot compute');
        if (a!.kind === 'sym' && b!.kind === 'sym') {
          if (node.opType === 'Sub' || node.opType === 'Div') fail(`a ${node.opType} of two activations`);
          let x = sym(0);
          let y = sym(1);
          if (x.flat !== y.flat || rank4(x) !== rank4(y)) { x = as4d(x); y = as4d(y); }
          const layer = node.opType === 'Add' ? tfl.layers.add({ name: finalName }) : tfl.layers.multiply({ name: finalName });
          const big = x.shape.reduce((p, q) => p * q, 1) >= y.shape.reduce((p, q) => p * q, 1) ? x : y;
          set({ kind: 'sym', t: apply(layer, [x.t, y.t]), shape: big.shape, flat: x.flat && y.flat, nonneg: node.opType === 'Mul' && x.nonneg && y.nonneg });
          break;
        }
        const xFirst = a!.kind === 'sym';
        const x = xFirst ? sym(0) : sym(1);
        const k = (xFirst ? b : a) as ConstVal;
        if (!xFirst && node.opType === 'Div') fail('a constant divided by an activation');
        const n = k.data.length;
        if (n === 1) {
          const v = k.data[0];
          // x*s, x/s, x+s, x-s, s-x as scale and offset.
          const { scale: [scale], shift: [offset] } = affine(node.opType, xFirst, [v]);
          set({ ...x, t: apply(tfl.layers.rescaling({ scale, offset, name: finalName } as never), x.t), nonneg: x.nonneg && scale >= 0 && offset >= 0 });
          break;
        }
        const channels = x.shape[0];
        const perChannel = n === channels && k.dims.filter((dd) => dd !== 1).length <= 1 && (k.dims.length < 3 || k.dims[k.dims.length - 3] === channels || (k.dims.length === 1 && !rank4(x)));
        if (!perChannel) fail(`a ${node.opType} with a constant of shape [${k.dims.join(', ')}] on a value of shape [${x.shape.join(', ')}]`);
        const flatIn = !rank4(x) && !x.flat;
        const xx = flatIn ? { ...x, t: apply(tfl.layers.reshape({ targetShape: [1, 1, x.shape[0]], name: helper() }), x.t), shape: [x.shape[0], 1, 1] } : as4d(x);
        const { scale, shift } = affine(node.opType, xFirst, k.data);
        const layer = tfl.layers.depthwiseConv2d({ kernelSize: 1, useBias: true, trainable: false, name: flatIn ? helper() : finalName });
        const y = apply(layer, xx.t, [scale, shift]);
        set(flatIn ? { kind: 'sym', t: apply(tfl.layers.flatten({ name: finalName }), y), shape: x.shape } : { kind: 'sym', t: y, shape: xx.shape });
        break;
      }
      case 'GlobalAveragePool':
      case 'GlobalMaxPool':
      case 'ReduceMean': {
        const x = as4d(sym(0));
        if (!rank4(x)) fail('a global pool of a tensor that is not [batch, C, H, W]');
        let keep = true;
        if (node.opType === 'ReduceMean') {
          const axes = (intsA('axes') ?? (node.inputs[1] ? Array.from(constant(1, 'axes').data) : [])).map((a) => (a < 0 ? a + 4 : a)).sort();
          if (axes.join() !== '2,3') fail(`a mean over axes [${axes.join(', ')}]; Graft rebuilds the mean over height and width`);
          keep = int('keepdims', 1) === 1;
        }
        const layer = node.opType === 'GlobalMaxPool' ? tfl.layers.globalMaxPooling2d({ name: finalName }) : tfl.layers.globalAveragePooling2d({ name: finalName });
        const t = apply(layer, x.t);
        set(keep ? { kind: 'sym', t, shape: [x.shape[0], 1, 1], flat: true, nonneg: x.nonneg } : { kind: 'sym', t, shape: [x.shape[0]], nonneg: x.nonneg });
        break;
      }
      case 'MaxPool':
      case 'AveragePool': {
        const x = as4d(sym(0));
        if (!rank4(x)) fail('a pool of a tensor that is not [batch, C, H, W]');
        const k = intsA('kernel_shape') ?? fail('no kernel_shape');
        const strides = intsA('strides') ?? [1, 1];
        if ((intsA('dilations') ?? [1, 1]).some((dd) => dd !== 1)) fail('a dilated pool');
        const [, H, Wd] = x.shape;
        checkWindow(damaged, k, strides, [1, 1]);
        const pads = convPads(node, fail, damaged, [H, Wd], k, strides, [1, 1]);
        const out = [0, 1].map((i) => {
          const span = [H, Wd][i] + pads[i] + pads[i + 2] - k[i];
          return (int('ceil_mode', 0) ? Math.ceil(span / strides[i]) : Math.floor(span / strides[i])) + 1;
        });
        if (int('ceil_mode', 0)) for (let i = 0; i < 2; i++) {
          // PyTorch drops a last window that would start in the padding.
          if ((out[i] - 1) * strides[i] >= [H, Wd][i] + pads[i]) out[i]--;
          pads[i + 2] = Math.max(pads[i + 2], (out[i] - 1) * strides[i] + k[i] - [H, Wd][i] - pads[i]);
        }
        if (out.some((o) => o < 1)) fail(`a ${k.join('x')} pool on a ${H}x${Wd} map leaves nothing (the input size is too small for the layers from here: cut before this node, or give a larger --input-size)`);
        const max = node.opType === 'MaxPool';
        const includePad = !max && int('count_include_pad', 0) === 1;
        const { padding, input } = padFor(x, pads, [H, Wd], k, strides, [1, 1], helper, max ? !x.nonneg : !includePad, fail, max ? undefined : includePad);
        const cfg = { poolSize: k as [number, number], strides: strides as [number, number], padding, name: finalName };
        const t = apply(max ? tfl.layers.maxPooling2d(cfg) : tfl.layers.averagePooling2d(cfg), input);
        set({ kind: 'sym', t, shape: [x.shape[0], out[0], out[1]], nonneg: x.nonneg });
        break;
      }
      case 'Pad': {
        const x = as4d(sym(0));
        const mode = attr('mode')?.s ?? 'constant';
        const pads = intsA('pads') ?? (node.inputs[1] ? Array.from(constant(1, 'pads').data) : []);
        const value = node.inputs[2] ? constant(2, 'value').data[0] : attr('value')?.f ?? 0;
        if (mode !== 'constant' || value !== 0) fail(`${mode} padding with ${value}; Graft rebuilds zero padding`);
        if (!rank4(x) || pads.length !== 8 || pads[0] || pads[1] || pads[4] || pads[5] || pads.some((p) => p < 0)) fail(`pads [${pads.join(', ')}]`);
        const t = apply(tfl.layers.zeroPadding2d({ padding: [[pads[2], pads[6]], [pads[3], pads[7]]], name: finalName }), x.t);
        set({ kind: 'sym', t, shape: [x.shape[0], x.shape[1] + pads[2] + pads[6], x.shape[2] + pads[3] + pads[7]], nonneg: x.nonneg });
        break;
      }
      case 'Concat': {
        // A concatenation of one input is that input (torchvision's densenet121 has them; tfjs'
        // Concatenate refuses fewer than 2 inputs with a stack trace).
        if (node.inputs.length === 1) { alias(inVal(0) ?? sym(0)); break; }
        const xs = node.inputs.map((_, i) => sym(i));
        const rank = xs[0].shape.length + 1;
        const axis = int('axis', 1);
        if ((axis < 0 ? axis + rank : axis) !== 1) fail(`a concatenation over axis ${axis}; Graft rebuilds it over channels`);
        const parts = rank === 4 || xs.some((v) => v.flat) ? xs.map(as4d) : xs;
        const t = apply(tfl.layers.concatenate({ axis: -1, name: finalName }), parts.map((v) => v.t));
        const shape = [parts.reduce((s, v) => s + v.shape[0], 0), ...parts[0].shape.slice(1)];
        set({ kind: 'sym', t, shape, nonneg: parts.every((v) => v.nonneg) });
        break;
      }
      case 'Flatten':
      case 'Reshape':
      case 'Squeeze':
      case 'Unsqueeze': {
        const x = sym(0);
        const total = x.shape.reduce((p, q) => p * q, 1);
        let target: number[];
        if (node.opType === 'Flatten') {
          if (int('axis', 1) !== 1) fail(`a flatten from axis ${int('axis', 1)}`);
          target = [total];
        } else if (node.opType === 'Reshape') {
          const s = Array.from(constant(1, 'shape').data).slice(1);
          if (s.filter((q) => q === -1).length > 1) fail(`a reshape to [${s.join(', ')}] with more than one -1`);
          const known = s.reduce((p, q, i) => (q === -1 ? p : p * (q === 0 ? x.shape[i] : q)), 1);
          target = s.map((q, i) => (q === -1 ? total / known : q === 0 ? x.shape[i] : q));
        } else {
          const given = intsA('axes') ?? (node.inputs[1] ? Array.from(constant(1, 'axes').data) : []);
          // Negative axes count from the end of the input's rank (Squeeze) or the output's (Unsqueeze).
          const rank = x.shape.length + 1 + (node.opType === 'Unsqueeze' ? given.length : 0);
          const axes = given.map((a) => (a < 0 ? a + rank : a));
          if (node.opType === 'Squeeze') target = x.shape.filter((_, i) => !(axes.length ? axes.includes(i + 1) : x.shape[i] === 1));
          else { target = [...x.shape]; for (const a of [...axes].sort()) target.splice(a - 1, 0, 1); }
        }
        if (target.some((q) => !Number.isInteger(q) || q <= 0) || target.reduce((p, q) => p * q, 1) !== total) fail(`a reshape of [${x.shape.join(', ')}] to [${target.join(', ')}]${inputSize ? ' (its shape was written for the size the graph was exported at, so it does not run at --input-size: leave it out, or cut before this node)' : ''}`);
        if (target.length === 1) {
          if (x.flat || x.shape.length === 1) { alias({ ...x, shape: target, flat: false }); break; }
          if (x.nhwcView) { set({ kind: 'sym', t: apply(tfl.layers.flatten({ name: finalName }), x.t), shape: target, nonneg: x.nonneg }); break; }
          const [C, H, Wd] = x.shape;
          const t = apply(tfl.layers.flatten({ name: finalName }), x.t);
          set({ kind: 'sym', t, shape: target, flattenedFrom: H * Wd > 1 && C > 1 ? [C, H, Wd] : undefined, nonneg: x.nonneg });
          break;
        }
        if (target.length === 3 && target[1] === 1 && target[2] === 1 && (x.shape.length === 1 || x.flat)) { alias({ ...x, shape: target, flat: true }); break; }
        if (target.join() === x.shape.join()) { alias(x); break; }
        fail(`a reshape of [${x.shape.join(', ')}] to [${target.join(', ')}]`);
        break;
      }
      case 'Gemm':
      case 'MatMul': {
        const x = sym(0);
        if (x.shape.length !== 1) fail(`a matrix product of a value of shape [${x.shape.join(', ')}]`);
        const B = constant(1, 'weight');
        if (B.dims.length !== 2) fail('a weight that is not a matrix');
        if (int('transA', 0)) fail('transA');
        const transB = node.opType === 'Gemm' && int('transB', 0) === 1;
        const alpha = node.opType === 'Gemm' ? flt('alpha', 1) : 1;
        const [inF, outF] = transB ? [B.dims[1], B.dims[0]] : B.dims;
        if (inF !== x.shape[0]) fail(`a weight for ${inF} inputs on ${x.shape[0]}`);
        let bias: Float32Array | undefined;
        let biasSource = '';
        let outName = node.outputs[0];
        if (node.opType === 'Gemm' && node.inputs[2]) {
          biasSource = node.inputs[2];
          const C = constant(2, 'bias');
          if (C.data.length !== outF && C.data.length !== 1) fail(`a bias of shape [${C.dims.join(', ')}]`);
          const beta = flt('beta', 1);
          bias = Float32Array.from({ length: outF }, (_, i) => beta * C.data[C.data.length === 1 ? 0 : i]);
        } else if (node.opType === 'MatMul') {
          // MatMul then Add of a constant vector: one Dense with a bias.
          const next = readers.get(node.outputs[0]) ?? [];
          const add = next.length === 1 && next[0].opType === 'Add' ? next[0] : undefined;
          const other = add?.inputs.find((i) => i !== node.outputs[0]);
          const cv = other ? vals.get(other) : undefined;
          if (add && cv?.kind === 'const' && cv.data.length === outF) { bias = cv.data; biasSource = other!; outName = add.outputs[0]; needed.delete(add); }
        }
        const k = new Float32Array(inF * outF);
        const from = x.flattenedFrom;
        for (let i = 0; i < inF; i++) {
          // Row i of the ONNX weight is feature i in NCHW order; tfjs flattens NHWC.
          let r = i;
          if (from) { const [C, H, Wd] = from; const ch = Math.floor(i / (H * Wd)); const rest = i % (H * Wd); r = rest * C + ch; }
          for (let o = 0; o < outF; o++) k[r * outF + o] = alpha * (transB ? B.data[o * inF + i] : B.data[i * outF + o]);
        }
        const t = apply(tfl.layers.dense({ units: outF, useBias: Boolean(bias), name: finalName }), x.t, bias ? [k, bias] : [k], [node.inputs[1], biasSource]);
        const v: SymVal = { kind: 'sym', t, shape: [outF] };
        vals.set(outName, v);
        layerOf.set(outName, t.sourceLayer.name);
        layerOf.set(node.outputs[0], t.sourceLayer.name);
        if (node.name) layerOf.set(node.name, t.sourceLayer.name);
        break;
      }
      case 'Dropout': {
        const x = sym(0);
        const rate = node.inputs[1] ? constant(1, 'ratio').data[0] : flt('ratio', 0.5);
        const training = node.inputs[2] ? constant(2, 'training mode').data[0] : 0;
        if (rate > 0 && (training || g.opset < 12)) set({ ...x, t: apply(tfl.layers.dropout({ rate, name: finalName }), x.t) });
        else alias(x);
        break;
      }
      default:
        fail('an op Graft does not rebuild as layers');
    }
  }
  const outs = wanted.map((name) => {
    const v = vals.get(name);
    if (!v || v.kind !== 'sym') throw new GraftError('BAD_MODEL', `${where}: the value "${name}" is not computed from the input.`, { fix: 'Cut at a node on the path from the input.' });
    return v.flat ? tfl.layers.flatten({ name: layerNameFor(`${name}__flat`) }).apply(v.t) as Sym : v.t;
  });
  const model = tfl.model({ inputs: inputT, outputs: outs.length === 1 ? outs[0] : outs, name: layerNameFor(where.replace(/\.onnx$/i, '')) });
  return { model, layerOf, weightSources, imageShape: [h as number, w as number, c as number], layout: nchw ? 'NCHW' : 'NHWC' };
}

/** Kernel, strides and dilations a window can have: whole numbers of at least 1, not absurd. */
function checkWindow(fail: (d: string) => never, k: number[], s: number[], d: number[]): void {
  const ok = (v: number[], max: number) => v.length === 2 && v.every((x) => Number.isInteger(x) && x >= 1 && x <= max);
  if (!ok(k, 1024)) fail(`kernel_shape [${k.join(', ')}], outside 1..1024`);
  if (!ok(s, 1024)) fail(`strides [${s.join(', ')}], outside 1..1024`);
  if (!ok(d, 1024)) fail(`dilations [${d.join(', ')}], outside 1..1024`);
}

/** A conv's or pool's pads [top, left, bottom, right] from its pads or auto_pad. */
function convPads(node: OnnxFullNode, fail: (d: string) => never, damaged: (d: string) => never, size: number[], k: number[], s: number[], d: number[]): number[] {
  const auto = node.attrs.get('auto_pad')?.s ?? 'NOTSET';
  if (auto === 'VALID') return [0, 0, 0, 0];
  if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') {
    const p = [0, 0, 0, 0];
    for (let i = 0; i < 2; i++) {
      const out = Math.ceil(size[i] / s[i]);
      const total = Math.max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size[i], 0);
      const small = Math.floor(total / 2);
      p[i] = auto === 'SAME_UPPER' ? small : total - small;
      p[i + 2] = total - p[i];
    }
    return p;
  }
  if (auto !== 'NOTSET') fail(`auto_pad ${auto}`);
  const pads = node.attrs.get('pads')?.ints ?? [0, 0, 0, 0];
  if (pads.length !== 4) fail(`pads [${pads.join(', ')}]`);
  // ONNX forbids negative pads; a pad as large as the window or more adds only zeros.
  if (pads.some((p, i) => p < 0 || p >= ((k[i % 2] - 1) * d[i % 2] + 1) + size[i % 2])) damaged(`pads [${pads.join(', ')}], negative or larger than its window and map (onnxruntime refuses negative pads too)`);
  return [...pads];
}

/** tfjs 'same' or 'valid' when the pads are those; else a ZeroPadding2D before a 'valid' layer. */
function padFor(x: SymVal, pads: number[], size: number[], k: number[], s: number[], d: number[], helper: () => string, zeroUnsafe: boolean, fail: (d: string) => never, countsPad?: boolean): { padding: 'same' | 'valid'; input: Sym } {
  if (pads.every((p) => p === 0)) return { padding: 'valid', input: x.t };
  const same = [0, 1].map((i) => {
    const out = Math.ceil(size[i] / s[i]);
    const total = Math.max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size[i], 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  });
  if (countsPad !== true && pads[0] === same[0][0] && pads[2] === same[0][1] && pads[1] === same[1][0] && pads[3] === same[1][1]) return { padding: 'same', input: x.t };
  if (zeroUnsafe) fail(`pads [${pads.join(', ')}] that are not tfjs' 'same' on values that may be negative (a max pool) or not counted (an average pool)`);
  const t = tfl.layers.zeroPadding2d({ padding: [[pads[0], pads[2]], [pads[1], pads[3]]], name: helper() }).apply(x.t) as Sym;
  return { padding: 'valid', input: t };
}

export interface OnnxImport {
  artifacts: tf.io.ModelArtifacts;
  /** ONNX node and value names -> layer names, for cuts given by ONNX names. */
  layerOf: Map<string, string>;
  /** Layer weight names -> ONNX initializer names. */
  weightSources: Map<string, string>;
  imageShape: [number, number, number];
  layout: 'NCHW' | 'NHWC';
  /** Set when the whole graph could not be rebuilt and it was rebuilt up to `upTo`: why. */
  truncated?: string;
}

/**
 * An ONNX model file's bytes as tfjs model artifacts (what model.json and weights.bin hold):
 * the whole graph, or when a later node has no layer form, the graph up to `upTo`.
 */
export async function onnxArtifacts(g: OnnxModelGraph, where: string, options: { upTo?: string; inputSize?: [number, number] } = {}): Promise<OnnxImport> {
  let built: OnnxLayersResult;
  let truncated: string | undefined;
  try {
    built = onnxToLayers(g, where, undefined, options.inputSize);
  } catch (e) {
    if (!(e instanceof OnnxUnsupported) || !options.upTo) throw e;
    const value = valueOf(g, options.upTo);
    if (!value) throw e;
    built = onnxToLayers(g, where, [value], options.inputSize);
    truncated = e.message;
  }
  const artifacts = await artifactsOf(built.model);
  return { artifacts: { ...artifacts, format: 'onnx', generatedBy: g.producer || 'onnx', convertedBy: 'graft' }, layerOf: built.layerOf, weightSources: built.weightSources, imageShape: built.imageShape, layout: built.layout, truncated };
}

/** The value a node name or value name stands for. */
export function valueOf(g: OnnxModelGraph, name: string): string | undefined {
  for (const n of g.nodes) if (n.outputs.includes(name)) return name;
  const byNode = g.nodes.find((n) => n.name === name || layerNameFor(n.name) === name);
  return byNode?.outputs[0];
}

/** What model.save would write (topology and weights), in memory; the model is disposed. */
export async function artifactsOf(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  try {
    await model.save(tf.io.withSaveHandler(async (a) => { artifacts = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
  } finally {
    model.dispose();
  }
  return artifacts!;
}
