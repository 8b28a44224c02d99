// graft serve: a local web page to pick a base model, see its diagram, choose the cut, define
// classes from images, train with live progress, predict and download the model. Listens on
// 127.0.0.1 unless told otherwise; request bodies are size-limited.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  accuracyChart, diagramOfModel, GraftError, inspectModel, loadModel, lossChart, renderDiagram, ZOO,
} from '../index.js';
import { JobRunner, predictOne, type JobEvent, type JobRequest } from './jobs.js';
import { PAGE } from './page.js';
import { zip } from './zip.js';

export interface ServeOptions {
  port?: number;
  host?: string;
  /** Largest request body accepted, in bytes. */
  maxBody?: number;
}

export const SERVE_DEFAULTS = { port: 8421, host: '127.0.0.1', maxBody: 32 * 1024 * 1024 };

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new HttpError(413, `The upload is larger than ${Math.round(max / 1048576)} MB. Send fewer or smaller images.`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'The request body is not valid JSON.');
  }
}

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...extra });
  res.end(body);
}

const json = (res: ServerResponse, status: number, body: unknown) => send(res, status, JSON.stringify(body), 'application/json');

export async function startServer(options: ServeOptions = {}): Promise<{ url: string; close: () => Promise<void>; runner: JobRunner }> {
  const o = { ...SERVE_DEFAULTS, ...options };
  const runner = new JobRunner();

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'GET' && url.pathname === '/') return send(res, 200, PAGE, 'text/html; charset=utf-8');
    if (req.method === 'GET' && url.pathname === '/api/zoo') {
      return json(res, 200, Object.values(ZOO).map((z) => ({ name: z.name, description: z.description })));
    }
    if (req.method === 'GET' && url.pathname === '/api/inspect') {
      const { model } = await loadModel(url.searchParams.get('model') ?? '');
      const cut = url.searchParams.get('cut') || undefined;
      const inspection = inspectModel(model, cut);
      const svg = renderDiagram(diagramOfModel(model, inspection.cut && { layer: inspection.cut.layer, removed: inspection.cut.removed }));
      return json(res, 200, { inspection, svg });
    }
    if (req.method === 'POST' && url.pathname === '/api/jobs') {
      const job = await runner.submit((await readJson(req, o.maxBody)) as JobRequest);
      return json(res, 202, { id: job.id, status: job.status });
    }
    if (parts[0] === 'api' && parts[1] === 'jobs' && parts[2]) {
      const job = runner.get(parts[2]);
      if (!job) throw new HttpError(404, `No job ${parts[2]}.`);
      const what = parts[3];
      if (req.method === 'GET' && !what) return json(res, 200, { id: job.id, status: job.status, classNames: job.classNames, events: job.events.filter((e) => e.type !== 'batch') });
      if (req.method === 'GET' && what === 'events') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
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
      if (req.method === 'POST' && what === 'predict') {
        const body = (await readJson(req, o.maxBody)) as { pixels: number[]; topK?: number };
        return json(res, 200, { top: await predictOne(job, body.pixels, body.topK ?? 3) });
      }
      if (req.method === 'GET' && what === 'download') {
        if (!job.files) throw new HttpError(409, `Job ${job.id} has not finished (status: ${job.status}).`);
        return send(res, 200, zip(job.files), 'application/zip', { 'content-disposition': `attachment; filename="graft-model-${job.id.slice(0, 8)}.zip"` });
      }
    }
    throw new HttpError(404, `Nothing at ${req.method} ${url.pathname}.`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : e instanceof GraftError ? 400 : 500;
      if (!res.headersSent) json(res, status, { error: (e as Error).message, code: (e as GraftError).code });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, resolve);
  });
  const address = server.address() as AddressInfo;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${address.port}/`,
    runner,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
