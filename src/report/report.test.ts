import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { accuracyChart, confusionMatrixSvg, lossChart } from './charts.js';
import { adoptModel } from '../model/batch-norm.js';
import { crc32, encodePng } from './png.js';
import { diagramOfGraft, diagramOfModel, groupKey, groupLayers, renderDiagram } from './diagram.js';
import { explainRun } from './words.js';
import { graft } from '../model/graft.js';
import { initBackend } from '../engine/backend.js';
import { inspectModel } from '../model/inspect.js';
import { renderReport } from './html.js';
import { sampleGridSvg } from './samples.js';
import { unfreeze } from '../model/freeze.js';
import { type EpochRecord, type GraftMeta } from '../model/meta.js';
import { textureImages, tinyCnn } from '../../test/fixtures.js';

await initBackend();

function assertXml(svg: string, what: string): void {
  const r = XMLValidator.validate(svg);
  assert.equal(r, true, `${what} is not well-formed XML: ${JSON.stringify(r)}`);
}

/** data-state of every block that contains the layer. */
function statesOf(svg: string): Map<string, string> {
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(svg);
  const out = new Map<string, string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) { node.forEach(walk); return; }
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (typeof n['data-layers'] === 'string') for (const l of (n['data-layers'] as string).split(' ')) out.set(l, n['data-state'] as string);
    Object.values(n).forEach(walk);
  };
  walk(doc);
  return out;
}

test('group keys collapse repeated blocks by name prefix', () => {
  assert.equal(groupKey('block_13_expand_relu'), 'block_13');
  assert.equal(groupKey('block1_conv'), 'block1');
  assert.equal(groupKey('head_output'), 'head');
  assert.equal(groupKey('fc'), 'fc');
  const layers = ['b1_conv', 'b1_bn', 'b2_conv', 'fc'].map((name) => ({ name, className: 'X', shape: [null, 1], params: 1, state: 'frozen' as const }));
  assert.deepEqual(groupLayers(layers).map((b) => [b.group, b.layers.length]), [['b1', 2], ['b2_conv', 1], ['fc', 1]]);
  assert.deepEqual(groupLayers(layers, ['b1']).map((b) => b.group), ['b1_conv', 'b1_bn', 'b2_conv', 'fc']);
});

test('the diagram of a cut marks kept layers, removed layers and the cut, and is valid XML', async () => {
  const model = await adoptModel(tinyCnn());
  const insp = inspectModel(model, 'r2');
  const svg = renderDiagram(diagramOfModel(model, { layer: 'r2', removed: insp.cut!.removed }, 'all'));
  assertXml(svg, 'cut diagram');
  const states = statesOf(svg);
  assert.deepEqual(['gap', 'fc', 'old_output'].map((l) => states.get(l)), ['removed', 'removed', 'removed']);
  assert.equal(states.get('c1'), 'trainable');
  assert.match(svg, /data-cut="r2"/);
  assert.match(svg, /INPUT NODE: image/);
});

test('the diagram of a graft marks exactly the frozen layers, and the new and old heads', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  unfreeze(g, { from: 'c2' });
  const svg = renderDiagram(diagramOfGraft(g, { oldHeadKept: true, expand: 'all' }));
  assertXml(svg, 'graft diagram');
  const s = statesOf(svg);
  assert.deepEqual(['c1', 'bn1'].map((l) => s.get(l)), ['frozen', 'frozen']);
  assert.deepEqual(['c2', 'bn2'].map((l) => s.get(l)), ['trainable', 'trainable']);
  assert.equal(s.get('old_output'), 'old-head');
  assert.equal(s.get('head_output'), 'new-head');
  const collapsed = renderDiagram(diagramOfGraft(g));
  assert.match(collapsed, /head: 3 layers/);
  assert.match(collapsed, /FROZEN/);
  assert.match(collapsed, /url\(#frozen\)/, 'frozen parts are hatched, not only coloured');
});

const history: EpochRecord[] = [
  { phase: 'warm-up', epoch: 1, loss: 1.2, accuracy: 0.5, valLoss: 1.1, valAccuracy: 0.55, peakLearningRate: 1e-3, seconds: 1, oldTaskAccuracy: 0.99 },
  { phase: 'warm-up', epoch: 2, loss: 0.8, accuracy: 0.7, valLoss: 0.9, valAccuracy: 0.68, peakLearningRate: 1e-3, seconds: 1, oldTaskAccuracy: 0.99 },
  { phase: 'fine-tune', epoch: 1, loss: 0.4, accuracy: 0.9, valLoss: 0.5, valAccuracy: 0.85, peakLearningRate: 5e-4, seconds: 2, oldTaskAccuracy: 0.9 },
];

test('curves mark both phases and draw the old-task line when measured; the confusion matrix has one cell per pair', () => {
  const acc = accuracyChart(history);
  assertXml(acc, 'accuracy chart');
  assert.match(acc, /data-phase="warm-up"/);
  assert.match(acc, /data-phase="fine-tune"/);
  assert.match(acc, /data-series="old task accuracy"/);
  assert.doesNotMatch(accuracyChart(history.map(({ oldTaskAccuracy, ...r }) => r)), /old task accuracy/);
  assertXml(lossChart(history), 'loss chart');
  assert.match(lossChart(history), />validation loss</);
  // No validation data (small data): no empty legend entry, a note instead; long runs get thinned axis labels.
  const noVal = Array.from({ length: 400 }, (_, i) => ({ phase: 'warm-up' as const, epoch: i + 1, loss: 1 / (i + 1), accuracy: 0.9, peakLearningRate: 1e-3, seconds: 0 }));
  const lc = lossChart(noVal);
  assertXml(lc, 'loss chart without validation');
  assert.doesNotMatch(lc, /validation loss/);
  assert.match(lc, /no validation data/);
  assert.ok((lc.match(/<text[^>]*>\d+<\/text>/g) ?? []).length <= 20, 'about 12 epoch labels, not 400');
  const cm = confusionMatrixSvg([[5, 1], [0, 7]], ['a & b', '<c>']);
  assertXml(cm, 'confusion matrix');
  assert.equal((cm.match(/class="cell"/g) ?? []).length, 4);
  assert.match(cm, /data-count="7"/);
});

test('PNG encoding round-trips pixels; the sample grid embeds images and marks wrong ones', () => {
  const pixels = Array.from({ length: 6 }, (_, i) => i * 40);
  const png = encodePng(3, 2, 1, pixels);
  assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
  const idat = png.indexOf('IDAT');
  const len = png.readUInt32BE(idat - 4);
  const raw = inflateSync(png.subarray(idat + 4, idat + 4 + len));
  assert.deepEqual([...raw], [0, 0, 40, 80, 0, 120, 160, 200]);
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const d = textureImages(2, 2);
  const svg = sampleGridSvg(d, [{ index: 0, predicted: 't1', probability: 0.7, label: 't0' }, { index: 1, predicted: 't1', probability: 0.9, label: 't1' }]);
  assertXml(svg, 'sample grid');
  assert.match(svg, /data-right="no"/);
  assert.match(svg, /data:image\/png;base64,/);
});

test('the HTML report is self-contained and explains the run in words', async () => {
  const g = graft(await adoptModel(tinyCnn()), { cut: 'r2', head: { numClasses: 3 } });
  const meta: GraftMeta = {
    format: 'graft/1', classNames: ['a', 'b', 'c'], preprocessing: { inputShape: [8, 8, 1] },
    base: { source: 'tiny', cut: { layer: 'r2', index: 7 }, removed: [{ name: 'gap', className: 'GlobalAveragePooling2D', shape: [null, 8], params: 0 }] },
    heads: [{ name: 'new', outputLayer: 'head_output', classNames: ['a', 'b', 'c'], layers: ['head_pool', 'head_dropout', 'head_output'] }],
    frozen: ['c1'], history, metrics: { validationAccuracy: 0.85 },
    recipe: { phases: [{ phase: 'warm-up', epochsRun: 2, stoppedEarly: false, seconds: 2, groupLearningRates: [{ layers: ['head_output'], lr: 1e-3 }] }] },
    versions: {}, createdAt: '',
  };
  const html = renderReport({ meta, diagram: diagramOfGraft(g) });
  assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=|@import|url\(http/i, 'no external resources');
  assert.match(html, /input node is still the original input/);
  assert.match(html, /Warm-up: the whole body was frozen/);
  assert.match(html, /validation accuracy 85.00%/);
  assert.equal(explainRun(meta).length >= 4, true);
});
