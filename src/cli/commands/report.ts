// graft report <model-dir>: one self-contained HTML page about a trained model.

import { GRAFT_MARKER, outFile } from '../out-args.js';
import { alignClasses, loadData } from '#internal/data/load.js';
import { diagramOfSaved } from '#internal/report/diagram.js';
import { evaluate, GraftError, loadModel, predictAll } from 'graft';
import { pickSamples, sampleGridSvg } from '#internal/report/samples.js';
import { renderReport, type ReportInput } from '#internal/report/html.js';
import { selectHead } from '#internal/model/multi-head.js';
import { writeFileAtomic } from '#internal/model/io.js';
import { parse, str } from '../args.js';
import { DATA_ARGS } from '../data-args.js';
import { modelInputs, savedDataOptions } from '../external-body.js';

export const usage = `graft report <model-dir> [--data <data>] [--out <file.html>] [--expand <groups>]

  <model-dir>   a model written by graft train (with its graft.json)
  --data        test data for the confusion matrix and sample predictions: a folder of class
                sub-folders of images, mnist-test:<digits>, CSV or IDX (default: the
                evaluation saved by graft train --test-data, when there is one)
  --out         where to write the page (default <model-dir>/report.html)
  --expand      diagram groups to draw layer by layer (comma-separated, or all)

The page is one HTML file with everything inline: it works offline.`;

export const summary = 'one self-contained HTML page: diagram, curves, confusion matrix, forgetting, and what was done';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { data: { type: 'string' }, out: { type: 'string' }, expand: { type: 'string' }, ...DATA_ARGS }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 1) { console.error(`graft report needs one model directory.\n\nUsage:\n${usage}`); return 2; }
  const dir = positionals[0];
  const out = await outFile(str(values.out) ?? (values.out === undefined ? `${dir.replace(/\/$/, '')}/report.html` : undefined), {
    example: 'report.html', marker: GRAFT_MARKER });
  const { model, meta } = await loadModel(dir);
  if (!meta) throw new GraftError('BAD_MODEL', `${dir} has no graft.json, so there is nothing to report beyond its layers.`, { fix: 'Use graft inspect --svg for a plain model.' });
  const expand = str(values.expand) === 'all' ? 'all' : str(values.expand)?.split(',');
  const input: ReportInput = { meta, diagram: diagramOfSaved(model, meta, expand), evaluation: meta.evaluation };
  const dataSpec = str(values.data);
  if (dataSpec) {
    const head = selectHead(model, meta, 'new');
    const data = alignClasses(await loadData(dataSpec, { ...savedDataOptions(values, model, meta), classNames: head.classNames }), head.classNames);
    const inputs = await modelInputs(meta, data);
    input.evaluation = { ...(await evaluate(head.model, inputs.data, inputs.preprocessing)), on: data.source };
    if (data.sampleShape.length === 3) {
      const { values: probs } = await predictAll(head.model, inputs.data, inputs.preprocessing);
      input.samplesSvg = sampleGridSvg(data, pickSamples(probs, data, head.classNames));
    }
  }
  await writeFileAtomic(out, renderReport(input), { replace: true });
  console.log(values.json ? JSON.stringify({ out }) : `wrote ${out} (self-contained; open it in any browser, offline)`);
  return 0;
}
