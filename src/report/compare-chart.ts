// The learning curve of `graft compare`: test accuracy against labels per class (log scale),
// one line per variant with its spread over seeds, so one sees where transfer stops paying.

import type { VariantResult } from '../eval/recommend.js';
import { el, esc, svgDoc, text } from './svg.js';

const COLORS: Record<string, string> = {
  scratch: '#d62728', knn: '#7f7f7f', 'linear-probe': '#9467bd', 'warm-up': '#1f77b4', 'full-recipe': '#2ca02c', 'lp-ft': '#ff7f0e',
};
const DASH: Record<string, string | undefined> = { scratch: '7 4', knn: '2 3', 'linear-probe': '5 2 1 2' };

export function learningCurveSvg(results: VariantResult[], title = 'Test accuracy by labels per class'): string {
  const W = 640, H = 340, L = 60, R = 150, T = 40, B = 50;
  const sizes = [...new Set(results.map((r) => r.size))].sort((a, b) => a - b);
  const names = [...new Set(results.map((r) => r.name))];
  const lo = Math.log10(sizes[0]);
  const hi = Math.log10(sizes[sizes.length - 1]);
  const xAt = (s: number) => (hi === lo ? (L + W - R) / 2 : L + ((Math.log10(s) - lo) / (hi - lo)) * (W - L - R));
  const minAcc = Math.max(0, Math.floor(Math.min(...results.map((r) => r.accuracyMean - r.accuracyStd)) * 10) / 10);
  const yAt = (a: number) => T + (1 - (a - minAcc) / (1 - minAcc || 1)) * (H - T - B);
  const parts: string[] = [text(L, 24, title, { 'font-size': 14, 'font-weight': 'bold' })];
  for (let k = 0; k <= 5; k++) {
    const a = minAcc + ((1 - minAcc) * k) / 5;
    parts.push(el('line', { x1: L, x2: W - R, y1: yAt(a), y2: yAt(a), stroke: '#e3e3e3' }));
    parts.push(text(L - 6, yAt(a) + 4, `${Math.round(a * 100)}%`, { 'text-anchor': 'end', 'font-size': 10 }));
  }
  for (const s of sizes) parts.push(text(xAt(s), H - B + 16, String(s), { 'text-anchor': 'middle', 'font-size': 10 }));
  parts.push(text((L + W - R) / 2, H - 12, 'labels per class (log scale)', { 'text-anchor': 'middle', 'font-size': 11 }));
  names.forEach((name, i) => {
    const rows = results.filter((r) => r.name === name).sort((a, b) => a.size - b.size);
    const color = COLORS[name] ?? '#333';
    const d = rows.map((r, j) => `${j ? 'L' : 'M'}${xAt(r.size).toFixed(1)},${yAt(r.accuracyMean).toFixed(1)}`).join(' ');
    const marks = rows.map((r) => el('line', { x1: xAt(r.size), x2: xAt(r.size), y1: yAt(Math.min(1, r.accuracyMean + r.accuracyStd)), y2: yAt(Math.max(minAcc, r.accuracyMean - r.accuracyStd)), stroke: color })
      + el('circle', { cx: xAt(r.size), cy: yAt(r.accuracyMean), r: 3, fill: color }, el('title', {}, esc(`${name}, ${r.size}/class: ${(100 * r.accuracyMean).toFixed(2)}% ± ${(100 * r.accuracyStd).toFixed(2)}`)))).join('');
    parts.push(el('g', { class: 'variant', 'data-variant': name }, el('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, 'stroke-dasharray': DASH[name] }) + marks));
    const ly = T + 8 + i * 18;
    parts.push(el('line', { x1: W - R + 12, x2: W - R + 36, y1: ly, y2: ly, stroke: color, 'stroke-width': 2, 'stroke-dasharray': DASH[name] }));
    parts.push(text(W - R + 42, ly + 4, name, { 'font-size': 11 }));
  });
  return svgDoc(W, H, parts.join(''), title);
}
