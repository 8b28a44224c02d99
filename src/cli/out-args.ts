// --out for the commands that write: checked before any work (checkOutDir), with what a kill
// left behind repaired and said, and the disk checked for room.

import { assertWritable } from '#internal/model/io.js';
import { lockOut } from '#internal/model/out-lock.js';
import { checkOutDir, checkOutFile, GRAFT_MARKER, type OutOptions, type Protected } from '#internal/model/out-dir.js';
import { str } from './args.js';

type Values = Record<string, unknown>;

export { GRAFT_MARKER };

/** The run's inputs as --out must not replace them: the base model's folder and every data path. */
export function inputsOf(values: Values): Protected[] {
  return [
    { spec: str(values.base), what: 'the base model (--base)', folderOfFile: true },
    ...(['data', 'val-data', 'test-data', 'old-data', 'labels'] as const).map((k) => ({ spec: str(values[k]), what: `the data (--${k})` })),
  ];
}

/** Checks --out (or `fallback` when it is not given) as a folder to write, and holds it for this run (out-lock.ts); returns it as given. */
export async function outFolder(values: Values, fallback: string | undefined, options: OutOptions = {}): Promise<string> {
  const given = values.out === undefined ? fallback : str(values.out);
  const { path, notes } = await checkOutDir(given, { protect: inputsOf(values), ...options });
  lockOut(path, given!, options.flag);
  for (const note of notes) process.stderr.write(`${note}\n`);
  await assertWritable(given!);
  return given!;
}

/** Checks an output file: an existing one only when Graft wrote it (its head holds `marker`). */
export async function outFile(given: string | undefined, options: { flag?: string; example: string; marker: string; protect?: Protected[] }): Promise<string> {
  await checkOutFile(given, { ...options, wroteIt: (head) => head.includes(options.marker) });
  return given!;
}
