// graft demo: the embedded default end to end. The digits-cnn (pretrained on MNIST 0-4) is cut,
// given a new head and transferred to digits 5-9; the demo says in words what it did and
// answers "will it still work on the old data?" by measuring the old head before and after.

import { outFolder } from '../out-args.js';
import { evaluate, GraftError, initBackend, loadModel, saveModel, transfer, type Transfer } from 'graft';
import { inspectModel } from '#internal/model/inspect.js';
import { loadMnist } from '#internal/data/mnist.js';
import { parseUnfreeze } from '#internal/model/freeze.js';
import { takePerClass } from '#internal/data/dataset.js';
import { nativeStatus, withPrecision } from '#internal/engine/native.js';
import { paramCount } from '#internal/model/layers.js';
import { intAtLeast, num, parse, percent, str } from '../args.js';
import { phaseLine, progressCallbacks } from '../progress.js';
import { FORGETTING_RECIPE, forgettingRows, forgettingTable, forgettingVerdict } from './demo-forgetting.js';

export const DEMO = { base: 'digits-cnn', oldDigits: [0, 1, 2, 3, 4], newDigits: [5, 6, 7, 8, 9], trainPerClass: 1000, warmupEpochs: 3, finetuneEpochs: 2 };

export const usage = `graft demo [--json] [--out <dir>] [options]

Transfers the embedded digits-cnn (pretrained on MNIST digits 0-4) to digits 5-9, and
measures the old task through the old head before and after.

  --train-per-class <n>   training images per new digit (default ${DEMO.trainPerClass})
  --warmup-epochs <n>     (default ${DEMO.warmupEpochs})
  --finetune-epochs <n>   (default ${DEMO.finetuneEpochs})
  --unfreeze <what>       none | all | N | from:<layer> (default all)
  --seed <n>              (default 42)
  --out <dir>             also save the transferred model there
  --forgetting            compare five ways of treating the old task (frozen body with the old
                          head kept, full fine-tune, LwF, extend, extend with replay): a table of
                          old-task, new-task and all-ten-digit accuracy (about 8 minutes on 2 cores)
  --backend <name>        wasm | cpu (default: the fastest available)
  --precision <p>         fp32 (default), bf16 or auto (see graft --help); the test digits
                          are scored in fp32, as the saved model predicts
  --json                  print one JSON object: backend, seconds, newTask, oldTask, ...`;

export const summary = 'transfer the embedded digits-cnn from digits 0-4 to 5-9 and explain each step';

const n = (v: number) => v.toLocaleString('en-US');

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    'train-per-class': { type: 'string' }, 'warmup-epochs': { type: 'string' }, 'finetune-epochs': { type: 'string' },
    unfreeze: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, forgetting: { type: 'boolean' },
  }, usage);
  if (values.help) { console.log(usage); return 0; }
  const json = Boolean(values.json);
  const say = (line = '') => { if (!json) console.log(line); };
  const started = Date.now();
  const backend = await initBackend(str(values.backend));
  const perClass = num(values['train-per-class'], 'train-per-class', intAtLeast(2)) ?? DEMO.trainPerClass;
  const seed = num(values.seed, 'seed', intAtLeast(0)) ?? 42;
  const out = values.out === undefined ? undefined : await outFolder(values, undefined, { protect: [{ spec: DEMO.base, what: 'the base model', folderOfFile: true }] });
  if (values.forgetting) return runForgetting(seed, json, say, backend.name, started);
  const unfreezeSpec = values.unfreeze === undefined ? 'all' : parseUnfreeze(str(values.unfreeze)!);

  const base = await loadModel(DEMO.base);
  if (!base.meta) throw new GraftError('BAD_MODEL', 'The embedded digits-cnn lacks its graft.json.', { fix: 'Reinstall Graft.' });
  const [train, newTest, oldTest] = await Promise.all([
    loadMnist('train', DEMO.newDigits).then((d) => takePerClass(d, perClass, seed)),
    loadMnist('test', DEMO.newDigits),
    loadMnist('test', DEMO.oldDigits),
  ]);
  const prep = base.meta.preprocessing;
  const oldBefore = await withPrecision('fp32', () => evaluate(base.model, oldTest, prep));

  say('Graft demo: transfer learning from MNIST digits 0-4 to digits 5-9');
  say(`backend: ${backend.name} (${backend.reason})`);
  const native = nativeStatus();
  say(native.available ? `native engine: libtorch ${native.torch}, ${native.threads} threads` : `native engine: ${native.reason}`);
  say();
  const info = inspectModel(base.model);
  say(`1. The pretrained network "${DEMO.base}" (${n(info.totals.params)} parameters) was trained on digits 0-4.`);
  say(`   Input node: "${info.inputs[0].name}" [28, 28, 1]. Output node: "${info.outputs[0].name}", its old head, 5 classes (digits 0-4).`);
  say(`   On the 0-4 test digits it scores ${percent(oldBefore.accuracy)}.`);

  const progress = progressCallbacks(process.stderr, json);
  const t: Transfer = await transfer(base, train, {
    warmupEpochs: num(values['warmup-epochs'], 'warmup-epochs', intAtLeast(0)) ?? DEMO.warmupEpochs,
    finetuneEpochs: num(values['finetune-epochs'], 'finetune-epochs', intAtLeast(0)) ?? DEMO.finetuneEpochs,
    unfreeze: unfreezeSpec, seed,
    onGrafted: (g) => describeGraft(g, say),
    callbacks: { ...progress, onPhaseStart: (p) => { say(`   ${phaseLine(p)}`); return progress.onPhaseStart?.(p); } },
  });

  const newEval = await withPrecision('fp32', () => evaluate(t.grafted.model, newTest, prep));
  const oldAfter = await withPrecision('fp32', () => evaluate(base.model, oldTest, prep));
  const seconds = (Date.now() - started) / 1000;
  if (out !== undefined) {
    t.meta.metrics = { ...t.meta.metrics, testAccuracy: newEval.accuracy, oldTaskAccuracyBefore: oldBefore.accuracy, oldTaskAccuracyAfter: oldAfter.accuracy, seconds };
    await saveModel(t.grafted.model, out, t.meta);
  }
  const frozenBody = t.result.phases.every((p) => p.phase === 'warm-up');
  if (json) {
    console.log(JSON.stringify({
      backend: backend.name, seconds,
      newTask: { digits: DEMO.newDigits, testAccuracy: newEval.accuracy, testSamples: newEval.count, trainSamples: train.labels.length },
      oldTask: { digits: DEMO.oldDigits, accuracyBefore: oldBefore.accuracy, accuracyAfter: oldAfter.accuracy, testSamples: oldAfter.count },
      cut: t.meta.base?.cut, phases: t.result.phases.map((p) => ({ phase: p.phase, epochsRun: p.epochsRun, seconds: p.seconds })),
      history: t.result.history, out: str(values.out) ?? null,
    }));
    return 0;
  }
  say();
  say('Result:');
  say(`   new task (digits 5-9): ${percent(newEval.accuracy)} on ${n(newEval.count)} test images never seen in training`);
  say(`   old task (digits 0-4) through the old head: ${percent(oldBefore.accuracy)} before, ${percent(oldAfter.accuracy)} after`);
  say();
  say('Will it still work on the old data?');
  const drop = oldBefore.accuracy - oldAfter.accuracy;
  if (frozenBody) {
    say('   Yes: the body stayed frozen, so the old head sees exactly the features it was trained on.');
  } else {
    say('   The old head still exists (the cut removed it only from the new model), but fine-tuning changed the body');
    say(`   under it: on digits 0-4 it now scores ${percent(oldAfter.accuracy)} instead of ${percent(oldBefore.accuracy)}.`);
    say(drop > 0.005
      ? `   That drop of ${(100 * drop).toFixed(2)} points is forgetting: the new task pulled the shared body away from the old one.`
      : '   Barely changed: the body trained at learning rates 10 to 1000 times lower than the head, for few steps.'
        + '\n   With higher rates or longer fine-tuning the old task is forgotten more (Graft measures it each time).');
    say('   To keep the old task exactly, keep the body frozen (graft demo --unfreeze none): the new head then trains');
    say('   on the same features, and both heads work on one shared body.');
  }
  say();
  say(`Done in ${seconds.toFixed(1)} s.${values.out ? ` Saved the new model to ${str(values.out)}/.` : ' Add --out <dir> to save the new model.'}`);
  return 0;
}

async function runForgetting(seed: number, json: boolean, say: (l?: string) => void, backend: string, started: number): Promise<number> {
  const r = FORGETTING_RECIPE;
  say('Graft demo --forgetting: digits-cnn (MNIST 0-4) to digits 5-9, five ways of treating the old task');
  const native = nativeStatus();
  const engine = native.available ? `native engine (libtorch, ${native.threads} threads), tfjs ${backend} for the rest` : `tfjs ${backend}`;
  say(`engine: ${engine}. Same recipe for every row: ${r.perClass} training images per new digit, ${r.warmupEpochs} warm-up and ${r.finetuneEpochs} fine-tune`);
  say(`epochs, peak LR ${r.lr} for every layer (no discriminative LRs, so plain fine-tuning shows its forgetting). Extend with replay`);
  say(`also sees ${r.replay} training images of each old digit.`);
  say();
  const { rows, originalOld } = await forgettingRows(seed, say);
  const seconds = (Date.now() - started) / 1000;
  if (json) {
    console.log(JSON.stringify({ backend, native: native.available, seconds, originalOldTaskAccuracy: originalOld, recipe: r, rows }));
    return 0;
  }
  say();
  say(forgettingTable(rows, originalOld));
  say();
  for (const line of forgettingVerdict(rows, originalOld)) say(line);
  say();
  say(`Done in ${seconds.toFixed(0)} s.`);
  return 0;
}

function describeGraft(g: Transfer['grafted'], say: (l?: string) => void): void {
  const cut = g.body.cut;
  const removed = g.body.removed;
  say(`2. The cut: at layer ${cut.index} "${cut.layer}", whose output (features of shape [${g.body.model.outputs[0].shape.slice(1).join(', ')}]) ends the body.`);
  say(`   Removed on the output side: ${removed.map((l) => l.name).join(', ')} (the old head, ${n(removed.reduce((a, l) => a + paramCount(l), 0))} parameters).`);
  say(`   The input node stays "${g.model.inputs[0].sourceLayer.name}": new digits enter exactly where the old ones did.`);
  say(`3. The new head: ${g.head.layers.map((l) => `${l.name} (${l.getClassName()})`).join(' -> ')}, ${n(g.head.layers.reduce((a, l) => a + paramCount(l), 0))} parameters, 5 classes (digits 5-9).`);
  say(`4. Training: first the body is frozen (its BatchNorm statistics too) while the new head warms up; then the body is unfrozen`);
  say('   and fine-tuned with the head, deeper layers at lower learning rates.');
}
