// The architecture diagram: the network as a column of blocks from the input node (top) to
// the outputs. Runs of layers that share a name prefix (block1_conv, block1_bn, ...) collapse
// into one named group; the cut is a dashed line; below it, the removed (or kept) old head and
// the new head stand side by side. Frozen and trainable parts differ by colour, by a hatch
// pattern and by a written label, so the picture reads in greyscale too.

import type * as tfl from '@tensorflow/tfjs-layers';
import { isInputLayer, outputShapeOf, paramCount, type Layer } from '../model/layers.js';
import type { Grafted } from '../model/graft.js';
import { el, esc, fmtInt, svgDoc, text } from './svg.js';

export type LayerState = 'frozen' | 'trainable' | 'removed' | 'new-head' | 'old-head';

export interface DiagramLayer {
  name: string;
  className: string;
  shape: (number | null)[];
  params: number;
  state: LayerState;
}

export interface DiagramSpec {
  title: string;
  input: { name: string; shape: (number | null)[] };
  body: DiagramLayer[];
  cut?: string;
  /** Layers after the cut that belong to the old head (greyed when removed). */
  oldHead: DiagramLayer[];
  newHead: DiagramLayer[];
  /** Expand these groups (or all) into their layers. */
  expand?: string[] | 'all';
}

export interface Block {
  group: string;
  layers: DiagramLayer[];
  state: LayerState | 'mixed';
}

/** block_13_expand -> block_13; block1_conv -> block1; head_output -> head. */
export function groupKey(name: string): string {
  const t = name.split('_');
  if (t.length >= 3 && /^\d+$/.test(t[1])) return `${t[0]}_${t[1]}`;
  return t.length >= 2 ? t[0] : name;
}

/**
 * Block keys for scoped names (ONNX and TensorFlow graphs: features/features.3/block/.../Conv,
 * tower_0/MobilenetV3/expanded_conv_14/add): the shortest path prefix that tells blocks apart,
 * one level deeper where a block would hold over a third of the layers.
 */
export function scopedKeys(names: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const split = (n: string) => n.split('/').slice(0, -1);
  const assign = (group: string[], depth: number) => {
    const distinct = new Set(group.map((n) => split(n)[depth]).filter((v) => v !== undefined));
    if (distinct.size <= 1 && group.some((n) => split(n).length > depth + 1)) return assign(group, depth + 1);
    const by = new Map<string, string[]>();
    for (const n of group) {
      const parts = split(n);
      const k = parts.length > depth ? parts.slice(0, depth + 1).join('/') : n;
      by.set(k, [...(by.get(k) ?? []), n]);
    }
    for (const [k, members] of by) {
      if (members.length > names.length / 3 && members.length > 8 && members.some((n) => split(n).length > depth + 1)) assign(members, depth + 1);
      else for (const n of members) out.set(n, k);
    }
  };
  assign(names.filter((n) => n.includes('/')), 0);
  return out;
}

export function groupLayers(layers: DiagramLayer[], expand: string[] | 'all' = []): Block[] {
  const blocks: Block[] = [];
  const scoped = scopedKeys(layers.map((l) => l.name));
  for (const l of layers) {
    const key = scoped.get(l.name) ?? groupKey(l.name);
    const last = blocks[blocks.length - 1];
    const open = expand === 'all' || expand.includes(key);
    if (last && last.group === key && !open && last.layers.length > 0 && (scoped.get(last.layers[0].name) ?? groupKey(last.layers[0].name)) === key) last.layers.push(l);
    else blocks.push({ group: open ? l.name : key, layers: [l], state: l.state });
  }
  for (const b of blocks) {
    const states = new Set(b.layers.filter((l) => l.params > 0).map((l) => l.state));
    b.state = states.size > 1 ? 'mixed' : (states.values().next().value ?? b.layers[0].state);
    if (b.layers.length === 1) b.group = b.layers[0].name;
  }
  return blocks;
}

const STYLE: Record<Block['state'], { fill: string; stroke: string; label: string; dash?: string; ink: string }> = {
  frozen: { fill: 'url(#frozen)', stroke: '#3b5b8c', label: 'FROZEN', ink: '#10233f' },
  trainable: { fill: '#f6b26b', stroke: '#9c5b12', label: 'TRAINS', ink: '#3d2300' },
  mixed: { fill: 'url(#mixed)', stroke: '#6b4a8c', label: 'PARTLY FROZEN', ink: '#241038' },
  removed: { fill: '#eeeeee', stroke: '#8a8a8a', label: 'REMOVED', dash: '5 3', ink: '#555555' },
  'new-head': { fill: '#93c47d', stroke: '#2f6b1d', label: 'NEW HEAD, TRAINS', ink: '#0f2e06' },
  'old-head': { fill: '#d5a6bd', stroke: '#7a3a5a', label: 'OLD HEAD, KEPT', ink: '#35101f' },
};

const DEFS = '<pattern id="frozen" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
  + '<rect width="8" height="8" fill="#c9daf8"/><line x1="0" y1="0" x2="0" y2="8" stroke="#6d8fc7" stroke-width="3"/></pattern>'
  + '<pattern id="mixed" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="#e4d7f5"/><circle cx="4" cy="4" r="1.6" fill="#8e6bbd"/></pattern>'
  + '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>';

const shapeText = (s: (number | null)[]) => `[${s.slice(1).join('x')}]`;
const BW = 300;
const BH = 40;
const GAP = 14;

function blockSvg(b: Block, x: number, y: number, id: string): string {
  const st = STYLE[b.state];
  const params = b.layers.reduce((n, l) => n + l.params, 0);
  const last = b.layers[b.layers.length - 1];
  const title = b.layers.map((l) => `${l.name} (${l.className}) ${shapeText(l.shape)} ${fmtInt(l.params)} params, ${l.state}`).join('\n');
  const heading = b.layers.length > 1 ? `${b.group}: ${b.layers.length} layers` : `${b.group} (${last.className})`;
  return el('g', { class: 'block', id, 'data-group': b.group, 'data-state': b.state, 'data-layers': b.layers.map((l) => l.name).join(' '), tabindex: 0 },
    el('title', {}, esc(title))
    + el('rect', { x, y, width: BW, height: BH, rx: 6, fill: st.fill, stroke: st.stroke, 'stroke-width': 1.5, 'stroke-dasharray': st.dash })
    + text(x + 8, y + 16, heading, { fill: st.ink, 'font-weight': 'bold' })
    + text(x + 8, y + 32, `${shapeText(last.shape)}  ${fmtInt(params)} params`, { fill: st.ink })
    + text(x + BW - 8, y + 32, st.label, { fill: st.ink, 'text-anchor': 'end', 'font-size': 10, 'font-weight': 'bold' }));
}

function arrow(x: number, y1: number, y2: number): string {
  return el('line', { x1: x, y1, x2: x, y2: y2 - 2, stroke: '#555', 'stroke-width': 1.5, 'marker-end': 'url(#arrow)' });
}

export function renderDiagram(spec: DiagramSpec): string {
  const x0 = 30;
  let y = 50;
  const parts: string[] = [text(x0, 24, spec.title, { 'font-size': 15, 'font-weight': 'bold' })];
  parts.push(el('g', { class: 'block', 'data-state': 'input', id: 'input-node' },
    el('rect', { x: x0, y, width: BW, height: BH, rx: 18, fill: '#333', stroke: '#000' })
    + text(x0 + BW / 2, y + 17, `INPUT NODE: ${spec.input.name}`, { fill: '#fff', 'text-anchor': 'middle', 'font-weight': 'bold' })
    + text(x0 + BW / 2, y + 32, `${shapeText(spec.input.shape)} (unchanged by the cut)`, { fill: '#fff', 'text-anchor': 'middle' })));
  y += BH;
  const body = groupLayers(spec.body, spec.expand);
  body.forEach((b, i) => {
    parts.push(arrow(x0 + BW / 2, y, y + GAP));
    y += GAP;
    parts.push(blockSvg(b, x0, y, `body-${i}`));
    y += BH;
  });
  const branchTop = y + GAP + 26;
  if (spec.cut) {
    const cy = y + GAP;
    parts.push(el('g', { id: 'cut', 'data-cut': spec.cut },
      el('line', { x1: 10, y1: cy, x2: 2 * BW + 90, y2: cy, stroke: '#cc0000', 'stroke-width': 2.5, 'stroke-dasharray': '10 5' })
      + text(x0 + BW + 20, cy - 6, `CUT after "${spec.cut}"`, { fill: '#cc0000', 'font-weight': 'bold' })));
  }
  const columns: Array<[string, DiagramLayer[], number]> = [];
  if (spec.oldHead.length) columns.push([spec.oldHead[0].state === 'old-head' ? 'old head (kept)' : 'removed: the old head', spec.oldHead, x0]);
  if (spec.newHead.length) columns.push(['new head', spec.newHead, spec.oldHead.length ? x0 + BW + 40 : x0]);
  let bottom = y;
  for (const [label, layers, x] of columns) {
    let cy = branchTop;
    parts.push(text(x + BW / 2 + 8, cy - 6, label, { 'font-weight': 'bold', fill: '#333' }));
    parts.push(el('path', { d: `M${x0 + BW / 2},${y} C${x0 + BW / 2},${y + 20} ${x + BW / 2},${cy - 30} ${x + BW / 2},${cy}`, fill: 'none', stroke: '#555', 'stroke-width': 1.5 }));
    groupLayers(layers, spec.expand).forEach((b, i) => {
      if (i > 0) { parts.push(arrow(x + BW / 2, cy, cy + GAP)); cy += GAP; }
      parts.push(blockSvg(b, x, cy, `${label.startsWith('new') ? 'new' : 'old'}-${i}`));
      cy += BH;
    });
    parts.push(text(x + BW / 2, cy + 18, label.startsWith('new') ? 'new output' : label.startsWith('removed') ? 'old output (gone from the new model)' : 'old output', { 'text-anchor': 'middle', fill: '#333' }));
    bottom = Math.max(bottom, cy + 24);
  }
  const ly = bottom + 24;
  const legend = (['frozen', 'trainable', 'new-head', 'old-head', 'removed'] as const).map((s, i) => {
    const lx = x0 + i * 132;
    return el('rect', { x: lx, y: ly, width: 18, height: 14, fill: STYLE[s].fill, stroke: STYLE[s].stroke, 'stroke-dasharray': STYLE[s].dash })
      + text(lx + 24, ly + 11, STYLE[s].label.toLowerCase(), { 'font-size': 11 });
  }).join('');
  parts.push(el('g', { id: 'legend' }, legend));
  const width = Math.max(2 * BW + 100, 5 * 132 + 40);
  return svgDoc(width, ly + 34, parts.join(''), spec.title, DEFS);
}

function info(l: Layer, state: LayerState): DiagramLayer {
  return { name: l.name, className: l.getClassName(), shape: outputShapeOf(l), params: paramCount(l), state };
}

const bodyState = (l: Layer): LayerState => (l.trainable ? 'trainable' : 'frozen');

/** A plain model, or a proposed cut of it (`graft inspect --svg [--cut]`). */
export function diagramOfModel(model: tfl.LayersModel, cut?: { layer: string; removed: string[] }, expand?: string[] | 'all'): DiagramSpec {
  const removed = new Set(cut?.removed);
  const layers = model.layers.filter((l) => !isInputLayer(l));
  return {
    title: cut ? `${model.name}, cut after "${cut.layer}"` : model.name,
    input: { name: model.inputs[0].sourceLayer.name, shape: model.inputs[0].shape },
    body: layers.filter((l) => !removed.has(l.name)).map((l) => info(l, bodyState(l))),
    cut: cut?.layer,
    oldHead: layers.filter((l) => removed.has(l.name)).map((l) => info(l, 'removed')),
    newHead: [],
    expand,
  };
}

/** A grafted model as it stands now: frozen state, the cut, old head kept or removed, new head. */
export function diagramOfGraft(g: Grafted, options: { oldHeadKept?: boolean; expand?: string[] | 'all'; title?: string } = {}): DiagramSpec {
  return {
    title: options.title ?? `${g.base.name} with a new head`,
    input: { name: g.model.inputs[0].sourceLayer.name, shape: g.model.inputs[0].shape },
    body: g.body.layers.map((l) => info(l, bodyState(l))),
    cut: g.body.cut.layer,
    oldHead: g.body.removed.map((l) => info(l, options.oldHeadKept ? 'old-head' : 'removed')),
    newHead: g.head.layers.map((l) => info(l, 'new-head')),
    expand: options.expand,
  };
}

interface SavedLayerInfo {
  name: string;
  className: string;
  shape: (number | null)[];
  params: number;
}

/** A saved model with its graft.json: heads by name, frozen layers, and the removed old head. */
export function diagramOfSaved(model: tfl.LayersModel, meta: {
  heads?: { name: string; layers: string[] }[]; frozen?: string[];
  base?: { source: string; cut?: { layer: string }; removed?: SavedLayerInfo[] };
}, expand?: string[] | 'all'): DiagramSpec {
  const newLayers = new Set(meta.heads?.find((h) => h.name === 'new')?.layers);
  const oldLayers = new Set(meta.heads?.find((h) => h.name === 'old')?.layers);
  const frozen = new Set(meta.frozen);
  const layers = model.layers.filter((l) => !isInputLayer(l));
  const state = (l: Layer): LayerState => (frozen.has(l.name) ? 'frozen' : 'trainable');
  return {
    title: `${meta.base?.source ?? model.name}, cut after "${meta.base?.cut?.layer ?? '?'}", with a new head`,
    input: { name: model.inputs[0].sourceLayer.name, shape: model.inputs[0].shape },
    body: layers.filter((l) => !newLayers.has(l.name) && !oldLayers.has(l.name)).map((l) => info(l, state(l))),
    cut: meta.base?.cut?.layer,
    oldHead: oldLayers.size
      ? layers.filter((l) => oldLayers.has(l.name)).map((l) => info(l, 'old-head'))
      : (meta.base?.removed ?? []).map((r) => ({ ...r, state: 'removed' as const })),
    newHead: layers.filter((l) => newLayers.has(l.name)).map((l) => info(l, 'new-head')),
    expand,
  };
}
