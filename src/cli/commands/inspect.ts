// graft inspect <model> [--cut <layer>]: the layer table, totals, input and output nodes;
// with --cut, what is kept and what is removed.

import { GRAFT_MARKER, outFile } from '../out-args.js';
import { downloadProgress } from '../download-progress.js';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { isOnnxPath } from '../external-body.js';
import { GraftError, loadModel } from 'graft';
import { graphModelJson, graphNodes, formatGraphNodes } from '#internal/model/graph-body.js';
import { readModelFiles, writeFileAtomic } from '#internal/model/io.js';
import { readOnnxGraph, formatOnnxGraph } from '#internal/model/onnx.js';
import { diagramOfModel, renderDiagram } from '#internal/report/diagram.js';
import { formatInspection, inspectModel } from '#internal/model/inspect.js';
import { ZOO } from '#internal/zoo/zoo.js';
import { parse, str } from '../args.js';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { OnnxUnsupported } from '#internal/model/onnx-layers.js';
import { fetchRemoteModel, remoteModel, REMOTE_MODELS } from '#internal/zoo/remote.js';

export const usage = `graft inspect <model> [--cut <layer>] [--svg <file>] [--expand <groups>] [--json]

  <model>          a zoo name (${Object.keys(ZOO).join(', ')}), a named model fetched on first use
                   (${REMOTE_MODELS.map((m) => m.name).join(', ')}), a model directory, a model.json path, an http(s) URL, or a
                   Keras .h5 / .keras file, or an .onnx file or tfjs GraphModel (their
                   nodes: the names --cut takes; then whether Graft rebuilds the graph as
                   layers that train, and with --cut or --svg the layers and the diagram)
  --cut <layer>    show what a cut at this layer (name or index) keeps and removes
  --svg <file>     also draw the architecture: input node at the top, the cut, removed layers greyed
  --expand <list>  groups to draw layer by layer (comma-separated group names, or all)
  --json           print the inspection as one JSON object`;

export const summary = 'show a model\'s layers, parameters, input and output nodes, and what a cut keeps';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { cut: { type: 'string' }, svg: { type: 'string' }, expand: { type: 'string' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  if (positionals.length !== 1) { console.error(`graft inspect needs one model.\n\nUsage:\n${usage}`); return 2; }
  const named = remoteModel(positionals[0]);
  const spec = named ? await fetchRemoteModel(named, { onProgress: downloadProgress(Boolean(values.json)), log: (l) => { if (!values.json) console.log(l); } }) : positionals[0];
  const graphJson = isOnnxPath(spec) ? undefined : await graphModelJson(spec);
  let model: LayersModel;
  let cut = str(values.cut);
  if (isOnnxPath(spec) || graphJson) {
    // The graph's own nodes (the names --cut takes), then whether and how it rebuilds as layers.
    let listing: unknown;
    if (graphJson) {
      const nodes = graphNodes((await readModelFiles(graphJson, { raw: true })).artifacts.modelTopology);
      listing = { kind: 'tfjs-graph', nodes };
      if (!values.json) console.log(formatGraphNodes(nodes, spec));
    } else {
      let bytes: Buffer;
      try { bytes = await readFile(spec); } catch { throw new GraftError('MODEL_NOT_FOUND', `No ONNX model at "${spec}".`, { fix: 'Check the path.' }); }
      const graph = readOnnxGraph(bytes, basename(spec));
      listing = { kind: 'onnx', ...graph };
      if (!values.json) console.log(formatOnnxGraph(graph, spec));
    }
    let rebuilt;
    let unsupported: string | undefined;
    try {
      rebuilt = await loadModel(spec, { cut });
    } catch (e) {
      if (!(e instanceof OnnxUnsupported)) throw e;
      unsupported = e.message;
    }
    const layers = rebuilt ? { layers: rebuilt.model.layers.length, upToCut: rebuilt.imported?.truncated ?? null } : null;
    if (values.json && !(rebuilt && (cut || values.svg))) { console.log(JSON.stringify({ ...(listing as object), rebuilt: layers, unsupported: unsupported ?? null }, null, 2)); return 0; }
    if (!values.json) {
      console.log('');
      if (rebuilt) console.log(`Graft rebuilds this graph as ${rebuilt.model.layers.length} tfjs layers${rebuilt.imported?.truncated ? ` up to the cut (the whole graph cannot be: its ${rebuilt.imported.truncated})` : ''}: it trains like any base (--unfreeze, --finetune-epochs), on the native engine.`);
      else console.log(`Graft cannot rebuild this graph as layers${cut ? ` up to ${cut}` : ''}: its ${unsupported}. Cut before that node to train the body (--cut), or train a head on its frozen features.`);
    }
    if (!rebuilt && values.svg !== undefined) {
      console.error(`graft inspect: no diagram written to ${str(values.svg)}: Graft draws the layers it rebuilds, and this graph does not rebuild${cut ? ` up to ${cut}` : ''} (${unsupported}).\n  fix: Give --cut at a node before that one.`);
      return 1;
    }
    if (!rebuilt || (!cut && values.svg === undefined)) return 0;
    model = rebuilt.model;
    if (cut !== undefined && !model.layers.some((l) => l.name === cut)) cut = rebuilt.imported?.layerOf.get(cut) ?? cut;
    if (!values.json) console.log('');
  } else {
    ({ model } = await loadModel(spec, { onDownload: downloadProgress(Boolean(values.json)) }));
  }
  const report = inspectModel(model, cut);
  console.log(values.json ? JSON.stringify(report, null, 2) : formatInspection(report));
  const svgPath = values.svg === undefined ? undefined : await outFile(str(values.svg), { flag: '--svg', example: 'model.svg', marker: GRAFT_MARKER });
  if (svgPath !== undefined) {
    const expand = str(values.expand) === 'all' ? 'all' : str(values.expand)?.split(',');
    const svg = renderDiagram(diagramOfModel(model, report.cut && { layer: report.cut.layer, removed: report.cut.removed }, expand));
    await writeFileAtomic(svgPath, svg, { replace: true });
    if (!values.json) console.log(`\nwrote the diagram to ${svgPath}`);
  }
  return 0;
}
