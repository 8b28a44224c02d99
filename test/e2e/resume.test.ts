// Nothing lost: a training process killed with SIGKILL mid-epoch, or stopped with Ctrl-C
// (SIGINT), resumes from its checkpoint and ends with the same weights as a run that was
// never interrupted (both engines are deterministic and dropout masks are seeded). The SIGKILL
// test runs in the native engine (when built), the Ctrl-C test per-op on tfjs wasm.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'bin', 'graft.js');
// An SGD warm-up and no fine-tune check: checkpoints inside both phases are what is tested here.
const RUN = ['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '200', '--warmup', 'sgd', '--keep-better', 'no', '--warmup-epochs', '2', '--finetune-epochs', '3'];
// The native engine runs an epoch of 200 per class in a fraction of a second: more data, an earlier signal.
const NATIVE_RUN = RUN.map((a) => (a === '200' ? '1000' : a));
const TFJS = { GRAFT_NATIVE: '0' };

interface Run { code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }

/**
 * Runs graft; when `interruptWith` is set, sends it `delayMs` after its output first matches
 * `when` (by default: the first fine-tune epoch of three has ended).
 */
function graft(args: string[], interruptWith?: NodeJS.Signals, delayMs = 1500, env: Record<string, string> = {}, when = /fine-tune epoch 1\/3/): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { ...process.env, ...env } });
    let stderr = '';
    let stdout = '';
    let sent = false;
    const watch = () => {
      if (interruptWith && !sent && when.test(stdout + stderr)) {
        sent = true;
        setTimeout(() => child.kill(interruptWith), delayMs);
      }
    };
    child.stdout.on('data', (d) => { stdout += d; watch(); });
    child.stderr.on('data', (d) => { stderr += d; watch(); });
    child.on('close', (code, signal) => resolve({ code, signal, stderr, stdout }));
  });
}

test('SIGKILL mid-epoch, then --resume: the run completes with identical weights', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-resume-'));
  const ref = await graft([...NATIVE_RUN, '--out', join(dir, 'ref')]);
  assert.equal(ref.code, 0, ref.stderr);
  const killed = await graft([...NATIVE_RUN, '--out', join(dir, 'run')], 'SIGKILL', 400);
  assert.equal(killed.signal, 'SIGKILL');
  assert.deepEqual(await readdir(join(dir, 'run')), ['checkpoints'], 'no model saved yet, only checkpoints');
  const resumed = await graft(['train', '--resume', join(dir, 'run')]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*fine-tune, 1 epoch\(s\) done/);
  const meta = JSON.parse(await readFile(join(dir, 'run', 'graft.json'), 'utf8'));
  assert.deepEqual(meta.history.map((h: { phase: string; epoch: number }) => `${h.phase} ${h.epoch}`), ['warm-up 1', 'warm-up 2', 'fine-tune 1', 'fine-tune 2', 'fine-tune 3']);
  assert.deepEqual(await readFile(join(dir, 'run', 'weights.bin')), await readFile(join(dir, 'ref', 'weights.bin')), 'weights differ from the uninterrupted run');
  await rm(dir, { recursive: true, force: true });
});

test('Ctrl-C stops after the batch with a mid-epoch checkpoint and the resume command; resuming matches', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-resume-'));
  const ref = await graft([...RUN, '--out', join(dir, 'ref')], undefined, 0, TFJS);
  assert.match(ref.stdout, /engine: tfjs per-op \(native engine turned off/);
  const stopped = await graft([...RUN, '--out', join(dir, 'run')], 'SIGINT', 1500, TFJS);
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.match(stopped.stderr, /Stopped in the fine-tune phase, epoch 2, after batch \d+/);
  assert.match(stopped.stderr, /Resume with: graft train --resume /);
  const resumed = await graft(['train', '--resume', join(dir, 'run')], undefined, 0, TFJS);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /batches into the next/);
  assert.deepEqual(await readFile(join(dir, 'run', 'weights.bin')), await readFile(join(dir, 'ref', 'weights.bin')));
  const again = await graft(['train', '--resume', join(dir, 'run'), '--lr', '1']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /--resume goes on with the run's own options/);
  const none = await graft(['train', '--resume', join(dir, 'nothing')]);
  assert.match(none.stderr, /There is no checkpoint/);
  await rm(dir, { recursive: true, force: true });
});

test('resume across precisions: a bf16 run killed mid-epoch goes on in fp32 from its fp32 checkpoint', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-resume-'));
  const killed = await graft([...NATIVE_RUN, '--out', join(dir, 'run'), '--precision', 'bf16'], 'SIGKILL', 400);
  if (/native engine: no|tfjs per-op/.test(killed.stdout)) return; // bf16 needs the native engine
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  assert.match(killed.stdout, /precision: bf16/);
  const resumed = await graft(['train', '--resume', join(dir, 'run'), '--precision', 'fp32']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*fine-tune, 1 epoch\(s\) done[\s\S]*engine: native \(libtorch\), one call per batch, fp32/);
  const meta = JSON.parse(await readFile(join(dir, 'run', 'graft.json'), 'utf8'));
  assert.equal(meta.recipe.precision.used, 'fp32');
  assert.deepEqual(meta.history.map((h: { phase: string; epoch: number }) => `${h.phase} ${h.epoch}`), ['warm-up 1', 'warm-up 2', 'fine-tune 1', 'fine-tune 2', 'fine-tune 3']);
  const weights = new Float32Array((await readFile(join(dir, 'run', 'weights.bin'))).buffer.slice(0));
  assert.ok(weights.length > 1000 && weights.every(Number.isFinite));
  assert.ok(meta.history.at(-1).valAccuracy > 0.9, `validation accuracy ${meta.history.at(-1).valAccuracy}`);
  // The run finished: resuming it again is refused, and the finished model is left as it was.
  const saved = await readFile(join(dir, 'run', 'graft.json'));
  const twice = await graft(['train', '--resume', join(dir, 'run')]);
  assert.notEqual(twice.code, 0);
  assert.match(twice.stderr, /finished: its model \(graft\.json\) was saved after its last checkpoint[\s\S]*fix: To train more, start a new run with another --out/);
  assert.deepEqual(await readFile(join(dir, 'run', 'graft.json')), saved);
  // Without --precision, the resumed run keeps the precision its checkpoint recorded.
  const again = await graft([...NATIVE_RUN, '--out', join(dir, 'kept'), '--precision', 'bf16'], 'SIGKILL', 400);
  assert.equal(again.signal, 'SIGKILL', again.stderr);
  const kept = await graft(['train', '--resume', join(dir, 'kept')]);
  assert.equal(kept.code, 0, kept.stderr);
  assert.match(kept.stdout, /precision: bf16 \(bf16 requested[\s\S]*engine: native \(libtorch\), one call per batch, bf16/);
  assert.equal(JSON.parse(await readFile(join(dir, 'kept', 'graft.json'), 'utf8')).recipe.precision.used, 'bf16');
  await rm(dir, { recursive: true, force: true });
});

test('Ctrl-C during the keep-better check on small data: --resume redoes the check and keeps what the uninterrupted run keeps', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-resume-'));
  const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const args = ['train', '--base', 'mobilenet-v2', '--data', photos];
  const ref = await graft([...args, '--out', join(dir, 'ref')]);
  assert.equal(ref.code, 0, ref.stderr);
  const stopped = await graft([...args, '--out', join(dir, 'run')], 'SIGINT', 0, {}, /fine-tune check, fold 2\/3/);
  assert.equal(stopped.code, 130, stopped.stderr + stopped.stdout);
  assert.match(stopped.stderr, /Stopped during the check of fine-tuning against the warm-up head, before any fine-tune step/);
  const resumed = await graft(['train', '--resume', join(dir, 'run')]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /it stopped during the check .* so the warm-up and the check run again/);
  const [a, b] = await Promise.all(['ref', 'run'].map(async (d) => JSON.parse(await readFile(join(dir, d, 'graft.json'), 'utf8'))));
  assert.ok(b.fineTuneCheck, 'the resumed run made the check');
  assert.deepEqual({ kept: b.fineTuneCheck.kept, warm: b.fineTuneCheck.warmUpFolds, tuned: b.fineTuneCheck.fineTuneFolds }, { kept: a.fineTuneCheck.kept, warm: a.fineTuneCheck.warmUpFolds, tuned: a.fineTuneCheck.fineTuneFolds });
  assert.equal(b.metrics.testAccuracy, a.metrics.testAccuracy);
  await rm(dir, { recursive: true, force: true });
});

test('a fitted-head run on real photos killed in the fine-tune resumes to the same weights, with the head fit\'s decisions', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-resume-'));
  const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  // keep-better off: the fine-tune runs whole, and a stop lands inside it.
  const args = ['train', '--base', 'mobilenet-v2', '--data', photos, '--keep-better', 'no'];
  const ref = await graft([...args, '--out', join(dir, 'ref')]);
  assert.equal(ref.code, 0, ref.stderr);
  // Killed inside the second fine-tune epoch (an epoch is 3 batches here: too short to Ctrl-C in).
  const stopped = await graft([...args, '--out', join(dir, 'run')], 'SIGKILL', 400, {}, /fine-tune\s+epoch 1\/2/);
  assert.equal(stopped.signal, 'SIGKILL', stopped.stderr + stopped.stdout);
  const resumed = await graft(['train', '--resume', join(dir, 'run')]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*fine-tune, 1 epoch\(s\) done/);
  assert.doesNotMatch(resumed.stdout, /no validation split and no cross-validation/);
  assert.match(resumed.stdout, /fine-tune: 2 epochs of \d+ batch/, 'epochs, not epoches');
  const [a, b] = await Promise.all(['ref', 'run'].map(async (d) => JSON.parse(await readFile(join(dir, d, 'graft.json'), 'utf8'))));
  assert.equal(b.recipe.balance, a.recipe.balance, 'the head fit\'s choice of class weights is kept');
  assert.deepEqual(await readFile(join(dir, 'run', 'weights.bin')), await readFile(join(dir, 'ref', 'weights.bin')), 'weights differ from the uninterrupted run');
  assert.equal(b.metrics.testAccuracy, a.metrics.testAccuracy);
  await rm(dir, { recursive: true, force: true });
});
