// A terminal progress bar for training: phase, epoch, batch, loss, accuracy and ETA.
// On a terminal it redraws one line on stderr; elsewhere (pipes, CI) it prints one line per
// epoch so logs stay readable.

import type { HeadFitReport } from '#internal/train/head-fit.js';
import { type EpochRecord } from 'graft';
import { type PhaseHooks } from '#internal/train/phase.js';
import type { PhaseInfo } from '#internal/train/phase.js';

const pct = (v: number | undefined) => (v === undefined ? '   -  ' : `${(100 * v).toFixed(2).padStart(6)}%`);

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}

/** One epoch's line; a fitted head (one L-BFGS fit, no epochs) says 'fitted' instead of 'epoch 1/1'. */
export function epochLine(r: EpochRecord, epochs: number, fitted = false): string {
  const val = r.valAccuracy === undefined ? '' : `  val loss ${r.valLoss!.toFixed(4)}  val acc ${pct(r.valAccuracy)}`;
  return `  ${r.phase.padEnd(9)} ${fitted ? 'fitted' : `epoch ${r.epoch}/${epochs}`}  loss ${r.loss.toFixed(4)}  acc ${pct(r.accuracy)}${val}  (${r.seconds.toFixed(1)}s)`;
}

const plural = (k: number, word: string) => `${k} ${word}${k === 1 ? '' : /(tch|sh|s|x)$/.test(word) ? 'es' : 's'}`;  // batches, epochs (not 'epoches')

/** One line saying what a phase trains and at which learning rates. */
function engineWords(info: PhaseInfo): string {
  if (info.engine === 'native') return `; engine: native (libtorch), one call per batch, ${info.precision ?? 'fp32'}${info.precision === 'bf16' ? ' (convolutions and matrix products; fp32 master weights)' : ''}`;
  return info.engineNote ? `; engine: tfjs per-op (${info.engineNote})` : '';
}

export function phaseLine(info: PhaseInfo): string {
  if (info.fit) {
    return `${info.phase}: the linear head is fitted to convergence (L-BFGS on standardised body features computed once, L2 strength chosen by cross-validation on small data); ${info.frozenLayers.length ? `${plural(info.frozenLayers.length, 'layer')} with weights stay frozen` : 'the body is frozen outside tfjs, its features computed once'}`;
  }
  const lrs = info.groupLearningRates.map((g) => g.lr.toExponential(1)).join(' / ');
  return `${info.phase}: ${plural(info.epochs, 'epoch')} of ${plural(info.batchesPerEpoch, 'batch')}; ${plural(info.trainableLayers.length, 'layer')} with weights train${info.frozenLayers.length ? `, ${info.frozenLayers.length} stay frozen` : ', none stay frozen'}${info.usesFeatureCache ? '; the head trains on body features computed once' : ''}; peak LR per layer group (deep to head) ${lrs}${info.augmentation ? `; augmentation: ${info.augmentation}` : ''}${info.balance === 'weights' ? '; class-weighted loss' : info.balance === 'sample' ? '; balanced sampling' : ''}${info.labelSmoothing ? `; label smoothing ${info.labelSmoothing} (the loss cannot go below the smoothed targets' entropy)` : ''}${gradualWords(info)}${engineWords(info)}`;
}

const CLASS_WEIGHT_WORDS: Record<HeadFitReport['classWeights'], string> = {
  yes: 'yes', no: 'no', 'by cross-validation': 'yes, cross-validation preferred them to none',
  'not: cross-validation preferred none': 'none, cross-validation preferred the loss unweighted',
};

/** The fitted warm-up in words: the L2 strength and how it was chosen, convergence. */
export function headFitLine(f: HeadFitReport): string {
  const how = f.chosenBy === 'cross-validation'
    ? `chosen by ${f.folds}-fold cross-validation on the training set (accuracy ${pct(f.cvAccuracy!).trim()} +- ${(100 * f.cvAccuracyStd!).toFixed(1)} points over folds)`
    : f.chosenBy === 'validation' ? 'chosen on the validation set' : 'the default (too few samples per class to cross-validate)';
  return `head fit: L2 ${f.l2} ${how}; ${f.iterations} L-BFGS iterations, ${f.converged ? 'converged' : 'NOT converged'} (largest gradient entry ${f.gradientNorm.toExponential(1)}); training accuracy ${pct(f.trainAccuracy).trim()}${f.classWeights === 'no' ? '' : `; class weights: ${CLASS_WEIGHT_WORDS[f.classWeights]}`}`;
}

/** Callbacks that draw progress; `quiet` turns them off (for --json). */
export function progressCallbacks(stream: NodeJS.WriteStream, quiet: boolean): PhaseHooks {
  if (quiet) return {};
  const tty = Boolean(stream.isTTY);
  let phase: PhaseInfo | undefined;
  let phaseStart = 0;
  let lastDraw = 0;
  return {
    onPhaseStart: (info) => {
      phase = info;
      phaseStart = Date.now();
    },
    onBatch: (p) => {
      if (!tty || !phase) return;
      const now = Date.now();
      if (now - lastDraw < 100 && p.batch !== p.batches) return;
      lastDraw = now;
      const done = (p.epoch - 1) * p.batches + p.batch;
      const total = p.epochs * p.batches;
      const eta = ((now - phaseStart) / 1000 / done) * (total - done);
      const width = 24;
      const filled = Math.round((width * p.batch) / p.batches);
      const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${' '.repeat(width - filled)}`;
      stream.write(`\r  ${p.phase.padEnd(9)} epoch ${p.epoch}/${p.epochs} [${bar}] ${p.batch}/${p.batches}  loss ${p.loss.toFixed(4)}  acc ${pct(p.accuracy)}  ETA ${duration(eta)}   `);
    },
    onEpochEnd: (r) => {
      if (tty) stream.write('\r\x1b[2K');
      stream.write(`${epochLine(r, phase?.epochs ?? r.epoch, Boolean(phase?.fit))}\n`);
    },
    onPhaseEnd: (s) => {
      if (s.headFit) stream.write(`  ${headFitLine(s.headFit)}\n`);
    },
  };
}

/** Gradual unfreezing in words: what each epoch opens. */
function gradualWords(info: PhaseInfo): string {
  if (!info.unfreezeSchedule) return '';
  const steps = info.unfreezeSchedule.map((s) => `epoch ${s.epoch} opens ${plural(s.opens.length, 'layer')} (${s.opens[0]} to ${s.opens[s.opens.length - 1]})`);
  return `; gradual unfreezing from the top: ${steps.join(', ')}`;
}
