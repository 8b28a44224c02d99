// A tfjs LayersModel translated into the native engine's ops and params (engine/native.ts
// runs them): the layers Graft trains, their weights in the addon's layouts, which layer group
// each trains in. The engine itself knows no models; this module is where models meet it.

import type * as tfl from '@tensorflow/tfjs-layers';
import type { LayerVariable, SymbolicTensor } from '@tensorflow/tfjs-layers';
import { FreezableBatchNormalization } from './batch-norm.js';
import type { Layer } from './layers.js';
import { nativeStatus, NativeUnsupported, type NativePlan, type OpSpec, type ParamSpec } from '../engine/native.js';

/** The layers that train together at one learning rate (the training loop's LayerGroup). */
export interface PlanGroup { layers: Layer[] }

type Shape = (number | null)[];
type Config = Record<string, unknown>;

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [Number(v[0]), Number(v[1] ?? v[0])] : [Number(v), Number(v)]);

/** tfjs 'same' padding: the odd pixel goes to the bottom and right. [top, bottom, left, right]. */
export function samePads(inShape: Shape, kernel: [number, number], strides: [number, number], dilation: [number, number] = [1, 1]): number[] {
  const pads: number[] = [];
  for (let i = 0; i < 2; i++) {
    const size = inShape[1 + i];
    if (size == null) throw new NativeUnsupported('an input of unknown height or width');
    const out = Math.ceil(size / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilation[i] + 1 - size);
    pads.push(Math.floor(total / 2), total - Math.floor(total / 2));
  }
  return pads;
}

function activationName(c: Config): string {
  const a = c.activation;
  const name = typeof a === 'string' ? a : a == null ? 'linear' : String((a as { className?: string }).className ?? a);
  const known: Record<string, string> = { linear: 'linear', relu: 'relu', relu6: 'relu6', sigmoid: 'sigmoid', tanh: 'tanh', softmax: 'softmax', elu: 'elu', swish: 'swish', silu: 'swish', softplus: 'softplus' };
  const k = known[name.toLowerCase()];
  if (!k) throw new NativeUnsupported(`activation "${name}"`);
  return k;
}

function channelsLast(c: Config, layer: Layer): void {
  if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new NativeUnsupported(`${layer.name}: data format ${String(c.dataFormat)}`);
}

/**
 * Translates a model into the addon's ops. A layer in `groups[i]` trains in group i (its
 * learning rate is lrs[i] of each step); other layers are frozen. Without `readWeights` the
 * params carry no values (a support check). Throws NativeUnsupported with the reason.
 */
export function nativePlan(model: tfl.LayersModel, groups: PlanGroup[] = [], readWeights = true): NativePlan {
  const groupOf = new Map<Layer, number>();
  groups.forEach((g, i) => g.layers.forEach((l) => groupOf.set(l, i)));
  if (model.inputs.length !== 1 || model.outputs.length > 2) throw new NativeUnsupported('a model with several inputs or more than two outputs');
  const ops: OpSpec[] = [];
  const params: ParamSpec[] = [];
  const variables: LayerVariable[] = [];
  const paramIndex = new Map<LayerVariable, number>();
  const opOf = new Map<number, number>();
  const param = (layer: Layer, v: LayerVariable, layout: ParamSpec['layout']): number => {
    const known = paramIndex.get(v);
    if (known !== undefined) return known;
    const group = groupOf.get(layer);
    const trainable = group !== undefined && layer.trainable && v.trainable;
    const data = readWeights ? (v.read().dataSync() as Float32Array).slice() : new Float32Array(0);
    params.push({ data, shape: v.shape as number[], layout, trainable, group: group ?? 0 });
    variables.push(v);
    paramIndex.set(v, params.length - 1);
    return params.length - 1;
  };
  const inputShape = model.inputs[0].shape.slice(1) as Shape;
  if (inputShape.some((d) => d == null)) throw new NativeUnsupported('an input of unknown size');
  if (inputShape.length !== 1 && inputShape.length !== 3) throw new NativeUnsupported(`an input of rank ${inputShape.length + 1}`);

  const visit = (t: SymbolicTensor): number => {
    const seen = opOf.get(t.id);
    if (seen !== undefined) return seen;
    const layer = t.sourceLayer as Layer;
    const node = (layer as unknown as { inboundNodes: Array<{ inputTensors: SymbolicTensor[] }> }).inboundNodes[t.nodeIndex];
    const cls = layer.getClassName();
    let op: OpSpec;
    if (cls === 'InputLayer' || !node || node.inputTensors.length === 0) {
      if (t !== model.inputs[0] && cls !== 'InputLayer') throw new NativeUnsupported(`${layer.name}: a layer without inputs`);
      op = { kind: 'input', inputs: [] };
    } else {
      const inputs = node.inputTensors.map(visit);
      op = describe(layer, cls, node.inputTensors[0].shape, inputs, param);
    }
    op.layer = layer.name;
    ops.push(op);
    opOf.set(t.id, ops.length - 1);
    return ops.length - 1;
  };
  const output = visit(model.outputs[0]);
  const output2 = model.outputs.length > 1 ? visit(model.outputs[1]) : -1;
  return { ops, params, variables, inputShape: inputShape as number[], output, output2 };
}

function describe(layer: Layer, cls: string, inShape: Shape, inputs: number[], param: (l: Layer, v: LayerVariable, layout: ParamSpec['layout']) => number): OpSpec {
  const c = layer.getConfig() as Config;
  const w = layer.weights;
  switch (cls) {
    case 'Conv2D':
    case 'DepthwiseConv2D':
    case 'SeparableConv2D': {
      channelsLast(c, layer);
      const kernel = pair(c.kernelSize);
      const stride = pair(c.strides ?? 1);
      const dilation = pair(c.dilationRate ?? 1);
      if (c.padding !== 'same' && c.padding !== 'valid') throw new NativeUnsupported(`${layer.name}: padding ${String(c.padding)}`);
      const pad = c.padding === 'same' ? samePads(inShape, kernel, stride, dilation) : [0, 0, 0, 0];
      const useBias = c.useBias !== false;
      const base = { inputs, stride, dilation, pad, kernel, act: activationName(c) };
      if (cls === 'Conv2D') {
        if (Number(c.groups ?? 1) !== 1) throw new NativeUnsupported(`${layer.name}: grouped convolution`);
        return { kind: 'conv', ...base, w: param(layer, w[0], 'conv'), b: useBias ? param(layer, w[1], 'plain') : -1 };
      }
      const channels = Number(inShape[3]);
      if (cls === 'DepthwiseConv2D') return { kind: 'conv', ...base, groups: channels, w: param(layer, w[0], 'depthwise'), b: useBias ? param(layer, w[1], 'plain') : -1 };
      return { kind: 'sepconv', ...base, w: param(layer, w[0], 'depthwise'), w2: param(layer, w[1], 'conv'), b: useBias ? param(layer, w[2], 'plain') : -1 };
    }
    case 'BatchNormalization': {
      const axis = Number(c.axis ?? -1);
      if (axis !== -1 && axis !== inShape.length - 1) throw new NativeUnsupported(`${layer.name}: batch norm over axis ${axis}`);
      let i = 0;
      const gamma = c.scale !== false ? param(layer, w[i++], 'plain') : -1;
      const beta = c.center !== false ? param(layer, w[i++], 'plain') : -1;
      const mean = param(layer, w[i++], 'plain');
      const variance = param(layer, w[i++], 'plain');
      const keeps = layer instanceof FreezableBatchNormalization && (!layer.trainable || layer.keepStatistics);
      return { kind: 'batchnorm', inputs, gamma, beta, mean, var: variance, eps: Number(c.epsilon ?? 1e-3), momentum: Number(c.momentum ?? 0.99), mode: keeps ? 'inference' : 'update' };
    }
    case 'Activation':
      return { kind: 'activation', inputs, act: activationName(c) };
    case 'ReLU': {
      const max = c.maxValue == null ? null : Number(c.maxValue);
      if (max !== null && max !== 6) throw new NativeUnsupported(`${layer.name}: ReLU with maxValue ${max}`);
      return { kind: 'activation', inputs, act: max === 6 ? 'relu6' : 'relu' };
    }
    case 'LeakyReLU':
      return { kind: 'activation', inputs, act: 'leakyrelu', alpha: Number(c.alpha ?? 0.3) };
    case 'Softmax':
      if (c.axis != null && Number(c.axis) !== -1 && Number(c.axis) !== inShape.length - 1) throw new NativeUnsupported(`${layer.name}: softmax over axis ${String(c.axis)}`);
      return { kind: 'activation', inputs, act: 'softmax' };
    case 'Add':
    case 'Multiply':
      return { kind: cls.toLowerCase(), inputs };
    case 'Concatenate': {
      const axis = Number(c.axis ?? -1);
      if (axis !== -1 && axis !== inShape.length - 1) throw new NativeUnsupported(`${layer.name}: concatenation over axis ${axis}`);
      return { kind: 'concat', inputs };
    }
    case 'ZeroPadding2D': {
      channelsLast(c, layer);
      const p = c.padding as unknown;
      const [[t, b], [l, r]] = Array.isArray(p) && Array.isArray(p[0]) ? (p as [[number, number], [number, number]]) : [pair(p), pair(Array.isArray(p) ? p[1] : p)];
      return { kind: 'pad', inputs, pad: [t, b, l, r] };
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      channelsLast(c, layer);
      const kernel = pair(c.poolSize ?? 2);
      const stride = pair(c.strides ?? c.poolSize ?? 2);
      const pad = c.padding === 'same' ? samePads(inShape, kernel, stride) : [0, 0, 0, 0];
      if (cls === 'AveragePooling2D' && (pad[0] !== pad[1] || pad[2] !== pad[3])) throw new NativeUnsupported(`${layer.name}: average pooling with uneven 'same' padding`);
      return { kind: cls === 'MaxPooling2D' ? 'maxpool' : 'avgpool', inputs, kernel, stride, pad };
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      channelsLast(c, layer);
      if (c.keepDims) throw new NativeUnsupported(`${layer.name}: keepDims`);
      return { kind: cls === 'GlobalAveragePooling2D' ? 'globalavg' : 'globalmax', inputs };
    case 'Flatten':
      return { kind: 'flatten', inputs };
    case 'Dense':
      if (inShape.length !== 2) throw new NativeUnsupported(`${layer.name}: Dense on a tensor of rank ${inShape.length}`);
      return { kind: 'dense', inputs, act: activationName(c), w: param(layer, w[0], 'plain'), b: c.useBias !== false ? param(layer, w[1], 'plain') : -1 };
    case 'Dropout':
      if (c.noiseShape != null) throw new NativeUnsupported(`${layer.name}: dropout with a noise shape`);
      return { kind: 'dropout', inputs, rate: Number(c.rate ?? 0) };
    case 'Reshape':
      return { kind: 'reshape', inputs, shape: (c.targetShape as number[]).map(Number) };
    case 'Rescaling':
      return { kind: 'rescale', inputs, scale: Number(c.scale ?? 1), offset: Number(c.offset ?? 0) };
    default:
      throw new NativeUnsupported(`layer ${layer.name} (${cls})`);
  }
}

/** Why `model` cannot run natively, or undefined when it can (the addon present). */
export function nativeUnsupported(model: tfl.LayersModel): string | undefined {
  const s = nativeStatus();
  if (!s.available) return `native engine ${s.reason}`;
  try {
    nativePlan(model, [], false);
    return undefined;
  } catch (e) {
    if (e instanceof NativeUnsupported) return `not supported natively: ${e.message}`;
    throw e;
  }
}

