// graft/train: the training machinery under fineTune: body features and their disk cache,
// AdamW, schedules, the learning-rate finder, the distillation loss and the run's description.
export { featureDataset } from '../train/predict.js';
export { cachedFeatureDataset, listCache, clearCache, cacheDir, modelFingerprint, featureKey, CACHE_DEFAULTS, type CacheEntry, type CachedFeatures } from '../train/feature-cache.js';
export { AdamW } from '../train/optimizer.js';
export { lrFactor, evenMults, type ScheduleName } from '../train/schedule.js';
export { findLearningRate, LR_FIND_DEFAULTS, type LrFindOptions, type LrFindResult } from '../train/lr-find.js';
export { DivergedError, type LossContext } from '../train/loop.js';
export { distillationLoss, soften, DISTILL_DEFAULTS, type DistillOptions } from '../train/distill.js';
export { EWC_DEFAULTS, type Ewc } from '../train/ewc.js';
export { describeTransfer, type KeepOld } from '../train/transfer.js';
export type { Phase, PhaseInfo, PhaseSummary, Divergence, PhaseControl, PhaseHooks } from '../train/phase.js';
