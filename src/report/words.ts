// Plain words for what a training run did and why, from its graft.json.

import { wilson } from '../eval/interval.js';
import type { GraftMeta } from '../model/meta.js';

const pct = (v: unknown) => (typeof v === 'number' ? `${(100 * v).toFixed(2)}%` : '-');

interface PhaseRecipe {
  phase: string;
  epochsRun: number;
  stoppedEarly: boolean;
  stoppedBy?: 'validation' | 'plateau';
  seconds: number;
  groupLearningRates: { layers: string[]; lr: number }[];
  unfreezeSchedule?: { epoch: number; opens: string[] }[];
  labelSmoothing?: number;
}

export function explainRun(meta: GraftMeta): string[] {
  const out: string[] = [];
  const cut = meta.base?.cut;
  const removed = meta.base?.removed?.map((r) => r.name) ?? [];
  if (meta.base) {
    out.push(`The pretrained network "${meta.base.source}" was cut after layer ${cut?.index ?? '?'} "${cut?.layer ?? '?'}". `
      + `Everything from its input node up to that layer is the body; ${removed.length ? `the layers after it (${removed.join(', ')}) were its old head and were removed from the new model` : 'nothing after it was removed'}. `
      + 'The input node is still the original input: new data enters exactly where the old data did.');
  }
  const newHead = meta.heads.find((h) => h.name === 'new');
  if (newHead) out.push(`A new head (${newHead.layers.join(' → ')}) was grafted on after the cut, with one output per class: ${newHead.classNames.join(', ')}.`);
  const old = meta.heads.find((h) => h.name === 'old');
  if (old) out.push(`The old head (${old.layers.join(', ')}) was kept as a second output of the same body, for the old classes ${old.classNames.join(', ')}.`);
  const phases = ((meta.recipe?.phases ?? []) as PhaseRecipe[]);
  for (const p of phases) {
    const lrs = p.groupLearningRates.map((g) => g.lr.toExponential(1)).join(', ');
    if (p.phase === 'warm-up' && meta.headFit) {
      const f = meta.headFit;
      out.push(`Warm-up: the whole body was frozen (its BatchNorm statistics too) and the new linear head was fitted to convergence on the body's features, standardised with the training set's statistics (folded into the saved weights): a logistic regression by L-BFGS, ${f.iterations} iterations, ${f.converged ? 'converged' : 'not converged'}, L2 strength ${f.l2} `
        + (f.chosenBy === 'cross-validation' ? `chosen by ${f.folds}-fold cross-validation on the training set (held-out accuracy ${pct(f.cvAccuracy)} ± ${(100 * (f.cvAccuracyStd ?? 0)).toFixed(1)} points). ` : f.chosenBy === 'validation' ? 'chosen on the validation set. ' : '(the default). ')
        + 'Why: on few images a head trained by a fixed number of small steps stops far from its best; a fitted head is at its best, and cross-validation chooses its regularisation from evidence instead of from a handful of validation images.');
    } else if (p.phase === 'warm-up') {
      out.push(`Warm-up: the whole body was frozen (its BatchNorm statistics too) and only the new head trained, for ${p.epochsRun} epoch(s) at a peak learning rate of ${lrs}${p.stoppedBy === 'plateau' ? ' (until the training loss stopped falling: with no validation data, the plateau is its convergence test)' : p.stoppedEarly ? ' (stopped early: the validation loss stopped improving)' : ''}. `
        + 'Why: a new head starts random; its first large, noisy gradients would damage the pretrained body if the body could move. The body\'s features were computed once and reused every epoch, which is why this phase is fast.');
    } else if (p.phase === 'fine-tune') {
      out.push(`Fine-tune: ${meta.frozen?.length ? `${meta.frozen.length} body layers stayed frozen (${meta.frozen.join(', ')}) and the rest` : 'the whole body'} trained together with the head for ${p.epochsRun} epoch(s)${p.stoppedEarly ? ' (stopped early: the validation loss stopped improving)' : ''}, `
        + `with learning rates per layer group from the deepest to the head of ${lrs}. Why: lower layers hold general features that need only small changes; higher layers and the head adapt most.`
        + (p.unfreezeSchedule ? ` The body was unfrozen gradually from the top: ${p.unfreezeSchedule.map((u) => `epoch ${u.epoch} opened ${u.opens.length} layers (${u.opens[0]} to ${u.opens[u.opens.length - 1]})`).join(', ')}, so the layers nearest the head adapted before the deeper ones moved (ULMFiT's gradual unfreezing).` : '')
        + (p.labelSmoothing ? ` The loss used label smoothing ${p.labelSmoothing}: each target gives ${p.labelSmoothing} of its weight evenly to all classes, which keeps the model from becoming over-confident on few images.` : ''));
    }
  }
  if (meta.fineTuneCheck) out.push(`${meta.fineTuneCheck.words.replace(/^./, (c) => c.toUpperCase())}.`);
  const m = meta.metrics ?? {};
  const results = m.validationAccuracy === null || m.validationAccuracy === undefined ? ['no validation split (small data: choices by cross-validation)'] : [`validation accuracy ${pct(m.validationAccuracy)}`];
  if (m.testAccuracy !== undefined && m.testAccuracy !== null) {
    const n = m.testSamples ?? 0;
    const w = wilson(Math.round(m.testAccuracy * n), n);
    results.push(`test accuracy ${pct(m.testAccuracy)} on ${m.testSamples ?? '?'} samples (95% interval ${pct(w.low)}-${pct(w.high)})`);
  }
  out.push(`Result: ${results.join(', ')}.`);
  const f = meta.forgetting as { oldTask?: { accuracyBefore: number; accuracyAfter: number } } | undefined;
  if (f?.oldTask) {
    out.push(`Old task: ${pct(f.oldTask.accuracyBefore)} before training, ${pct(f.oldTask.accuracyAfter)} after. `
      + (f.oldTask.accuracyAfter >= f.oldTask.accuracyBefore ? 'Nothing was forgotten.' : `The drop is what training the shared body for the new task cost the old one.`));
  } else {
    out.push('The old task was not measured in this run (train with --old-data to measure what was forgotten).');
  }
  return out;
}
