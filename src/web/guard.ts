// Who may drive `graft serve`: only its user's own page. Every request's Host must be the served
// loopback host and port (no DNS rebinding); an Origin, when sent, must be the page's own; API
// requests without one (curl, scripts) carry the per-start token the page embeds; bodies are
// JSON with Content-Type application/json, or a file's bytes as application/octet-stream on
// the upload paths (no form or text/plain posts from other pages).

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code = 'HTTP') {
    super(message);
  }
}

/** Loopback names a browser may use for this server. */
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'];

export const isLoopbackHost = (host: string) => ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(host);

export interface Guard {
  token: string;
  check(req: IncomingMessage, url: URL): void;
}

export function makeGuard(port: () => number, takesFile: (pathname: string) => boolean = () => false): Guard {
  const token = randomBytes(24).toString('base64url');
  const tokenBytes = Buffer.from(token);
  const hosts = () => new Set(LOOPBACK.map((h) => `${h}:${port()}`));
  const tokenOk = (given: string | undefined) => {
    const b = Buffer.from(given ?? '');
    return b.length === tokenBytes.length && timingSafeEqual(b, tokenBytes);
  };
  return {
    token,
    check(req, url) {
      const host = String(req.headers.host ?? '').toLowerCase();
      if (!hosts().has(host)) {
        throw new HttpError(421, `This server answers only to ${[...hosts()].join(', ')}; the request was for "${host.slice(0, 100)}".`, 'BAD_HOST');
      }
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${host}`) {
        throw new HttpError(403, 'Requests from other web pages are refused.', 'BAD_ORIGIN');
      }
      if (!['GET', 'HEAD', 'POST'].includes(req.method ?? '')) throw new HttpError(405, `${String(req.method).slice(0, 20)} is not used here: read with GET, change with POST.`, 'BAD_METHOD');
      const api = url.pathname.startsWith('/api/');
      const changes = req.method !== 'GET' && req.method !== 'HEAD';
      if ((api || changes) && origin === undefined) {
        const given = (req.headers['x-graft-token'] as string | undefined) ?? url.searchParams.get('token') ?? undefined;
        if (!tokenOk(given)) {
          throw new HttpError(403, 'API requests need the page\'s Origin or the token of this start (the page holds it in <meta name="graft-token">; send it as the X-Graft-Token header).', 'NO_TOKEN');
        }
      }
      if (changes) {
        const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
        // A file upload is application/octet-stream: like JSON, no other page can send it without a preflight, which is never granted.
        const file = takesFile(url.pathname);
        if (file ? type !== 'application/octet-stream' : type !== 'application/json') {
          throw new HttpError(415, `Send ${file ? 'the file\'s bytes with Content-Type: application/octet-stream' : 'JSON with Content-Type: application/json'}; got "${type.slice(0, 60)}".`, 'BAD_CONTENT_TYPE');
        }
      }
    },
  };
}

/** A request's body, refused with `tooBig()` when it declares or sends more than `max` bytes (never read past that). */
export async function readBody(req: IncomingMessage, max: number, tooBig: () => HttpError): Promise<Buffer> {
  if (Number(req.headers['content-length'] ?? 0) > max) throw tooBig();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw tooBig();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
