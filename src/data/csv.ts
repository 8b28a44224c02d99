// CSV of numeric feature columns plus one label column (by name; default "label", else the
// last column). Values are kept raw; standardisation statistics are computed on the
// training split only (standardization.ts) and saved with the model.

import { readFile } from 'node:fs/promises';
import { GraftError } from '../errors.js';
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
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
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
      throw new GraftError('BAD_DATA', `${where} line ${r + 2} has ${cells.length} cells; the header has ${header.length}.`, { fix: 'Every row needs one value per column.' });
    }
    featureIdx.forEach((c, j) => {
      const v = Number(cells[c]);
      if (cells[c] === '' || !Number.isFinite(v)) {
        throw new GraftError('BAD_DATA', `${where} line ${r + 2}, column "${header[c]}": "${cells[c]}" is not a number.`, {
          fix: 'Feature columns must be numeric; name the label column with --label-column.' });
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
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new GraftError('BAD_DATA', `Cannot read ${path}: ${(cause as Error).message}.`, { fix: 'Check the path.', cause });
  }
  return parseCsv(text, path, options);
}
