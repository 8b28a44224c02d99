// One training job of a graft serve project, as it runs in its own process (job-child.ts):
// decode the project's files with graft train's pipeline, hold out a share per class, train
// with graft train's recipe (checkpoints in the project, resumable), evaluate on the held-out
// images and save the model to a fresh folder. It reads the project's files and writes only
// its checkpoints and that folder; the server, which owns project.json, does the rest.

import { type Preprocessing, evaluate, GraftError, loadModel, saveModel, transfer } from 'graft';
import { AUGMENT_DEFAULTS } from '#internal/data/augment.js';
import { imageInput, loadLabeledImages } from '#internal/data/images.js';
import { parseUnfreeze } from '#internal/model/freeze.js';
import { stratifiedSplit } from '#internal/data/dataset.js';
import type { PhaseInfo } from '#internal/train/phase.js';
import { wilson } from '#internal/eval/interval.js';
import { readLatestCheckpoint, type Checkpoint } from '#internal/train/checkpoint.js';
import type { FineTuneResult } from '#internal/train/fine-tune.js';
import { dataPrint, runChanges } from '#internal/train/resume-check.js';
import type { JobEvent } from './jobs.js';
import { removeCheckpoints, type Project, type ProjectResult, type Settings } from './projects.js';

export interface ProjectJobInput {
  jobId: string;
  projectName: string;
  /** What loadModel reads (a zoo name or a model folder), and the name the page shows. */
  base: string;
  baseName: string;
  cut?: string;
  /** Pixel preprocessing for a base without graft.json (an ONNX file, a GraphModel). */
  preprocessing?: Preprocessing;
  settings: Settings & { holdOut: number; augment: boolean; seed: number };
  classNames: string[];
  files: { path: string; label: number; name: string }[];
  checkpointDir: string;
  /** A folder that does not exist yet: the trained model goes there. */
  modelOut: string;
  resume: boolean;
}

export type ProjectJobMessage =
  | { type: 'event'; event: JobEvent }
  | { type: 'done'; result: ProjectResult }
  | { type: 'stopped'; stopped: NonNullable<Project['stopped']>; reason: string }
  | { type: 'error'; message: string; code: string };

export async function runProjectJob(input: ProjectJobInput, send: (m: ProjectJobMessage) => void, shouldStop: () => boolean): Promise<void> {
  const emit = (event: JobEvent) => send({ type: 'event', event });
  try {
    const s = input.settings;
    const base = await loadModel(input.base);
    const image = imageInput(base.model.inputs[0].shape);
    if (!image) throw new GraftError('BAD_MODEL', `${input.baseName} does not take images.`, { fix: 'Choose an image model.' });
    const names = new Map(input.files.map((f) => [f.path, f.name]));
    emit({ type: 'phase', data: { phase: 'decoding', samples: input.files.length } });
    const all = await loadLabeledImages(input.files, input.classNames, { ...image, fit: base.meta?.preprocessing?.imageFit, stream: 'auto' }, `project "${input.projectName}"`);
    const skipped = (all.skipped ?? []).map((x) => ({ name: names.get(x.path) ?? 'an image', reason: x.reason }));
    emit({ type: 'decoded', data: { samples: all.labels.length, skipped } });
    const { rest: train, split: test } = s.holdOut > 0 ? stratifiedSplit(all, s.holdOut, s.seed) : { rest: all, split: undefined };
    // Stop writes a checkpoint; Resume goes on from it when the images and settings are the same.
    const run = { data: dataPrint(train), options: { ...s, base: input.baseName, cut: input.cut ?? null } };
    let resumeFrom: Checkpoint | undefined;
    if (input.resume) {
      resumeFrom = await readLatestCheckpoint(input.checkpointDir);
      if (!resumeFrom) throw new GraftError('RESUME_MISMATCH', 'The stopped run left no readable checkpoint.', { fix: 'Train afresh.' });
      const changes = runChanges(resumeFrom, run.data, run.options);
      if (changes.length) throw new GraftError('RESUME_MISMATCH', `The stopped run cannot go on as it was: ${changes.join('; ')}.`, { fix: 'Train afresh (Train), or put the images and settings back as they were.' });
      emit({ type: 'phase', data: { phase: 'resuming', from: resumeFrom.state.phase, epochsDone: resumeFrom.state.epochsDone } });
    } else await removeCheckpoints(input.checkpointDir);
    const t = await transfer(base, train, {
      resumeFrom, checkpoints: { dir: input.checkpointDir, run, keep: 1, everyMinutes: 2 }, preprocessing: input.preprocessing,
      cut: input.cut, warmupEpochs: s.warmupEpochs, finetuneEpochs: s.finetuneEpochs, batchSize: s.batchSize, lr: s.lr, seed: s.seed, findLr: s.findLr || undefined,
      unfreeze: s.unfreeze ? parseUnfreeze(s.unfreeze) : undefined,
      augment: s.augment ? { ...AUGMENT_DEFAULTS } : undefined, diskCache: true, cacheLabel: `${input.baseName} (graft serve project)`,
      shouldStop,
      callbacks: {
        onPhaseStart: (ph: PhaseInfo) => emit({ type: 'phase', data: ph }),
        onBatch: (b) => { if (b.batch === b.batches || b.batch % 5 === 0) emit({ type: 'batch', data: b }); },
        onEpochEnd: (r) => emit({ type: 'epoch', data: r }),
      },
      onFineTuneFold: (fold, folds) => emit({ type: 'phase', data: { phase: 'fine-tune check', fold, folds } }),
    });
    // A stop that came after the last batch does not throw away a finished run.
    const st = t.result.interrupted;
    if (st) {
      send({
        type: 'stopped', stopped: { jobId: input.jobId, phase: st.phase, epochsDone: st.epochsDone, batch: st.position?.batch ?? 0, at: new Date().toISOString(), ...(st.checkPending ? { checkPending: true } : {}) },
        reason: st.checkPending
          ? 'stopped while checking whether fine-tuning beats the head, before any fine-tune step; a checkpoint was written: Resume redoes the warm-up and the check, Train starts afresh; the last trained model (if any) is kept'
          : `stopped in the ${st.phase} phase after ${st.epochsDone} epoch(s)${st.position ? ` and ${st.position.batch} batches` : ''}; a checkpoint was written: Resume goes on from there, Train starts afresh; the last trained model (if any) is kept`,
      });
      return;
    }
    await removeCheckpoints(input.checkpointDir);
    let testResult: ProjectResult['test'];
    if (test && test.labels.length) {
      const ev = await evaluate(t.grafted.model, test, t.preprocessing);
      const w = wilson(Math.round(ev.accuracy * ev.count), ev.count);
      testResult = { accuracy: ev.accuracy, count: ev.count, wilson95: [w.low, w.high], perClass: ev.perClass, confusion: ev.confusion };
      t.meta.metrics = { ...t.meta.metrics, testAccuracy: ev.accuracy, testLoss: ev.loss, testSamples: ev.count };
      t.meta.evaluation = { ...ev, on: `${ev.count} held-out images of the project` };
    }
    await saveModel(t.model, input.modelOut, t.meta);
    send({
      type: 'done', result: {
        jobId: input.jobId, finished: new Date().toISOString(), classNames: t.classNames, metrics: t.meta.metrics as Record<string, unknown>, words: resultWords(t.result),
        history: t.meta.history as unknown[], test: testResult, trainedOn: train.labels.length, skipped,
      },
    });
  } catch (e) {
    send({ type: 'error', message: e instanceof GraftError ? e.detail : 'Training failed (see the server\'s terminal).', code: (e as GraftError).code ?? 'INTERNAL' });
    if (!(e instanceof GraftError)) console.error(e);
  }
}

/** What the recipe decided, in the words graft train prints. */
export function resultWords(r: FineTuneResult): string[] {
  const out: string[] = [];
  const f = r.headFit;
  if (f?.chosenBy === 'cross-validation') out.push(`Cross-validated accuracy of the warm-up head ${(100 * f.cvAccuracy!).toFixed(1)}% +- ${(100 * f.cvAccuracyStd!).toFixed(1)} points (${f.folds} folds)`);
  if (r.fineTuneCheck) out.push(r.fineTuneCheck.words.replace(/^./, (c) => c.toUpperCase()));
  return out;
}
