// `graft report`: one self-contained HTML page (no external scripts, styles or fonts) with the
// diagram, the training curves, the confusion matrix, the forgetting and compare tables where
// present, sample predictions, and a plain-words account of what was done and why.

import type { GraftMeta } from '../model/meta.js';
import type { Evaluation } from '../train/score.js';
import type { ForgettingReport } from '../eval/forgetting.js';
import { accuracyChart, confusionMatrixSvg, lossChart } from './charts.js';
import type { DiagramSpec } from './diagram.js';
import { groupLayers, renderDiagram } from './diagram.js';
import { esc, fmtInt } from './svg.js';
import { explainRun } from './words.js';

export interface ReportInput {
  meta: GraftMeta;
  diagram: DiagramSpec;
  evaluation?: Evaluation & { on: string };
  samplesSvg?: string;
}

const pct = (v: number | null | undefined) => (typeof v === 'number' ? `${(100 * v).toFixed(2)}%` : '-');

const CSS = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1d;background:#fafafa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:16px}h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
figure{margin:0;overflow-x:auto;background:#fff;border:1px solid #e3e3e3;padding:8px}svg{max-width:100%;height:auto}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:12px}.row figure{flex:1 1 480px}details{background:#fff;border:1px solid #e3e3e3;margin:4px 0;padding:4px 8px}
summary{cursor:pointer}summary:focus,.block:focus{outline:3px solid #1a73e8}code{background:#eee;padding:0 3px}`;

function table(head: string[], rows: string[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function groupsSection(spec: DiagramSpec): string {
  const all = [...groupLayers(spec.body), ...groupLayers(spec.oldHead), ...groupLayers(spec.newHead)];
  return all.filter((b) => b.layers.length > 1).map((b) => `<details><summary>${esc(b.group)}: ${b.layers.length} layers, ${esc(b.state)}</summary>${table(['layer', 'class', 'output shape', 'params', 'state'],
    b.layers.map((l) => [l.name, l.className, `[${l.shape.slice(1).join(', ')}]`, fmtInt(l.params), l.state]))}</details>`).join('');
}

export function renderReport(r: ReportInput): string {
  const { meta } = r;
  const title = `Graft report: ${meta.base?.source ?? 'model'} → ${meta.classNames.join(', ')}`;
  const parts: string[] = [`<h1>${esc(title)}</h1>`, '<h2 id="what">What was done, and why</h2>', ...explainRun(meta).map((p) => `<p>${esc(p)}</p>`)];
  parts.push('<h2 id="diagram">The network</h2><p>From the input node at the top to the outputs at the bottom. Repeated layers are grouped; open a group below to see its layers. Frozen parts are hatched blue and labelled FROZEN; parts that train are solid and labelled TRAINS.</p>');
  parts.push(`<figure>${renderDiagram(r.diagram)}</figure>`, groupsSection(r.diagram));
  if (meta.history?.length) {
    parts.push('<h2 id="curves">Training curves</h2><div class="row">', `<figure>${lossChart(meta.history)}</figure>`, `<figure>${accuracyChart(meta.history)}</figure>`, '</div>');
    parts.push(table(['phase', 'epoch', 'loss', 'accuracy', 'val loss', 'val accuracy', 'old task', 'seconds'], meta.history.map((h) => [
      h.phase, String(h.epoch), h.loss.toFixed(4), pct(h.accuracy), h.valLoss?.toFixed(4) ?? '-', pct(h.valAccuracy), pct(h.oldTaskAccuracy), h.seconds.toFixed(1)])));
  }
  if (r.evaluation) {
    const e = r.evaluation;
    parts.push(`<h2 id="confusion">Confusion matrix</h2><p>On ${esc(e.on)}: accuracy ${pct(e.accuracy)} over ${e.count} samples.</p>`);
    parts.push(`<figure>${confusionMatrixSvg(e.confusion, e.classNames)}</figure>`);
    parts.push(table(['class', 'accuracy', 'samples'], e.perClass.map((p) => [p.className, pct(p.accuracy), String(p.count)])));
  }
  if (r.samplesSvg) parts.push('<h2 id="samples">Sample predictions</h2><p>Wrong predictions first (red, dashed, ✗), then right ones (green, ✓).</p>', `<figure>${r.samplesSvg}</figure>`);
  const f = meta.forgetting as ForgettingReport | undefined;
  if (f?.oldTask) {
    parts.push('<h2 id="forgetting">What the network forgot</h2>');
    const rows = [['old task accuracy', pct(f.oldTask.accuracyBefore), pct(f.oldTask.accuracyAfter)], ['old predictions kept', '100.00%', pct(f.oldTask.agreementAfter)]];
    if (f.newTask) rows.push(['new task accuracy', pct(f.newTask.accuracyBefore), pct(f.newTask.accuracyAfter)]);
    parts.push(table(['', 'before', 'after'], rows));
  }
  const compare = (meta as unknown as { compare?: { variants: { name: string; size: number; accuracyMean: number; accuracyStd: number; seconds: number; trainableParams: number }[]; recommendation: string } }).compare;
  if (compare) {
    parts.push('<h2 id="compare">Is transfer worth it here?</h2>', `<p>${esc(compare.recommendation)}</p>`);
    parts.push(table(['variant', 'labels/class', 'accuracy', '±', 'seconds', 'trainable params'], compare.variants.map((v) => [v.name, String(v.size), pct(v.accuracyMean), pct(v.accuracyStd), v.seconds.toFixed(1), fmtInt(v.trainableParams)])));
  }
  parts.push('<h2 id="details">Details</h2>', `<details><summary>Recipe and versions (graft.json)</summary><pre>${esc(JSON.stringify({ recipe: meta.recipe, preprocessing: meta.preprocessing, versions: meta.versions, createdAt: meta.createdAt }, null, 2))}</pre></details>`);
  return `<!doctype html><html lang="en" data-generator="graft"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body><main>${parts.join('\n')}</main></body></html>`;
}
