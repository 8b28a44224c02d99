// Native per-op kernels for the tfjs wasm backend: convolutions (plain, depthwise, fused, and
// both gradients) and matrix products run in libtorch on all cores, reading and writing the
// wasm heap directly (no copies). Everything else stays on wasm's own kernels. So tfjs-layers'
// fit, predict, trainOnBatch and Graft's per-op loop run unchanged, with the heavy ops native:
// this is the path for models the native training step does not support, and for losses
// without a native form (the losses that keep the old task, LwF and EWC, have one and run in
// the native step).

import * as tf from '@tensorflow/tfjs-core';
import { nativeAddon } from './native.js';

type WasmBackend = tf.KernelBackend & {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
};

type Args = { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap };
type Attrs = Record<string, unknown>;

export interface NativeKernelAddon {
  conv2d(o: object): void;
  conv2dBackpropInput(o: object): void;
  conv2dBackpropFilter(o: object): void;
  batchMatMul(o: object): void;
}

const ACTIVATIONS = new Set(['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid']);
const originals = new Map<string, tf.KernelConfig | undefined>();

function fallback(name: string, args: Args): tf.TensorInfo | tf.TensorInfo[] {
  const k = originals.get(name);
  if (!k) throw new Error(`graft-native: no wasm kernel ${name} to fall back to`);
  return k.kernelFunc(args as never) as tf.TensorInfo;
}

const floats = (...t: (tf.TensorInfo | undefined)[]) => t.every((x) => !x || x.dtype === 'float32');
const empty = (...t: tf.TensorInfo[]) => t.some((x) => x.shape.some((d) => d === 0));

function convInfo(xShape: number[], filterShape: number[], a: Attrs, depthwise: boolean): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number],
    a.strides as [number, number], (a.dilations ?? 1) as [number, number], a.pad as 'same', a.dimRoundingMode as 'floor', depthwise, 'channelsLast');
}

/**
 * A convolution's geometry as the addon reads it, spelled as the native step's ops
 * (model/native-plan.ts): stride and dilation [h, w], pad [top, bottom, left, right] (tfjs'
 * attrs say strides, dilations and pad 'same' | 'valid' | number; computeConv2DInfo resolves them).
 */
const geometry = (info: tf.backend_util.Conv2DInfo, depthwise: boolean) => ({
  stride: [info.strideHeight, info.strideWidth], dilation: [info.dilationHeight, info.dilationWidth],
  pad: [info.padInfo.top, info.padInfo.bottom, info.padInfo.left, info.padInfo.right], depthwise,
});

function makeConv(name: string, depthwise: boolean, fused: boolean, addon: NativeKernelAddon) {
  return (args: Args): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as WasmBackend;
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const a = (args.attrs ?? {}) as Attrs;
    const activation = (a.activation as string | undefined) ?? 'linear';
    const outC = depthwise ? filter!.shape[2] * filter!.shape[3] : filter!.shape[3];
    if (a.dataFormat === 'NCHW' || !floats(x, filter, bias) || empty(x!, filter!) || preluActivationWeights || !ACTIVATIONS.has(activation)
      || (bias && bias.shape.reduce((p, q) => p * q, 1) !== outC)) return fallback(name, args);
    const info = convInfo(x!.shape, filter!.shape, a, depthwise);
    const out = backend.makeOutput(info.outShape, 'float32');
    // Views after makeOutput: allocating can grow the heap and detach older views.
    addon.conv2d({
      x: backend.typedArrayFromHeap(x!), xShape: x!.shape, filter: backend.typedArrayFromHeap(filter!), filterShape: filter!.shape,
      out: backend.typedArrayFromHeap(out), outShape: info.outShape, ...geometry(info, depthwise),
      ...(fused && bias ? { bias: backend.typedArrayFromHeap(bias) } : {}),
      ...(fused ? { act: activation, alpha: Number(a.leakyreluAlpha ?? 0.2) } : {}),
    });
    return out;
  };
}

/**
 * The input gradient (inputs dy and filter; attrs.inputShape) or the filter gradient (inputs
 * x and dy; attrs.filterShape) of a plain or depthwise convolution.
 */
function makeGrad(name: string, of: 'input' | 'filter', depthwise: boolean, addon: NativeKernelAddon) {
  return (args: Args): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as WasmBackend;
    const { x, dy, filter } = args.inputs as Record<string, tf.TensorInfo>;
    const a = (args.attrs ?? {}) as Attrs;
    const other = of === 'input' ? filter : x;
    const outShape = (of === 'input' ? a.inputShape : a.filterShape) as number[];
    if (a.dataFormat === 'NCHW' || !floats(dy, other) || empty(dy, other) || outShape.some((d) => d === 0)) return fallback(name, args);
    const info = of === 'input' ? convInfo(outShape, filter.shape, a, depthwise) : convInfo(x.shape, outShape, a, depthwise);
    const out = backend.makeOutput(outShape, 'float32');
    const common = { dy: backend.typedArrayFromHeap(dy), dyShape: dy.shape, out: backend.typedArrayFromHeap(out), outShape, ...geometry(info, depthwise) };
    if (of === 'input') addon.conv2dBackpropInput({ ...common, filter: backend.typedArrayFromHeap(filter), filterShape: filter.shape });
    else addon.conv2dBackpropFilter({ ...common, x: backend.typedArrayFromHeap(x), xShape: x.shape });
    return out;
  };
}

function makeMatMul(name: string, fused: boolean, addon: NativeKernelAddon) {
  return (args: Args): tf.TensorInfo | tf.TensorInfo[] => {
    const backend = args.backend as WasmBackend;
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const at = (args.attrs ?? {}) as Attrs;
    const activation = (at.activation as string | undefined) ?? 'linear';
    const ta = Boolean(at.transposeA);
    const tb = Boolean(at.transposeB);
    const batchOf = (t: tf.TensorInfo) => t.shape.slice(0, -2).reduce((p, q) => p * q, 1);
    if (!floats(a, b, bias) || empty(a!, b!) || preluActivationWeights || !ACTIVATIONS.has(activation) || a!.shape.length < 2 || b!.shape.length < 2) return fallback(name, args);
    const [ba, bb] = [batchOf(a!), batchOf(b!)];
    const m = a!.shape[a!.shape.length - (ta ? 1 : 2)];
    const n = b!.shape[b!.shape.length - (tb ? 2 : 1)];
    const n2 = bias ? bias.shape.reduce((p, q) => p * q, 1) : n;
    // Broadcast batches only when one side has a single one; bias only per column.
    if ((ba !== bb && ba !== 1 && bb !== 1) || (bias && n2 !== n)) return fallback(name, args);
    const outBatch = (ba >= bb ? a! : b!).shape.slice(0, -2);
    const outShape = [...outBatch, m, n];
    const out = backend.makeOutput(outShape, 'float32');
    addon.batchMatMul({
      a: backend.typedArrayFromHeap(a!), aShape: [ba, ...a!.shape.slice(-2)], b: backend.typedArrayFromHeap(b!), bShape: [bb, ...b!.shape.slice(-2)],
      transposeA: ta, transposeB: tb, out: backend.typedArrayFromHeap(out), outShape: [Math.max(ba, bb), m, n],
      ...(fused && bias ? { bias: backend.typedArrayFromHeap(bias) } : {}),
      ...(fused ? { act: activation, alpha: Number(at.leakyreluAlpha ?? 0.2) } : {}),
    });
    return out;
  };
}

type Maker = (name: string, addon: NativeKernelAddon) => tf.KernelFunc;

/** Each kernel name and how its native kernel is made. */
const KERNELS: Record<string, Maker> = {
  Conv2D: (n, a) => makeConv(n, false, false, a) as tf.KernelFunc,
  FusedConv2D: (n, a) => makeConv(n, false, true, a) as tf.KernelFunc,
  DepthwiseConv2dNative: (n, a) => makeConv(n, true, false, a) as tf.KernelFunc,
  FusedDepthwiseConv2D: (n, a) => makeConv(n, true, true, a) as tf.KernelFunc,
  Conv2DBackpropInput: (n, a) => makeGrad(n, 'input', false, a) as tf.KernelFunc,
  DepthwiseConv2dNativeBackpropInput: (n, a) => makeGrad(n, 'input', true, a) as tf.KernelFunc,
  Conv2DBackpropFilter: (n, a) => makeGrad(n, 'filter', false, a) as tf.KernelFunc,
  DepthwiseConv2dNativeBackpropFilter: (n, a) => makeGrad(n, 'filter', true, a) as tf.KernelFunc,
  BatchMatMul: (n, a) => makeMatMul(n, false, a) as tf.KernelFunc,
  _FusedMatMul: (n, a) => makeMatMul(n, true, a) as tf.KernelFunc,
};

export const NATIVE_KERNEL_NAMES = Object.keys(KERNELS);

let active: Record<string, tf.KernelFunc> | undefined;

/**
 * Puts the native kernels into the wasm backend (on = true) or the previous kernels back.
 * Returns whether they are in. Needs the addon; without it nothing changes.
 */
export function setNativeKernels(on: boolean): boolean {
  const addon = nativeAddon();
  if (on && !active && addon) {
    active = Object.fromEntries(Object.entries(KERNELS).map(([name, make]) => [name, make(name, addon)]));
    for (const [name, kernelFunc] of Object.entries(active)) {
      const original = tf.getKernel(name, 'wasm');
      originals.set(name, original);
      tf.unregisterKernel(name, 'wasm');
      // The wasm kernel's setup (binding its wasm function) must still run when the backend
      // starts, or falling back to it would fail.
      tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc, ...(original?.setupFunc ? { setupFunc: original.setupFunc } : {}) });
    }
  } else if (!on && active) {
    for (const name of Object.keys(active)) {
      tf.unregisterKernel(name, 'wasm');
      const k = originals.get(name);
      if (k) tf.registerKernel(k);
    }
    active = undefined;
  }
  return Boolean(active);
}

/** The wasm kernels that run natively now. */
export function nativeKernels(): string[] {
  if (!active) return [];
  return Object.keys(active).filter((k) => tf.getKernel(k, 'wasm')?.kernelFunc === active![k]);
}
