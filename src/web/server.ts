// graft serve: a local web page to pick a base model, see its diagram, choose the cut, define
// classes from images, train with live progress, predict and download the model. Listens on a
// loopback address only; guard.ts says who may drive it, schema.ts what a body may hold,
// catalog.ts which models it offers.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { accuracyChart, lossChart } from '#internal/report/charts.js';
import { diagramOfModel, renderDiagram } from '#internal/report/diagram.js';
import { GraftError } from 'graft';
import { inspectModel } from '#internal/model/inspect.js';
import { Catalog } from './catalog.js';
import { HttpError, isLoopbackHost, makeGuard, readBody } from './guard.js';
import { JobRunner, predictOne, type JobEvent } from './jobs.js';
import { APP_CSS, APP_JS, page } from './page.js';
import { parseJobRequest, parsePredictRequest } from './schema.js';
import { zip } from './zip.js';
import { projectRoute, takesFile } from './project-routes.js';
import { ProjectStore, projectsDir } from './projects.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  /** Largest request body accepted, in bytes. */
  maxBody?: number;
  /** Model folders offered besides the zoo (a model folder, or a folder of them). */
  models?: string[];
  /** How pixels become inputs for --models graphs without graft.json (unit, symmetric, imagenet, none). */
  preprocess?: string;
  /** Where projects live (default $XDG_DATA_HOME/graft/projects). */
  projects?: string;
}

export const SERVE_DEFAULTS = { port: 8421, host: '127.0.0.1', maxBody: 32 * 1024 * 1024, models: [] as string[] };

const CSP = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const limit = max >= 1048576 ? `${Math.round(max / 1048576)} MB` : `${Math.round(max / 1024)} KB`;
  const body = await readBody(req, max, () => new HttpError(413, max >= 1048576 ? `The upload is larger than ${limit}. Send fewer or smaller images.` : `The request body is larger than ${limit}, more than this request may hold (names are at most 100 characters).`, 'TOO_LARGE'));
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'The request body is not valid JSON.', 'BAD_JSON');
  }
}

const HEADERS = {
  'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': CSP,
  'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer', 'cross-origin-resource-policy': 'same-origin', 'cross-origin-opener-policy': 'same-origin',
};

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, ...HEADERS, ...extra });
  res.end(body);
}

const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#24527a"/><path d="M4 12V4h8" stroke="#93c47d" stroke-width="2" fill="none"/></svg>';

const inputSize = (model: { inputs: { shape: (number | null)[] }[] }) => (model.inputs[0].shape.slice(1) as number[]).reduce((a, b) => a * b, 1);

const json = (res: ServerResponse, status: number, body: unknown) => send(res, status, JSON.stringify(body), 'application/json');

export interface Served {
  url: string;
  token: string;
  /** The projects directory. */
  projects: string;
  runner: JobRunner;
  /** Stops listening, cancels every job and frees the cached models. */
  close: () => Promise<void>;
}

export async function startServer(options: ServeOptions = {}): Promise<Served> {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as ServeOptions;
  const o = { ...SERVE_DEFAULTS, ...given };
  if (!isLoopbackHost(o.host)) {
    throw new GraftError('BAD_ARGUMENT', `--host ${JSON.stringify(o.host)} is not a loopback address: the server has no login, so it listens on this machine only.`, { fix: 'Use 127.0.0.1 (the default), ::1 or localhost; to reach it from elsewhere, tunnel it (ssh -L).' });
  }
  const catalog = new Catalog();
  for (const dir of o.models) await catalog.add(dir, o.preprocess);
  const runner = new JobRunner(catalog);
  const store = new ProjectStore(projectsDir(o.projects));
  let port = 0;
  const guard = makeGuard(() => port, takesFile);
  const html = page(guard.token);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    guard.check(req, url);
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'GET' && url.pathname === '/') return send(res, 200, html, 'text/html; charset=utf-8');
    if (req.method === 'GET' && url.pathname === '/app.js') return send(res, 200, APP_JS, 'text/javascript; charset=utf-8');
    if (req.method === 'GET' && url.pathname === '/app.css') return send(res, 200, APP_CSS, 'text/css; charset=utf-8');
    if (req.method === 'GET' && url.pathname === '/favicon.ico') return send(res, 200, FAVICON, 'image/svg+xml');
    const reply = { json: (status: number, body: unknown) => json(res, status, body), send: (status: number, body: string | Buffer, type: string, extra?: Record<string, string>) => send(res, status, body, type, extra) };
    if (await projectRoute(req, url, reply, { store, catalog, runner, readJson: (max) => readJson(req, max) })) return;
    if (req.method === 'GET' && (url.pathname === '/api/zoo' || url.pathname === '/api/models')) {
      return json(res, 200, catalog.list().map((z) => ({ name: z.name, description: z.description })));
    }
    if (req.method === 'GET' && url.pathname === '/api/inspect') {
      const name = url.searchParams.get('model') ?? '';
      const cut = url.searchParams.get('cut') || undefined;
      if (cut && cut.length > 200) throw new HttpError(400, 'cut: must be a layer name of at most 200 characters.', 'BAD_REQUEST');
      const { model } = await catalog.get(name);
      const inspection = inspectModel(model, cut);
      const svg = renderDiagram(diagramOfModel(model, inspection.cut && { layer: inspection.cut.layer, removed: inspection.cut.removed }));
      return json(res, 200, { inspection, svg });
    }
    if (req.method === 'POST' && url.pathname === '/api/jobs') {
      const body = await readJson(req, o.maxBody);
      // The pixel count depends on the base; parseJobRequest checks the base before it asks.
      const base = body && typeof body === 'object' ? (body as { base?: unknown }).base : undefined;
      const size = typeof base === 'string' && catalog.names().includes(base) ? inputSize((await catalog.get(base)).model) : 0;
      const job = await runner.submit(parseJobRequest(body, catalog.names(), () => size));
      return json(res, 202, { id: job.id, status: job.status });
    }
    if (parts[0] === 'api' && parts[1] === 'jobs' && parts[2] && parts.length <= 4) {
      const job = runner.get(parts[2]);
      if (!job) throw new HttpError(404, 'No such job.', 'NOT_FOUND');
      const what = parts[3];
      if (req.method === 'GET' && !what) return json(res, 200, { id: job.id, status: job.status, ahead: runner.ahead(job), projectId: job.projectId ?? null, classNames: job.classNames, events: job.events.filter((e) => e.type !== 'batch') });
      if (req.method === 'GET' && what === 'events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', ...HEADERS, connection: 'keep-alive' });
        const write = (e: JobEvent) => res.write(`event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
        job.events.forEach(write);
        job.listeners.add(write);
        // A closed tab only stops listening; the job runs on.
        req.on('close', () => job.listeners.delete(write));
        return;
      }
      if (req.method === 'GET' && what === 'curves.svg') {
        const history = job.events.filter((e) => e.type === 'epoch').map((e) => e.data) as Parameters<typeof lossChart>[0];
        const which = url.searchParams.get('kind') === 'loss' ? lossChart(history) : accuracyChart(history);
        return send(res, 200, which, 'image/svg+xml');
      }
      if (req.method === 'POST' && what === 'cancel') {
        await readJson(req, 1024);
        runner.cancel(job.id);
        return json(res, 200, { id: job.id, status: job.status });
      }
      if (req.method === 'POST' && what === 'predict') {
        if (!job.model) throw new HttpError(409, `Job ${job.id} has no trained model (status: ${job.status}).`, 'NOT_READY');
        const body = parsePredictRequest(await readJson(req, o.maxBody), inputSize(job.model));
        return json(res, 200, { top: await predictOne(job, body.pixels, body.topK ?? 3) });
      }
      if (req.method === 'GET' && what === 'download') {
        if (!job.files) throw new HttpError(409, `Job ${job.id} has not finished (status: ${job.status}).`, 'NOT_READY');
        return send(res, 200, zip(job.files), 'application/zip', { 'content-disposition': `attachment; filename="graft-model-${job.id.slice(0, 8)}.zip"` });
      }
    }
    throw new HttpError(404, `Nothing at ${req.method} ${url.pathname.slice(0, 100)}.`, 'NOT_FOUND');
  }

  const server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      // Only our own words go back: never an exception's text, which may quote a file.
      const status = e instanceof HttpError ? e.status : e instanceof GraftError ? 400 : 500;
      const body = e instanceof HttpError ? { error: e.message, code: e.code }
        : e instanceof GraftError ? { error: e.detail, code: e.code, fix: e.fix }
        : { error: 'Internal error (see the server\'s terminal).', code: 'INTERNAL' };
      // A client that went away mid-upload is not the server's error: no stack for it.
      const gone = req.destroyed || (e as NodeJS.ErrnoException)?.code === 'ECONNRESET' || (e as Error)?.message === 'aborted';
      if (status === 500 && !gone) console.error(e);
      // An unread body is not read: the answer goes out, then the connection is closed.
      if (!req.complete) res.once('finish', () => req.destroy());
      if (!res.headersSent) send(res, status, JSON.stringify(body), 'application/json', req.complete ? {} : { connection: 'close' });
      else res.end();
    });
  });
  server.requestTimeout = 120_000;
  server.headersTimeout = 20_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE'
      ? new GraftError('BAD_ARGUMENT', `Port ${o.port} on ${o.host} is in use.`, { fix: 'Stop what uses it, or pass --port <another>.' })
      : e));
    server.listen(o.port, o.host, resolve);
  });
  port = (server.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}/`,
    token: guard.token,
    projects: store.root,
    runner,
    close: async () => {
      server.closeAllConnections();
      await Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), runner.stopAll()]);
      catalog.dispose();
    },
  };
}
