// Gradient kernels for the tfjs `wasm` backend, which ships without them (so conv and
// depthwise conv layers cannot be trained there): Conv2DBackpropFilter, and the depthwise
// filter and input gradients (plain loops over the wasm heap; slower than native, but they run). The filter gradient is an im2col of the input
// followed by one matrix product on the wasm heap:
//   dW[(kh,kw,ci), co] = sum over (b,y,x) of patch[(b,y,x), (kh,kw,ci)] * dy[(b,y,x), co]
// The im2col is plain JS; the product runs in wasm's own BatchMatMul (XNNPACK).

import * as tf from '@tensorflow/tfjs-core';

type WasmBackend = tf.KernelBackend & {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
};

interface BackpropFilterAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}

function im2col(x: Float32Array, info: tf.backend_util.Conv2DInfo, col: Float32Array): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rowLen = filterHeight * filterWidth * inChannels;
  let row = 0;
  for (let b = 0; b < batchSize; b++) {
    const xb = b * inHeight * inWidth * inChannels;
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++, row++) {
        let o = row * rowLen;
        for (let kh = 0; kh < filterHeight; kh++) {
          const iy = oy * strideHeight - top + kh * dilationHeight;
          for (let kw = 0; kw < filterWidth; kw++, o += inChannels) {
            const ix = ox * strideWidth - left + kw * dilationWidth;
            if (iy < 0 || iy >= inHeight || ix < 0 || ix >= inWidth) {
              col.fill(0, o, o + inChannels);
            } else {
              const s = xb + (iy * inWidth + ix) * inChannels;
              if (inChannels === 1) col[o] = x[s];
              else col.set(x.subarray(s, s + inChannels), o);
            }
          }
        }
      }
    }
  }
}

function conv2DBackpropFilter(args: { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as BackpropFilterAttrs;
  if (attrs.dataFormat !== 'NHWC') {
    throw new Error(`Graft's wasm Conv2DBackpropFilter supports NHWC only (got ${attrs.dataFormat}).`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, 'channelsLast');
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  // A 1x1 convolution with stride 1 and no padding reads each input pixel once: the input is
  // its own im2col matrix.
  const direct = info.filterHeight === 1 && info.filterWidth === 1 && info.strideHeight === 1 && info.strideWidth === 1
    && info.outHeight === info.inHeight && info.outWidth === info.inWidth;
  const col = direct ? { dataId: x.dataId, shape: [1, rows, k], dtype: 'float32' as const } : backend.makeOutput([1, rows, k], 'float32');
  try {
    if (!direct) im2col(backend.typedArrayFromHeap(x), info, backend.typedArrayFromHeap(col));
    const dy3: tf.TensorInfo = { dataId: dy.dataId, shape: [1, rows, info.outChannels], dtype: 'float32' };
    const matMul = tf.getKernel('BatchMatMul', 'wasm');
    if (!matMul) throw new Error('wasm BatchMatMul kernel is missing');
    const out = matMul.kernelFunc({
      inputs: { a: col, b: dy3 }, backend: backend as tf.KernelBackend,
      attrs: { transposeA: true, transposeB: false } as unknown as tf.NamedAttrMap,
    }) as tf.TensorInfo;
    return { dataId: out.dataId, shape: attrs.filterShape, dtype: 'float32' };
  } finally {
    if (!direct) backend.disposeData(col.dataId);
  }
}

interface DepthwiseAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dilations: [number, number] | number;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape?: [number, number, number, number];
  inputShape?: [number, number, number, number];
}

/**
 * Visits every (input pixel, filter tap, output pixel) triple of a depthwise convolution with
 * NHWC layouts and accumulates, for each channel c and multiplier m:
 *   'filter': acc[w] += a[x] * b[dy]   (a = input, b = dy; acc = filter gradient)
 *   'input':  acc[x] += a[w] * b[dy]   (a = filter, b = dy; acc = input gradient)
 * The loops are written out per mode (no callback in the inner loop: V8 cannot inline a
 * call site that sees two closures, and that was 2-3x slower).
 */
function depthwiseAccumulate(info: tf.backend_util.Conv2DInfo, mode: 'filter' | 'input', acc: Float32Array, a: Float32Array, b: Float32Array): void {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const mult = outChannels / inChannels;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const forFilter = mode === 'filter';
  for (let bi = 0; bi < batchSize; bi++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let kh = 0; kh < filterHeight; kh++) {
        const iy = oy * strideHeight - top + kh * dilationHeight;
        if (iy < 0 || iy >= inHeight) continue;
        for (let ox = 0; ox < outWidth; ox++) {
          const dBase = ((bi * outHeight + oy) * outWidth + ox) * outChannels;
          for (let kw = 0; kw < filterWidth; kw++) {
            const ix = ox * strideWidth - left + kw * dilationWidth;
            if (ix < 0 || ix >= inWidth) continue;
            const xBase = ((bi * inHeight + iy) * inWidth + ix) * inChannels;
            const wBase = (kh * filterWidth + kw) * inChannels * mult;
            if (mult === 1) {
              if (forFilter) for (let c = 0; c < inChannels; c++) acc[wBase + c] += a[xBase + c] * b[dBase + c];
              else for (let c = 0; c < inChannels; c++) acc[xBase + c] += a[wBase + c] * b[dBase + c];
            } else if (forFilter) {
              for (let c = 0; c < inChannels; c++) for (let m = 0; m < mult; m++) acc[wBase + c * mult + m] += a[xBase + c] * b[dBase + c * mult + m];
            } else {
              for (let c = 0; c < inChannels; c++) for (let m = 0; m < mult; m++) acc[xBase + c] += a[wBase + c * mult + m] * b[dBase + c * mult + m];
            }
          }
        }
      }
    }
  }
}

function depthwiseInfo(xShape: number[], filterShape: number[], a: DepthwiseAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number],
    a.strides, a.dilations, a.pad, a.dimRoundingMode, true, 'channelsLast');
}

/**
 * Both depthwise gradients: 'filter' (inputs x, dy; output shaped like the filter) and 'input'
 * (inputs dy, filter; output shaped like x), accumulated by the same tap loop.
 */
function depthwiseBackprop(mode: 'filter' | 'input', args: { inputs: tf.NamedTensorInfoMap; backend: object; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { x, dy, filter } = args.inputs as { x?: tf.TensorInfo; dy: tf.TensorInfo; filter?: tf.TensorInfo };
  const a = args.attrs as unknown as DepthwiseAttrs;
  const xShape = mode === 'filter' ? x!.shape : a.inputShape!;
  const filterShape = mode === 'filter' ? a.filterShape! : filter!.shape;
  const info = depthwiseInfo(xShape, filterShape, a);
  const out = backend.makeOutput(mode === 'filter' ? filterShape : xShape, 'float32');
  const acc = backend.typedArrayFromHeap(out) as Float32Array;
  acc.fill(0);
  const other = backend.typedArrayFromHeap(mode === 'filter' ? x! : filter!) as Float32Array;
  depthwiseAccumulate(info, mode, acc, other, backend.typedArrayFromHeap(dy) as Float32Array);
  return out;
}

const depthwiseBackpropFilter = (args: Parameters<typeof depthwiseBackprop>[1]) => depthwiseBackprop('filter', args);
const depthwiseBackpropInput = (args: Parameters<typeof depthwiseBackprop>[1]) => depthwiseBackprop('input', args);

let registered = false;

/** Graft's gradient kernels for the wasm backend, by kernel name. */
export const WASM_GRAD_KERNELS = {
  Conv2DBackpropFilter: conv2DBackpropFilter,
  DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter,
  DepthwiseConv2dNativeBackpropInput: depthwiseBackpropInput,
};

/** Adds Graft's gradient kernels to the wasm backend where it has none (idempotent). */
export function registerWasmGradKernels(): void {
  if (registered) return;
  for (const [kernelName, kernelFunc] of Object.entries(WASM_GRAD_KERNELS)) {
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  registered = true;
}
