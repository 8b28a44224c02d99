// `inspect`: the layer table of a model, its totals and its input/output nodes, and, for a
// proposed cut, which layers are kept and which removed.

import type * as tfl from '@tensorflow/tfjs-layers';
import { cutBody } from './cut.js';
import { isInputLayer, outputShapeOf, paramCount, weightCount, type LayerRef } from './layers.js';

export interface LayerRow {
  index: number;
  name: string;
  className: string;
  outputShape: (number | null)[];
  params: number;
  trainable: boolean;
  /** Present when a cut was asked for. */
  status?: 'input' | 'kept' | 'cut' | 'removed';
}

export interface NodeInfo {
  name: string;
  shape: (number | null)[];
}

export interface Inspection {
  model: string;
  layers: LayerRow[];
  totals: { params: number; trainable: number; nonTrainable: number };
  inputs: NodeInfo[];
  outputs: NodeInfo[];
  cut?: { layer: string; index: number; keptParams: number; removedParams: number; removed: string[]; featureShape: (number | null)[] };
}

export function inspectModel(model: tfl.LayersModel, cutAt?: LayerRef): Inspection {
  const body = cutAt === undefined ? undefined : cutBody(model, cutAt);
  const removed = new Set(body?.removed.map((l) => l.name));
  const layers: LayerRow[] = model.layers.map((l, index) => ({
    index,
    name: l.name,
    className: l.getClassName(),
    outputShape: outputShapeOf(l),
    params: paramCount(l),
    trainable: l.trainable,
    status: !body ? undefined : isInputLayer(l) ? 'input' : l.name === body.cut.layer ? 'cut' : removed.has(l.name) ? 'removed' : 'kept',
  }));
  const trainable = weightCount(model.trainableWeights);
  const params = weightCount(model.weights);
  const result: Inspection = {
    model: model.name,
    layers,
    totals: { params, trainable, nonTrainable: params - trainable },
    inputs: model.inputs.map((t) => ({ name: t.sourceLayer.name, shape: t.shape })),
    outputs: model.outputs.map((t) => ({ name: t.sourceLayer.name, shape: t.shape })),
  };
  if (body) {
    const removedParams = layers.filter((r) => r.status === 'removed').reduce((n, r) => n + r.params, 0);
    result.cut = {
      ...body.cut,
      keptParams: params - removedParams,
      removedParams,
      removed: body.removed.map((l) => l.name),
      featureShape: body.model.outputs[0].shape,
    };
  }
  return result;
}

const shapeText = (s: (number | null)[]) => `[${s.map((d) => (d === null ? 'batch' : d)).join(', ')}]`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 || c === 4 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd()).join('\n');
}

/** The inspection as text for a terminal, in words a learner can follow. */
export function formatInspection(x: Inspection): string {
  const header = ['#', 'name', 'class', 'output shape', 'params', 'trainable'];
  if (x.cut) header.push('after cut');
  const rows = [header, ...x.layers.map((l) => {
    const row = [String(l.index), l.name, l.className, shapeText(l.outputShape), l.params.toLocaleString('en-US'), l.trainable ? 'yes' : 'no'];
    if (x.cut) row.push({ input: 'input node (kept)', kept: 'kept', cut: 'kept: CUT HERE', removed: 'removed' }[l.status!]);
    return row;
  })];
  const lines = [`Model "${x.model}": ${x.layers.length} layers`, '', table(rows), ''];
  lines.push(`Parameters: ${x.totals.params.toLocaleString('en-US')} total, ${x.totals.trainable.toLocaleString('en-US')} trainable, ${x.totals.nonTrainable.toLocaleString('en-US')} not trainable`);
  lines.push(`Input node${x.inputs.length > 1 ? 's' : ''}: ${x.inputs.map((n) => `${n.name} ${shapeText(n.shape)}`).join(', ')}`);
  lines.push(`Output node${x.outputs.length > 1 ? 's' : ''}: ${x.outputs.map((n) => `${n.name} ${shapeText(n.shape)}`).join(', ')}`);
  if (x.cut) {
    const c = x.cut;
    lines.push('');
    lines.push(`Cut at layer ${c.index} "${c.layer}": the body keeps ${x.layers.filter((l) => l.status !== 'removed').length} layers (${c.keptParams.toLocaleString('en-US')} parameters) and ends with features of shape ${shapeText(c.featureShape)}.`);
    lines.push(`Removed on the output side: ${c.removed.length ? c.removed.join(', ') : 'nothing'} (${c.removedParams.toLocaleString('en-US')} parameters).`);
    lines.push(`The input node stays the original input, ${x.inputs.map((n) => `"${n.name}" ${shapeText(n.shape)}`).join(', ')}: new data enters where it always did, passes through the kept pretrained layers, and the new head is attached after "${c.layer}", where the old head used to start.`);
  }
  return lines.join('\n');
}
