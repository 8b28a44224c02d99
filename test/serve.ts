// `graft serve` started as a command (a child process), for tests through real HTTP.

import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { root } from './cli.js';

export interface Serving {
  url: string;
  port: number;
  token: string;
  child: ChildProcess;
  output: () => string;
  /** Sends SIGINT and resolves with the exit code and how long the process took to end. */
  stop: () => Promise<{ code: number | null; ms: number }>;
}

export async function serve(args: string[] = ['--port', '0'], env: Record<string, string> = {}): Promise<Serving> {
  const child = spawn(process.execPath, [join(root, 'bin', 'graft.js'), 'serve', ...args], { cwd: root, env: { ...process.env, ...env } });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`graft serve did not start: ${out}`)), 30000);
    const look = () => {
      const m = /serving at (http:\/\/\S+\/)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on('data', look);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`graft serve exited ${code}: ${out}`)); });
  });
  const page = await (await fetch(url)).text();
  const token = /<meta name="graft-token" content="([^"]+)">/.exec(page)![1];
  return {
    url, token, child, port: Number(new URL(url).port), output: () => out,
    stop: async () => {
      const t = Date.now();
      child.kill('SIGINT');
      const code = await exited;
      return { code, ms: Date.now() - t };
    },
  };
}

/** A raw HTTP request with any headers (fetch will not send a forged Host). */
export function raw(port: number, options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, setHost: !Object.keys(options.headers ?? {}).some((k) => k.toLowerCase() === 'host') }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('timeout')));
    req.end(options.body);
  });
}
