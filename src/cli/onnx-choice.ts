// Which engine predicts: an ONNX export on onnxruntime (a .onnx file given as the model, or a
// model folder's current fp32 export, which onnxruntime runs 1.5-3x faster than tfjs or the
// native engine), or the tfjs model. --engine picks; auto takes the export when it is current.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { OnnxModel } from '#internal/export/onnx-run.js';
import type * as tfl from '@tensorflow/tfjs-layers';
import { mirrored } from '#internal/eval/tta.js';
import { backendInfo } from '#internal/engine/backend.js';
import { GraftError, loadModel, type Dataset, type GraftMeta } from 'graft';
import { isDir } from '#internal/data/images.js';
import { nativeUnsupported } from '#internal/model/native-plan.js';
import { defaultPrecision, precisionGiven, resolvePrecision, runPrecision, type Precision } from '#internal/engine/native.js';

export type EngineChoice = 'auto' | 'native' | 'tfjs' | 'onnx';
let choice: EngineChoice = 'auto';

export function setEngineChoice(c: EngineChoice): void {
  choice = c;
}

export const isOnnxFile = (spec: string) => /\.onnx$/i.test(spec);

export interface OnnxChoice {
  model: OnnxModel;
  file: string;
  /** Words for the output: which file and why. */
  why: string;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * The ONNX model to predict with (`choice`), none for the tfjs model, with a `note` when a
 * recorded export was passed over and why. `heads`: the heads the command needs.
 */
export async function onnxFor(spec: string, meta: GraftMeta | undefined, heads: string[]): Promise<{ choice?: OnnxChoice; note?: string }> {
  if (isOnnxFile(spec) && !(await isDir(spec))) {
    if (choice === 'native' || choice === 'tfjs') throw new GraftError('BAD_OPTION', `${spec} is an ONNX file: it runs on onnxruntime, not --engine ${choice}.`, { fix: 'Leave out --engine, or give the model folder.' });
    const model = await OnnxModel.load(spec);
    return { choice: { model, file: spec, why: `${spec} on onnxruntime (${model.info.quantization === 'none' ? 'fp32' : model.info.quantization})` } };
  }
  if (choice === 'native' || choice === 'tfjs' || !meta || !(await isDir(spec))) {
    if (choice === 'onnx') throw new GraftError('BAD_OPTION', `--engine onnx needs an ONNX export, and ${spec} is not a model folder with one.`, { fix: `Run graft export ${spec} first, or give the .onnx file.` });
    return {};
  }
  // An export is fp32: --precision bf16 asks for the native engine's bf16 arithmetic instead.
  if (choice === 'auto' && precisionGiven() && defaultPrecision() === 'bf16' && (meta.exports ?? []).length) {
    return { note: `not using the ONNX export: it computes in fp32, and --precision bf16 runs on the native engine` };
  }
  const weights = await readFile(join(spec, 'weights.bin')).catch(() => undefined);
  const current = weights ? sha256(weights) : '';
  const candidates = (meta.exports ?? []).filter((e) => e.quantization === 'none' && heads.every((h) => e.heads.includes(h)));
  const reasons: string[] = [];
  for (const e of candidates) {
    const file = isAbsolute(e.file) ? e.file : join(spec, e.file);
    if (e.weightsSha256 !== current) { reasons.push(`${file} was exported from other weights (retrained since)`); continue; }
    const bytes = await readFile(file).catch(() => undefined);
    if (!bytes) { reasons.push(`${file} is gone`); continue; }
    if (sha256(bytes) !== e.sha256) { reasons.push(`${file} changed since graft export wrote it`); continue; }
    const model = await OnnxModel.fromBytes(bytes, file);
    return { choice: { model, file, why: `${file} on onnxruntime (the current fp32 export of these weights${choice === 'onnx' ? '' : '; --engine native or tfjs to not'})` } };
  }
  if (choice === 'onnx') {
    throw new GraftError('BAD_OPTION', `--engine onnx, but ${spec} has no current fp32 ONNX export${reasons.length ? `: ${reasons.join('; ')}` : ''}.`, { fix: `Run graft export ${spec}, or give a .onnx file as the model.` });
  }
  return reasons.length ? { note: `not using the ONNX export: ${reasons.join('; ')} (graft export ${spec} makes a current one)` } : {};
}

/** A graft.json-like description of an ONNX export, for the data loaders and the output. */
export function metaOfOnnx(m: OnnxModel): GraftMeta {
  const info = m.info;
  return {
    format: 'graft/1', classNames: info.outputs[0].classNames, preprocessing: info.preprocessing,
    heads: info.outputs.map((o) => ({ name: o.head, outputLayer: o.name, classNames: o.classNames, layers: [] })),
    versions: { graft: info.graftVersion }, createdAt: '',
  };
}

/** The model a predicting command runs: the tfjs model with its graft.json, and the ONNX export when it is chosen. */
export async function modelFor(spec: string, head: string): Promise<{ model?: tfl.LayersModel; meta: GraftMeta; onnx?: OnnxChoice; note?: string }> {
  if (isOnnxFile(spec) && !(await isDir(spec))) {
    const onnx = (await onnxFor(spec, undefined, [])).choice!;
    return { meta: metaOfOnnx(onnx.model), onnx };
  }
  const { model, meta } = await loadModel(spec);
  if (!meta) throw new GraftError('BAD_MODEL', `${spec} has no graft.json, so its class names and preprocessing are unknown.`, { fix: 'Use a model written by graft train, a zoo model, or an ONNX file written by graft export.' });
  const { choice: onnx, note } = await onnxFor(spec, meta, head === 'all' ? meta.heads.map((h) => h.name) : [head]);
  return { model, meta, onnx, note };
}

/** The head a command answers with on an ONNX file: the one asked for, or a one-output file's only head. */
export function onnxHead(m: OnnxModel, file: string, asked: string | undefined): number {
  if (asked === undefined && m.info.outputs.length === 1) return 0;
  const name = asked ?? 'new';
  const k = m.info.outputs.findIndex((o) => o.head === name);
  if (k < 0) {
    throw new GraftError('BAD_OPTION', `${file} has no "${name}" head; it has ${m.info.outputs.map((o) => o.head).join(', ')}.`, {
      fix: `Use --head ${m.info.outputs.map((o) => o.head).join(' or ')}, or export that head: graft export <model-dir> --head ${name}.` });
  }
  return k;
}

/** Which engine a tfjs model predicts on: the native engine when it runs every layer, else the tfjs backend. */
export function tfjsEngine(model: tfl.LayersModel): string {
  return nativeUnsupported(model) === undefined ? 'native' : backendInfo()?.name ?? 'tfjs';
}

/** The precision record of train, predict and evaluate: what was asked, what ran, and why. */
export interface PrecisionRecord { requested: Precision | 'default'; used: 'fp32' | 'bf16'; why: string }

function record(p: { precision: 'fp32' | 'bf16'; requested: Precision; why: string }): PrecisionRecord {
  return { requested: precisionGiven() ? p.requested : 'default', used: p.precision, why: p.why };
}

/** The precision of a run's native computations as the run records it (runPrecision's, with 'default' where none was asked for). */
export function precisionRecord(): PrecisionRecord {
  return record(runPrecision());
}

/** What predicted, for the JSON (engine, and the precision it computed in) and for the words, from one reading of the precision. */
export function engineReport(engine: string, onnx: OnnxChoice | undefined): { json: { engine: string; precision: PrecisionRecord }; words: string } {
  const asked = precisionGiven() ? defaultPrecision() : undefined;
  const fp32 = (why: string): PrecisionRecord => ({ requested: asked ?? 'default', used: 'fp32', why: asked === 'auto' ? `auto: ${why}` : why });
  if (onnx) {
    const precision = fp32(`onnxruntime runs the export${/fp32/.test(onnx.why) ? ' in fp32' : ''}`);
    return { json: { engine, precision }, words: `engine: ${onnx.why}${asked === 'auto' ? `; precision fp32 (${precision.why})` : ''}` };
  }
  if (engine !== 'native') {
    const precision = fp32(`tfjs (${engine}) computes in fp32`);
    return { json: { engine, precision }, words: `engine: tfjs (${engine})${asked === 'auto' ? `; precision fp32 (${precision.why})` : ''}` };
  }
  const precision = record(resolvePrecision());
  return { json: { engine, precision }, words: `engine: the native engine (libtorch), ${precision.used} (${precision.why})` };
}

/** Each output's probabilities; with `tta`, averaged with the mirror images'. */
export async function onnxProbabilities(m: OnnxModel, d: Dataset, tta: boolean): Promise<Float32Array[]> {
  const a = await m.predict(d);
  if (!tta) return a;
  const b = await m.predict(mirrored(d));
  return a.map((x, k) => x.map((v, i) => (v + b[k][i]) / 2));
}
