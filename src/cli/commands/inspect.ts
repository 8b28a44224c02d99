// graft inspect <model> [--cut <layer>]: the layer table, totals, input and output nodes;
// with --cut, what is kept and what is removed.

import { GRAFT_MARKER, outFile } from '../out-args.js';
import { downloadProgress } from '../download-progress.js';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { isOnnxPath } from '../external-body.js';
import { GraftError, graphModelJson, graphNodes, formatGraphNodes, readModelFiles, readOnnxGraph, formatOnnxGraph, diagramOfModel, formatInspection, inspectModel, loadModel, renderDiagram, writeFileAtomic, ZOO } from '../../index.js';
import { parse, str } from '../args.js';

export const usage = `graft inspect <model> [--cut <layer>] [--svg <file>] [--expand <groups>] [--json]

  <model>          a zoo name (${Object.keys(ZOO).join(', ')}), a model directory, a model.json path, an http(s) URL, or a
                   Keras .h5 / .keras file, or an .onnx file or tfjs GraphModel (their
                   nodes: the names --cut takes)
  --cut <layer>    show what a cut at this layer (name or index) keeps and removes
  --svg <file>     also draw the architecture: input node at the top, the cut, removed layers greyed
  --expand <list>  groups to draw layer by layer (comma-separated group names, or all)
  --json           print the inspection as one JSON object`;

export const summary = 'show a model\'s layers, parameters, input and output nodes, and what a cut keeps';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { cut: { type: 'string' }, svg: { type: 'string' }, expand: { type: 'string' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 1) { console.error(`graft inspect needs one model.\n\nUsage:\n${usage}`); return 2; }
  if (isOnnxPath(positionals[0])) {
    let bytes: Buffer;
    try { bytes = await readFile(positionals[0]); } catch { throw new GraftError('MODEL_NOT_FOUND', `No ONNX model at "${positionals[0]}".`, { fix: 'Check the path.' }); }
    const graph = readOnnxGraph(bytes, basename(positionals[0]));
    console.log(values.json ? JSON.stringify(graph, null, 2) : formatOnnxGraph(graph, positionals[0]));
    return 0;
  }
  const graphJson = await graphModelJson(positionals[0]);
  if (graphJson) {
    const nodes = graphNodes((await readModelFiles(graphJson)).artifacts.modelTopology);
    console.log(values.json ? JSON.stringify({ kind: 'tfjs-graph', nodes }, null, 2) : formatGraphNodes(nodes, positionals[0]));
    return 0;
  }
  const { model } = await loadModel(positionals[0], { onDownload: downloadProgress(Boolean(values.json)) });
  const report = inspectModel(model, str(values.cut));
  console.log(values.json ? JSON.stringify(report, null, 2) : formatInspection(report));
  const svgPath = values.svg === undefined ? undefined : await outFile(str(values.svg), { flag: '--svg', example: 'model.svg', marker: GRAFT_MARKER });
  if (svgPath !== undefined) {
    const expand = str(values.expand) === 'all' ? 'all' : str(values.expand)?.split(',');
    const svg = renderDiagram(diagramOfModel(model, report.cut && { layer: report.cut.layer, removed: report.cut.removed }, expand));
    await writeFileAtomic(svgPath, svg);
    if (!values.json) console.log(`\nwrote the diagram to ${svgPath}`);
  }
  return 0;
}
