// Running a Graft ONNX export on onnxruntime-node: the file's metadata_props say its input
// layout, whether preprocessing is inside, and each output's head and class names, so the
// file alone is enough to predict and evaluate.

import { READ_LIMITS, readBounded } from '../data/bounded-read.js';
import { batchValues } from '../data/preprocess.js';
import { count, sampleSize, type Dataset } from '../data/dataset.js';
import { GraftError } from '../errors.js';
import { ort, readOnnxGraph, readOnnxMetadata, type OnnxGraph } from '../model/onnx.js';
import type { OnnxExportInfo } from './onnx-export.js';

/** `n` images [h, w, c] channels last as channels first. */
export function nhwcToNchw(x: Float32Array, n: number, [h, w, c]: number[]): Float32Array {
  const out = new Float32Array(n * h * w * c);
  for (let b = 0; b < n; b++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) for (let k = 0; k < c; k++) {
    out[((b * c + k) * h + y) * w + xx] = x[((b * h + y) * w + xx) * c + k];
  }
  return out;
}

export class OnnxModel {
  private constructor(readonly info: OnnxExportInfo, private readonly session: import('onnxruntime-node').InferenceSession, readonly where: string) {}

  static async fromBytes(buf: Uint8Array, where: string, threads = 0): Promise<OnnxModel> {
    const again = 'Export it again with graft export, and copy the whole file.';
    if (!buf.length) throw new GraftError('BAD_MODEL', `${where} is empty.`, { fix: again });
    let meta: Record<string, string>;
    let graph: OnnxGraph;
    try {
      meta = readOnnxMetadata(buf, where);
      graph = readOnnxGraph(buf, where);
    } catch (e) {
      throw new GraftError('BAD_MODEL', e instanceof GraftError ? e.detail : `${where} is not a readable ONNX model (${(e as Error).message}).`, { fix: again, cause: e });
    }
    let info: OnnxExportInfo;
    try {
      info = JSON.parse(meta['graft.info'] ?? 'null') as OnnxExportInfo;
    } catch {
      info = null as unknown as OnnxExportInfo;
    }
    if (!info || info.format !== 'graft-onnx/1' || !Array.isArray(info.outputs) || !info.input) {
      throw new GraftError('BAD_MODEL', `${where} is an ONNX file without Graft's metadata (graft.info), so its classes and preprocessing are unknown.`, {
        fix: 'Predict with an ONNX file written by graft export, or use the ONNX file as a base: graft train --base model.onnx.' });
    }
    // The metadata must describe this graph: its input, its outputs and their class counts.
    const mismatch = !graph.inputs.some((i) => i.name === info.input.name) ? `its input is ${graph.inputs.map((i) => i.name).join(', ') || 'missing'}, the metadata says ${info.input.name}`
      : info.outputs.map((out) => {
        const g = graph.outputs.find((x) => x.name === out.name);
        if (!g) return `it has no output ${out.name}`;
        if (!Array.isArray(out.classNames) || (typeof g.dims[1] === 'number' && g.dims[1] !== out.classNames.length)) return `its output ${out.name} has ${String(g.dims[1])} classes, the metadata names ${Array.isArray(out.classNames) ? out.classNames.length : 'none'}`;
        return '';
      }).find(Boolean);
    if (mismatch) throw new GraftError('BAD_MODEL', `${where}'s Graft metadata does not match its graph: ${mismatch}.`, { fix: again });
    const o = await ort();
    let session;
    try {
      session = await o.InferenceSession.create(buf, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    } catch (cause) {
      throw new GraftError('BAD_MODEL', `onnxruntime cannot load ${where}: ${(cause as Error).message.split('\n')[0]}`, { fix: again, cause });
    }
    return new OnnxModel(info, session, where);
  }

  static async load(path: string, threads = 0): Promise<OnnxModel> {
    let buf: Buffer;
    try {
      buf = await readBounded(path, { limit: READ_LIMITS.onnx, what: 'The ONNX model' });
    } catch (e) {
      if (e instanceof GraftError) throw e;
      throw new GraftError('MODEL_NOT_FOUND', `No ONNX model at "${path}".`, { fix: 'Check the path to the .onnx file.' });
    }
    return OnnxModel.fromBytes(buf, path, threads);
  }

  /** The sample shape the model takes in tfjs' layout (NHWC for images). */
  get sampleShape(): number[] {
    const s = this.info.input.shape;
    return this.info.input.layout === 'nchw' && s.length === 3 ? [s[1], s[2], s[0]] : s;
  }

  /**
   * Runs `n` samples given in tfjs layout: raw values (preprocessed here unless the graph
   * does it). Returns each output's probabilities, row-major [n, classes].
   */
  async run(x: Float32Array, n: number): Promise<Float32Array[]> {
    const o = await ort();
    const shape = this.sampleShape;
    let data = x;
    let dims = [n, ...shape];
    if (this.info.input.layout === 'nchw' && shape.length === 3) {
      data = nhwcToNchw(x, n, shape);
      dims = [n, shape[2], shape[0], shape[1]];
    }
    const names = this.info.outputs.map((out) => out.name);
    const result = await this.session.run({ [this.info.input.name]: new o.Tensor('float32', data, dims) }, names);
    return names.map((name) => Float32Array.from(result[name].data as Float32Array));
  }

  /** Probabilities of every sample of `d` (raw values) for each output, in batches. */
  async predict(d: Dataset, batchSize = 32): Promise<Float32Array[]> {
    const n = count(d);
    const s = sampleSize(d);
    const want = this.sampleShape.reduce((a, b) => a * b, 1);
    if (s !== want) {
      throw new GraftError('SHAPE_MISMATCH', `${d.source} has samples of shape [${d.sampleShape.join(', ')}]; ${this.where} takes [${this.sampleShape.join(', ')}].`, { fix: 'Give data of the size the model was trained on.' });
    }
    const outs = this.info.outputs.map((o) => new Float32Array(n * o.classNames.length));
    const p = this.info.input.includesPreprocessing ? undefined : this.info.preprocessing;
    for (let i = 0; i < n; i += batchSize) {
      const m = Math.min(batchSize, n - i);
      const idx = Int32Array.from({ length: m }, (_, k) => i + k);
      const probs = await this.run(batchValues(d, idx, p), m);
      probs.forEach((pr, k) => outs[k].set(pr, i * this.info.outputs[k].classNames.length));
    }
    return outs;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
