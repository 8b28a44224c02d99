// The projects API of `graft serve` (projects.ts keeps them on disk). Images travel as their
// original files, one per request (application/octet-stream, the name in X-File-Name), and
// are decoded on the server with graft train's pipeline. Every id in a path is checked by the
// store; no path or URL from a request is ever read.

import { exportOnnx } from '#internal/export/export.js';
import type { IncomingMessage } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { accuracyChart, lossChart } from '#internal/report/charts.js';
import { decodeImage, imageInput, shortReason } from '#internal/data/images.js';
import { defaultCut } from '#internal/train/transfer.js';
import { diagramOfModel, diagramOfSaved, renderDiagram } from '#internal/report/diagram.js';
import { encodePng } from '#internal/report/png.js';
import { inspectModel } from '#internal/model/inspect.js';
import { predictAll, type LoadedModel } from 'graft';
import { renderReport } from '#internal/report/html.js';
import type { DiagramLayer } from '#internal/report/diagram.js';
import type { Catalog } from './catalog.js';
import { HttpError, readBody } from './guard.js';
import { topClasses, type JobRunner } from './jobs.js';
import { describe, object } from './schema.js';
import { displayName, MODEL_FILES, PROJECT_LIMITS, type Project, type ProjectStore, type Settings } from './projects.js';
import { zip } from './zip.js';

export interface Reply {
  json: (status: number, body: unknown) => void;
  send: (status: number, body: string | Buffer, type: string, extra?: Record<string, string>) => void;
}

const SETTING_RULES: Record<keyof Settings, (v: unknown) => string | undefined> = {
  warmupEpochs: (v) => wholeIn(v, 0, 50),
  finetuneEpochs: (v) => wholeIn(v, 0, 50),
  batchSize: (v) => wholeIn(v, 1, 512),
  lr: (v) => (typeof v === 'number' && v >= 1e-6 && v <= 1 ? undefined : 'a number from 0.000001 to 1'),
  unfreeze: (v) => (typeof v === 'string' && /^(all|none|gradual|[1-9]\d{0,3}|from:.{1,200})$/.test(v) ? undefined : 'all, none, gradual, a number of layers (1-9999) or from:<layer>'),
  augment: (v) => (typeof v === 'boolean' ? undefined : 'true or false'),
  findLr: (v) => (typeof v === 'boolean' ? undefined : 'true or false'),
  holdOut: (v) => (typeof v === 'number' && v >= 0 && v <= 0.5 ? undefined : 'a fraction from 0 to 0.5'),
  seed: (v) => wholeIn(v, 0, 2 ** 31 - 1),
};

function wholeIn(v: unknown, min: number, max: number): string | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `a whole number from ${min} to ${max}`;
}

/** Checks a settings object field by field; null clears a setting (back to the default). */
export function parseSettings(v: unknown): Partial<Record<keyof Settings, unknown>> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'settings: must be a JSON object.', 'BAD_REQUEST');
  const out: Partial<Record<keyof Settings, unknown>> = {};
  for (const [k, value] of Object.entries(v)) {
    // Own keys only: 'hasOwnProperty', 'valueOf' or '__proto__' found Object.prototype's functions and gave 500.
    const rule = Object.hasOwn(SETTING_RULES, k) ? SETTING_RULES[k as keyof Settings] : undefined;
    if (!rule) throw new HttpError(400, `settings: unknown field ${JSON.stringify(k.slice(0, 40))}; allowed: ${Object.keys(SETTING_RULES).join(', ')}.`, 'BAD_REQUEST');
    if (value === null) { out[k as keyof Settings] = null; continue; }
    const why = rule(value);
    if (why) throw new HttpError(400, `settings.${k}: must be ${why}; got ${describe(value)}.`, 'BAD_REQUEST');
    out[k as keyof Settings] = value;
  }
  return out;
}

/** What the page needs of a project, with its job's place in the queue. */
function view(p: Project, runner: JobRunner) {
  const active = runner.activeFor(p.id);
  return {
    id: p.id, name: p.name, created: p.created, updated: p.updated, base: p.base, cut: p.cut ?? null, settings: p.settings,
    classes: p.classes.map((c) => ({ id: c.id, name: c.name, samples: c.samples.map((s) => ({ id: s.id, name: s.name })) })),
    job: active ? { id: active.id, status: active.status, ahead: runner.ahead(active) } : p.job ?? null,
    result: p.result ?? null,
    stopped: active ? null : p.stopped ?? null,
  };
}

/** An uploaded file's bytes, up to PROJECT_LIMITS.fileBytes; `what` names it in the refusal. */
function readFileBody(req: IncomingMessage, what: string): Promise<Buffer> {
  const max = PROJECT_LIMITS.fileBytes;
  return readBody(req, max, () => new HttpError(413, `${what} is larger than ${Math.round(max / 1048576)} MB, the most one file may be.`, 'TOO_LARGE'));
}

/** X-File-Name, percent-encoded UTF-8 as the page sends it (raw UTF-8 also understood), made safe to show. */
function fileName(req: IncomingMessage): string {
  const raw = String(req.headers['x-file-name'] ?? '');
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw;
  }
  // Node reads header bytes as Latin-1: bytes of UTF-8 sent unencoded are put back together.
  if (/[\u0080-\u00ff]/.test(name) && !/[^\u0000-\u00ff]/.test(name)) {
    const utf8 = Buffer.from(name, 'latin1').toString('utf8');
    if (!utf8.includes('\ufffd')) name = utf8;
  }
  return displayName(name);
}

/** The image options graft train would use for a model: its input size and channels, its saved fit. */
function imageOptions(m: LoadedModel) {
  const image = imageInput(m.model.inputs[0].shape);
  if (!image) throw new HttpError(400, 'The model does not take images.', 'BAD_MODEL');
  return { ...image, fit: m.meta?.preprocessing?.imageFit };
}

/** Routes under /api/projects; true when it answered. */
export async function projectRoute(req: IncomingMessage, url: URL, reply: Reply, a: { store: ProjectStore; catalog: Catalog; runner: JobRunner; readJson: (max: number) => Promise<unknown> }): Promise<boolean> {
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts[0] !== 'api' || parts[1] !== 'projects') return false;
  const { store, catalog, runner } = a;
  const method = req.method;
  const [, , pid, what, sub, action] = parts;
  if (parts.length > 6) return false;
  if (!pid) {
    if (method === 'GET') { reply.json(200, await store.list()); return true; }
    if (method === 'POST') {
      const o = object(await a.readJson(4096), 'body', ['name', 'base']);
      const base = o.base === undefined ? defaultBase(catalog) : String(o.base);
      catalog.entry(base);
      const p = await store.create(o.name, base);
      reply.json(201, view(p, runner));
      return true;
    }
    return false;
  }
  if (!what) {
    if (method === 'GET') { reply.json(200, view(await store.get(pid), runner)); return true; }
    if (method === 'POST') {
      const o = object(await a.readJson(16384), 'body', ['name', 'base', 'cut', 'settings']);
      const settings = o.settings === undefined ? undefined : parseSettings(o.settings);
      if (o.base !== undefined) catalog.entry(String(o.base));
      if (o.cut !== undefined && o.cut !== null && (typeof o.cut !== 'string' || o.cut.length > 200)) throw new HttpError(400, 'cut: must be a layer name of at most 200 characters, or null for the suggested cut.', 'BAD_REQUEST');
      if (o.name !== undefined) await store.rename(pid, o.name);
      const p = await store.update(pid, (q) => {
        if (o.base !== undefined && o.base !== q.base) { q.base = String(o.base); q.cut = undefined; }
        if (o.cut !== undefined) q.cut = (o.cut as string | null) || undefined;
        if (settings) for (const [k, v] of Object.entries(settings)) {
          if (v === null) delete (q.settings as Record<string, unknown>)[k];
          else (q.settings as Record<string, unknown>)[k] = v;
        }
      });
      reply.json(200, view(p, runner));
      return true;
    }
    return false;
  }
  if (what === 'delete' && method === 'POST' && !sub) {
    object(await a.readJson(1024), 'body', []);
    const active = runner.activeFor(pid);
    if (active) throw new HttpError(409, 'This project is training; stop it before deleting the project.', 'BUSY');
    await store.delete(pid);
    reply.json(200, { deleted: pid });
    return true;
  }
  if (what === 'classes') {
    if (!sub && method === 'POST') {
      const o = object(await a.readJson(16384), 'body', ['name']);
      const { project, cls } = await store.addClass(pid, o.name);
      reply.json(201, { class: { id: cls.id, name: cls.name, samples: [] }, project: view(project, runner) });
      return true;
    }
    if (sub && !action && method === 'POST') {
      const o = object(await a.readJson(4096), 'body', ['name']);
      reply.json(200, view(await store.renameClass(pid, sub, o.name), runner));
      return true;
    }
    if (sub && action === 'delete' && method === 'POST') {
      object(await a.readJson(1024), 'body', []);
      reply.json(200, view(await store.deleteClass(pid, sub), runner));
      return true;
    }
    if (sub && action === 'samples' && method === 'POST') {
      const name = fileName(req);
      const bytes = await readFileBody(req, name ? `"${name}"` : 'The file');
      const s = await store.addSample(pid, sub, bytes, name);
      reply.json(201, { id: s.id, name: s.name });
      return true;
    }
    return false;
  }
  if (what === 'samples' && sub) {
    if (action === 'delete' && method === 'POST') {
      object(await a.readJson(1024), 'body', []);
      reply.json(200, view(await store.deleteSample(pid, sub), runner));
      return true;
    }
    if (action === 'thumb' && method === 'GET') {
      // What the model will see: the base's input size and channels, its fit, alpha over white.
      const p = await store.get(pid);
      const { path } = await store.samplePath(pid, sub);
      const o = imageOptions(await catalog.get(p.base));
      const pixels = await decodeImage(await readFile(path), o);
      reply.send(200, encodePng(o.size[1], o.size[0], o.channels, pixels), 'image/png', { 'cache-control': 'private, max-age=600' });
      return true;
    }
    return false;
  }
  if (what === 'curves.svg' && method === 'GET' && !sub) {
    const p = await store.get(pid);
    const history = (p.result?.history ?? []) as Parameters<typeof lossChart>[0];
    reply.send(200, url.searchParams.get('kind') === 'loss' ? lossChart(history) : accuracyChart(history), 'image/svg+xml');
    return true;
  }
  if (what === 'diagram' && method === 'GET' && !sub) {
    const p = await store.get(pid);
    const base = await catalog.get(p.base);
    const suggested = base.meta?.zoo?.suggestedCuts ?? [];
    const cut = p.cut ?? defaultCut(base);
    const inspection = inspectModel(base.model, cut);
    const spec = diagramOfModel(base.model, { layer: inspection.cut!.layer, removed: inspection.cut!.removed });
    const unfreeze = p.settings.unfreeze ?? 'all';
    const open = toUnfreeze(spec.body, unfreeze);
    spec.body = spec.body.map((l) => ({ ...l, state: open.has(l.name) ? 'trainable' : 'frozen' }));
    spec.newHead = headPreview(inspection.cut!.featureShape, Math.max(2, p.classes.length));
    spec.title = `${p.base} cut after "${inspection.cut!.layer}", new head of ${Math.max(2, p.classes.length)} classes; fine-tune unfreezes ${unfreeze}`;
    reply.json(200, { inspection, svg: renderDiagram(spec), cut: inspection.cut!.layer, chosen: p.cut ?? null, suggested });
    return true;
  }
  if (what === 'train' && method === 'POST' && !sub) {
    const o = object(await a.readJson(1024), 'body', ['resume']);
    if (o.resume !== undefined && typeof o.resume !== 'boolean') throw new HttpError(400, 'resume: must be true or false.', 'BAD_REQUEST');
    const job = await runner.submitProject(store, pid, o.resume === true);
    reply.json(202, { id: job.id, status: job.status, ahead: runner.ahead(job) });
    return true;
  }
  if (what === 'stop' && method === 'POST' && !sub) {
    object(await a.readJson(1024), 'body', []);
    const active = runner.activeFor(pid);
    if (!active) throw new HttpError(409, 'This project is not training.', 'NOT_RUNNING');
    runner.cancel(active.id);
    reply.json(200, { id: active.id, status: active.status });
    return true;
  }
  if (what === 'predict' && method === 'POST' && !sub) {
    const name = fileName(req) || 'the image';
    const bytes = await readFileBody(req, `"${name}"`);
    const m = await runner.projectModel(store, pid);
    const topK = Math.min(100, Math.max(1, Number(url.searchParams.get('top') ?? 3) || 3));
    let pixels: Uint8Array;
    try {
      pixels = await decodeImage(bytes, imageOptions(m));
    } catch (e) {
      throw new HttpError(400, `"${name}" could not be decoded as an image: ${shortReason(e)}.`, 'BAD_IMAGE');
    }
    const shape = m.model.inputs[0].shape.slice(1) as number[];
    const classNames = m.meta?.heads.find((h) => h.name === 'new')?.classNames ?? m.meta?.classNames ?? [];
    const { values } = await predictAll(m.model, { x: pixels, sampleShape: shape, labels: new Int32Array(1), classNames, source: name }, m.meta?.preprocessing);
    const top = topClasses(values, classNames, topK);
    reply.json(200, { top });
    return true;
  }
  if (what === 'download' && method === 'GET' && !sub) {
    const format = url.searchParams.get('format') ?? 'zip';
    const quantize = url.searchParams.get('quantize') ?? 'none';
    if (format !== 'zip' && format !== 'onnx') throw new HttpError(400, `format "${format}" is not offered: zip (tfjs model + graft.json) or onnx.`, 'BAD_ARGUMENT');
    if (quantize !== 'none' && quantize !== 'fp16') throw new HttpError(400, `quantize "${quantize}" is not offered here: none or fp16 (int8 is calibrated on your images by graft export --quantize int8).`, 'BAD_ARGUMENT');
    if (format === 'onnx') {
      const m = await runner.projectModel(store, pid);
      if (!m.meta) throw new HttpError(409, 'The model has no graft.json.', 'NOT_READY');
      const { bytes } = await exportOnnx(m.model, m.meta, { quantize });
      reply.send(200, Buffer.from(bytes), 'application/octet-stream', { 'content-disposition': `attachment; filename="graft-model-${pid.slice(0, 8)}${quantize === 'fp16' ? '.fp16' : ''}.onnx"` });
      return true;
    }
    await runner.projectModel(store, pid);
    const dir = store.modelDir(pid);
    const files = Object.fromEntries(await Promise.all(MODEL_FILES.map(async (f) => [f, await readFile(join(dir, f))])));
    reply.send(200, zip(files), 'application/zip', { 'content-disposition': `attachment; filename="graft-model-${pid.slice(0, 8)}.zip"` });
    return true;
  }
  if (what === 'report' && method === 'GET' && !sub) {
    const m = await runner.projectModel(store, pid);
    if (!m.meta) throw new HttpError(409, 'The model has no graft.json.', 'NOT_READY');
    const html = renderReport({ meta: m.meta, diagram: diagramOfSaved(m.model, m.meta), evaluation: m.meta.evaluation });
    // The report has no script; its styles are inline.
    reply.send(200, html, 'text/html; charset=utf-8', { 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'" });
    return true;
  }
  return false;
}

function defaultBase(catalog: Catalog): string {
  return catalog.names().includes('nsfwjs-mobilenet-v2') ? 'nsfwjs-mobilenet-v2' : catalog.names()[0];
}

/** Paths that take a file's bytes (application/octet-stream) instead of JSON. */
export function takesFile(pathname: string): boolean {
  return /^\/api\/projects\/[^/]+\/(classes\/[^/]+\/samples|predict)$/.test(pathname);
}

/** The body layers the fine-tune phase trains under an unfreeze setting (freeze.ts' rules, on the diagram's layers). */
function toUnfreeze(body: DiagramLayer[], spec: string): Set<string> {
  if (spec === 'none') return new Set();
  let from = 0;
  if (/^\d+$/.test(spec)) {
    const weighted = body.filter((l) => l.params > 0);
    const first = weighted[Math.max(0, weighted.length - Number(spec))];
    from = first ? body.indexOf(first) : body.length;
  } else if (spec.startsWith('from:')) {
    const i = body.findIndex((l) => l.name === spec.slice(5));
    from = i < 0 ? body.length : i;
  }
  return new Set(body.slice(from).map((l) => l.name));
}

/** The head graft train grafts by default (head.ts): average pooling of a feature map, dropout, a dense softmax layer. */
function headPreview(featureShape: (number | null)[], classes: number): DiagramLayer[] {
  const channels = Number(featureShape[featureShape.length - 1]);
  const out: DiagramLayer[] = [];
  if (featureShape.length > 2) out.push({ name: 'head_pool', className: 'GlobalAveragePooling2D', shape: [null, channels], params: 0, state: 'new-head' });
  out.push({ name: 'head_dropout', className: 'Dropout', shape: [null, channels], params: 0, state: 'new-head' });
  out.push({ name: 'head_output', className: 'Dense', shape: [null, classes], params: channels * classes + classes, state: 'new-head' });
  return out;
}
