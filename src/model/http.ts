// Bounded HTTP(S) reads for models given by URL: a connect timeout, an idle timeout, a floor
// on the transfer rate (a server dribbling a byte a second is cut off), a total timeout, a
// redirect limit and a size limit. Every failure is a NETWORK, TIMEOUT or TOO_LARGE
// GraftError within seconds.

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { open, stat } from 'node:fs/promises';
import { GraftError } from '../errors.js';

const envMs = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

/** Defaults; GRAFT_HTTP_CONNECT_MS, GRAFT_HTTP_IDLE_MS, GRAFT_HTTP_TOTAL_MS and GRAFT_HTTP_MIN_RATE (bytes/s) override them. */
export function httpLimits() {
  return {
    connectMs: envMs('GRAFT_HTTP_CONNECT_MS', 10_000),
    idleMs: envMs('GRAFT_HTTP_IDLE_MS', 10_000),
    totalMs: envMs('GRAFT_HTTP_TOTAL_MS', 15 * 60_000),
    /** Over each window of idleMs, at least this many bytes per second must arrive. */
    minRate: envMs('GRAFT_HTTP_MIN_RATE', 1024),
    maxRedirects: 5,
  };
}

export interface GetOptions {
  maxBytes: number;
  /** Called as bytes arrive, for progress on large downloads. */
  onProgress?: (received: number, total: number | undefined) => void;
  /** Ask for the bytes from this offset on (HTTP Range); a 206 answer is then accepted. */
  rangeFrom?: number;
  /** Hand each chunk over as it arrives instead of keeping the body. */
  onChunk?: (chunk: Buffer) => void;
}

/** GETs `url`; resolves with the body, or undefined for 404 when `missingOk`. */
export async function httpGet(url: string, options: GetOptions & { missingOk?: boolean }): Promise<Buffer | undefined> {
  const limits = httpLimits();
  const started = Date.now();
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await get(current, options, limits, started);
    if (res.redirect) {
      if (hop >= limits.maxRedirects) throw new GraftError('NETWORK', `${url} redirects more than ${limits.maxRedirects} times.`, { fix: 'Give the final URL of the model.' });
      current = res.redirect;
      continue;
    }
    if (res.status === 404 && options.missingOk) return undefined;
    if (res.status !== 200) throw new GraftError('NETWORK', `Fetching ${current} gave HTTP ${res.status}.`, { fix: 'Check the URL.' });
    return res.body;
  }
}

type Limits = ReturnType<typeof httpLimits>;

/**
 * Downloads `url` to the end of `file`, resuming from its current size (HTTP Range) when the
 * server allows it; a server that answers 200 to a range sends the whole file, which replaces
 * what was there. Returns the bytes written in all.
 */
export async function httpDownload(url: string, file: string, options: { maxBytes: number; onProgress?: (received: number, total: number | undefined) => void }): Promise<number> {
  const have = await stat(file).then((s) => s.size, () => 0);
  const limits = httpLimits();
  const started = Date.now();
  let current = url;
  for (let hop = 0; ; hop++) {
    // Not 'a': on Linux a file opened for append ignores write positions, so a whole file sent
    // after a truncate landed after the old bytes (a mirror that ignores Range corrupted it).
    const fh = await open(file, have ? 'r+' : 'w');
    let offset = have;
    let wrote = 0;
    // One file operation after another, in the order they were asked for: the thread pool runs
    // them in parallel otherwise, and a write could land before the truncate that precedes it.
    let chain: Promise<unknown> = Promise.resolve();
    const inOrder = (op: () => Promise<unknown>) => { chain = chain.then(op); };
    try {
      const res = await get(current, {
        maxBytes: options.maxBytes, rangeFrom: have || undefined,
        onChunk: (c) => { const at = offset + wrote; inOrder(() => fh.write(c, 0, c.length, at)); wrote += c.length; },
        onProgress: options.onProgress && ((r, t) => options.onProgress!(offset + r, t === undefined ? undefined : offset + t)),
      }, limits, started, (status, range) => {
        // 200 to a range request: the whole file comes; start the file over.
        if (status === 200 && have) { offset = 0; inOrder(() => fh.truncate(0)); }
        // 206 must be the rest from where the file ends, or the bytes would go in the wrong place.
        if (status === 206 && !range.startsWith(`bytes ${have}-`)) {
          inOrder(() => fh.truncate(0));
          return new GraftError('NETWORK', `${current} answered the request for the bytes from ${have} on with another part (${range || 'no Content-Range'}); the partial file was emptied.`, { fix: 'Run again: the download starts over.' });
        }
        return undefined;
      });
      await chain;
      if (res.redirect) {
        if (hop >= limits.maxRedirects) throw new GraftError('NETWORK', `${url} redirects more than ${limits.maxRedirects} times.`, { fix: 'Give the final URL of the model.' });
        current = res.redirect;
        continue;
      }
      if (res.status === 416 && have) return have;
      if (res.status !== 200 && res.status !== 206) throw new GraftError('NETWORK', `Fetching ${current} gave HTTP ${res.status}.`, { fix: 'Check the URL.' });
      return offset + wrote;
    } finally {
      await chain.catch(() => undefined);
      await fh.close();
    }
  }
}

function get(url: string, o: GetOptions, l: Limits, started: number, onStatus?: (status: number, contentRange: string) => GraftError | undefined): Promise<{ status: number; body?: Buffer; redirect?: string }> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GraftError('NETWORK', `${JSON.stringify(url.slice(0, 200))} is not a URL.`, { fix: 'Give an http:// or https:// URL.' });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new GraftError('NETWORK', `${url} is not http or https.`, { fix: 'Give an http:// or https:// URL.' });
  }
  return new Promise((resolve, reject) => {
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const fail = (e: GraftError) => {
      if (done) return;
      done = true;
      timers.forEach(clearTimeout);
      req.destroy();
      reject(e);
    };
    const timeout = (what: string, fix = 'Check the URL and the network, or try again later.') => fail(new GraftError('TIMEOUT', `${url}: ${what}.`, { fix }));
    const headers: Record<string, string> = { 'user-agent': 'graft', accept: '*/*' };
    if (o.rangeFrom) headers.range = `bytes=${o.rangeFrom}-`;
    const req = (parsed.protocol === 'https:' ? httpsRequest : httpRequest)(parsed, { method: 'GET', headers });
    timers.push(setTimeout(() => timeout(`no connection within ${l.connectMs / 1000} s`), l.connectMs));
    timers.push(setTimeout(() => timeout(`the download took longer than ${l.totalMs / 1000} s`), Math.max(1, l.totalMs - (Date.now() - started))));
    req.on('socket', (socket) => {
      socket.setTimeout(l.idleMs, () => timeout(`nothing arrived for ${l.idleMs / 1000} s`));
      socket.once(parsed.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(timers[0]));
      if (!socket.connecting) clearTimeout(timers[0]);
    });
    req.on('error', (e: NodeJS.ErrnoException) => fail(new GraftError('NETWORK', `Could not fetch ${url}: ${e.code ?? e.message}.`, { fix: 'Check the URL and the network.', cause: e })));
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        done = true;
        timers.forEach(clearTimeout);
        req.destroy();
        return resolve({ status, redirect: new URL(res.headers.location, url).href });
      }
      if (status !== 200 && !(status === 206 && o.rangeFrom)) {
        res.resume();
        done = true;
        timers.forEach(clearTimeout);
        req.destroy();
        return resolve({ status });
      }
      const refused = onStatus?.(status, String(res.headers['content-range'] ?? ''));
      if (refused) return fail(refused);
      const declared = Number(res.headers['content-length']);
      const tooLarge = (n: number) => new GraftError('TOO_LARGE', `${url} is ${n} bytes or more; Graft reads at most ${o.maxBytes} bytes for it.`, { fix: 'Check that the URL is the model file.' });
      if (Number.isFinite(declared) && declared > o.maxBytes) return fail(tooLarge(declared));
      const chunks: Buffer[] = [];
      let received = 0;
      let windowStart = Date.now();
      let windowBytes = 0;
      // The rate floor: checked once per idle window.
      const rate = setInterval(() => {
        const secs = (Date.now() - windowStart) / 1000;
        if (windowBytes / secs < l.minRate) timeout(`it sent ${Math.round(windowBytes / secs)} bytes/s over ${secs.toFixed(0)} s, below the floor of ${l.minRate} bytes/s`);
        windowStart = Date.now();
        windowBytes = 0;
      }, l.idleMs);
      timers.push(rate as unknown as NodeJS.Timeout);
      res.on('data', (c: Buffer) => {
        received += c.length;
        windowBytes += c.length;
        if (received > o.maxBytes) return fail(tooLarge(received));
        if (o.onChunk) o.onChunk(c);
        else chunks.push(c);
        o.onProgress?.(received, Number.isFinite(declared) ? declared : undefined);
      });
      res.on('error', (e) => fail(new GraftError('NETWORK', `The download of ${url} broke off: ${e.message}.`, { fix: 'Try again.', cause: e })));
      res.on('end', () => {
        if (done) return;
        if (!res.complete) return fail(new GraftError('NETWORK', `The download of ${url} broke off after ${received} bytes.`, { fix: 'Try again.' }));
        done = true;
        timers.forEach(clearTimeout);
        clearInterval(rate);
        resolve({ status, body: Buffer.concat(chunks) });
      });
    });
    req.end();
  });
}
