// The callbacks of a training phase (runPhase): small pieces, one file each (callbacks/), each
// with its own state, that fineTune composes and a user can compose differently.
//   earlyStopping: ends the phase when the validation loss (or, without validation data, the
//     training loss) stops falling; with keepBest, ends it with the best epoch's weights.
//   nanGuard: a non-finite loss ends the phase with the weights of the last good epoch end.
//   checkpoints: saves the state each epoch end and every few minutes inside long epochs.
//   unfreezeSchedule: opens layer groups one by one (gradual unfreezing).
//   progress: the plain progress functions (PhaseHooks) as a callback.

export { earlyStopping, type EarlyStoppingOptions } from './callbacks/early-stopping.js';
export { nanGuard } from './callbacks/nan-guard.js';
export { checkpoints, controlCheckpoints } from './callbacks/checkpoints.js';
export { unfreezeSchedule } from './callbacks/unfreeze-schedule.js';
export { progress } from './callbacks/progress.js';
