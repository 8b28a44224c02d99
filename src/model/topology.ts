// Checks a Keras/tfjs model topology before tfjs-layers builds it. tfjs resolves functional
// models' connections in a loop that never ends when a connection names a missing layer or
// node (found by the fuzz test), so Graft checks every reference first and refuses the file.

import { GraftError } from '../errors.js';

interface LayerConfig {
  class_name?: unknown;
  name?: unknown;
  config?: unknown;
  inbound_nodes?: unknown;
}

const isInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;

export function checkTopology(topology: unknown, where: string): void {
  const bad = (what: string) => new GraftError('BAD_MODEL', `${where}: the model topology ${what}.`, { fix: 'Re-export the model; model.json is damaged or not a tfjs LayersModel.' });
  let t = topology as { class_name?: unknown; config?: unknown; model_config?: unknown };
  if (t && typeof t === 'object' && t.model_config) t = t.model_config as typeof t;
  if (!t || typeof t !== 'object' || typeof t.class_name !== 'string') throw bad('has no class_name');
  const config = t.config as { layers?: unknown; input_layers?: unknown; output_layers?: unknown } | unknown[];
  const layers = (Array.isArray(config) ? config : (config as { layers?: unknown })?.layers) as LayerConfig[] | undefined;
  if (!Array.isArray(layers) || layers.length === 0) throw bad('lists no layers');
  const nodes = new Map<string, number>();
  for (const [i, l] of layers.entries()) {
    if (!l || typeof l !== 'object' || typeof l.class_name !== 'string' || !l.config || typeof l.config !== 'object') throw bad(`has a malformed layer at position ${i}`);
    const name = (l.name ?? (l.config as { name?: unknown }).name) as unknown;
    if (name !== undefined && typeof name !== 'string') throw bad(`has a layer whose name is not a string (position ${i})`);
    if (typeof name === 'string') {
      if (nodes.has(name)) throw bad(`has two layers named "${name}"`);
      nodes.set(name, l.class_name === 'InputLayer' ? 1 : Array.isArray(l.inbound_nodes) ? l.inbound_nodes.length : 0);
    }
  }
  if (Array.isArray(config) || t.class_name === 'Sequential') return;
  const ref = (r: unknown, what: string): string => {
    if (!Array.isArray(r) || typeof r[0] !== 'string' || !isInt(r[1]) || !isInt(r[2])) throw bad(`has a malformed ${what} ${JSON.stringify(r)?.slice(0, 80)}`);
    const count = nodes.get(r[0]);
    if (count === undefined) throw bad(`refers to a layer "${r[0]}" that it does not define (${what})`);
    if ((r[1] as number) >= count) throw bad(`refers to node ${r[1]} of layer "${r[0]}", which has ${count} (${what})`);
    return r[0];
  };
  const edges = new Map<string, string[]>();
  for (const l of layers) {
    const name = (l.name ?? (l.config as { name?: string }).name) as string;
    if (l.inbound_nodes === undefined) continue;
    if (!Array.isArray(l.inbound_nodes)) throw bad(`has non-list inbound_nodes for layer "${name}"`);
    const from: string[] = [];
    for (const node of l.inbound_nodes) {
      if (!Array.isArray(node) || node.length === 0) throw bad(`has a malformed inbound node of layer "${name}"`);
      for (const r of node) from.push(ref(r, `connection into "${name}"`));
    }
    edges.set(name, from);
  }
  const c = config as { input_layers?: unknown; output_layers?: unknown };
  for (const key of ['input_layers', 'output_layers'] as const) {
    if (!Array.isArray(c[key]) || (c[key] as unknown[]).length === 0) throw bad(`has no ${key}`);
    for (const r of c[key] as unknown[]) ref(r, key);
  }
  // Connections must not loop back.
  const state = new Map<string, 1 | 2>();
  const visit = (n: string): void => {
    if (state.get(n) === 2) return;
    if (state.get(n) === 1) throw bad(`has a cycle through layer "${n}"`);
    state.set(n, 1);
    for (const m of edges.get(n) ?? []) visit(m);
    state.set(n, 2);
  };
  for (const n of edges.keys()) visit(n);
}
