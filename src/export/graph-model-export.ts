// A Graft model as a tfjs GraphModel (the tfjs converter's "graph-model" format: a TensorFlow
// GraphDef as JSON, weights in a binary shard), so that a GraphModel base's result stays in its
// user's format and tfjs' loadGraphModel runs it. Like the ONNX export, the model is first
// translated into the native engine's op list; TensorFlow is NHWC as tfjs layers are, so the
// weights go over as they are.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { writeFileAtomic } from '../model/io.js';
import { NativeUnsupported, type OpSpec } from '../engine/native.js';
import { GraftError } from '../errors.js';
import { nativePlan } from '../model/native-plan.js';
import { graphModelClass } from '../model/graph-body.js';
import { graftVersion, type GraftMeta } from '../model/meta.js';

interface TfNode { name: string; op: string; input?: string[]; attr?: Record<string, unknown> }
export interface GraphModelFiles { modelJson: object; weights: Uint8Array }

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const intList = (v: number[]) => ({ list: { i: v.map(String) } });
const F32 = { type: 'DT_FLOAT' };

/** model.json (as an object) and weights.bin of a Graft model as a tfjs GraphModel. */
export function graphModelFiles(model: tfl.LayersModel, meta: GraftMeta): GraphModelFiles {
  if (meta.body) throw new GraftError('UNSUPPORTED', `This model's body is the file ${meta.body.path}, outside model.json; a GraphModel is written for models whose whole network is in model.json.`, { fix: 'Use graft predict, which runs the body and this head.' });
  let plan;
  try {
    plan = nativePlan(model, [], true);
  } catch (e) {
    if (e instanceof NativeUnsupported) throw new GraftError('UNSUPPORTED', `The model cannot be written as a GraphModel: ${e.message}.`, { fix: 'Graft writes the layers its native engine knows.' });
    throw e;
  }
  const nodes: TfNode[] = [];
  const specs: { name: string; shape: number[]; dtype: 'float32' | 'int32' }[] = [];
  const chunks: Uint8Array[] = [];
  const used = new Set<string>();
  const unique = (base: string) => {
    const clean = base.replace(/[^A-Za-z0-9_./-]/g, '_').replace(/^[^A-Za-z0-9.]+/, '') || 'v';
    let n = clean;
    for (let i = 1; used.has(n); i++) n = `${clean}_${i}`;
    used.add(n);
    return n;
  };
  const constant = (name: string, shape: number[], data: Float32Array | Int32Array): string => {
    const n = unique(name);
    const int = data instanceof Int32Array;
    nodes.push({ name: n, op: 'Const', attr: { value: { tensor: { dtype: int ? 'DT_INT32' : 'DT_FLOAT', tensorShape: shape.length ? { dim: shape.map((d) => ({ size: String(d) })) } : {} } }, dtype: { type: int ? 'DT_INT32' : 'DT_FLOAT' } } });
    specs.push({ name: n, shape, dtype: int ? 'int32' : 'float32' });
    chunks.push(new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
    return n;
  };
  const node = (op: string, inputs: string[], name: string, attr: Record<string, unknown> = {}): string => {
    const n = unique(name);
    nodes.push({ name: n, op, input: inputs, attr: { T: F32, ...attr } });
    return n;
  };
  const param = (i: number) => plan.params[i];
  const act = (x: string, a: string, where: string, o: OpSpec): string => {
    switch (a) {
      case 'linear': return x;
      case 'relu': return node('Relu', [x], `${where}/Relu`);
      case 'relu6': return node('Relu6', [x], `${where}/Relu6`);
      case 'sigmoid': return node('Sigmoid', [x], `${where}/Sigmoid`);
      case 'tanh': return node('Tanh', [x], `${where}/Tanh`);
      case 'elu': return node('Elu', [x], `${where}/Elu`);
      case 'softplus': return node('Softplus', [x], `${where}/Softplus`);
      case 'softmax': return node('Softmax', [x], `${where}/Softmax`);
      case 'leakyrelu': return node('LeakyRelu', [x], `${where}/LeakyRelu`, { alpha: { f: Number(o.alpha ?? 0.3) } });
      case 'swish': return node('Mul', [x, node('Sigmoid', [x], `${where}/Sigmoid`)], `${where}/swish`);
      default: throw new GraftError('UNSUPPORTED', `The activation ${a} (layer ${where}) has no GraphModel form here.`);
    }
  };
  const inShape = plan.inputShape;
  const inputName = unique('input');
  nodes.push({ name: inputName, op: 'Placeholder', attr: { dtype: F32, shape: { shape: { dim: [{ size: '-1' }, ...inShape.map((d) => ({ size: String(d) }))] } } } });
  const values: string[] = [];
  const shapes: number[] = [];
  const layerByName = new Map(model.layers.map((l) => [l.name, l]));
  plan.ops.forEach((op, index) => {
    const where = String(op.layer ?? `op${index}`);
    const ins = op.inputs.map((i) => values[i]);
    const x = ins[0];
    let out: string;
    const same = (p: number[]) => p.some((v) => v > 0);
    switch (op.kind) {
      case 'input': out = inputName; break;
      case 'conv':
      case 'sepconv': {
        const s = op.stride as number[];
        const d = op.dilation as number[];
        const padding = same(op.pad as number[]) ? 'SAME' : 'VALID';
        const common = { strides: intList([1, s[0], s[1], 1]), dilations: intList([1, d[0], d[1], 1]), padding: { s: b64(padding) }, data_format: { s: b64('NHWC') } };
        const w = param(op.w as number);
        let y: string;
        if (op.kind === 'sepconv') {
          const dw = node('DepthwiseConv2dNative', [x, constant(`${where}/depthwise_kernel`, w.shape, w.data)], `${where}/depthwise`, common);
          const pw = param(op.w2 as number);
          y = node('Conv2D', [dw, constant(`${where}/pointwise_kernel`, pw.shape, pw.data)], `${where}/pointwise`, { ...common, strides: intList([1, 1, 1, 1]), dilations: intList([1, 1, 1, 1]), padding: { s: b64('VALID') } });
        } else {
          y = node(op.groups !== undefined ? 'DepthwiseConv2dNative' : 'Conv2D', [x, constant(`${where}/kernel`, w.shape, w.data)], `${where}/${op.groups !== undefined ? 'depthwise' : 'Conv2D'}`, common);
        }
        if ((op.b as number) >= 0) { const bias = param(op.b as number); y = node('BiasAdd', [y, constant(`${where}/bias`, bias.shape, bias.data)], `${where}/BiasAdd`, { data_format: { s: b64('NHWC') } }); }
        out = act(y, String(op.act), where, op);
        break;
      }
      case 'batchnorm': {
        const c = param(op.mean as number).shape[0];
        const gamma = (op.gamma as number) >= 0 ? param(op.gamma as number).data : new Float32Array(c).fill(1);
        const beta = (op.beta as number) >= 0 ? param(op.beta as number).data : new Float32Array(c);
        out = node('FusedBatchNormV3', [x, constant(`${where}/gamma`, [c], gamma), constant(`${where}/beta`, [c], beta), constant(`${where}/moving_mean`, [c], param(op.mean as number).data), constant(`${where}/moving_variance`, [c], param(op.var as number).data)],
          `${where}/FusedBatchNormV3`, { epsilon: { f: Number(op.eps) }, is_training: { b: false }, data_format: { s: b64('NHWC') } });
        break;
      }
      case 'activation': out = act(x, String(op.act), where, op); break;
      case 'add': { let y = x; for (let i = 1; i < ins.length; i++) y = node('AddV2', [y, ins[i]], i === ins.length - 1 ? where : `${where}_${i}`); out = y; break; }
      case 'multiply': { let y = x; for (let i = 1; i < ins.length; i++) y = node('Mul', [y, ins[i]], i === ins.length - 1 ? where : `${where}_${i}`); out = y; break; }
      case 'concat': out = node('ConcatV2', [...ins, constant(`${where}/axis`, [], Int32Array.of(-1))], where, { N: { i: String(ins.length) }, Tidx: { type: 'DT_INT32' } }); break;
      case 'pad': {
        const [t, bo, l, r] = op.pad as number[];
        out = node('Pad', [x, constant(`${where}/paddings`, [4, 2], Int32Array.of(0, 0, t, bo, l, r, 0, 0))], where, { Tpaddings: { type: 'DT_INT32' } });
        break;
      }
      case 'maxpool':
      case 'avgpool': {
        const k = op.kernel as number[];
        const s = op.stride as number[];
        out = node(op.kind === 'maxpool' ? 'MaxPool' : 'AvgPool', [x], where, { ksize: intList([1, k[0], k[1], 1]), strides: intList([1, s[0], s[1], 1]), padding: { s: b64(same(op.pad as number[]) ? 'SAME' : 'VALID') }, data_format: { s: b64('NHWC') } });
        break;
      }
      case 'globalavg':
      case 'globalmax':
        out = node(op.kind === 'globalavg' ? 'Mean' : 'Max', [x, constant(`${where}/axes`, [2], Int32Array.of(1, 2))], where, { keep_dims: { b: Boolean(op.keepDims) }, Tidx: { type: 'DT_INT32' } });
        break;
      case 'flatten':
        out = node('Reshape', [x, constant(`${where}/shape`, [2], Int32Array.of(-1, shapes[op.inputs[0]]))], where, { Tshape: { type: 'DT_INT32' } });
        break;
      case 'reshape': {
        const shape = op.shape as number[];
        out = node('Reshape', [x, constant(`${where}/shape`, [shape.length + 1], Int32Array.from([-1, ...shape]))], where, { Tshape: { type: 'DT_INT32' } });
        break;
      }
      case 'dense': {
        const w = param(op.w as number);
        let y = node('MatMul', [x, constant(`${where}/kernel`, w.shape, w.data)], `${where}/MatMul`, { transpose_a: { b: false }, transpose_b: { b: false } });
        if ((op.b as number) >= 0) { const bias = param(op.b as number); y = node('BiasAdd', [y, constant(`${where}/bias`, bias.shape, bias.data)], `${where}/BiasAdd`); }
        out = act(y, String(op.act), where, op);
        break;
      }
      case 'dropout': out = x; break;
      case 'rescale': {
        let y = x;
        if (Number(op.scale) !== 1) y = node('Mul', [y, constant(`${where}/scale`, [], Float32Array.of(Number(op.scale)))], `${where}/scale`);
        if (Number(op.offset) !== 0) y = node('AddV2', [y, constant(`${where}/offset`, [], Float32Array.of(Number(op.offset)))], `${where}/offset`);
        out = y;
        break;
      }
      default:
        throw new GraftError('UNSUPPORTED', `The op "${op.kind}" (layer ${where}) has no GraphModel form here.`);
    }
    values.push(out);
    // The flattened size of each value (for Flatten's Reshape): from the tfjs layer's output.
    const layer = op.layer ? layerByName.get(op.layer) : undefined;
    const outShape = (layer?.outputShape as (number | null)[] | undefined) ?? [];
    shapes.push(op.kind === 'input' ? inShape.reduce((a, b) => a * b, 1) : outShape.slice(1).reduce<number>((a, b) => a * (b ?? 1), 1));
  });
  const outIdx = plan.output2 >= 0 ? [plan.output, plan.output2] : [plan.output];
  const outputs = outIdx.map((i, k) => node('Identity', [values[i]], outIdx.length > 1 ? `probabilities_${meta.heads[k]?.name ?? k}` : 'probabilities'));
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const weights = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) { weights.set(c, at); at += c.length; }
  const modelJson = {
    format: 'graph-model', generatedBy: `graft ${graftVersion()}`, convertedBy: 'graft',
    modelTopology: { node: nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
    signature: {
      inputs: { [inputName]: { name: `${inputName}:0`, dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, ...inShape.map((d) => ({ size: String(d) }))] } } },
      outputs: Object.fromEntries(outputs.map((o) => [o, { name: `${o}:0`, dtype: 'DT_FLOAT' }])),
    },
    userDefinedMetadata: { classNames: meta.classNames, preprocessing: meta.preprocessing },
  };
  return { modelJson, weights };
}

/**
 * Writes `dir`/model.json and weights.bin as a GraphModel and runs it with tfjs-converter's
 * GraphModel against the LayersModel on `x` (n samples, the model's input): the largest
 * output difference.
 */
export async function writeGraphModel(dir: string, model: tfl.LayersModel, meta: GraftMeta, x: Float32Array, n: number): Promise<{ maxAbsDiff: number }> {
  const files = graphModelFiles(model, meta);
  const GraphModelClass = await graphModelClass();
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'weights.bin'), files.weights, { replace: true });
  await writeFileAtomic(join(dir, 'model.json'), JSON.stringify(files.modelJson), { replace: true });
  const j = files.modelJson as { modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
  const gm = new GraphModelClass(tf.io.fromMemory({ modelTopology: j.modelTopology, weightSpecs: j.weightsManifest[0].weights, weightData: files.weights.buffer.slice(files.weights.byteOffset, files.weights.byteOffset + files.weights.byteLength) as ArrayBuffer, format: 'graph-model' }));
  await gm.load();
  try {
    const shape = [n, ...(model.inputs[0].shape.slice(1) as number[])];
    return tf.tidy(() => {
      const input = tf.tensor(x, shape);
      const a = (model.predict(input) as tf.Tensor | tf.Tensor[]);
      const b = gm.execute(input) as tf.Tensor | tf.Tensor[];
      const av = (Array.isArray(a) ? a[0] : a).dataSync();
      const bv = (Array.isArray(b) ? b[0] : b).dataSync();
      let d = 0;
      for (let i = 0; i < av.length; i++) d = Math.max(d, Math.abs(av[i] - bv[i]));
      return { maxAbsDiff: av.length === bv.length ? d : Infinity };
    });
  } finally {
    gm.dispose();
  }
}
