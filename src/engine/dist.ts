// Data-parallel training across processes and machines, on torch.distributed's c10d with the
// Gloo backend (native/graft_native.cc, Group). Every worker runs the same training code on the
// same data with the same seed, so each draws the same shuffled order; each trains its shard of
// every global batch, gradients are summed across workers inside the native step, and the same
// AdamW update keeps the weights identical everywhere. BatchNorm that trains uses the global
// batch's statistics. The warm-up's body features are computed sharded and all-gathered. Rank 0
// alone writes files (the feature cache, checkpoints, the model); a checkpoint resumes with any
// number of workers, since it records the run in global batches.
//
// Only the native engine trains this way: a phase on tfjs refuses to run in a group.

import { GraftError } from '../errors.js';
import { nativeAddon, nativeStatus, type AddonGroup } from './native.js';

export interface DistOptions {
  rank: number;
  worldSize: number;
  /**
   * Where the workers meet: host:port of rank 0's TCPStore (libtorch serves it on every
   * interface, without authentication: a trusted network only), or file:<path>, a file every
   * worker can reach (c10d's FileStore; graft train --workers uses a private one).
   */
  master: string;
  /** How long a worker waits for the others at start and in each collective (default 30 s). */
  timeoutSeconds?: number;
  /** The address this worker's Gloo connections bind to (default: 127.0.0.1 for a loopback master, else the host's). */
  bind?: string;
}

export interface Distributed {
  readonly rank: number;
  readonly worldSize: number;
  readonly master: string;
  readonly timeoutSeconds: number;
  readonly group: AddonGroup;
}

let current: Distributed | undefined;

/** The run this process is a worker of, if any. */
export function distributed(): Distributed | undefined {
  return current;
}

/** The worker's rows [start, end) of n: contiguous, sizes differing by at most one. */
export function shardRange(n: number, rank: number, worldSize: number): [number, number] {
  return [Math.floor((rank * n) / worldSize), Math.floor(((rank + 1) * n) / worldSize)];
}

function parseMaster(master: string): { host: string; port: number; file?: string } {
  if (master.startsWith('file:')) {
    const file = master.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    if (!file.startsWith('/')) throw new GraftError('BAD_ARGUMENT', `The rendezvous file "${master.slice(0, 80)}" must be an absolute path (file:/shared/run.rendezvous).`);
    return { host: '127.0.0.1', port: 1, file };
  }
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(master);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || m[1].length > 253 || !(port >= 1 && port <= 65535)) {
    throw new GraftError('BAD_ARGUMENT', `The master address "${master.slice(0, 80)}" is not HOST:PORT.`, { fix: 'Give rank 0\'s address and a free port, e.g. --master 10.0.0.5:29500 (MASTER_ADDR and MASTER_PORT, as torchrun sets them).' });
  }
  return { host: m[1], port };
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/i;
/** The most workers a run takes (c10d's store and Gloo's full mesh grow with it). */
export const MAX_WORLD = 1024;

/**
 * Joins a data-parallel run: rank 0 serves the rendezvous at `master`, the others connect to it;
 * returns when every worker is there. Throws a GraftError that says what failed within the timeout.
 */
export function joinRun(o: DistOptions): Distributed {
  if (current) throw new GraftError('BAD_OPTION', `This process is rank ${current.rank} of a run already.`);
  if (!(Number.isInteger(o.worldSize) && o.worldSize >= 1)) throw new GraftError('BAD_ARGUMENT', `The world size must be a whole number of at least 1; got ${o.worldSize}.`);
  if (!(Number.isInteger(o.rank) && o.rank >= 0 && o.rank < o.worldSize)) {
    throw new GraftError('BAD_ARGUMENT', `The rank must be a whole number from 0 to ${o.worldSize - 1} (the world size less one); got ${o.rank}.`);
  }
  if (o.worldSize > MAX_WORLD) throw new GraftError('BAD_ARGUMENT', `The world size must be at most ${MAX_WORLD}; got ${o.worldSize}.`);
  const { host, port, file } = parseMaster(o.master);
  const timeoutSeconds = o.timeoutSeconds ?? 30;
  const a = nativeAddon();
  if (!a?.Group) {
    const off = !a && /turned off/.test(nativeStatus().reason ?? '');
    throw new GraftError('UNSUPPORTED', `Data-parallel training needs the native engine built with Gloo (${a ? 'this build has no Gloo: libgloo-dev was missing when it was built' : `the native engine is ${nativeStatus().reason}`}).`, {
      fix: off ? 'Leave out --engine tfjs and GRAFT_NATIVE=0 to train with workers, or train with one process.' : 'Run: bash scripts/install-system-deps.sh native && npm rebuild (or npm ci); graft doctor says what the engine has.' });
  }
  const bind = o.bind ?? (file || LOOPBACK.test(host) ? '127.0.0.1' : '');
  let group: AddonGroup;
  try {
    group = new a.Group({ rank: o.rank, worldSize: o.worldSize, host, port, timeoutMs: Math.round(timeoutSeconds * 1000), bind, ...(file ? { file } : {}) });
  } catch (e) {
    const m = String((e as Error).message).replace(/^graft-native group: /, '').split('\n')[0].slice(0, 300);
    const at = file ? `the rendezvous file ${file.slice(0, 200)}` : `${host.slice(0, 100)}:${port}`;
    // Workers that disagree on the world size get as far as Gloo's address exchange.
    const sizes = /sizeof\(impl_\)|address\.cc/.test(m);
    const what = sizes ? `Rank ${o.rank} met workers that expect another world size than ${o.worldSize} at ${at}`
      : o.rank === 0 ? `Rank 0 could not serve the rendezvous at ${at}, or not every one of the ${o.worldSize} workers joined in time (--dist-timeout ${timeoutSeconds} s)`
        : `Rank ${o.rank} could not reach the master at ${at} within ${timeoutSeconds} s`;
    throw new GraftError('WORKER_UNREACHABLE', `${what} (${m}).`, {
      fix: sizes ? 'Start every worker with the same --world-size (and each with its own --rank).'
        : o.rank === 0 ? 'Check that the port is free and that every worker was started with the same --world-size and --master, each with its own --rank.' : 'Check that rank 0 runs and listens at that address (and that no firewall is in the way), or raise --dist-timeout.' });
  }
  current = { rank: o.rank, worldSize: o.worldSize, master: file ? `file:${file}` : `${host}:${port}`, timeoutSeconds, group };
  return current;
}

/** Leaves the run (after the last collective); later training in this process is single-worker. */
export function leaveRun(): void {
  current?.group.close();
  current = undefined;
}

/**
 * Checks that every worker runs the same thing: each publishes `what` (version, options, a data
 * fingerprint) under `topic`, and each compares every other's with its own. A difference is refused
 * on every worker, with the rank and the first field that differs.
 */
export function agree(topic: string, what: Record<string, unknown>): void {
  const d = current;
  if (!d) return;
  const mine = JSON.stringify(what);
  d.group.set(`agree/${topic}/${d.rank}`, mine);
  for (let r = 0; r < d.worldSize; r++) {
    if (r === d.rank) continue;
    let theirs: string;
    try {
      theirs = d.group.get(`agree/${topic}/${r}`);
    } catch (e) {
      throw lostWorker(e, `waiting for rank ${r}'s ${topic}`);
    }
    if (theirs === mine) continue;
    const other = JSON.parse(theirs) as Record<string, unknown>;
    const key = [...new Set([...Object.keys(what), ...Object.keys(other)])].find((k) => JSON.stringify(what[k]) !== JSON.stringify(other[k]));
    const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 200));
    let a = other[key!], b = what[key!], where = String(key);
    if (Array.isArray(a) && Array.isArray(b)) {
      // Lists (the command line): the first place they differ.
      const [la, lb] = [a, b];
      const i = Array.from({ length: Math.max(la.length, lb.length) }, (_, k) => k).find((k) => JSON.stringify(la[k]) !== JSON.stringify(lb[k]))!;
      [a, b, where] = [la.slice(i, i + 3), lb.slice(i, i + 3), `${key} from the ${i + 1}th on`];
    }
    const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(a) && isObject(b)) {
      // Options by name: the first that differs.
      const [oa, ob] = [a, b];
      const k = [...new Set([...Object.keys(oa), ...Object.keys(ob)])].find((n) => JSON.stringify(oa[n]) !== JSON.stringify(ob[n]))!;
      [a, b, where] = [oa[k], ob[k], key === 'options' ? `--${k}` : `${key}.${k}`];
    }
    const shown = (v: unknown) => (Array.isArray(v) && !v.length ? 'nothing' : show(v));
    throw new GraftError('WORKERS_DIFFER', `Rank ${r} runs with a different ${topic} than rank ${d.rank}: ${where}: ${shown(a)} there, ${shown(b)} here.`, {
      fix: 'Start every worker with the same Graft version, the same options and the same data (only --rank differs).' });
  }
}

/** Runs one collective on the run's group; a failure becomes lostWorker's error. Alone: nothing. */
function collective(during: string, run: (group: AddonGroup) => void): void {
  const d = current;
  if (!d) return;
  try {
    run(d.group);
  } catch (e) {
    throw lostWorker(e, during);
  }
}

/** Sums (or max/min) `values` across workers, in place. */
export function allreduce(values: Float64Array | Float32Array, op: 'sum' | 'max' | 'min' = 'sum'): void {
  collective('an all-reduce', (g) => g.allreduce(values, op));
}

/** Whether any worker was asked to stop (each says `local`): they decide together. Alone: `local`. */
export function stopTogether(local: boolean): boolean {
  if (!current) return local;
  const v = new Float64Array([local ? 1 : 0]);
  allreduce(v);
  return v[0] > 0;
}

/** rank 0's `values` on every worker, in place. */
export function broadcast(values: Float32Array | Float64Array, root = 0): void {
  collective('a broadcast', (g) => g.broadcast(values, root));
}

/**
 * Every worker's rows put together: `local` holds this worker's rows shardRange(rows) of `per`
 * values each; the result holds all `rows`, in order.
 */
export function allgatherRows(local: Float32Array, rows: number, per: number): Float32Array {
  const d = current;
  if (!d) return local;
  const most = Math.ceil(rows / d.worldSize) * per;
  const padded = new Float32Array(most);
  padded.set(local.subarray(0, Math.min(local.length, most)));
  const all = new Float32Array(most * d.worldSize);
  collective('an all-gather', (g) => g.allgather(padded, all));
  const out = new Float32Array(rows * per);
  for (let r = 0; r < d.worldSize; r++) {
    const [s, e] = shardRange(rows, r, d.worldSize);
    out.set(all.subarray(r * most, r * most + (e - s) * per), s * per);
  }
  return out;
}

/** Whether an error is a collective that failed: another worker died, or stopped answering. */
export function isCollectiveFailure(e: unknown): boolean {
  return /graft-native (all-reduce|all-gather|broadcast|barrier|store|train step)|gloo|Connection (closed|reset)|timed? ?out|Socket Timeout|Broken pipe/i.test(String((e as Error)?.message ?? e))
    && Boolean(current);
}

/** A failed collective as an error that says what happened here and what to do. */
export function lostWorker(e: unknown, during: string): GraftError {
  const d = current;
  const m = String((e as Error)?.message ?? e).replace(/^graft-native [a-z -]+: /, '').split('\n')[0].slice(0, 300);
  return new GraftError('WORKER_LOST', `Rank ${d?.rank ?? '?'} of ${d?.worldSize ?? '?'}: another worker stopped or stopped answering during ${during} (${m}).`, {
    fix: 'The run stops on every worker (another worker\'s own message says more, if it could write one); resume it from its last checkpoint with graft train --resume and the run\'s --out folder, with any number of workers.', cause: e });
}
