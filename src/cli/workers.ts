// graft train's data-parallel options: --workers N starts N local workers (this process only
// launches and watches them); --rank/--world-size/--master, or torchrun's RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT, make this process one worker of a run across machines.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { GraftError } from 'graft';
import type { DistOptions } from '#internal/engine/dist.js';

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
  const n = Number(v);
  if (!(v.trim() !== '' && Number.isInteger(n) && n >= min)) throw new GraftError('BAD_ARGUMENT', `${what} must be a whole number of at least ${min}; got "${v.slice(0, 40)}".`);
  return n;
}

type Values = Record<string, unknown>;

/** How many local workers --workers asks for (undefined: the option is not given). */
export function localWorkers(values: Values): number | undefined {
  const n = whole(values.workers as string | undefined, '--workers', 1);
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
  if (!given && !fromEnv) return undefined;
  const rank = whole(given ? values.rank as string | undefined : env.RANK, given ? '--rank' : 'RANK', 0);
  const worldSize = whole(given ? values['world-size'] as string | undefined : env.WORLD_SIZE, given ? '--world-size' : 'WORLD_SIZE', 1);
  const master = given ? values.master as string | undefined : env.MASTER_ADDR !== undefined ? `${env.MASTER_ADDR}:${env.MASTER_PORT ?? '29500'}` : undefined;
  const missing = [rank === undefined && (given ? '--rank' : 'RANK'), worldSize === undefined && (given ? '--world-size' : 'WORLD_SIZE'), master === undefined && (given ? '--master' : 'MASTER_ADDR')].filter(Boolean);
  if (missing.length) {
    throw new GraftError('BAD_ARGUMENT', `A worker of a run across machines needs its rank, the world size and the master's address; ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing.`, {
      fix: 'Give --rank R --world-size W --master HOST:PORT (or RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, as torchrun sets them).' });
  }
  const timeout = values['dist-timeout'] === undefined ? undefined : Number(values['dist-timeout']);
  if (timeout !== undefined && !(timeout >= 1 && timeout <= 3600)) throw new GraftError('BAD_ARGUMENT', `--dist-timeout must be a number of seconds from 1 to 3600; got "${String(values['dist-timeout']).slice(0, 40)}".`);
  return { rank: rank!, worldSize: worldSize!, master: master!, timeoutSeconds: timeout };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

/**
 * Runs `graft <args>` as `n` workers on this machine (each with its share of the cores), rank
 * 0's output as this command's; returns its exit code. A worker that stops with an error ends
 * the run: the others stop on their own within the timeout, or are stopped after 30 s.
 */
export async function launchWorkers(n: number, args: string[], out: string): Promise<number> {
  const port = await freePort();
  const threads = process.env.GRAFT_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / n)));
  const script = process.argv[1];
  const children: ChildProcess[] = [];
  const ended: Array<{ code: number | null; signal: NodeJS.Signals | null } | undefined> = [];
  let first: number | undefined;
  const done = Array.from({ length: n }, (_, r) => new Promise<void>((resolve) => {
    // Each in its own process group: Ctrl-C reaches this process once, and it tells each worker once.
    const c = spawn(process.execPath, [...process.execArgv, script, ...args, '--rank', String(r), '--world-size', String(n), '--master', `127.0.0.1:${port}`], {
      stdio: r === 0 ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'ignore', 'pipe'], env: { ...process.env, GRAFT_THREADS: threads }, detached: true,
    });
    children[r] = c;
    let tail = '';
    c.stderr?.on('data', (d: Buffer) => {
      const lines = (tail + d.toString()).split('\n');
      tail = lines.pop()!;
      for (const l of lines) if (l.trim()) process.stderr.write(`[worker ${r}] ${l}\n`);
    });
    c.on('close', (code, signal) => {
      if (tail.trim()) process.stderr.write(`[worker ${r}] ${tail}\n`);
      ended[r] = { code, signal };
      if (first === undefined && (code !== 0 || signal)) {
        first = r;
        // The others notice within their timeout; whoever is still there after 30 s is stopped.
        setTimeout(() => { for (const o of children) if (o.exitCode === null && o.signalCode === null) o.kill('SIGKILL'); }, 30000).unref();
      }
      resolve();
    });
  }));
  const forward = (sig: NodeJS.Signals) => () => { for (const c of children) if (c.exitCode === null) c.kill(sig); };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    await Promise.all(done);
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  const zero = ended[0]!;
  if (first === undefined) return zero.code ?? 1;
  // A stop request (Ctrl-C) ends every worker with 130 after rank 0's checkpoint: that is rank 0's story to tell.
  if (ended.every((e) => e?.code === 130)) return 130;
  const f = ended[first]!;
  const how = f.signal ? `was killed by ${f.signal}` : `stopped with exit code ${f.code}`;
  const checkpoints = join(out, 'checkpoints');
  const resumable = existsSync(checkpoints) && readdirSync(checkpoints).some((e) => /^ckpt-/.test(e) || e.endsWith('.json'));
  process.stderr.write(`graft train: worker ${first} (pid ${children[first].pid}) ${how}, so the run stopped on all ${n} workers.\n`
    + (resumable ? `  Resume with: graft train --resume ${out} --workers ${n} (or any number of workers)\n` : `  No checkpoint was written yet (${checkpoints}); start the run again.\n`));
  return zero.code && zero.code !== 0 ? zero.code : 1;
}
