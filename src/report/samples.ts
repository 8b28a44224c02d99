// A grid of sample predictions for image data: each image with its predicted and true class,
// framed green when right and red (with a cross) when wrong, so it reads without colour.

import type { Dataset } from '../data/dataset.js';
import { argmaxRow } from '../train/score.js';
import { pngDataUri } from './png.js';
import { el, esc, svgDoc, text } from './svg.js';

export interface SamplePrediction {
  index: number;
  predicted: string;
  probability: number;
  label: string;
}

/** Picks up to `n` samples, wrong ones first (they teach more), then right ones. */
export function pickSamples(probs: Float32Array, d: Dataset, classNames: string[], n = 24): SamplePrediction[] {
  const k = classNames.length;
  const all = Array.from(d.labels, (y, i) => {
    const best = argmaxRow(probs, i, k);
    return { index: i, predicted: classNames[best], probability: probs[i * k + best], label: d.classNames[y] };
  });
  const wrong = all.filter((s) => s.predicted !== s.label).slice(0, Math.ceil(n / 3));
  const right = all.filter((s) => s.predicted === s.label).slice(0, n - wrong.length);
  return [...wrong, ...right];
}

export function sampleGridSvg(d: Dataset, samples: SamplePrediction[], title = 'Sample predictions'): string {
  const [h, w, c] = d.sampleShape.length === 3 ? d.sampleShape : [d.sampleShape[0], d.sampleShape[1], 1];
  if (![1, 3, 4].includes(c)) return '';
  const size = 64, pad = 14, cols = 8;
  const cellW = size + pad, cellH = size + 40;
  const per = h * w * c;
  const parts: string[] = [text(8, 20, title, { 'font-size': 14, 'font-weight': 'bold' })];
  samples.forEach((s, i) => {
    const x = 8 + (i % cols) * cellW;
    const y = 34 + Math.floor(i / cols) * cellH;
    const ok = s.predicted === s.label;
    const uri = pngDataUri(w, h, c as 1 | 3 | 4, d.x.subarray(s.index * per, (s.index + 1) * per));
    parts.push(el('g', { class: 'sample', 'data-right': ok ? 'yes' : 'no' },
      el('title', {}, esc(`sample ${s.index}: predicted ${s.predicted} (${(100 * s.probability).toFixed(1)}%), true ${s.label}`))
      + el('image', { href: uri, x, y, width: size, height: size, style: 'image-rendering: pixelated' })
      + el('rect', { x: x - 1, y: y - 1, width: size + 2, height: size + 2, fill: 'none', stroke: ok ? '#2e7d32' : '#c62828', 'stroke-width': ok ? 2 : 3, 'stroke-dasharray': ok ? undefined : '4 2' })
      + text(x, y + size + 14, `${ok ? '✓' : '✗'} ${s.predicted} ${(100 * s.probability).toFixed(0)}%`, { 'font-size': 11, fill: ok ? '#1b5e20' : '#b71c1c', 'font-weight': 'bold' })
      + text(x, y + size + 28, `true: ${s.label}`, { 'font-size': 10, fill: '#444' })));
  });
  const rows = Math.ceil(samples.length / cols);
  return svgDoc(16 + cols * cellW, 40 + rows * cellH, parts.join(''), title);
}
