// ONNX models run as they are, as frozen bodies: by onnxruntime-node (its CPU binaries ship
// inside the npm package), cut at any named value of the graph, their features computed once
// for the warm-up. This serves graphs Graft cannot rebuild as layers (onnx-layers.ts): the head
// trains on the features and the saved model is the head plus a reference (path and content
// hash) to the ONNX body. The graph's structure is read by onnx-read.ts.
//
// To fetch an intermediate value, the graph must list it as an output: a few lines of protobuf
// reading and writing (ModelProto.graph = 7; GraphProto.output = 12; ValueInfoProto.name = 1,
// type = 2) add it, without an ONNX library.

import { createHash } from 'node:crypto';
import { READ_LIMITS, readBounded } from '../data/bounded-read.js';
import { basename } from 'node:path';
import { GraftError, closeNames } from '../errors.js';
import { loadOptional, OPTIONAL } from '../optional.js';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { featuresInBatches, inFixedBatches } from './frozen-body.js';
import { readOnnxModel } from './onnx-read.js';

export interface OnnxNode { name: string; opType: string; inputs: string[]; outputs: string[] }
export interface OnnxValue { name: string; dims: (number | string)[] }
export interface OnnxGraph { nodes: OnnxNode[]; inputs: OnnxValue[]; outputs: OnnxValue[] }

export interface Field { field: number; wire: number; start: number; end: number; value: number }

/** The top-level fields of a protobuf message (length-delimited ones by their byte range). */
export function fields(buf: Uint8Array, start = 0, end = buf.length): Field[] {
  const out: Field[] = [];
  let p = start;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (p >= end) throw new Error('truncated varint');
      const b = buf[p++];
      result += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return result;
      shift += 7;
      if (shift > 63) throw new Error('bad varint');
    }
  };
  while (p < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, start: p, end: p, value: varint() });
    else if (wire === 2) {
      const len = varint();
      if (p + len > end) throw new Error('length past the end');
      out.push({ field, wire, start: p, end: p + len, value: len });
      p += len;
    } else if (wire === 1) { p += 8; } else if (wire === 5) { p += 4; } else throw new Error(`wire type ${wire}`);
    if (p > end) throw new Error('field past the end');
  }
  return out;
}

export const utf8 = (buf: Uint8Array, f: Field) => Buffer.from(buf.subarray(f.start, f.end)).toString('utf8');

function graphField(buf: Uint8Array, where: string): Field {
  let top: Field[];
  try { top = fields(buf); } catch (e) { throw bad(where, `is not a readable ONNX model (${(e as Error).message}); it may be truncated.`); }
  const g = top.find((f) => f.field === 7 && f.wire === 2);
  if (!g) throw bad(where, 'is not an ONNX model (no graph).');
  return g;
}

function bad(where: string, what: string): GraftError {
  return new GraftError('BAD_MODEL', `${where} ${what}`, { fix: 'Export the model again (torch.onnx.export) and copy the whole .onnx file.' });
}

/** Nodes, inputs (without initializers) and outputs of an ONNX model's graph. */
export function readOnnxGraph(buf: Uint8Array, where: string): OnnxGraph {
  graphField(buf, where);
  const g = readOnnxModel(buf, where, { values: false });
  return { nodes: g.nodes.map((n) => ({ name: n.name, opType: n.opType, inputs: n.inputs, outputs: n.outputs })), inputs: g.inputs, outputs: g.outputs };
}

/** ModelProto.metadata_props (field 14): key = 1, value = 2. */
export function readOnnxMetadata(buf: Uint8Array, where: string): Record<string, string> {
  let top: Field[];
  try { top = fields(buf); } catch (e) { throw bad(where, `is not a readable ONNX model (${(e as Error).message}); it may be truncated.`); }
  const out: Record<string, string> = {};
  for (const f of top.filter((x) => x.field === 14 && x.wire === 2)) {
    const kv = fields(buf, f.start, f.end);
    const k = kv.find((x) => x.field === 1 && x.wire === 2);
    const v = kv.find((x) => x.field === 2 && x.wire === 2);
    if (k) out[utf8(buf, k)] = v ? utf8(buf, v) : '';
  }
  return out;
}

function varintBytes(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); }
  out.push(n);
  return out;
}

function lengthDelimited(field: number, body: Uint8Array): Uint8Array {
  return Uint8Array.from([...varintBytes(field * 8 + 2), ...varintBytes(body.length), ...body]);
}

/** The model with `names` added to its graph's outputs (float tensors of any shape). */
export function withOutputs(buf: Uint8Array, names: string[], where: string): Uint8Array {
  const g = graphField(buf, where);
  const elemFloat = Uint8Array.from([0x08, 0x01]); // TypeProto.Tensor.elem_type = FLOAT
  const extra = names.map((n) => lengthDelimited(12, Uint8Array.from([...lengthDelimited(1, Buffer.from(n, 'utf8')), ...lengthDelimited(2, lengthDelimited(1, elemFloat))])));
  const graph = Buffer.concat([buf.subarray(g.start, g.end), ...extra]);
  const keyStart = g.start - varintBytes(g.value).length - 1; // field 7, wire 2: a one-byte key
  return Buffer.concat([buf.subarray(0, keyStart), lengthDelimited(7, graph), buf.subarray(g.end)]);
}

type Ort = typeof import('onnxruntime-node');
let ortModule: Ort | undefined;
/** @internal onnxruntime-node, loaded on first use (an optional package). */
export async function ort(): Promise<Ort> {
  ortModule ??= await loadOptional<Ort>(OPTIONAL.onnxruntime, 'Running ONNX models', () => import('onnxruntime-node'));
  return ortModule;
}

export interface OnnxBodyInfo {
  kind: 'onnx';
  path: string;
  sha256: string;
  input: string;
  output: string;
  /** The ONNX input layout; Graft's images are NHWC and are transposed for NCHW models. */
  layout: 'NCHW' | 'NHWC';
  /** Image height, width, channels the body takes. */
  imageShape: [number, number, number];
  /** Features per sample, channels last. */
  featureShape: number[];
  /** The batch size the graph's input fixes (torch.onnx.export without dynamic_axes fixes 1). */
  fixedBatch?: number;
}

/** A frozen ONNX body cut at a named value (a node's name or one of its output names). */
export class OnnxBody {
  private constructor(readonly info: OnnxBodyInfo, private readonly session: import('onnxruntime-node').InferenceSession, readonly graph: OnnxGraph) {}

  static async load(path: string, cut?: string, expectSha?: string): Promise<OnnxBody> {
    const where = basename(path);
    let buf: Buffer;
    try { buf = await readBounded(path, { limit: READ_LIMITS.onnx, what: 'The ONNX model' }); } catch (e) { if (e instanceof GraftError) throw e; throw new GraftError('MODEL_NOT_FOUND', `No ONNX model at "${path}".`, { fix: 'Check the path to the .onnx file.' }); }
    const sha256 = createHash('sha256').update(buf).digest('hex');
    if (expectSha && expectSha !== sha256) {
      throw new GraftError('BAD_MODEL', `${path} is not the ONNX body this model was trained on (its content hash differs).`, {
        fix: 'Put the original .onnx file back at that path, or train the head again on this body.' });
    }
    const graph = readOnnxGraph(buf, where);
    if (graph.inputs.length !== 1) throw bad(where, `has ${graph.inputs.length} inputs; Graft uses bodies with one image input.`);
    const input = graph.inputs[0];
    const dims = input.dims.slice(1).map((d) => (typeof d === 'number' ? d : 0));
    if (dims.length !== 3 || dims.some((d) => d <= 0)) {
      throw bad(where, `has the input ${input.name} of shape [${input.dims.join(', ')}]; Graft needs a fixed image shape [batch, 3, H, W] or [batch, H, W, 3].`);
    }
    const layout = dims[0] === 1 || dims[0] === 3 ? 'NCHW' : 'NHWC';
    const imageShape: [number, number, number] = layout === 'NCHW' ? [dims[1], dims[2], dims[0]] : [dims[0], dims[1], dims[2]];
    const values = new Map<string, string>();
    for (const n of graph.nodes) for (const o of n.outputs) { values.set(o, o); if (n.outputs.length === 1 && n.name) values.set(n.name, o); }
    const output = cut === undefined ? graph.outputs[0]?.name : values.get(cut);
    if (!output) {
      const close = cut ? closeNames(cut, [...values.keys()]) : [];
      throw new GraftError('LAYER_NOT_FOUND', `${where} has no node or value "${cut}".${close.length ? ` Close names: ${close.join(', ')}.` : ''}`, {
        fix: `graft inspect ${path} lists the nodes and their outputs.` });
    }
    const isGraphOutput = graph.outputs.some((o) => o.name === output);
    const model = isGraphOutput ? buf : withOutputs(buf, [output], where);
    const o = await ort();
    let session;
    try {
      session = await o.InferenceSession.create(model, { intraOpNumThreads: 0, graphOptimizationLevel: 'all' });
    } catch (cause) {
      throw new GraftError('BAD_MODEL', `onnxruntime cannot load ${where}: ${(cause as Error).message.split('\n')[0]}`, { fix: 'Export the model again with a supported opset (torch.onnx.export, opset 13 or newer).', cause });
    }
    const fixedBatch = typeof input.dims[0] === 'number' && input.dims[0] > 0 ? input.dims[0] : undefined;
    const body = new OnnxBody({ kind: 'onnx', path, sha256, input: input.name, output, layout, imageShape, featureShape: [], ...(fixedBatch ? { fixedBatch } : {}) }, session, graph);
    const probe = await body.run(new Float32Array(imageShape[0] * imageShape[1] * imageShape[2]), 1);
    body.info.featureShape = probe.shape;
    return body;
  }

  /** Runs `n` preprocessed samples (NHWC values) and returns channels-last features. */
  async run(nhwc: Float32Array, n: number): Promise<{ values: Float32Array; shape: number[] }> {
    const b = this.info.fixedBatch;
    if (b && n !== b) return inFixedBatches((x, k) => this.runBatch(x, k), nhwc, n, b);
    return this.runBatch(nhwc, n);
  }

  private async runBatch(nhwc: Float32Array, n: number): Promise<{ values: Float32Array; shape: number[] }> {
    const o = await ort();
    const [h, w, c] = this.info.imageShape;
    let data = nhwc;
    let dims = [n, h, w, c];
    if (this.info.layout === 'NCHW') {
      data = new Float32Array(nhwc.length);
      for (let b = 0; b < n; b++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) {
        data[((b * c + k) * h + y) * w + x] = nhwc[((b * h + y) * w + x) * c + k];
      }
      dims = [n, c, h, w];
    }
    const result = await this.session.run({ [this.info.input]: new o.Tensor('float32', data, dims) }, [this.info.output]);
    const t = result[this.info.output];
    const out = t.data as Float32Array;
    const shape = t.dims.slice(1) as number[];
    if (this.info.layout === 'NCHW' && shape.length === 3) {
      // [n, C, H, W] -> [n, H, W, C] for the tfjs head.
      const [C, H, W] = shape;
      const cl = new Float32Array(out.length);
      for (let b = 0; b < n; b++) for (let k = 0; k < C; k++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        cl[((b * H + y) * W + x) * C + k] = out[((b * C + k) * H + y) * W + x];
      }
      return { values: cl, shape: [H, W, C] };
    }
    return { values: Float32Array.from(out), shape };
  }

  /** Features of every sample of `d` (raw values, preprocessed here), batch by batch. */
  features(d: Dataset, p: Preprocessing | undefined, batchSize = 32): Promise<Dataset> {
    return featuresInBatches((x, n) => this.run(x, n), this.info.featureShape, d, p, batchSize);
  }


  /** Index of the node that produces the cut value. */
  cutIndex(): number {
    return this.graph.nodes.findIndex((n) => n.outputs.includes(this.info.output));
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** Lines for graft inspect: inputs, outputs, and every node with its output names. */
export function formatOnnxGraph(g: OnnxGraph, where: string): string {
  const lines = [`${where}: ONNX graph, ${g.nodes.length} nodes`];
  for (const i of g.inputs) lines.push(`Input node: ${i.name} [${i.dims.join(', ')}]`);
  for (const o of g.outputs) lines.push(`Output node: ${o.name} [${o.dims.join(', ')}]`);
  lines.push('', ' #  node  op  outputs (cut at a node name, an output name or the #)');
  g.nodes.forEach((n, i) => lines.push(`${String(i).padStart(2)}  ${n.name || '-'}  ${n.opType}  ${n.outputs.join(', ')}`));
  return lines.join('\n');
}
