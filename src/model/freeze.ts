// Freezing and unfreezing the body. The state lives on the layers (`trainable`), and Graft's
// training loop reads it at every step, so a change takes effect without recompiling.
// Frozen BatchNormalization layers run in inference mode (see batch-norm.ts).

import type * as tfl from '@tensorflow/tfjs-layers';
import type { LayerVariable } from '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import type { Grafted } from './graft.js';
import { findLayer, type Layer } from './layers.js';

/**
 * What to unfreeze for fine-tuning: nothing, everything, the top N weighted body layers, from a
 * named layer on, or 'gradual': the whole body, one layer group more per fine-tune epoch from
 * the top (ULMFiT's gradual unfreezing; fine-tune.ts schedules it).
 */
export type UnfreezeSpec = 'none' | 'all' | 'gradual' | { top: number } | { from: string };

export function parseUnfreeze(text: string): UnfreezeSpec {
  if (text === 'none' || text === 'all' || text === 'gradual') return text;
  if (/^\d+$/.test(text)) return { top: Number(text) };
  if (text.startsWith('top:') && /^\d+$/.test(text.slice(4))) return { top: Number(text.slice(4)) };
  if (text.startsWith('from:') && text.length > 5) return { from: text.slice(5) };
  throw new GraftError('BAD_OPTION', `--unfreeze "${text}" is not understood.`, {
    fix: 'Use none, all, gradual (one layer group more per epoch), a number N (the top N weighted layers), or from:<layer name>.' });
}

export function setTrainable(layers: Layer[], trainable: boolean): void {
  for (const l of layers) l.trainable = trainable;
}

/** Freezes the whole body; the head stays trainable. */
export function freezeBody(g: Grafted): void {
  setTrainable(g.body.layers, false);
  setTrainable(g.head.layers, true);
}

/** Refuses what is not an UnfreezeSpec (a library caller's typo), saying what is. */
export function checkUnfreeze(spec: unknown): asserts spec is UnfreezeSpec {
  const ok = spec === 'none' || spec === 'all' || spec === 'gradual'
    || (typeof spec === 'object' && spec !== null && ('top' in spec ? typeof (spec as { top: unknown }).top === 'number' : typeof (spec as { from?: unknown }).from === 'string'));
  if (!ok) {
    throw new GraftError('BAD_OPTION', `unfreeze ${JSON.stringify(spec) ?? String(spec)} is not understood.`, {
      fix: "Use 'none', 'all', 'gradual', { top: N } (the top N weighted layers) or { from: '<layer name>' }." });
  }
}

/** Body layers that `spec` makes trainable, in topological order. */
export function layersToUnfreeze(g: Grafted, spec: UnfreezeSpec): Layer[] {
  checkUnfreeze(spec);
  const body = g.body.layers;
  if (spec === 'none') return [];
  if (spec === 'all' || spec === 'gradual') return body.slice();
  if ('top' in spec) {
    if (!Number.isInteger(spec.top) || spec.top < 0) {
      throw new GraftError('BAD_OPTION', `Cannot unfreeze the top ${spec.top} layers.`, { fix: 'Give a whole number of layers, 0 or more.' });
    }
    const weighted = body.filter((l) => l.weights.length > 0);
    const start = weighted.length - Math.min(spec.top, weighted.length);
    if (start >= weighted.length) return [];
    return body.slice(body.indexOf(weighted[start]));
  }
  const { layer } = findLayer(g.body.model, spec.from);
  return body.slice(body.indexOf(layer));
}

/** Freezes the body, then unfreezes the part that `spec` names. Returns the unfrozen layers. */
export function unfreeze(g: Grafted, spec: UnfreezeSpec): Layer[] {
  const open = layersToUnfreeze(g, spec);
  freezeBody(g);
  setTrainable(open, true);
  return open;
}

export function frozenLayerNames(g: Grafted): string[] {
  return g.body.layers.filter((l) => !l.trainable && l.weights.length > 0).map((l) => l.name);
}

/** The variables an optimizer may change right now: trainable weights of trainable layers. */
export function trainableVariables(model: tfl.LayersModel): LayerVariable[] {
  return model.layers.filter((l) => l.trainable).flatMap((l) => l.trainableWeights);
}

/**
 * Gradual unfreezing: how many of `stages` body layer groups are open in fine-tune epoch
 * `epoch` (1-based) of `epochs`. One more per epoch from the top; when there are fewer epochs
 * than groups, more open at a time so that the last epoch trains them all.
 */
export function openStages(epoch: number, epochs: number, stages: number): number {
  return Math.min(stages, Math.max(epoch, Math.ceil((epoch * stages) / Math.max(1, epochs))));
}
