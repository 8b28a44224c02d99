// A Graft model as an ONNX graph (opset 13). The model is first translated into the native
// engine's op list (model/native-plan.ts nativePlan: every layer Graft trains), and each op becomes
// one or a few ONNX nodes. Images are NHWC in tfjs and NCHW in ONNX's Conv: by default the
// graph takes the same NHWC input as the tfjs model and transposes once; rank-4 values are NCHW
// inside the graph, and a Flatten or Reshape goes back to NHWC first so that the values keep
// tfjs' order. Class names, preprocessing and Graft's version go into metadata_props, so an
// exported file describes itself (graft predict runs it alone).

import type * as tfl from '@tensorflow/tfjs-layers';
import { NativeUnsupported, type OpSpec } from '../engine/native.js';
import { nativePlan } from '../model/native-plan.js';
import { GraftError } from '../errors.js';
import { selectHead } from '../model/multi-head.js';
import { graftVersion, type GraftMeta, type Preprocessing } from '../model/meta.js';
import { foldPad } from './quantize.js';
import { DT, floatTensor, int64Tensor, type Graph, type Node, type Tensor, type ValueInfo } from './onnx-proto.js';

export const OPSET = 13;

export interface OnnxExportOptions {
  /** Which head of a multi-head model: new (default), old, or all (one output each). */
  head?: 'new' | 'old' | 'all';
  /** The input layout: nhwc (default, as the tfjs model) or nchw (as PyTorch exports). */
  layout?: 'nhwc' | 'nchw';
  /** Take raw pixel values (0-255) and apply graft.json's preprocessing inside the graph. */
  includePreprocessing?: boolean;
}

/** What metadata_props holds (graft.* keys), as an object. */
export interface OnnxExportInfo {
  format: 'graft-onnx/1';
  graftVersion: string;
  input: { name: string; layout: 'nhwc' | 'nchw'; shape: number[]; includesPreprocessing: boolean };
  outputs: { name: string; head: string; classNames: string[] }[];
  preprocessing: Preprocessing;
  quantization: 'none' | 'fp16' | 'int8';
  /** int8: layers left in fp32. */
  keptFp32?: string[];
  /** int8: how the weights are stored (quantize.ts' WeightForm). */
  int8Weights?: 'uint8' | 'int8' | 'int8-reduced';
}

export interface ExportedGraph {
  graph: Graph;
  info: OnnxExportInfo;
}

type Layout = 'nchw' | 'plain';
interface Value { name: string; layout: Layout; rank: number }

/** Builds nodes and initializers with unique names. */
class Builder {
  nodes: Node[] = [];
  initializers: Tensor[] = [];
  private used = new Set<string>();

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]/g, '_') || 'v';
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  node(opType: string, inputs: string[], base: string, attrs?: Node['attrs']): string {
    const out = this.unique(base);
    this.nodes.push({ opType, inputs, outputs: [out], name: this.unique(`${base}/${opType}`), attrs });
    return out;
  }

  init(t: Omit<Tensor, 'name'>, base: string): string {
    const name = this.unique(base);
    this.initializers.push({ ...t, name });
    return name;
  }

  floats(base: string, dims: number[], values: ArrayLike<number>): string {
    return this.init(floatTensor('', dims, values), base);
  }

  ints(base: string, values: number[]): string {
    return this.init(int64Tensor('', [values.length], values), base);
  }
}

/** tfjs conv kernel [kh, kw, in, out] as ONNX's [out, in, kh, kw]. */
function convKernel(data: Float32Array, shape: number[]): { data: Float32Array; dims: number[] } {
  const [kh, kw, ci, co] = shape;
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) {
    out[((o * ci + i) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * co + o];
  }
  return { data: out, dims: [co, ci, kh, kw] };
}

/** tfjs depthwise kernel [kh, kw, in, mult] as ONNX's grouped [in * mult, 1, kh, kw]. */
function depthwiseKernel(data: Float32Array, shape: number[]): { data: Float32Array; dims: number[] } {
  const [kh, kw, ci, m] = shape;
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < ci; i++) for (let j = 0; j < m; j++) {
    out[((i * m + j) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * m + j];
  }
  return { data: out, dims: [ci * m, 1, kh, kw] };
}

/** tfjs Dense kernel [in, out] as Gemm's B with transB = 1: [out, in]. */
function denseKernel(data: Float32Array, shape: number[]): { data: Float32Array; dims: number[] } {
  const [ci, co] = shape;
  const out = new Float32Array(data.length);
  for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) out[o * ci + i] = data[i * co + o];
  return { data: out, dims: [co, ci] };
}

/**
 * The ONNX graph of a Graft model (a LayersModel with its graft.json). Throws a GraftError
 * naming the layer when a layer has no ONNX translation here.
 */
export function onnxGraph(model: tfl.LayersModel, meta: GraftMeta, options: OnnxExportOptions = {}): ExportedGraph {
  if (meta.body) {
    throw new GraftError('UNSUPPORTED', `This model's body is the ${meta.body.kind === 'onnx' ? 'ONNX' : 'tfjs GraphModel'} file ${meta.body.path}, outside model.json; graft export writes models whose whole network is in model.json.`, {
      fix: 'Train on a tfjs or Keras base to export to ONNX, or run the ONNX body and this head with graft predict.' });
  }
  const layout = options.layout ?? 'nhwc';
  const headName = options.head ?? 'new';
  const multi = model.outputs.length > 1;
  const heads = headName === 'all' && multi
    ? meta.heads.map((h) => ({ name: h.name, classNames: h.classNames }))
    : [{ name: headName, classNames: selectHead(model, meta, headName).classNames }];
  const chosen = headName === 'all' || !multi ? model : selectHead(model, meta, headName).model;
  let plan;
  try {
    plan = nativePlan(chosen, [], true);
  } catch (e) {
    if (e instanceof NativeUnsupported) {
      throw new GraftError('UNSUPPORTED', `graft export cannot translate this model to ONNX: ${e.message}.`, { fix: 'Graft exports the layers its native engine knows (Conv2D, DepthwiseConv2D, SeparableConv2D, BatchNormalization, Dense, pooling, Add, Concatenate, activations, ...).' });
    }
    throw e;
  }
  const b = new Builder();
  const values: Value[] = [];
  const p = meta.preprocessing;
  const inShape = plan.inputShape;
  const image = inShape.length === 3;
  const inputName = options.includePreprocessing ? 'pixels' : 'input';
  b.unique(inputName);
  const graphInput: ValueInfo = {
    name: inputName, dataType: DT.FLOAT,
    dims: ['batch', ...(image && layout === 'nchw' ? [inShape[2], inShape[0], inShape[1]] : inShape)],
  };
  if (!image && layout === 'nchw') throw new GraftError('BAD_OPTION', '--layout nchw is for image models; this model takes feature rows.', { fix: 'Leave out --layout.' });

  const toNhwc = (v: Value): string => (v.layout === 'nchw' ? b.node('Transpose', [v.name], `${v.name}_nhwc`, { perm: [0, 2, 3, 1] }) : v.name);
  const param = (i: number) => plan.params[i];
  const act = (x: string, kind: string, where: string, rank: number, op: OpSpec): string => {
    switch (kind) {
      case 'linear': return x;
      case 'relu': return b.node('Relu', [x], `${where}_relu`);
      case 'relu6': return b.node('Clip', [x, b.floats(`${where}_min`, [], [0]), b.floats(`${where}_max`, [], [6])], `${where}_relu6`);
      case 'sigmoid': return b.node('Sigmoid', [x], `${where}_sigmoid`);
      case 'tanh': return b.node('Tanh', [x], `${where}_tanh`);
      case 'elu': return b.node('Elu', [x], `${where}_elu`, { alpha: { float: 1 } });
      case 'softplus': return b.node('Softplus', [x], `${where}_softplus`);
      case 'swish': return b.node('Mul', [x, b.node('Sigmoid', [x], `${where}_sigmoid`)], `${where}_swish`);
      case 'leakyrelu': return b.node('LeakyRelu', [x], `${where}_leakyrelu`, { alpha: { float: Number(op.alpha ?? 0.3) } });
      case 'softmax': return b.node('Softmax', [x], `${where}_softmax`, { axis: rank === 4 ? 1 : -1 });
      default: throw new GraftError('UNSUPPORTED', `graft export has no ONNX form of the activation "${kind}" (layer ${where}).`);
    }
  };

  plan.ops.forEach((op, index) => {
    const where = op.layer ?? `op${index}`;
    const ins = op.inputs.map((i) => values[i]);
    const x = ins[0];
    let out: Value;
    switch (op.kind) {
      case 'input': {
        let name = inputName;
        if (options.includePreprocessing) {
          // ((x * scale + offset) - mean) / std over the last (channel) axis, in the input's layout.
          const cshape = image && layout === 'nchw' ? [Number(p.mean?.length ?? 1), 1, 1] : [Number(p.mean?.length ?? 1)];
          if (p.scale !== undefined && p.scale !== 1) name = b.node('Mul', [name, b.floats('pre_scale', [], [p.scale])], 'pre_scaled');
          if (p.offset) name = b.node('Add', [name, b.floats('pre_offset', [], [p.offset])], 'pre_offset_added');
          if (p.mean) name = b.node('Sub', [name, b.floats('pre_mean', p.mean.length > 1 ? cshape : [1], p.mean)], 'pre_centred');
          if (p.std) name = b.node('Div', [name, b.floats('pre_std', p.std.length > 1 ? cshape : [1], p.std)], 'pre_standardised');
        }
        if (image && layout === 'nhwc') name = b.node('Transpose', [name], 'input_nchw', { perm: [0, 3, 1, 2] });
        out = { name, layout: image ? 'nchw' : 'plain', rank: inShape.length + 1 };
        break;
      }
      case 'conv':
      case 'sepconv': {
        const stride = op.stride as number[];
        const dilation = op.dilation as number[];
        const kernel = op.kernel as number[];
        const [t, bo, l, r] = op.pad as number[];
        const attrs = { kernel_shape: kernel, strides: stride, dilations: dilation, pads: [t, l, bo, r] };
        const w = param(op.w as number);
        let inputName = x.name;
        let y: string;
        if (op.kind === 'sepconv') {
          const dw = depthwiseKernel(w.data, w.shape);
          inputName = b.node('Conv', [x.name, b.floats(`${where}/depthwise_kernel`, dw.dims, dw.data)], `${where}_depthwise`, { ...attrs, group: w.shape[2] });
          const pw = convKernel(param(op.w2 as number).data, param(op.w2 as number).shape);
          const bias = (op.b as number) >= 0 ? [b.floats(`${where}/bias`, [pw.dims[0]], param(op.b as number).data)] : [];
          y = b.node('Conv', [inputName, b.floats(`${where}/pointwise_kernel`, pw.dims, pw.data), ...bias], where, { kernel_shape: [1, 1], strides: [1, 1], dilations: [1, 1], pads: [0, 0, 0, 0], group: 1 });
        } else {
          const grouped = op.groups !== undefined;
          const k = grouped ? depthwiseKernel(w.data, w.shape) : convKernel(w.data, w.shape);
          const bias = (op.b as number) >= 0 ? [b.floats(`${where}/bias`, [k.dims[0]], param(op.b as number).data)] : [];
          y = b.node('Conv', [inputName, b.floats(`${where}/kernel`, k.dims, k.data), ...bias], where, { ...attrs, group: grouped ? w.shape[2] : 1 });
        }
        out = { name: act(y, String(op.act), where, 4, op), layout: 'nchw', rank: 4 };
        break;
      }
      case 'batchnorm': {
        const c = param(op.mean as number).shape[0];
        const gamma = (op.gamma as number) >= 0 ? param(op.gamma as number).data : new Float32Array(c).fill(1);
        const beta = (op.beta as number) >= 0 ? param(op.beta as number).data : new Float32Array(c);
        const y = b.node('BatchNormalization', [x.name, b.floats(`${where}/gamma`, [c], gamma), b.floats(`${where}/beta`, [c], beta),
          b.floats(`${where}/moving_mean`, [c], param(op.mean as number).data), b.floats(`${where}/moving_variance`, [c], param(op.var as number).data)], where, { epsilon: { float: Number(op.eps) } });
        out = { ...x, name: y };
        break;
      }
      case 'activation':
        out = { ...x, name: act(x.name, String(op.act), where, x.rank, op) };
        break;
      case 'add':
        out = { ...x, name: ins.length === 2 ? b.node('Add', ins.map((v) => v.name), where) : b.node('Sum', ins.map((v) => v.name), where) };
        break;
      case 'multiply': {
        let y = x.name;
        for (let i = 1; i < ins.length; i++) y = b.node('Mul', [y, ins[i].name], i === ins.length - 1 ? where : `${where}_${i}`);
        out = { ...x, name: y };
        break;
      }
      case 'concat':
        out = { ...x, name: b.node('Concat', ins.map((v) => v.name), where, { axis: x.layout === 'nchw' ? 1 : -1 }) };
        break;
      case 'pad': {
        const [t, bo, l, r] = op.pad as number[];
        out = { ...x, name: b.node('Pad', [x.name, b.ints(`${where}/pads`, [0, 0, t, l, 0, 0, bo, r])], where, { mode: 'constant' }) };
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        const [t, bo, l, r] = op.pad as number[];
        const attrs = { kernel_shape: op.kernel as number[], strides: op.stride as number[], pads: [t, l, bo, r], ...(op.kind === 'avgpool' ? { count_include_pad: 0 } : {}) };
        out = { ...x, name: b.node(op.kind === 'maxpool' ? 'MaxPool' : 'AveragePool', [x.name], where, attrs) };
        break;
      }
      case 'globalavg':
      case 'globalmax': {
        const pooled = b.node(op.kind === 'globalavg' ? 'GlobalAveragePool' : 'GlobalMaxPool', [x.name], `${where}_pooled`);
        out = { name: b.node('Flatten', [pooled], where, { axis: 1 }), layout: 'plain', rank: 2 };
        break;
      }
      case 'flatten':
        out = { name: b.node('Flatten', [toNhwc(x)], where, { axis: 1 }), layout: 'plain', rank: 2 };
        break;
      case 'reshape': {
        const shape = op.shape as number[];
        const y = b.node('Reshape', [toNhwc(x), b.ints(`${where}/shape`, [0, ...shape])], shape.length === 3 ? `${where}_nhwc` : where);
        out = shape.length === 3
          ? { name: b.node('Transpose', [y], where, { perm: [0, 3, 1, 2] }), layout: 'nchw', rank: 4 }
          : { name: y, layout: 'plain', rank: shape.length + 1 };
        break;
      }
      case 'dense': {
        if (x.rank !== 2) throw new GraftError('UNSUPPORTED', `graft export: Dense layer ${where} on a tensor of rank ${x.rank}.`);
        const w = param(op.w as number);
        const k = denseKernel(w.data, w.shape);
        const bias = (op.b as number) >= 0 ? [b.floats(`${where}/bias`, [k.dims[0]], param(op.b as number).data)] : [];
        const y = b.node('Gemm', [x.name, b.floats(`${where}/kernel`, k.dims, k.data), ...bias], where, { transB: 1 });
        out = { name: act(y, String(op.act), where, 2, op), layout: 'plain', rank: 2 };
        break;
      }
      case 'dropout':
        out = x;
        break;
      case 'rescale': {
        let y = x.name;
        if (Number(op.scale) !== 1) y = b.node('Mul', [y, b.floats(`${where}/scale`, [], [Number(op.scale)])], `${where}_scaled`);
        if (Number(op.offset) !== 0) y = b.node('Add', [y, b.floats(`${where}/offset`, [], [Number(op.offset)])], where);
        out = { ...x, name: y };
        break;
      }
      default:
        throw new GraftError('UNSUPPORTED', `graft export has no ONNX form of the op "${op.kind}" (layer ${where}).`);
    }
    values.push(out);
  });

  const outIndices = plan.output2 >= 0 ? [plan.output, plan.output2] : [plan.output];
  const outputs: ValueInfo[] = [];
  const infoOutputs: OnnxExportInfo['outputs'] = [];
  outIndices.forEach((i, k) => {
    const v = values[i];
    const name = outIndices.length > 1 ? `probabilities_${heads[k].name}` : 'probabilities';
    // An output name of its own: an Identity node, so that the graph's values keep their names.
    const src = v.layout === 'nchw' ? toNhwc(v) : v.name;
    b.nodes.push({ opType: 'Identity', inputs: [src], outputs: [name], name: b.unique(`${name}/Identity`) });
    outputs.push({ name, dataType: DT.FLOAT, dims: ['batch', heads[k].classNames.length] });
    infoOutputs.push({ name, head: heads[k].name, classNames: heads[k].classNames });
  });

  const info: OnnxExportInfo = {
    format: 'graft-onnx/1',
    graftVersion: graftVersion(),
    input: { name: inputName, layout, shape: graphInput.dims!.slice(1) as number[], includesPreprocessing: Boolean(options.includePreprocessing) },
    outputs: infoOutputs,
    preprocessing: meta.preprocessing,
    quantization: 'none',
  };
  return { graph: foldPad({ name: model.name || 'graft', nodes: b.nodes, initializers: b.initializers, inputs: [graphInput], outputs }), info };
}

/** metadata_props for an export: graft.info (the whole object as JSON) and plain keys for other tools. */
export function exportMetadata(info: OnnxExportInfo): Record<string, string> {
  return {
    'graft.info': JSON.stringify(info),
    'graft.version': info.graftVersion,
    classNames: JSON.stringify(info.outputs[0]?.classNames ?? []),
    preprocessing: info.preprocessing.description ?? JSON.stringify(info.preprocessing),
  };
}
