// One entry point for the data a user names on the command line: `mnist-train:5-9`,
// a CSV file, or an IDX images file (labels beside it or given).

import { GraftError } from '../errors.js';
import { loadCsv } from './csv.js';
import type { Dataset } from './dataset.js';
import { loadIdxDataset } from './idx.js';
import { loadMnistSpec } from './mnist.js';

export interface DataOptions {
  labels?: string;
  labelColumn?: string;
}

export async function loadData(spec: string, options: DataOptions = {}): Promise<Dataset> {
  const mnist = await loadMnistSpec(spec);
  if (mnist) return mnist;
  if (/\.csv$/i.test(spec)) return loadCsv(spec, { labelColumn: options.labelColumn });
  if (/idx\d?-ubyte$|\.idx$/i.test(spec) || options.labels) return loadIdxDataset(spec, options.labels);
  throw new GraftError('BAD_DATA', `Cannot tell what kind of data "${spec}" is.`, {
    fix: 'Give mnist-train:<digits>, mnist-test:<digits>, a .csv file, or an IDX images file (with --labels).' });
}

/**
 * Re-indexes a dataset's labels to a model's class names (evaluation data may list the
 * classes in another order, or only some of them).
 */
export function alignClasses(d: Dataset, classNames: string[]): Dataset {
  const unknown = d.classNames.filter((c) => !classNames.includes(c));
  if (unknown.length) {
    throw new GraftError('CLASS_MISMATCH', `${d.source} has classes the model does not know: ${unknown.join(', ')}. The model's classes: ${classNames.join(', ')}.`, {
      fix: 'Evaluate on data of the classes the model was trained on.' });
  }
  const map = d.classNames.map((c) => classNames.indexOf(c));
  return { ...d, labels: Int32Array.from(d.labels, (y) => map[y]), classNames };
}
