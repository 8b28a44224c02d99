// Output paths: Graft only deletes or replaces what it wrote itself. Before any work, --out is
// checked against the current directory and its ancestors, the inputs of the run, and what is
// already there; a swap that a kill interrupted (see writeDirAtomic) is finished or undone.

import { createHash } from 'node:crypto';
import { lstat, open, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { GraftError } from '../errors.js';
import { zooEntry } from '../zoo/zoo.js';

/** An input of the run that --out must not replace: a base model, a data folder or file. */
export interface Protected {
  /** As the user gave it: a path, a zoo name, a URL or a data spec (non-paths are skipped). */
  spec: string | undefined;
  what: string;
  /** A file stands for its folder (a model.json or .h5 lives in the model's folder). */
  folderOfFile?: boolean;
}

export interface OutOptions {
  /** The option's name in messages (default --out). */
  flag?: string;
  /** What a folder Graft wrote holds: a model (graft.json) or a compare result (compare.json). */
  kind?: 'model' | 'compare';
  protect?: Protected[];
}

export interface CheckedOut {
  path: string;
  /** What was repaired from an earlier interrupted write, for the user. */
  notes: string[];
}

const EXAMPLE: Record<NonNullable<OutOptions['kind']>, string> = { model: 'graft-model', compare: 'graft-compare' };
/** What Graft writes into an output folder (saveModel, checkpoints, graft report's default page; graft compare). */
const OWN_ENTRIES: Record<NonNullable<OutOptions['kind']>, string[]> = {
  model: ['model.json', 'weights.bin', 'graft.json', 'checkpoints', 'report.html', 'model.onnx', 'model.fp16.onnx', 'model.int8.onnx', 'graph-model'],
  compare: ['compare.json', 'compare.svg', 'compare.html'],
};
/** Model-folder entries Graft may have written or not (impostors checks which). */
const OPTIONAL_MODEL_ENTRIES = ['report.html', 'model.onnx', 'model.fp16.onnx', 'model.int8.onnx', 'graph-model'];

/** In the head of every HTML page and SVG Graft writes (report/html.ts, report/svg.ts), so it knows its own files. */
export const GRAFT_MARKER = 'data-generator="graft"';

/** The first `n` bytes of a file, as text ('' when it cannot be read). */
async function headOf(path: string, n = 4096): Promise<string> {
  const f = await open(path, 'r').catch(() => undefined);
  if (!f) return '';
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await f.read(b, 0, n, 0);
    return b.subarray(0, bytesRead).toString('utf8');
  } finally {
    await f.close();
  }
}

/**
 * Of a Graft model folder's optional entries (an export, a report page, a GraphModel export),
 * those Graft did not write: a name Graft uses is not proof. An .onnx file is Graft's when
 * graft.json's exports record its sha256, report.html when it carries GRAFT_MARKER, graph-model/
 * when it holds only the model.json (convertedBy graft) and weights.bin graft export writes.
 */
async function impostors(dir: string, entries: string[]): Promise<{ foreign: string[]; exports: string[] }> {
  const foreign: string[] = [], exports: string[] = [];
  let recorded: { file?: unknown; sha256?: unknown }[] = [];
  try {
    const meta = JSON.parse(await readFile(join(dir, 'graft.json'), 'utf8')) as { exports?: unknown };
    if (Array.isArray(meta.exports)) recorded = meta.exports;
  } catch { /* no graft.json: only checkpoints, nothing optional is Graft's */ }
  for (const e of entries) {
    const path = join(dir, e);
    if (/\.onnx$/.test(e)) {
      const info = await lstat(path).catch(() => undefined);
      const sha = info?.isFile() ? createHash('sha256').update(await readFile(path)).digest('hex') : '';
      if (sha && recorded.some((r) => r.file === e && r.sha256 === sha)) exports.push(e); else foreign.push(e);
    } else if (e === 'report.html') {
      const info = await lstat(path).catch(() => undefined);
      if (!info?.isFile() || !(await headOf(path)).includes(GRAFT_MARKER)) foreign.push(e);
    } else if (e === 'graph-model') {
      const inside = await readdir(path).catch(() => undefined);
      let ours = !!inside && inside.every((n) => n === 'model.json' || n === 'weights.bin') && inside.includes('model.json');
      if (ours) {
        try {
          ours = (JSON.parse(await readFile(join(path, 'model.json'), 'utf8')) as { convertedBy?: unknown }).convertedBy === 'graft';
        } catch {
          ours = false;
        }
      }
      if (ours) exports.push(`${e}/`); else foreign.push(`${e}/`);
    }
  }
  return { foreign, exports };
}

function refuse(flag: string, given: string, why: string, fix: string): GraftError {
  return new GraftError('OUT_NOT_SAFE', `${flag} ${JSON.stringify(given)} ${why}`, { fix });
}

const within = (parent: string, child: string) => child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

/** The real path of `p`, resolving symlinks of the part that exists. */
async function real(p: string): Promise<string> {
  const abs = resolve(p);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(await real(parent), basename(abs));
  }
}

async function protectedPaths(list: Protected[]): Promise<{ path: string; what: string }[]> {
  const out: { path: string; what: string }[] = [];
  for (const p of list) {
    if (!p.spec || /^https?:\/\//i.test(p.spec)) continue;
    const zoo = zooEntry(p.spec);
    const path = zoo ? zoo.dir : p.spec;
    const info = await stat(path).catch(() => undefined);
    if (!info) continue;
    const r = await real(path);
    out.push({ path: info.isFile() && p.folderOfFile ? dirname(r) : r, what: p.what });
  }
  return out;
}

/** True when `dir` holds a graft.json that Graft wrote (format graft/1). */
export async function holdsGraftModel(dir: string): Promise<boolean> {
  try {
    const meta = JSON.parse(await readFile(join(dir, 'graft.json'), 'utf8')) as { format?: unknown };
    return meta?.format === 'graft/1';
  } catch {
    return false;
  }
}

async function ownedByGraft(dir: string, kind: NonNullable<OutOptions['kind']>, entries: string[]): Promise<boolean> {
  if (kind === 'compare') {
    try {
      const c = JSON.parse(await readFile(join(dir, 'compare.json'), 'utf8')) as { format?: unknown };
      return c?.format === 'graft-compare/1';
    } catch {
      return false;
    }
  }
  // A run stopped before its first save leaves only its checkpoints.
  return await holdsGraftModel(dir) || (entries.length === 1 && entries[0] === 'checkpoints');
}

/**
 * Checks `given` as an output folder before any work, and repairs a swap a kill interrupted.
 * Throws OUT_NOT_SAFE for an empty path, /, the current folder or an ancestor, an input of the
 * run (or a folder holding one), a file, and a non-empty folder Graft did not write.
 */
export async function checkOutDir(given: string | undefined, options: OutOptions = {}): Promise<CheckedOut> {
  const flag = options.flag ?? '--out';
  const kind = options.kind ?? 'model';
  const example = `${flag} ./${EXAMPLE[kind]}`;
  if (given === undefined || given.trim() === '') {
    throw refuse(flag, given ?? '', 'is empty: it would name the current folder, and saving there replaces every file in it.', `Pass a new folder, e.g. ${example}.`);
  }
  const link = await lstat(given).catch(() => undefined);
  if (link?.isSymbolicLink()) {
    throw refuse(flag, given, 'is a symbolic link: Graft would replace the link, which it did not make, with a folder.', `Pass the folder it points to, or a new folder, e.g. ${example}.`);
  }
  const target = await real(given);
  if (dirname(target) === target) throw refuse(flag, given, 'is the root of the file system.', `Pass a new folder, e.g. ${example}.`);
  const cwd = await real(process.cwd());
  if (within(target, cwd)) {
    throw refuse(flag, given, `is ${target === cwd ? 'the current folder' : `an ancestor of the current folder (${cwd})`}: saving there would replace every file in it.`, `Pass a new folder inside it, e.g. ${example}.`);
  }
  for (const p of await protectedPaths(options.protect ?? [])) {
    if (within(target, p.path)) {
      throw refuse(flag, given, `${target === p.path ? 'is' : 'holds'} ${p.what} at ${p.path}: saving there would replace it.`, `Pass a folder outside it, e.g. ${example}.`);
    }
    // Inside the data, a saved model would be read as a class folder; beside a base model's file, nothing reads it.
    if (p.what.startsWith('the data') && within(p.path, target)) {
      throw refuse(flag, given, `is inside ${p.what} at ${p.path}: the saved files would be read as part of it the next time it is used.`, `Pass a folder outside it, e.g. ${flag} ${join(dirname(p.path), EXAMPLE[kind])}.`);
    }
  }
  const notes = await repairSwap(target);
  await checkParents(flag, given, target);
  const info = await lstat(target).catch(() => undefined);
  if (info && !info.isDirectory()) {
    throw refuse(flag, given, `is ${info.isFile() ? 'a file' : 'not a folder'}; ${flag} names a folder to write ${kind === 'model' ? 'model.json, weights.bin and graft.json' : 'compare.json, compare.svg and compare.html'} into.`, `Pass a folder name, e.g. ${example}.`);
  }
  if (info) {
    const entries = await readdir(target).catch((cause) => {
      throw new GraftError('OUT_NOT_SAFE', `${flag} ${JSON.stringify(given)} cannot be listed (${(cause as NodeJS.ErrnoException).code}).`, { fix: `Pass a folder you can read and write, e.g. ${example}.` });
    });
    const foreign = entries.filter((e) => !OWN_ENTRIES[kind].includes(e));
    const owned = entries.length > 0 && (await ownedByGraft(target, kind, entries));
    if (owned && kind === 'model' && !foreign.length) {
      const optional = await impostors(target, entries.filter((e) => OPTIONAL_MODEL_ENTRIES.includes(e)));
      foreign.push(...optional.foreign);
      if (!optional.foreign.length && optional.exports.length) {
        notes.push(`${flag} ${given}: the earlier model's export${optional.exports.length === 1 ? '' : 's'} (${optional.exports.join(', ')}), of the old weights, will be removed when the new model is saved; graft export makes new ones`);
      }
    }
    if (entries.length && foreign.length && owned) {
      // A Graft folder the user has put their own files in: the swap would delete them.
      const shown = foreign.slice(0, 4).join(', ') + (foreign.length > 4 ? ', ...' : '');
      throw refuse(flag, given, `holds ${kind === 'model' ? 'a Graft model' : 'a Graft compare result'} and also ${foreign.length} entr${foreign.length === 1 ? 'y' : 'ies'} Graft did not write (${shown}): Graft replaces the whole folder, so they would be lost.`,
        `Move them out of ${given}, or pass a new folder, e.g. ${example}.`);
    }
    if (entries.length && !(await ownedByGraft(target, kind, entries))) {
      const shown = entries.slice(0, 4).join(', ') + (entries.length > 4 ? ', ...' : '');
      throw refuse(flag, given, `is a folder with ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} (${shown}) and no ${kind === 'model' ? 'Graft model (graft.json)' : 'Graft compare result (compare.json)'}: Graft replaces the whole folder, so it only does that to one it wrote.`,
        `Pass a new or empty folder, e.g. ${flag} ${join(dirname(given), EXAMPLE[kind])}, or the ${flag} of an earlier graft run.`);
    }
  }
  return { path: target, notes };
}

/** A component of the path above `target` that is a file makes every write fail: say so now. */
async function checkParents(flag: string, given: string, target: string): Promise<void> {
  for (let p = dirname(target); dirname(p) !== p; p = dirname(p)) {
    const info = await stat(p).catch(() => undefined);
    if (!info) continue;
    if (!info.isDirectory()) throw refuse(flag, given, `is inside ${p}, which is a file, not a folder.`, `Pass a path whose folders exist or can be made, e.g. ${flag} ./graft-model.`);
    return;
  }
}

/** Checks an output file: not empty, not a folder, and an existing file only when Graft wrote it. */
export async function checkOutFile(given: string | undefined, options: { flag?: string; example: string; wroteIt: (head: string) => boolean; protect?: Protected[] }): Promise<string> {
  const flag = options.flag ?? '--out';
  if (given === undefined || given.trim() === '') throw refuse(flag, given ?? '', 'is empty.', `Pass a file name, e.g. ${flag} ${options.example}.`);
  const link = await lstat(given).catch(() => undefined);
  if (link?.isSymbolicLink()) {
    throw refuse(flag, given, 'is a symbolic link: Graft would replace the link, which it did not make, with a file.', `Pass the file it points to, or a new file name, e.g. ${flag} ${options.example}.`);
  }
  const target = await real(given);
  for (const p of await protectedPaths(options.protect ?? [])) {
    if (within(p.path, target) || within(target, p.path)) throw refuse(flag, given, target === p.path ? `is ${p.what} at ${p.path}.` : `is inside ${p.what} at ${p.path}.`, `Pass a file name outside it, e.g. ${flag} ${options.example}.`);
  }
  await checkParents(flag, given, target);
  const info = await lstat(target).catch(() => undefined);
  if (!info) return target;
  if (!info.isFile()) throw refuse(flag, given, `is ${info.isDirectory() ? 'a folder' : 'not a regular file'}.`, `Pass a file name, e.g. ${flag} ${join(given, options.example)}.`);
  const head = info.size > 0 ? (await readFile(target)).subarray(0, 4096).toString('utf8') : '';
  if (info.size > 0 && !options.wroteIt(head)) {
    throw refuse(flag, given, 'is a file Graft did not write; Graft only replaces its own files.', `Pass a new file name, e.g. ${flag} ${options.example}.`);
  }
  return target;
}

const SWAP_MARKER = /^\.(.+)\.swap-(\d+)-(\d+)\.json$/;

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * writeDirAtomic swaps `.name.tmp-*` in and `.name.old-*` out with two renames. A kill in
 * between leaves no `name`; this puts the new one (complete before the first rename) in place,
 * or the old one back, and removes leftovers of dead processes.
 */
export async function repairSwap(target: string): Promise<string[]> {
  const parent = dirname(target);
  const name = basename(target);
  const entries = await readdir(parent).catch(() => [] as string[]);
  // Only a swap whose marker Graft wrote, by a process that is gone: a folder named like a
  // leftover without one is the user's, and is left alone.
  const markers = entries.map((e) => SWAP_MARKER.exec(e)).filter((m): m is RegExpExecArray => !!m && m[1] === name && !alive(Number(m[2])));
  if (!markers.length) return [];
  const notes: string[] = [];
  const exists = () => stat(target).then(() => true, () => false);
  const byStamp = new Map<string, { tmp?: string; old?: string; marker: string }>();
  for (const m of markers) {
    const marker = join(parent, m[0]);
    const rec = await readFile(marker, 'utf8').then((t) => JSON.parse(t) as { format?: string; target?: string; tmp?: string; old?: string }).catch(() => undefined);
    const stamp = `${m[2]}-${m[3]}`;
    // The marker must name this target and this stamp's own folder names, nothing else.
    if (rec?.format !== 'graft-swap/1' || rec.target !== name || rec.tmp !== `.${name}.tmp-${stamp}` || rec.old !== `.${name}.old-${stamp}`) continue;
    const has = (n: string) => entries.includes(n);
    byStamp.set(stamp, { marker, ...(has(rec.tmp) ? { tmp: join(parent, rec.tmp) } : {}), ...(has(rec.old) ? { old: join(parent, rec.old) } : {}) });
  }
  for (const { tmp, old, marker } of byStamp.values()) {
    if (!tmp && !old) { await rm(marker, { force: true }); continue; }
    if (old && !(await exists())) {
      // The old folder was moved away, so the new one was complete: put it in place.
      if (tmp) {
        await rename(tmp, target);
        // Checkpoints are carried over from the old folder after the first rename.
        if (!(await stat(join(target, 'checkpoints')).catch(() => undefined))) await rename(join(old, 'checkpoints'), join(target, 'checkpoints')).catch(() => undefined);
        await rm(old, { recursive: true, force: true });
      } else await rename(old, target);
      await rm(marker, { force: true });
      notes.push(`${target}: an earlier run was stopped while replacing it; ${tmp ? 'its new contents were put in place' : 'the previous contents were put back'}.`);
      continue;
    }
    for (const p of [tmp, old]) if (p) await rm(p, { recursive: true, force: true });
    await rm(marker, { force: true });
    notes.push(`${target}: removed what an earlier stopped run left beside it (${[tmp, old].filter(Boolean).map((p) => basename(p!)).join(', ')}).`);
  }
  return notes;
}

/** Where a run that diverged or failed saves its partial model, leaving `out` as it was. */
export async function partialOut(out: string): Promise<string> {
  const sibling = `${out}.diverged`;
  const info = await lstat(sibling).catch(() => undefined);
  if (!info || (info.isDirectory() && await holdsGraftModel(sibling))) return sibling;
  return `${out}.diverged-${Date.now()}`;
}
