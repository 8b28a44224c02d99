// Graft's public API, the root of the package: the transfer-learning recipe and its pieces.
// The rest is in subpaths: graft/data, graft/bodies, graft/train, graft/eval, graft/export,
// graft/report, graft/native (docs/api.md lists every name; a test keeps them in step).

export { GraftError, type GraftErrorCode } from './errors.js';
export { initBackend } from './engine/backend.js';
export { DEFAULTS } from './train/defaults.js';

export { loadModel, type LoadedModel, type LoadOptions } from './model/load.js';
export { saveModel } from './model/io.js';
export type { GraftMeta, EpochRecord } from './model/meta.js';
export { cutBody, type Body } from './model/cut.js';
export { buildHead, type HeadOptions } from './model/head.js';
export { graft, type Grafted, type GraftOptions } from './model/graft.js';
export { freezeBody, unfreeze, type UnfreezeSpec } from './model/freeze.js';

export type { Dataset } from './data/dataset.js';
export { preprocessPreset, type Preprocessing } from './data/preprocess.js';

export { runPhase, type PhaseOptions, type PhaseOutcome, type PhaseCallback, type PhaseContext, type TrainingState } from './train/phase.js';
export { earlyStopping, nanGuard, checkpoints, unfreezeSchedule, progress } from './train/callbacks.js';
export { fineTune, layerGroups, type FineTuneOptions, type FineTuneResult } from './train/fine-tune.js';
export { transfer, type Transfer, type TransferOptions } from './train/transfer.js';
export { crossEntropy, type LossFn, type LayerGroup } from './train/loop.js';
export { lwfLoss } from './train/distill.js';
export { ewcLoss, fisherDiagonal } from './train/ewc.js';
export { writeCheckpoint, readLatestCheckpoint, applyCheckpoint, type Checkpoint } from './train/checkpoint.js';

export { evaluate, type Evaluation } from './eval/evaluate.js';
export { predictAll } from './train/predict.js';
