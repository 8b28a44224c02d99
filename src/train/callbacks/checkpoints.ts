// checkpoints: saves the phase's state at each epoch end and every few minutes inside long epochs.

import type { PhaseCallback, PhaseControl, TrainingState } from '../phase.js';

/** Saves the state (`save` writes it with the weights) at each epoch end and, inside long epochs, every `everyMinutes`. */
export function checkpoints(save: (state: TrainingState) => Promise<void>, options: { everyMinutes?: number } = {}): PhaseCallback {
  const everyMs = (options.everyMinutes ?? 0) * 60000;
  let last = Date.now();
  return {
    name: 'checkpoints',
    onPhaseStart() { last = Date.now(); },
    wantsPause: () => everyMs > 0 && Date.now() - last > everyMs,
    async onPause(state) { await save(state); last = Date.now(); },
    async onEpochEnd(_record, ctx) { await save(ctx.state()); last = Date.now(); },
  };
}

/** fineTune's checkpoint control as a callback, or none. */
export function controlCheckpoints(control: PhaseControl | undefined): PhaseCallback[] {
  return control?.checkpoint ? [checkpoints(control.checkpoint, { everyMinutes: control.checkpointEveryMinutes })] : [];
}
