// Training pictures as SVG: loss and accuracy per epoch (train and validation) with the
// warm-up and fine-tune phases marked and the old-task accuracy when it was measured, and a
// confusion matrix.

import type { EpochRecord } from '../model/meta.js';
import { el, esc, svgDoc, text } from './svg.js';

interface Series {
  name: string;
  values: (number | undefined)[];
  color: string;
  dash?: string;
}

function lineChart(title: string, history: EpochRecord[], allSeries: Series[], yMax?: number): string {
  const W = 560, H = 300, L = 56, R = 150, T = 36, B = 44;
  // A series with no values (validation without validation data) gets no legend entry, but a note.
  const has = (s: Series) => s.values.some((v) => v !== undefined && Number.isFinite(v));
  const series = allSeries.filter(has);
  const missing = allSeries.filter((s) => !has(s) && s.name.startsWith('validation'));
  const n = history.length;
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
  const top = yMax ?? Math.max(1e-6, ...all) * 1.08;
  const xAt = (i: number) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const yAt = (v: number) => T + (1 - Math.min(v, top) / top) * (H - T - B);
  const parts: string[] = [text(L, 22, title, { 'font-size': 14, 'font-weight': 'bold' })];
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    parts.push(el('line', { x1: L, x2: W - R, y1: yAt(v), y2: yAt(v), stroke: '#e3e3e3' }));
    parts.push(text(L - 6, yAt(v) + 4, yMax === 1 ? `${Math.round(v * 100)}%` : v.toPrecision(2), { 'text-anchor': 'end', 'font-size': 10 }));
  }
  // phases: shaded spans with their names
  let start = 0;
  history.forEach((r, i) => {
    const end = i === n - 1 || history[i + 1].phase !== r.phase;
    if (!end) return;
    const x1 = start === 0 ? L : (xAt(start - 1) + xAt(start)) / 2;
    const x2 = i === n - 1 ? W - R : (xAt(i) + xAt(i + 1)) / 2;
    parts.push(el('rect', { x: x1, y: T, width: Math.max(1, x2 - x1), height: H - T - B, fill: r.phase === 'warm-up' ? '#dfeaf7' : '#fbe9d7', opacity: 0.6, class: 'phase', 'data-phase': r.phase }));
    const long = r.phase === 'warm-up' ? 'warm-up (body frozen)' : r.phase === 'fine-tune' ? 'fine-tune (body unfrozen)' : r.phase;
    parts.push(text((x1 + x2) / 2, T + 14, x2 - x1 >= 130 ? long : r.phase, { 'text-anchor': 'middle', 'font-size': 10, fill: '#444' }));
    start = i + 1;
  });
  // Epoch numbers: every one on short runs, about 12 on long ones (a warm-up to its plateau runs hundreds).
  const every = Math.max(1, Math.ceil(n / 12));
  history.forEach((r, i) => { if (i % every === 0 || i === n - 1) parts.push(text(xAt(i), H - B + 16, String(r.epoch), { 'text-anchor': 'middle', 'font-size': 10 })); });
  parts.push(text((L + W - R) / 2, H - 8, 'epoch (per phase)', { 'text-anchor': 'middle', 'font-size': 11 }));
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => (v === undefined || !Number.isFinite(v) ? undefined : `${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`));
    const d = pts.map((p, i) => (p ? `${i === 0 || !pts[i - 1] ? 'M' : 'L'}${p}` : '')).join(' ').trim();
    if (d) parts.push(el('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dash, class: 'series', 'data-series': s.name }));
    if (n <= 60) pts.forEach((p) => { if (p) { const [x, y] = p.split(','); parts.push(el('circle', { cx: x, cy: y, r: 2.5, fill: s.color })); } });
    const ly = T + 10 + k * 18;
    parts.push(el('line', { x1: W - R + 12, x2: W - R + 36, y1: ly, y2: ly, stroke: s.color, 'stroke-width': 2, 'stroke-dasharray': s.dash }));
    parts.push(text(W - R + 42, ly + 4, s.name, { 'font-size': 11 }));
  });
  if (missing.length) {
    const ly = T + 10 + series.length * 18;
    parts.push(text(W - R + 12, ly + 4, 'no validation data:', { 'font-size': 10, fill: '#555' }));
    parts.push(text(W - R + 12, ly + 18, 'choices by cross-validation', { 'font-size': 10, fill: '#555' }));
  }
  return svgDoc(W, H, parts.join(''), title);
}

export function lossChart(history: EpochRecord[]): string {
  return lineChart('Loss per epoch', history, [
    { name: 'train loss', values: history.map((r) => r.loss), color: '#1f77b4' },
    { name: 'validation loss', values: history.map((r) => r.valLoss), color: '#d62728', dash: '6 3' },
  ]);
}

export function accuracyChart(history: EpochRecord[]): string {
  const series: Series[] = [
    { name: 'train accuracy', values: history.map((r) => r.accuracy), color: '#1f77b4' },
    { name: 'validation accuracy', values: history.map((r) => r.valAccuracy), color: '#d62728', dash: '6 3' },
  ];
  if (history.some((r) => r.oldTaskAccuracy !== undefined)) series.push({ name: 'old task accuracy', values: history.map((r) => r.oldTaskAccuracy), color: '#7a3a5a', dash: '2 3' });
  return lineChart('Accuracy per epoch', history, series, 1);
}

export function confusionMatrixSvg(confusion: number[][], classNames: string[], title = 'Confusion matrix'): string {
  const k = classNames.length;
  const cell = Math.max(22, Math.min(48, Math.floor(420 / k)));
  const L = 90, T = 70;
  const W = L + k * cell + 30, H = T + k * cell + 40;
  const parts: string[] = [text(10, 20, title, { 'font-size': 14, 'font-weight': 'bold' }), text(L + (k * cell) / 2, 44, 'predicted class', { 'text-anchor': 'middle', 'font-size': 11 })];
  parts.push(text(14, T + (k * cell) / 2, 'true class', { 'font-size': 11, transform: `rotate(-90 14 ${T + (k * cell) / 2})`, 'text-anchor': 'middle' }));
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    parts.push(text(L - 6, T + i * cell + cell / 2 + 4, classNames[i], { 'text-anchor': 'end', 'font-size': 11 }));
    row.forEach((v, j) => {
      const share = v / total;
      const fill = i === j ? `rgb(${Math.round(255 - 180 * share)},${Math.round(255 - 60 * share)},${Math.round(255 - 180 * share)})` : `rgb(255,${Math.round(255 - 200 * share)},${Math.round(255 - 200 * share)})`;
      parts.push(el('g', { class: 'cell', 'data-true': classNames[i], 'data-predicted': classNames[j], 'data-count': v },
        el('title', {}, esc(`true ${classNames[i]}, predicted ${classNames[j]}: ${v} (${(100 * share).toFixed(1)}% of the row)`))
        + el('rect', { x: L + j * cell, y: T + i * cell, width: cell, height: cell, fill, stroke: '#fff' })
        + text(L + j * cell + cell / 2, T + i * cell + cell / 2 + 4, String(v), { 'text-anchor': 'middle', 'font-size': cell < 30 ? 9 : 11, 'font-weight': i === j ? 'bold' : 'normal' })));
    });
  });
  classNames.forEach((c, j) => parts.push(text(L + j * cell + cell / 2, T - 8, c, { 'text-anchor': 'middle', 'font-size': 11 })));
  return svgDoc(W, H, parts.join(''), title);
}
