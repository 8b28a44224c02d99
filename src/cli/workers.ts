// graft train's data-parallel options: --workers N starts N local workers (this process only
// launches and watches them); --rank/--world-size/--master, or torchrun's RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT, make this process one worker of a run across machines.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftError } from 'graft';
import { MAX_WORLD, type DistOptions } from '#internal/engine/dist.js';

/** The flags of a data-parallel run, each with a value. */
export const DIST_FLAGS = ['--workers', '--rank', '--world-size', '--master', '--dist-timeout'];

/** argv without the given flags (and their values, as `--flag v` or `--flag=v`). */
export function withoutFlags(argv: string[], flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (flags.includes(argv[i])) i++;
    else if (!flags.some((f) => argv[i].startsWith(`${f}=`))) out.push(argv[i]);
  }
  return out;
}

/** The flags of `flags` in argv, with their values. */
export function onlyFlags(argv: string[], flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (flags.includes(argv[i])) out.push(argv[i], argv[++i] ?? '');
    else if (flags.some((f) => argv[i].startsWith(`${f}=`))) out.push(argv[i]);
  }
  return out;
}

function whole(v: string | undefined, what: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  if (!(Number.isInteger(n) && n >= min)) throw new GraftError('BAD_ARGUMENT', `${what} must be a whole number of at least ${min}; got "${v.slice(0, 40)}".`);
  return n;
}

type Values = Record<string, unknown>;

/** How many local workers --workers asks for (undefined: the option is not given). */
export function localWorkers(values: Values): number | undefined {
  const n = whole(values.workers as string | undefined, '--workers', 1);
  const most = Math.max(8, 2 * availableParallelism());
  if (n !== undefined && n > most) {
    throw new GraftError('BAD_ARGUMENT', `--workers ${n} is more than this machine can run: each worker is a process with its own copy of the model; at most ${most} here (${availableParallelism()} cores).`, {
      fix: `Use --workers ${availableParallelism()} or fewer on this machine; more machines join with --rank, --world-size and --master.` });
  }
  if (n !== undefined && [values.rank, values['world-size'], values.master].some((v) => v !== undefined)) {
    throw new GraftError('BAD_ARGUMENT', '--workers starts workers on this machine; --rank, --world-size and --master make this process one worker of a run across machines. Give one or the other.', {
      fix: 'On one machine: graft train ... --workers 2. On several: graft train ... --rank R --world-size W --master HOST:PORT on each.' });
  }
  return n;
}

/**
 * This process's place in a run across machines, from the flags or torchrun's environment
 * variables (flags win); undefined when neither is given.
 */
export function joinOptions(values: Values, env: NodeJS.ProcessEnv = process.env): DistOptions | undefined {
  const given = values.rank !== undefined || values['world-size'] !== undefined || values.master !== undefined;
  const fromEnv = !given && env.WORLD_SIZE !== undefined;
  if (!given && !fromEnv) {
    if (values['dist-timeout'] !== undefined) throw new GraftError('BAD_ARGUMENT', '--dist-timeout applies to a data-parallel run; none was asked for.', { fix: 'Add --workers N, or --rank, --world-size and --master; or leave --dist-timeout out.' });
    return undefined;
  }
  const rank = whole(given ? values.rank as string | undefined : env.RANK, given ? '--rank' : 'RANK', 0);
  const worldSize = whole(given ? values['world-size'] as string | undefined : env.WORLD_SIZE, given ? '--world-size' : 'WORLD_SIZE', 1);
  const master = given ? values.master as string | undefined : env.MASTER_ADDR !== undefined ? `${env.MASTER_ADDR}:${env.MASTER_PORT ?? '29500'}` : undefined;
  const missing = [rank === undefined && (given ? '--rank' : 'RANK'), worldSize === undefined && (given ? '--world-size' : 'WORLD_SIZE'), master === undefined && (given ? '--master' : 'MASTER_ADDR')].filter(Boolean);
  if (missing.length) {
    throw new GraftError('BAD_ARGUMENT', `A worker of a run across machines needs its rank, the world size and the master's address; ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing.`, {
      fix: 'Give --rank R --world-size W --master HOST:PORT (or RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, as torchrun sets them).' });
  }
  if (worldSize! > MAX_WORLD) throw new GraftError('BAD_ARGUMENT', `The world size must be at most ${MAX_WORLD}; got ${worldSize}.`);
  const timeout = values['dist-timeout'] === undefined ? undefined : Number(values['dist-timeout']);
  if (timeout !== undefined && !(timeout >= 1 && timeout <= 3600)) throw new GraftError('BAD_ARGUMENT', `--dist-timeout must be a number of seconds from 1 to 3600; got "${String(values['dist-timeout']).slice(0, 40)}".`);
  return { rank: rank!, worldSize: worldSize!, master: master!, timeoutSeconds: timeout };
}

/**
 * Runs `graft <args>` as `n` workers on this machine (each with its share of the cores), rank
 * 0's output as this command's; returns its exit code. They meet in a private rendezvous file
 * (no port open to the network). A worker that stops with an error ends the run: the others
 * stop on their own within the timeout, or are stopped after 30 s; if this process goes, they go.
 */
export async function launchWorkers(n: number, args: string[], out: string): Promise<number> {
  const meet = await mkdtemp(join(tmpdir(), 'graft-workers-'));
  const threads = process.env.GRAFT_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / n)));
  const script = process.argv[1];
  const children: ChildProcess[] = [];
  const ended: Array<{ code: number | null; signal: NodeJS.Signals | null } | undefined> = [];
  const said: string[][] = Array.from({ length: n }, () => []);
  let first: number | undefined;
  let signalled: NodeJS.Signals | undefined;
  const done = Array.from({ length: n }, (_, r) => new Promise<void>((resolve) => {
    // Each in its own process group: Ctrl-C reaches this process once, and it tells each worker once.
    const c = spawn(process.execPath, [...process.execArgv, script, ...args, '--rank', String(r), '--world-size', String(n), '--master', `file:${join(meet, 'rendezvous')}`], {
      stdio: r === 0 ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'ignore', 'pipe'], env: { ...process.env, GRAFT_THREADS: threads, GRAFT_LAUNCHER_PID: String(process.pid) }, detached: true,
    });
    children[r] = c;
    // The other workers' words are kept, and shown when they say something rank 0 could not.
    c.stderr?.on('data', (d: Buffer) => { said[r].push(d.toString()); });
    c.on('close', (code, signal) => {
      ended[r] = { code, signal };
      if (first === undefined && (code !== 0 || signal)) {
        first = r;
        // The others notice within their timeout; whoever is still there after 30 s is stopped.
        setTimeout(() => { for (const o of children) if (o.exitCode === null && o.signalCode === null) o.kill('SIGKILL'); }, 30000).unref();
      }
      resolve();
    });
  }));
  const forward = (sig: NodeJS.Signals, as: NodeJS.Signals = sig) => () => {
    signalled ??= sig;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(as);
  };
  const handlers: Array<[NodeJS.Signals, () => void]> = [['SIGINT', forward('SIGINT')], ['SIGTERM', forward('SIGTERM')], ['SIGHUP', forward('SIGHUP', 'SIGTERM')]];
  for (const [sig, h] of handlers) process.on(sig, h);
  try {
    await Promise.all(done);
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    await rm(meet, { recursive: true, force: true });
  }
  const zero = ended[0]!;
  const show = (r: number) => {
    for (const l of said[r].join('').split('\n')) if (l.trim()) process.stderr.write(`[worker ${r}] ${l}\n`);
  };
  if (first === undefined) return zero.code ?? 1;
  // Stopped by the user (Ctrl-C, a terminal closing): rank 0 has said where the run stands.
  if (signalled) return zero.code === 130 || signalled === 'SIGINT' ? 130 : 128 + (signalled === 'SIGHUP' ? 1 : 15);
  if (ended.every((e) => e?.code === 130)) return 130;
  const f = ended[first]!;
  // Rank 0 stopped first with its own error (options, data, ...): every worker says the same.
  if (first === 0 && !f.signal) return f.code ?? 1;
  show(first);
  const how = f.signal ? `was killed by ${f.signal}` : `stopped with exit code ${f.code}`;
  const checkpoints = join(out, 'checkpoints');
  const resumable = existsSync(checkpoints) && readdirSync(checkpoints).some((e) => /^ckpt-\d+$/.test(e));
  process.stderr.write(`graft train: worker ${first} (pid ${children[first].pid}) ${how}, so the run stopped on all ${n} workers.\n`
    + (resumable ? `  Resume with: graft train --resume ${out} --workers ${n} (or any number of workers)\n` : `  No checkpoint had been written (${checkpoints}); the run has to start again.\n`));
  return zero.code && zero.code !== 0 ? zero.code : 1;
}

/** A worker started by launchWorkers ends itself when the launcher is gone (SIGKILL, a crash). */
export function watchLauncher(): void {
  const launcher = Number(process.env.GRAFT_LAUNCHER_PID);
  if (!launcher) return;
  setInterval(() => { if (process.ppid !== launcher) process.kill(process.pid, 'SIGKILL'); }, 1000).unref();
}
