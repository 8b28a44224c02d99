// progress: the plain progress functions (PhaseHooks) as a callback.

import type { PhaseCallback, PhaseHooks } from '../phase.js';

/** The plain progress functions as a callback. */
export function progress(hooks: PhaseHooks): PhaseCallback {
  return {
    name: 'progress',
    onPhaseStart: (info) => hooks.onPhaseStart?.(info),
    onBatch: (p) => hooks.onBatch?.(p),
    onEpochEnd: (record) => hooks.onEpochEnd?.(record),
    onNotice: (message) => hooks.onNotice?.(message),
    onPhaseEnd: async (summary) => { await hooks.onPhaseEnd?.(summary); },
  };
}
