// CSV of numeric feature columns plus one label column (by name; default "label", else the
// last column). Values are kept raw; standardisation statistics are computed on the
// training split only (standardization.ts) and saved with the model.

import { GraftError } from '../errors.js';
import { READ_LIMITS, readBounded } from './bounded-read.js';
import type { Dataset } from './dataset.js';

export interface CsvOptions {
  labelColumn?: string;
  /** Parse labels as features too (for predict: no label column needed). */
  labelsOptional?: boolean;
}

function splitLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') quoted = false; else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { out.push(cur.trim()); cur = ''; } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

export function parseCsv(text: string, where: string, options: CsvOptions = {}): Dataset & { featureNames: string[] } {
  // Line numbers as in the file, blank lines included.
  const numbered = text.split(/\r?\n/).map((l, i) => [l, i + 1] as const).filter(([l]) => l.trim() !== '');
  const lines = numbered.map(([l]) => l);
  if (lines.length < 2) throw new GraftError('BAD_DATA', `${where} has no data rows (a header line and at least one row are needed).`);
  const header = splitLine(lines[0]);
  const wanted = options.labelColumn;
  let labelIndex = wanted ? header.indexOf(wanted) : header.indexOf('label');
  if (wanted && labelIndex < 0) {
    throw new GraftError('BAD_DATA', `${where} has no column "${wanted}". Columns: ${header.join(', ')}.`, { fix: 'Name the label column with --label-column.' });
  }
  if (labelIndex < 0 && !options.labelsOptional) labelIndex = header.length - 1;
  const featureIdx = header.map((_, i) => i).filter((i) => i !== labelIndex);
  const rows = lines.length - 1;
  const x = new Float32Array(rows * featureIdx.length);
  const raw: string[] = [];
  for (let r = 0; r < rows; r++) {
    const cells = splitLine(lines[r + 1]);
    if (cells.length !== header.length) {
      throw new GraftError('BAD_DATA', `${where} line ${numbered[r + 1][1]} has ${cells.length} cells; the header has ${header.length}.`, { fix: 'Every row needs one value per column.' });
    }
    featureIdx.forEach((c, j) => {
      const v = Number(cells[c]);
      if (cells[c] === '' || !Number.isFinite(v)) {
        throw new GraftError('BAD_DATA', `${where} line ${numbered[r + 1][1]}, column ${c + 1} ("${header[c]}"): "${cells[c].slice(0, 40)}" is not a finite number.`, {
          fix: 'Feature columns must be numeric; name the label column with --label-column.' });
      }
      if (!Number.isFinite(Math.fround(v))) {
        throw new GraftError('BAD_DATA', `${where} line ${numbered[r + 1][1]}, column ${c + 1} ("${header[c]}"): ${cells[c]} is outside the float32 range (about +-3.4e38) that training uses.`, {
          fix: 'Rescale the column (e.g. take its logarithm) or fix the value.' });
      }
      x[r * featureIdx.length + j] = v;
    });
    raw.push(labelIndex >= 0 ? cells[labelIndex] : '');
  }
  const distinct = [...new Set(raw)];
  const numeric = distinct.every((v) => v !== '' && Number.isFinite(Number(v)));
  const classNames = distinct.sort(numeric ? (a, b) => Number(a) - Number(b) : undefined);
  const index = new Map(classNames.map((c, i) => [c, i]));
  return {
    x, sampleShape: [featureIdx.length], labels: Int32Array.from(raw, (v) => index.get(v)!), classNames, source: where,
    featureNames: featureIdx.map((i) => header[i]),
  };
}

export async function loadCsv(path: string, options: CsvOptions = {}): Promise<Dataset & { featureNames: string[] }> {
  let text: string;
  try {
    text = (await readBounded(path, { limit: READ_LIMITS.csv, what: 'The CSV file' })).toString('utf8');
  } catch (cause) {
    if (cause instanceof GraftError) throw cause;
    throw new GraftError('BAD_DATA', `Cannot read ${path}: ${errnoWords(cause)}.`, { fix: 'Check the path and its permissions.', cause });
  }
  return parseCsv(text, path, options);
}

/** A file-system error in words, without Node's stack or syscall noise. */
export function errnoWords(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : code === 'ENOTDIR' ? 'a part of the path is a file' : String(code ?? (e as Error).message);
}
