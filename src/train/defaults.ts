// The defaults of Graft's two-phase recipe, in one place. They follow fastai's fine_tune
// (Adam, one-cycle, base LR 2e-3, LR halved after the warm-up, discriminative LRs from
// base/100 to base) and Keras' guide (frozen BatchNorm in inference mode).

import { HEAD_DEFAULTS } from '../model/head.js';
import type { UnfreezeSpec } from '../model/freeze.js';

export const DEFAULTS = {
  batchSize: 64,
  /** Warm-up epochs are cheap (the head trains on cached features), so there are a few more than fastai's 1. */
  warmupEpochs: 3,
  finetuneEpochs: 2,
  /** Peak learning rate of the head in the warm-up (fastai base_lr). */
  lr: 2e-3,
  /** The fine-tune phase's peak LR is lr * finetuneLrFactor (fastai halves it). */
  finetuneLrFactor: 0.5,
  /** The deepest body layer group trains at (fine-tune LR) / lrRatio (fastai's lr_mult); LayerGroup.lrMult is each group's fraction. */
  lrRatio: 100,
  /** Layer groups for discriminative LRs: the head plus (layerGroups - 1) body groups. */
  layerGroups: 3,
  schedule: 'one-cycle' as 'one-cycle' | 'cosine' | 'constant',
  /** Fraction of a phase spent raising the LR (one-cycle). */
  pctStart: 0.3,
  /** One-cycle starts at peak / div and ends at peak / finalDiv. */
  div: 25,
  finalDiv: 1e4,
  unfreeze: 'all' as UnfreezeSpec,
  validationSplit: 0.1,
  /** Stop a phase when the validation loss has not improved for this many epochs. */
  patience: 3,
  weightDecay: 1e-2,
  /**
   * Unfrozen BatchNorm layers: 'update' their moving statistics while fine-tuning, 'keep' the
   * pretrained ones (Keras' advice), or 'auto': update only when the fine-tune has enough steps
   * for the moving averages to follow (momentum^steps < autoBatchNormResidue), else keep. With
   * Keras' momentum 0.999 and a few dozen steps, updating leaves inference on stale averages
   * while training saw batch statistics, and validation accuracy drops.
   */
  batchNormStatistics: 'auto' as 'update' | 'keep' | 'auto',
  autoBatchNormResidue: 0.05,
  /**
   * The warm-up runs at least this many steps when its epochs are not given (it is cheap: the
   * head trains on cached features); small datasets otherwise stop far from convergence.
   */
  minWarmupSteps: 300,
  /**
   * Without validation data (small data), a warm-up trained by steps (a head with hidden
   * layers) runs at a constant learning rate to the training-loss plateau: it stops when the
   * loss has not fallen by plateauTolerance (relative) for plateauSteps steps, within
   * maxWarmupSteps steps.
   */
  maxWarmupSteps: 3000,
  plateauSteps: 200,
  plateauTolerance: 0.01,
  seed: 42,
  /** The warm-up of a linear head is fitted to convergence (head-fit.ts); 'sgd' trains it by epochs. */
  warmup: 'auto' as 'auto' | 'fit' | 'sgd',
  /** Fine-tuning is kept only when it beats the warm-up head (keep-better.ts). */
  keepBetter: true,
  /**
   * Class imbalance: 'auto' weights the loss by n / (k * n_class) when the largest class has
   * 1.5x the samples of the smallest or more; 'weights', 'sample' (balanced sampling) or 'none'.
   */
  balance: 'auto' as 'auto' | 'none' | 'weights' | 'sample',
  /** The largest/smallest class size ratio at which 'auto' weights the classes. */
  imbalanceRatio: 1.5,
  head: HEAD_DEFAULTS,
};
Object.freeze(DEFAULTS);
