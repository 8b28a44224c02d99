// One run at a time per output folder. Two graft runs writing the same --out would replace each
// other's model and checkpoints mid-run, so the first one holds a lock on the folder's real path
// and a second is refused, naming the first. The lock is a small file of Graft's own, outside
// the user's folders (in the temp folder, one 0700 folder per user), removed when the process
// ends; one left by a process that is gone (killed) is taken over.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { GraftError } from '../errors.js';

interface Holder { pid: number; host: string; started: string; path: string; command: string }

const held = new Set<string>();
let hooked = false;

/** A live process that is a graft run (a reused pid of some other program does not count). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('graft');
  } catch {
    return true; // no /proc: trust the pid
  }
}

function lockFile(target: string): string {
  let user: string;
  try {
    user = String(userInfo().uid);
  } catch {
    user = 'user';
  }
  const dir = join(tmpdir(), `graft-${user}-locks`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${createHash('sha256').update(target).digest('hex').slice(0, 32)}.lock`);
}

function release(): void {
  for (const file of held) {
    try {
      const h = JSON.parse(readFileSync(file, 'utf8')) as Holder;
      if (h.pid === process.pid) unlinkSync(file);
    } catch {
      // already gone
    }
  }
  held.clear();
}

/**
 * Takes the lock on the output folder `target` (a real path) for this process, or throws
 * OUT_BUSY when another live graft process on this machine holds it. `given` and `flag` are
 * for the message.
 */
export function lockOut(target: string, given: string, flag = '--out'): void {
  const file = lockFile(target);
  if (held.has(file)) return;
  const me: Holder = { pid: process.pid, host: hostname(), started: new Date().toISOString(), path: target, command: `graft ${process.argv.slice(2).join(' ')}`.slice(0, 300) };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me), { flag: 'wx', mode: 0o600 });
      held.add(file);
      if (!hooked) {
        hooked = true;
        process.on('exit', release);
      }
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return; // no lock possible here (read-only temp): go on without one
    }
    let other: Holder | undefined;
    try {
      other = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    } catch {
      other = undefined; // being written this instant, or damaged
    }
    if (other && other.pid !== process.pid && alive(other.pid)) {
      throw new GraftError('OUT_BUSY', `${flag} ${JSON.stringify(given)} is being written by another graft run (process ${other.pid}, started ${other.started}: ${other.command}). Two runs on one folder would replace each other's model and checkpoints.`,
        { fix: `Wait for that run to end (or stop it), or pass another folder, e.g. ${flag} ${given.replace(/\/+$/, '')}-2.` });
    }
    if (!other && attempt === 0) continue; // give a writer its instant, then look again
    try {
      unlinkSync(file); // its process is gone: the lock is stale
    } catch {
      // another process took it over first; the next attempt sees its lock
    }
  }
}
