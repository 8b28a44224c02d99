// --out through the real graft process: it never deletes or replaces what Graft did not write
// (the current folder and its ancestors, the inputs, other folders, files), replaces a model
// only after a run succeeded, leaves it in place when a run diverges, and repairs a swap that a
// kill interrupted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, realpath, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../../src/engine/backend.js';
import { saveModel } from '../../src/model/io.js';
import { versions } from '../../src/model/meta.js';
import { root } from '../cli.js';
import { hashTree, plantCanary } from '../canary.js';

const bin = join(root, 'bin', 'graft.js');

function graftIn(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd, env: { ...process.env, GRAFT_CACHE_DIR: join(tmpdir(), 'graft-test-cache') } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const errorOf = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!).error as { code: string; message: string; fix: string };

/** A dense base for 4 features; `poison` makes its first layer overflow float32 so training diverges. */
async function denseBase(dir: string, poison = false): Promise<void> {
  await initBackend();
  const input = tfl.input({ shape: [4] });
  const h = tfl.layers.dense({ units: 8, activation: 'relu', name: 'fc1', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfl.SymbolicTensor;
  const o = tfl.layers.dense({ units: 2, activation: 'softmax', name: 'old', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(h) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: o });
  if (poison) model.getLayer('fc1').setWeights([tf.fill([4, 8], 1e38), tf.zeros([8])]);
  await saveModel(model, dir, { format: 'graft/1', classNames: ['a', 'b'], preprocessing: { inputShape: [4] }, heads: [], versions: versions(), createdAt: '' });
}

const csv = `a,b,c,d,label\n${Array.from({ length: 40 }, (_, i) => `${i % 2},${(i * 7) % 5},${i % 3},1,${i % 2 ? 'x' : 'y'}`).join('\n')}\n`;
const FAST = ['--warmup-epochs', '1', '--finetune-epochs', '1', '--preprocess', 'none', '--json'];

test('--out that would replace what Graft did not write is refused before any work, and nothing changes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-out-'));
  try {
    const work = join(dir, 'work');
    await plantCanary(work);
    await denseBase(join(work, 'base'));
    await writeFile(join(work, 'train.csv'), csv);
    await mkdir(join(work, 'images', 'cat'), { recursive: true });
    await writeFile(join(work, 'images', 'cat', 'a.png'), 'x');
    await writeFile(join(work, 'file.txt'), 'a file');
    const before = await hashTree(dir);
    const cases: Array<[string, string[], RegExp]> = [
      ['empty --out', ['--out', ''], /is empty/],
      ['empty --out=', ['--out='], /is empty/],
      ['current folder', ['--out', '.'], /is the current folder/],
      ['current folder with a slash', ['--out', './'], /is the current folder/],
      ['parent folder', ['--out', '..'], /ancestor of the current folder/],
      ['root', ['--out', '/'], /root of the file system/],
      ['the base model folder', ['--out', 'base'], /is the base model/],
      ['a folder holding the base', ['--out', join(work, 'sub', '..')], /current folder|holds the base/],
      ['a non-Graft folder', ['--out', 'sub'], /no Graft model \(graft\.json\)/],
      ['a folder with a foreign graft.json', ['--out', 'sub/deeper'], /no Graft model/],
      ['a file', ['--out', 'file.txt'], /is a file/],
      ['below a file', ['--out', 'file.txt/model'], /which is a file, not a folder/],
    ];
    for (const [what, out, why] of cases) {
      const r = await graftIn(work, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, ...out]);
      assert.equal(r.code, 1, `${what}: ${r.stderr}`);
      const e = errorOf(r.stdout);
      assert.equal(e.code, 'OUT_NOT_SAFE', `${what}: ${r.stdout}`);
      assert.match(e.message, why, what);
      assert.match(e.fix, /--out/, `${what}: the fix says what to pass`);
      assert.doesNotMatch(r.stderr, /epoch|    at /, `${what}: refused before training, no stack`);
    }
    // The data folder, and other commands that write.
    const images = await graftIn(work, ['train', '--base', 'digits-cnn', '--data', 'images', '--out', 'images', '--json']);
    assert.equal(errorOf(images.stdout).code, 'OUT_NOT_SAFE');
    assert.match(errorOf(images.stdout).message, /is the data \(--data\)/);
    // A Graft model folder the user put their own files in, a folder with a copied graft.json, and a symbolic link.
    await mkdir(join(work, 'kept'), { recursive: true });
    const good = await graftIn(work, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', 'kept']);
    assert.equal(good.code, 0, good.stderr);
    await writeFile(join(work, 'kept', 'notes.txt'), 'my notes');
    await mkdir(join(work, 'mine', 'sub'), { recursive: true });
    await writeFile(join(work, 'mine', 'a.txt'), 'mine');
    await writeFile(join(work, 'mine', 'graft.json'), await readFile(join(work, 'kept', 'graft.json')));
    await symlink(join(work, 'kept'), join(work, 'link'));
    const beforeMine = await hashTree(work);
    for (const [out, why] of [['kept', /also 1 entry Graft did not write \(notes\.txt\)/], ['mine', /did not write \(a\.txt, sub\)/], ['link', /symbolic link/]] as const) {
      const r = await graftIn(work, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', out]);
      assert.equal(errorOf(r.stdout).code, 'OUT_NOT_SAFE', `${out}: ${r.stdout}`);
      assert.match(errorOf(r.stdout).message, why, out);
    }
    assert.equal(await hashTree(work), beforeMine, 'nothing changed');
    await rm(join(work, 'kept'), { recursive: true });
    await rm(join(work, 'mine'), { recursive: true });
    await rm(join(work, 'link'));
    // Inside the data: the model would be read as a class folder (or a stray file) next time.
    const inside = await graftIn(work, ['train', '--base', 'digits-cnn', '--data', 'images', '--out', 'images/cat/graft-model', '--json']);
    assert.equal(errorOf(inside.stdout).code, 'OUT_NOT_SAFE');
    assert.match(errorOf(inside.stdout).message, /is inside the data \(--data\)/);
    assert.doesNotMatch(errorOf(inside.stdout).fix, /images\//, 'the fix points outside the data');
    for (const args of [['demo', '--out', '.'], ['demo', '--out', 'sub'], ['compare', '--base', 'base', '--data', 'train.csv', '--out', 'sub'],
      ['report', 'base', '--out', 'file.txt'], ['report', 'base', '--out', 'sub'], ['inspect', 'base', '--svg', 'notes.txt'], ['inspect', 'base', '--svg', '']]) {
      const r = await graftIn(work, [...args, '--json']);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(errorOf(r.stdout).code, 'OUT_NOT_SAFE', `${args.join(' ')}: ${r.stdout}`);
    }
    assert.equal(await hashTree(dir), before, 'no file changed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a Graft model at --out is replaced after success; a diverged run leaves it and saves beside it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-out-'));
  try {
    await plantCanary(join(dir, 'canary'));
    await denseBase(join(dir, 'base'));
    await denseBase(join(dir, 'poisoned'), true);
    await writeFile(join(dir, 'train.csv'), csv);
    const canary = await hashTree(join(dir, 'canary'));
    const ok = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', 'model']);
    assert.equal(ok.code, 0, ok.stderr);
    const first = await readFile(join(dir, 'model', 'weights.bin'));
    const again = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--seed', '5', '--out', 'model']);
    assert.equal(again.code, 0, `an earlier Graft model is replaced: ${again.stderr}`);
    let second = await readFile(join(dir, 'model', 'weights.bin'));
    assert.notDeepEqual(second, first);
    // Files named as Graft names its own, but not Graft's: the retrain is refused and they stay.
    for (const [name, body] of [['model.onnx', 'my own onnx'], ['report.html', '<html>my notes</html>'], ['graph-model/model.json', '{"mine":1}']]) {
      await mkdir(dirname(join(dir, 'model', name)), { recursive: true });
      await writeFile(join(dir, 'model', name), body);
      const r = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', 'model']);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      const e = errorOf(r.stdout);
      assert.equal(e.code, 'OUT_NOT_SAFE');
      assert.match(e.message, new RegExp(`holds a Graft model and also 1 entry Graft did not write \\(${name.split('/')[0].replace('.', '\\.')}`));
      assert.equal(await readFile(join(dir, 'model', name), 'utf8'), body);
      await rm(join(dir, 'model', name.split('/')[0]), { recursive: true });
    }
    // Graft's own export (recorded in graft.json) goes with the old model, and the run says so.
    const exported = await graftIn(dir, ['export', 'model']);
    assert.equal(exported.code, 0, exported.stderr);
    assert.ok((await readdir(join(dir, 'model'))).includes('model.onnx'));
    const third = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--seed', '6', '--out', 'model']);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stderr, /the earlier model's export \(model\.onnx\), of the old weights, will be removed when the new model is saved/);
    second = await readFile(join(dir, 'model', 'weights.bin'));
    const bad = await graftIn(dir, ['train', '--base', 'poisoned', '--data', 'train.csv', '--warmup-epochs', '0', '--finetune-epochs', '1', '--preprocess', 'none', '--out', 'model']);
    assert.equal(bad.code, 1, bad.stderr);
    assert.deepEqual(await readFile(join(dir, 'model', 'weights.bin')), second, 'the previous model stays');
    assert.match(bad.stderr, /saved to model\.diverged\/ \(model was left as it was\)/);
    assert.equal(bad.stderr.match(/fix:/g)?.length, 1, `the fix is printed once: ${bad.stderr}`);
    assert.ok((await readdir(join(dir, 'model.diverged'))).includes('graft.json'));
    assert.equal(await hashTree(join(dir, 'canary')), canary);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.')), [], 'no temporary folders left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a swap a kill interrupted is finished on the next start and said', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-out-'));
  try {
    await denseBase(join(dir, 'base'));
    await writeFile(join(dir, 'train.csv'), csv);
    // A user's own hidden folders that look like leftovers, with no marker of Graft's: untouched.
    await mkdir(join(dir, '.foreign.old-2023-12'));
    await writeFile(join(dir, '.foreign.old-2023-12', 'keep.txt'), 'mine');
    await mkdir(join(dir, '.model.old-2024-06'));
    await writeFile(join(dir, '.model.old-2024-06', 'keep.txt'), 'mine too');
    const users = ['.foreign.old-2023-12', '.model.old-2024-06'];
    // What writeDirAtomic leaves when killed between its two renames (pid 2^22+1 is never alive):
    // its marker and the two folders it names.
    await denseBase(join(dir, '.model.old-4194305-1'));
    await denseBase(join(dir, '.model.tmp-4194305-1'));
    const marker = (n: number) => writeFile(join(dir, `.model.swap-4194305-${n}.json`), JSON.stringify({ format: 'graft-swap/1', target: 'model', tmp: `.model.tmp-4194305-${n}`, old: `.model.old-4194305-${n}`, pid: 4194305 }));
    await marker(1);
    await mkdir(join(dir, '.model.tmp-4194305-1', 'checkpoints'));
    await writeFile(join(dir, '.model.tmp-4194305-1', 'checkpoints', 'marker'), 'new');
    const r = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', '--warmup-epochs', '1', '--finetune-epochs', '0', '--preprocess', 'none', '--json', '--out', 'model']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /an earlier run was stopped while replacing it; its new contents were put in place/);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.')).sort(), users);
    assert.equal(await readFile(join(dir, '.model.old-2024-06', 'keep.txt'), 'utf8'), 'mine too', 'not taken for a leftover');
    assert.ok(!(await readdir(join(dir, 'model'))).includes('keep.txt'), 'and not renamed into the output');
    // A leftover beside a complete model is removed.
    await denseBase(join(dir, '.model.tmp-4194305-2'));
    await marker(2);
    const r2 = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', '--warmup-epochs', '1', '--finetune-epochs', '0', '--preprocess', 'none', '--json', '--out', 'model']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /removed what an earlier stopped run left beside it/);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.')).sort(), users);
    assert.equal(await readFile(join(dir, '.foreign.old-2023-12', 'keep.txt'), 'utf8'), 'mine');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--resume refuses a run whose data changed, saying what changed; --resume-anyway goes on', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-out-'));
  try {
    await denseBase(join(dir, 'base'));
    await writeFile(join(dir, 'train.csv'), csv);
    const run = ['train', '--base', 'base', '--data', 'train.csv', '--warmup-epochs', '0', '--finetune-epochs', '2', '--preprocess', 'none', '--out', 'model'];
    const first = await graftIn(dir, run);
    assert.equal(first.code, 0, first.stderr);
    const checkpoints = (await readdir(join(dir, 'model', 'checkpoints'))).sort();
    assert.ok(checkpoints.length > 0, 'checkpoints were written');
    // As a later run into this folder that was stopped leaves it: its last checkpoint newer than the saved model.
    const earlier = new Date(Date.now() - 60_000);
    await utimes(join(dir, 'model', 'graft.json'), earlier, earlier);
    await writeFile(join(dir, 'train.csv'), csv.split('\n').slice(0, 21).join('\n'));
    const changed = await graftIn(dir, ['train', '--resume', 'model', '--json']);
    assert.equal(changed.code, 1, changed.stderr);
    const e = errorOf(changed.stdout);
    assert.equal(e.code, 'RESUME_MISMATCH');
    assert.match(e.message, /the training data had \d+ samples and now has \d+/);
    assert.match(e.fix, /--resume-anyway/);
    await writeFile(join(dir, 'train.csv'), csv.replace('1,0,1,1,x', '1,0,2,1,x'));
    const values = await graftIn(dir, ['train', '--resume', 'model', '--json']);
    assert.match(errorOf(values.stdout).message, /values or labels changed/);
    const anyway = await graftIn(dir, ['train', '--resume', 'model', '--resume-anyway']);
    assert.equal(anyway.code, 0, anyway.stderr);
    assert.match(anyway.stdout, /going on although the training data's values or labels changed/);
    // That run finished: resuming it again is refused, whatever the data.
    const finished = await graftIn(dir, ['train', '--resume', 'model', '--json']);
    assert.equal(finished.code, 1, finished.stderr);
    assert.match(errorOf(finished.stdout).message, /finished: its model \(graft\.json\) was saved after its last checkpoint/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('two runs on one --out: the second is refused naming the first, which finishes untouched; a killed run\'s lock is taken over', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-out-'));
  try {
    await denseBase(join(dir, 'base'));
    await writeFile(join(dir, 'train.csv'), csv);
    const long = ['train', '--base', 'base', '--data', 'train.csv', '--warmup-epochs', '0', '--finetune-epochs', '400', '--preprocess', 'none', '--batch-size', '1', '--out', 'model'];
    const first = spawn(process.execPath, [bin, ...long], { cwd: dir, env: { ...process.env, GRAFT_CACHE_DIR: join(tmpdir(), 'graft-test-cache') } });
    let said = '';
    first.stdout.on('data', (d) => { said += d; });
    const ended = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
    while (!said.includes('fine-tune')) {
      assert.equal(first.exitCode, null, `the first run is still going: ${said}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const second = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', './model/']);
    assert.equal(second.code, 1, second.stderr);
    const e = errorOf(second.stdout);
    assert.equal(e.code, 'OUT_BUSY');
    assert.match(e.message, new RegExp(`being written by another graft run \\(process ${first.pid},`));
    assert.match(e.fix, /--out \.\/model-2/);
    assert.equal(first.exitCode, null, 'the first run goes on');
    first.kill('SIGKILL');
    await ended;
    // Its lock is left behind by the kill; its process is gone, so the next run takes it over.
    const third = await graftIn(dir, ['train', '--base', 'base', '--data', 'train.csv', ...FAST, '--out', 'model']);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(JSON.parse(await readFile(join(dir, 'model', 'graft.json'), 'utf8')).format, 'graft/1');
    // A run that ends removes its lock.
    const locks = join(tmpdir(), `graft-${userInfo().uid}-locks`);
    const target = await realpath(join(dir, 'model'));
    for (const f of await readdir(locks)) {
      const h = JSON.parse(await readFile(join(locks, f), 'utf8').catch(() => '{}'));
      assert.notEqual(h.path, target, `a lock on ${target} is left: ${JSON.stringify(h)}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
