// The learning-rate finder's picture: smoothed loss against the learning rate (log scale),
// the lowest loss and the suggested rate marked.

import type { LrFindResult } from '../train/lr-find.js';
import { el, svgDoc, text } from './svg.js';

export function lrFinderChart(r: LrFindResult): string {
  const W = 560, H = 320, L = 60, R = 24, T = 40, B = 48;
  const lx = r.lrs.map((v) => Math.log10(v));
  const x0 = Math.floor(Math.min(...lx)), x1 = Math.ceil(Math.max(...lx));
  const finite = r.losses.filter(Number.isFinite);
  // The blown-up tail would flatten everything else: the y axis stops at 1.5x the first losses.
  const lo = Math.min(...finite), hi = Math.min(Math.max(...finite), 1.5 * (finite[0] ?? lo));
  const xAt = (v: number) => L + ((Math.log10(v) - x0) / Math.max(1e-9, x1 - x0)) * (W - L - R);
  const yAt = (v: number) => T + (1 - (Math.min(v, hi) - lo) / Math.max(1e-9, hi - lo)) * (H - T - B);
  const parts = [text(L, 22, 'Learning-rate finder: loss while the learning rate grows', { 'font-size': 14, 'font-weight': 'bold' })];
  for (let e = x0; e <= x1; e++) {
    parts.push(el('line', { x1: xAt(10 ** e), x2: xAt(10 ** e), y1: T, y2: H - B, stroke: '#e3e3e3' }));
    parts.push(text(xAt(10 ** e), H - B + 16, `1e${e}`, { 'text-anchor': 'middle', 'font-size': 10 }));
  }
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    parts.push(text(L - 6, yAt(v) + 4, v.toPrecision(3), { 'text-anchor': 'end', 'font-size': 10 }));
  }
  parts.push(text((L + W - R) / 2, H - 10, 'peak learning rate of the head (log scale)', { 'text-anchor': 'middle', 'font-size': 11 }));
  parts.push(text(14, (T + H - B) / 2, 'smoothed loss', { 'font-size': 11, transform: `rotate(-90 14 ${(T + H - B) / 2})`, 'text-anchor': 'middle' }));
  const d = r.lrs.map((v, i) => (Number.isFinite(r.losses[i]) ? `${i ? 'L' : 'M'}${xAt(v).toFixed(1)},${yAt(r.losses[i]).toFixed(1)}` : '')).join(' ');
  parts.push(el('path', { d, fill: 'none', stroke: '#1f77b4', 'stroke-width': 2, class: 'series', 'data-series': 'loss' }));
  const mark = (v: number, color: string, label: string, dy: number) => {
    parts.push(el('line', { x1: xAt(v), x2: xAt(v), y1: T, y2: H - B, stroke: color, 'stroke-width': 1.5, 'stroke-dasharray': '5 3' }));
    parts.push(text(xAt(v) + 4, T + dy, label, { 'font-size': 11, fill: color }));
  };
  mark(r.minimumAt, '#7f7f7f', `lowest loss at ${r.minimumAt.toExponential(1)}`, 12);
  mark(r.suggestion, '#d62728', `suggested ${r.suggestion.toExponential(1)}`, 28);
  return svgDoc(W, H, parts.join(''), 'Learning-rate finder');
}
