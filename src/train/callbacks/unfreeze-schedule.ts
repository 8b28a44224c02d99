// unfreezeSchedule: gradual unfreezing, one layer group more per epoch, top first.

import { openStages, setTrainable } from '../../model/freeze.js';
import type { Layer } from '../../model/layers.js';
import type { PhaseCallback, PhaseInfo } from '../phase.js';

/**
 * Gradual unfreezing: `stages` are body layer groups, top first. Epoch e of E trains the first
 * openStages(e, E, stages.length) of them (and the head); the rest stay frozen.
 */
export function unfreezeSchedule(stages: Layer[][]): PhaseCallback {
  let open = -1;
  const apply = (epoch: number, epochs: number): boolean => {
    const n = openStages(epoch, epochs, stages.length);
    if (n === open) return false;
    stages.forEach((layers, i) => setTrainable(layers, i < n));
    open = n;
    return true;
  };
  return {
    name: 'unfreeze-schedule',
    setup(ctx) { apply(ctx.epoch, ctx.options.epochs); },
    describe(info: PhaseInfo, ctx) {
      const out: { epoch: number; opens: string[] }[] = [];
      let was = 0;
      for (let e = 1; e <= ctx.options.epochs; e++) {
        const n = openStages(e, ctx.options.epochs, stages.length);
        if (n > was) out.push({ epoch: e, opens: stages.slice(was, n).flat().filter((l) => l.weights.length).map((l) => l.name) });
        was = n;
      }
      return { ...info, unfreezeSchedule: out };
    },
    onEpochStart: (ctx) => apply(ctx.epoch, ctx.options.epochs),
  };
}
