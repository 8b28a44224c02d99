// One entry point for the data a user names on the command line: `mnist-train:5-9`,
// a folder of class sub-folders of images, an image file, a CSV file, or an IDX images file
// (labels beside it or given).

import { GraftError } from '../errors.js';
import { stat } from 'node:fs/promises';
import { loadCsv } from './csv.js';
import { isImageFile, loadImageFiles, loadImageFolder, type Fit } from './images.js';
import type { Dataset } from './dataset.js';
import { loadIdxDataset } from './idx.js';
import { loadMnistSpec } from './mnist.js';

export interface DataOptions {
  labels?: string;
  labelColumn?: string;
  /** For images: the model's input size and channels, and how to match the aspect ratio. */
  image?: { size: [number, number]; channels: 1 | 3; fit?: Fit; stream?: boolean | 'auto' };
  /** Class order to use for image folders (e.g. the model's classes). */
  classNames?: string[];
  onFile?: (done: number, total: number) => void;
  /** Image folders: decode at most n files per class, chosen with seed. */
  perClass?: { n: number; seed: number };
}

async function kind(spec: string): Promise<'dir' | 'file' | 'none'> {
  try { return (await stat(spec)).isDirectory() ? 'dir' : 'file'; } catch { return 'none'; }
}

export async function loadData(spec: string, options: DataOptions = {}): Promise<Dataset> {
  const mnist = await loadMnistSpec(spec);
  if (mnist) return mnist;
  const k = await kind(spec);
  if (k === 'dir' || (k === 'file' && isImageFile(spec))) {
    if (!options.image) {
      throw new GraftError('BAD_DATA', `${spec} holds images, but the model does not take images (its input is not [height, width, 1 or 3]).`, {
        fix: 'Use a base model with an image input, or give CSV/IDX data.' });
    }
    const o = { ...options.image, classNames: options.classNames, onFile: options.onFile, perClass: options.perClass };
    return k === 'dir' ? loadImageFolder(spec, o) : loadImageFiles([spec], o);
  }
  if (k === 'none' && !/^[a-z]+-[a-z]+:/.test(spec)) {
    throw new GraftError('BAD_DATA', `${spec} does not exist.`, { fix: 'Check the path.' });
  }
  if (/\.csv$/i.test(spec)) return loadCsv(spec, { labelColumn: options.labelColumn });
  if (/idx\d?-ubyte$|\.idx$/i.test(spec) || options.labels) return loadIdxDataset(spec, options.labels);
  throw new GraftError('BAD_DATA', `Cannot tell what kind of data "${spec}" is.`, {
    fix: 'Give mnist-train:<digits>, mnist-test:<digits>, a folder of class sub-folders of images, an image file, a .csv file, or an IDX images file (with --labels).' });
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
