// A tfjs GraphModel (the converter's "graph-model" format: a TensorFlow graph, inference only)
// as a frozen body: cut at any named node (GraphModel.execute returns intermediate nodes),
// features computed for the warm-up, the saved model referring to it by path and hash.

import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { READ_LIMITS, readBounded } from '../data/bounded-read.js';
import { basename, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { GraphModel } from '@tensorflow/tfjs-converter';
import { loadOptional, OPTIONAL } from '../optional.js';
import { GraftError, closeNames } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import type { Preprocessing } from '../data/preprocess.js';
import { featuresInBatches, inFixedBatches } from './frozen-body.js';
import { readModelFiles } from './io.js';

export interface GraphNode { name: string; op: string; inputs: string[] }

export interface GraphBodyInfo {
  kind: 'tfjs-graph';
  path: string;
  sha256: string;
  input: string;
  output: string;
  layout: 'NHWC';
  imageShape: [number, number, number];
  featureShape: number[];
  /** The batch size the graph's signature fixes (1 in many published models). */
  fixedBatch?: number;
}

/** model.json path of a GraphModel source (a directory or the file), or undefined when it is not one. */
export async function graphModelJson(spec: string): Promise<string | undefined> {
  try {
    const p = (await stat(spec)).isDirectory() ? join(spec, 'model.json') : spec;
    if (!/\.json$/i.test(p)) return undefined;
    const head = JSON.parse((await readBounded(p, { limit: READ_LIMITS.modelJson, what: 'The model file' })).toString('utf8')) as { format?: string; modelTopology?: { node?: unknown } };
    return head.format === 'graph-model' || Array.isArray(head.modelTopology?.node) ? p : undefined;
  } catch {
    return undefined;
  }
}

export function graphNodes(topology: unknown): GraphNode[] {
  const nodes = (topology as { node?: { name: string; op: string; input?: string[] }[] }).node ?? [];
  return nodes.map((n) => ({ name: n.name, op: n.op, inputs: n.input ?? [] }));
}

export function formatGraphNodes(nodes: GraphNode[], where: string): string {
  const shown = nodes.filter((n) => n.op !== 'Const');
  const lines = [`${where}: tfjs GraphModel, ${nodes.length} nodes (${nodes.length - shown.length} constants not listed)`, '', ' #  node  op  inputs (cut at a node name or the #)'];
  shown.forEach((n, i) => lines.push(`${String(i).padStart(2)}  ${n.name}  ${n.op}  ${n.inputs.join(', ')}`));
  return lines.join('\n');
}

/** @internal tfjs-converter's GraphModel class, loaded on first use (an optional package). */
export async function graphModelClass(): Promise<typeof GraphModel> {
  const m = await loadOptional<typeof import('@tensorflow/tfjs-converter')>(OPTIONAL.converter, 'Running tfjs GraphModels', () => import('@tensorflow/tfjs-converter'));
  return m.GraphModel;
}

export class GraphBody {
  private constructor(readonly info: GraphBodyInfo, private readonly model: GraphModel, readonly nodes: GraphNode[]) {}

  static async load(spec: string, cut?: string, expectSha?: string): Promise<GraphBody> {
    const json = await graphModelJson(spec);
    const where = basename(spec);
    if (!json) throw new GraftError('BAD_MODEL', `${spec} is not a tfjs GraphModel (no model.json in the "graph-model" format).`, { fix: 'Give the directory or model.json written by the tfjs converter.' });
    const files = await readModelFiles(json, { raw: true });
    const a = files.artifacts;
    const sha256 = createHash('sha256').update(JSON.stringify(a.modelTopology)).update(new Uint8Array(a.weightData as ArrayBuffer)).digest('hex');
    if (expectSha && expectSha !== sha256) {
      throw new GraftError('BAD_MODEL', `${spec} is not the GraphModel this model was trained on (its content hash differs).`, { fix: 'Put the original model back at that path, or train the head again.' });
    }
    const nodes = graphNodes(a.modelTopology);
    const model = new (await graphModelClass())(tf.io.fromMemory(a));
    try {
      await model.load();
    } catch (cause) {
      throw new GraftError('BAD_MODEL', `${where}: tfjs cannot build this GraphModel (${(cause as Error).message.split('\n')[0]}).`, { fix: 'Convert the model again with the tfjs converter.', cause });
    }
    if (model.inputs.length !== 1) throw new GraftError('BAD_MODEL', `${where} has ${model.inputs.length} inputs; Graft uses bodies with one image input.`, { fix: 'Use a single-input model.' });
    const input = model.inputs[0];
    const dims = (input.shape ?? []).slice(1);
    if (dims.length !== 3 || dims.some((d) => !(d > 0))) {
      throw new GraftError('BAD_MODEL', `${where} has the input ${input.name} of shape [${(input.shape ?? []).join(', ')}]; Graft needs a fixed image shape [batch, H, W, C].`, { fix: 'Convert the model with a fixed input size.' });
    }
    const output = cut ?? model.outputs[0].name;
    if (!nodes.some((n) => n.name === output.replace(/:\d+$/, ''))) {
      const close = closeNames(output, nodes.filter((n) => n.op !== 'Const').map((n) => n.name));
      throw new GraftError('LAYER_NOT_FOUND', `${where} has no node "${output}".${close.length ? ` Close names: ${close.join(', ')}.` : ''}`, { fix: `graft inspect ${spec} lists the nodes.` });
    }
    const b0 = input.shape?.[0];
    const fixedBatch = typeof b0 === 'number' && b0 > 0 ? b0 : undefined;
    const body = new GraphBody({ kind: 'tfjs-graph', path: resolve(spec), sha256, input: input.name, output, layout: 'NHWC', imageShape: [dims[0], dims[1], dims[2]], featureShape: [], ...(fixedBatch ? { fixedBatch } : {}) }, model, nodes);
    let probe;
    try {
      probe = await body.run(new Float32Array(dims[0] * dims[1] * dims[2]), 1);
    } catch (cause) {
      model.dispose();
      throw new GraftError('UNSUPPORTED', `${where}: tfjs cannot run this GraphModel up to ${output}: ${(cause as Error).message.split('\n')[0].replace(/ File an issue at .*$/, '')}`, {
        fix: `Cut before the node it names (graft inspect ${spec} lists the nodes), or convert the model again with the tfjs converter.`, cause });
    }
    body.info.featureShape = probe.shape;
    return body;
  }

  async run(nhwc: Float32Array, n: number): Promise<{ values: Float32Array; shape: number[] }> {
    const b = this.info.fixedBatch;
    if (b && n !== b) return inFixedBatches((x, k) => this.runBatch(x, k), nhwc, n, b);
    return this.runBatch(nhwc, n);
  }

  private async runBatch(nhwc: Float32Array, n: number): Promise<{ values: Float32Array; shape: number[] }> {
    const [h, w, c] = this.info.imageShape;
    const x = tf.tensor(nhwc, [n, h, w, c]);
    try {
      let y: tf.Tensor;
      try {
        y = this.model.execute(x, this.info.output) as tf.Tensor;
      } catch (e) {
        // Graphs with control flow or dynamic shapes only run asynchronously.
        if (!/executeAsync/.test(String((e as Error).message))) throw e;
        y = (await this.model.executeAsync(x, this.info.output)) as tf.Tensor;
      }
      const values = (await y.data()) as Float32Array;
      const shape = y.shape.slice(1);
      y.dispose();
      return { values: Float32Array.from(values), shape };
    } finally {
      x.dispose();
    }
  }

  /** Features of every sample of `d` (raw values, preprocessed here), batch by batch. */
  features(d: Dataset, p: Preprocessing | undefined, batchSize = 32): Promise<Dataset> {
    return featuresInBatches((x, n) => this.run(x, n), this.info.featureShape, d, p, batchSize);
  }


  cutIndex(): number {
    return this.nodes.findIndex((n) => n.name === this.info.output.replace(/:\d+$/, ''));
  }

  async dispose(): Promise<void> {
    this.model.dispose();
  }
}
