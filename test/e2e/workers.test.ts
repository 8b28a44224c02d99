// `graft train --workers 2`, the real command: two worker processes train data-parallel over
// 127.0.0.1 and land where one worker does; rank 0 alone writes; a worker killed mid-run stops
// the run with a message naming it and the command to resume, and the run resumes with another
// number of workers; workers with different options are refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { graft, lastJson, root } from '../cli.js';
import { nativeAddon, nativeStatus } from '../../src/engine/native.js';

const skip = !nativeStatus().available ? `native engine ${nativeStatus().reason}` : !nativeAddon()?.Group ? 'native engine built without Gloo' : false;
const RUN = ['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '300', '--val-split', '0.2', '--warmup', 'sgd', '--keep-better', 'no', '--warmup-epochs', '2', '--finetune-epochs', '2', '--seed', '4', '--no-cache'];

test('graft train --workers 2: same accuracy as one worker, "workers" in the JSON and words, files from rank 0 only', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-workers-'));
  try {
    const one = await graft([...RUN, '--out', join(dir, 'one'), '--json']);
    assert.equal(one.code, 0, one.stderr);
    const two = await graft([...RUN, '--out', join(dir, 'two'), '--json', '--workers', '2']);
    assert.equal(two.code, 0, two.stderr);
    const a = lastJson(one.stdout);
    const b = lastJson(two.stdout);
    assert.equal(a.workers, 1);
    assert.equal(b.workers, 2);
    assert.ok(Math.abs(a.validationAccuracy - b.validationAccuracy) <= 0.02, `1 worker ${a.validationAccuracy}, 2 workers ${b.validationAccuracy}`);
    assert.equal(b.history.length, 4);
    assert.deepEqual((await readdir(join(dir, 'two'))).sort(), (await readdir(join(dir, 'one'))).sort(), 'the same files as one worker writes');
    assert.deepEqual((await readdir(dir)).sort(), ['one', 'two']);
    const words = await graft([...RUN, '--out', join(dir, 'words'), '--workers', '2']);
    assert.equal(words.code, 0, words.stderr);
    assert.match(words.stdout, /workers: 2, data-parallel on c10d\/Gloo \(rendezvous file:\/\S+\): each batch of 64 is split 32 \+ 32/);
    assert.equal((words.stdout.match(/^validation accuracy/gm) ?? []).length, 1, 'one worker speaks');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a worker killed mid-run stops the run, naming it and the resume command; it resumes with 1 worker', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-workers-'));
  const out = join(dir, 'run');
  try {
    const long = [...RUN.map((a) => (a === '300' ? '1000' : a)).map((a, i, all) => (all[i - 1] === '--finetune-epochs' ? '8' : a)), '--out', out, '--workers', '2'];
    const child = spawn(process.execPath, [join(root, 'bin', 'graft.js'), ...long], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Wait for a checkpoint (each epoch's end), then kill rank 1.
    const end = Date.now() + 120000;
    while (!(await readdir(join(out, 'checkpoints')).catch(() => [])).some((e) => e.startsWith('ckpt-'))) {
      assert.ok(Date.now() < end, `no checkpoint in 120 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const pids = (await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
    const rank1 = (await Promise.all(pids.map(async (p) => [p, await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')] as const))).find(([, c]) => /\x00--rank\x001\x00/.test(c))![0];
    const t0 = Date.now();
    process.kill(rank1, 'SIGKILL');
    const code = await closed;
    assert.ok(Date.now() - t0 < 35000, `the run ended ${Date.now() - t0} ms after the kill`);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`worker 1 \\(pid ${rank1}\\) was killed by SIGKILL, so the run stopped on all 2 workers`));
    assert.match(stderr, /Rank 0 of 2: another worker stopped or stopped answering/);
    assert.match(stderr, new RegExp(`Resume with: graft train --resume ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} --workers 2`));
    const resumed = await graft(['train', '--resume', out, '--json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    const j = lastJson(resumed.stdout);
    assert.equal(j.workers, 1);
    // The epochs before the kill came back from the checkpoint; the fine-tune ran to its end (or early stop).
    assert.equal(j.history.filter((h: { phase: string }) => h.phase === 'warm-up').length, 2);
    const ft = j.phases.find((p: { phase: string }) => p.phase === 'fine-tune');
    assert.ok(ft && (ft.epochsRun === 8 || ft.stoppedEarly), JSON.stringify(ft));
    assert.ok(j.validationAccuracy > 0.9, String(j.validationAccuracy));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('workers with different options are refused at start, naming what differs; bad dist options are refused', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-workers-'));
  try {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const base = [...RUN, '--out', join(dir, 'x'), '--world-size', '2', '--master', `127.0.0.1:${port}`];
    const [a, b] = await Promise.all([graft([...base, '--rank', '0']), graft([...base.map((v) => (v === '4' ? '5' : v)), '--rank', '1'])]);
    assert.equal(a.code, 1);
    assert.equal(b.code, 1);
    assert.match(a.stderr, /Rank 1 runs with a different setup than rank 0: --seed: "5" there, "4" here/);
    const lonely = await graft([...RUN, '--out', join(dir, 'y'), '--rank', '1', '--world-size', '2', '--master', `127.0.0.1:${port + 1}`, '--dist-timeout', '2']);
    assert.equal(lonely.code, 1);
    assert.match(lonely.stderr, new RegExp(`Rank 1 could not reach the master at 127\\.0\\.0\\.1:${port + 1} within 2 s`));
    for (const [args, want] of [
      [['--workers', '2', '--rank', '0'], /--workers starts workers on this machine/],
      [['--workers', '0'], /--workers must be a whole number of at least 1/],
      [['--rank', '0', '--world-size', '2'], /--master is missing/],
      [['--rank', '2', '--world-size', '2', '--master', '127.0.0.1:1'], /The rank must be a whole number from 0 to 1/],
      [['--rank', '0', '--world-size', '1', '--master', 'nowhere'], /The master address "nowhere" is not HOST:PORT/],
    ] as Array<[string[], RegExp]>) {
      const r = await graft([...RUN, '--out', join(dir, 'z'), ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, want);
    }
    assert.deepEqual(await readdir(dir), [], 'nothing was written');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C to one worker stops every worker at the same batch with a checkpoint; a killed launcher takes its workers with it', { skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-workers-'));
  const long = (out: string) => [...RUN.map((a) => (a === '300' ? '1000' : a)).map((a, i, all) => (all[i - 1] === '--finetune-epochs' ? '8' : a)), '--out', out, '--workers', '2'];
  const start = (out: string) => {
    const child = spawn(process.execPath, [join(root, 'bin', 'graft.js'), ...long(out)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    return { child, stderr: () => stderr, closed: new Promise<number | null>((resolve) => child.on('close', resolve)) };
  };
  const workersOf = async (pid: number) => (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
  const rankOf = async (p: number) => /\x00--rank\x00(\d+)\x00/.exec(await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => ''))?.[1];
  const alive = (p: number) => { try { process.kill(p, 0); return true; } catch { return false; } };
  const firstCheckpoint = async (out: string) => {
    const end = Date.now() + 120000;
    while (!(await readdir(join(out, 'checkpoints')).catch(() => [])).some((e) => e.startsWith('ckpt-'))) {
      assert.ok(Date.now() < end, 'no checkpoint in 120 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  try {
    const a = start(join(dir, 'a'));
    await firstCheckpoint(join(dir, 'a'));
    const pids = await workersOf(a.child.pid!);
    const one = (await Promise.all(pids.map(async (p) => [p, await rankOf(p)] as const))).find(([, r]) => r === '1')![0];
    process.kill(one, 'SIGINT');
    assert.equal(await a.closed, 130, a.stderr());
    assert.match(a.stderr(), /Stopped in the (warm-up|fine-tune) phase, epoch \d+, after batch \d+; checkpoint written/);
    assert.doesNotMatch(a.stderr(), /another worker stopped/);
    const b = start(join(dir, 'b'));
    await firstCheckpoint(join(dir, 'b'));
    const workers = await workersOf(b.child.pid!);
    assert.equal(workers.length, 2);
    b.child.kill('SIGKILL');
    await b.closed;
    const end = Date.now() + 10000;
    while (workers.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(workers.filter(alive), [], 'no worker outlives its launcher');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
