// AdamW with parameter groups, each with its own learning rate. Graft keeps its own
// optimizer (rather than tfjs' Adam) because the recipe needs per-group LRs that change
// every step, and an optimizer whose state it can reset when the frozen part changes.

import * as tf from '@tensorflow/tfjs-core';
import type { LayerVariable } from '@tensorflow/tfjs-layers';

export interface AdamOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

/** A variable's AdamW moments and step count, as arrays. */
export type { Moments } from '../engine/native.js';
import type { Moments } from '../engine/native.js';

export const ADAM_DEFAULTS: AdamOptions = { beta1: 0.9, beta2: 0.999, epsilon: 1e-7, weightDecay: 0 };

interface Slot {
  m: tf.Variable;
  v: tf.Variable;
  step: number;
}

export class AdamW {
  private readonly slots = new Map<LayerVariable, Slot>();
  private readonly o: AdamOptions;

  constructor(options: Partial<AdamOptions> = {}) {
    this.o = { ...ADAM_DEFAULTS, ...options };
  }

  /** Applies one update to `variable` with gradient `grad` at learning rate `lr`. */
  update(variable: LayerVariable, grad: tf.Tensor, lr: number): void {
    let slot = this.slots.get(variable);
    if (!slot) {
      slot = tf.tidy(() => ({ m: tf.variable(tf.zerosLike(grad), false), v: tf.variable(tf.zerosLike(grad), false), step: 0 }));
      this.slots.set(variable, slot);
    }
    slot.step++;
    const { beta1, beta2, epsilon, weightDecay } = this.o;
    const s = slot;
    const c1 = 1 - beta1 ** s.step;
    const c2 = 1 - beta2 ** s.step;
    tf.tidy(() => {
      const m = tf.add(tf.mul(s.m, beta1), tf.mul(grad, 1 - beta1));
      const v = tf.add(tf.mul(s.v, beta2), tf.mul(tf.square(grad), 1 - beta2));
      s.m.assign(m);
      s.v.assign(v);
      const w = variable.read() as tf.Variable;
      let step = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon));
      if (weightDecay > 0 && w.shape.length > 1) step = tf.add(step, tf.mul(w, weightDecay));
      w.assign(tf.sub(w, tf.mul(step, lr)));
    });
  }

  /** One variable's moments, as arrays (for the native engine, which trains with its own copy). */
  slot(variable: LayerVariable): Moments | undefined {
    const s = this.slots.get(variable);
    return s && { step: s.step, m: s.m.dataSync() as Float32Array, v: s.v.dataSync() as Float32Array };
  }

  setSlot(variable: LayerVariable, s: Moments): void {
    const old = this.slots.get(variable);
    if (old) tf.dispose([old.m, old.v]);
    const shape = variable.shape as number[];
    this.slots.set(variable, tf.tidy(() => ({ m: tf.variable(tf.tensor(s.m, shape), false), v: tf.variable(tf.tensor(s.v, shape), false), step: s.step })));
  }

  /** The variables that have moments. */
  variables(): LayerVariable[] {
    return [...this.slots.keys()];
  }

  /** Every slot, keyed by `keyOf` (variables without a key are left out). */
  exportState(keyOf: (v: LayerVariable) => string | undefined): AdamWState {
    const slots: SlotState[] = [];
    for (const [variable, s] of this.slots) {
      const key = keyOf(variable);
      if (key) slots.push({ key, step: s.step, shape: s.m.shape, m: (s.m.dataSync() as Float32Array).slice(), v: (s.v.dataSync() as Float32Array).slice() });
    }
    return { slots };
  }

  importState(state: AdamWState, byKey: Map<string, LayerVariable>): void {
    for (const s of state.slots) {
      const variable = byKey.get(s.key);
      if (variable) this.setSlot(variable, s);
    }
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose([s.m, s.v]);
    this.slots.clear();
  }
}

/** One variable's optimizer slots, as saved in a checkpoint. */
export interface SlotState extends Moments {
  key: string;
  shape: number[];
}

export interface AdamWState {
  slots: SlotState[];
}
