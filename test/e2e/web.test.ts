// graft serve's job API (decoded pixels as JSON, for scripts), started as a command: isolation
// of jobs, a closed tab, upload checks. The page itself is tested in projects.test.ts.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { encodePng } from '../../src/report/png.js';
import { initBackend } from '../../src/engine/backend.js';
import { loadMnist } from '../../src/data/mnist.js';
import { takePerClass, type Dataset } from '../../src/data/dataset.js';
import { raw, serve, type Serving } from '../serve.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
let server: Serving;
let browser: Browser;
let digits: Dataset;
let projects: string;

function png(d: Dataset, i: number): Buffer {
  return encodePng(28, 28, 1, d.x.subarray(i * 784, (i + 1) * 784));
}

function pixels(d: Dataset, i: number): { magic: string; pixels: number[] } {
  return { magic: png(d, i).subarray(0, 12).toString('base64'), pixels: Array.from(d.x.subarray(i * 784, (i + 1) * 784)) };
}

function indicesOf(d: Dataset, label: string, n: number): number[] {
  const k = d.classNames.indexOf(label);
  return Array.from(d.labels.keys()).filter((i) => d.labels[i] === k).slice(0, n);
}

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(new URL(path, server.url), { method: 'POST', headers: { 'content-type': 'application/json', 'x-graft-token': server.token }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

async function waitDone(id: string, ms = 120000): Promise<Record<string, unknown> & { events: unknown[] }> {
  const end = Date.now() + ms;
  for (;;) {
    const job = await (await fetch(new URL(`/api/jobs/${id}`, server.url), { headers: { 'x-graft-token': server.token } })).json() as Record<string, unknown> & { events: unknown[] };
    if (job.status === 'done' || job.status === 'error') return job;
    if (Date.now() > end) throw new Error(`job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (the README's test command does)`);
  await initBackend();
  await mkdir(artifacts, { recursive: true });
  digits = takePerClass(await loadMnist('test', [5, 6]), 60, 3);
  projects = await mkdtemp(join(tmpdir(), 'graft-web-projects-'));
  server = await serve(['--port', '0', '--projects', projects]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (projects) await rm(projects, { recursive: true, force: true });
});

test('the server listens on localhost only by default', () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
});

test('jobs are isolated, and a closed tab does not stop its run', async () => {
  const classes = (a: string, b: string) => [
    { name: a, images: indicesOf(digits, '5', 12).map((i) => pixels(digits, i)) },
    { name: b, images: indicesOf(digits, '6', 12).map((i) => pixels(digits, i)) },
  ];
  const one = await post('/api/jobs', { base: 'digits-cnn', classes: classes('alpha', 'beta'), warmupEpochs: 2, finetuneEpochs: 0 });
  const two = await post('/api/jobs', { base: 'digits-cnn', classes: classes('gamma', 'delta'), warmupEpochs: 2, finetuneEpochs: 1 });
  assert.equal(one.status, 202);
  const page = await browser.newPage();
  await page.goto(`${server.url}#job=${two.body.id}`);
  await page.close(); // the tab that follows job two goes away
  const [a, b] = await Promise.all([waitDone(String(one.body.id)), waitDone(String(two.body.id))]);
  console.log(JSON.stringify(a.events.at(-1)), JSON.stringify(b.events.at(-1)));
  assert.equal(a.status, 'done', JSON.stringify(a.events));
  assert.equal(b.status, 'done');
  assert.deepEqual(a.classNames, ['alpha', 'beta']);
  assert.deepEqual(b.classNames, ['gamma', 'delta']);
  const p = await post(`/api/jobs/${two.body.id}/predict`, { pixels: pixels(digits, indicesOf(digits, '6', 30)[20]).pixels });
  assert.ok(['gamma', 'delta'].includes((p.body.top as { className: string }[])[0].className));
});

test('uploads are checked: image type, size limit, JSON, class count', async () => {
  const notImage = { magic: Buffer.from('hello world!').toString('base64'), pixels: new Array(784).fill(0) };
  const bad = await post('/api/jobs', { base: 'digits-cnn', classes: [{ name: 'a', images: [notImage] }, { name: 'b', images: [notImage] }] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'BAD_IMAGE');
  const one = await post('/api/jobs', { base: 'digits-cnn', classes: [{ name: 'a', images: [pixels(digits, 0)] }] });
  assert.equal(one.body.code, 'BAD_REQUEST');
  assert.match(String(one.body.error), /^classes: must be an array of 2 to 50 classes/);
  const shape = await post('/api/jobs', { base: 'digits-cnn', classes: [{ name: 'a', images: [{ ...pixels(digits, 0), pixels: [1, 2] }] }, { name: 'b', images: [pixels(digits, 1)] }] });
  assert.match(String(shape.body.error), /^classes\[0\]\.images\[0\]\.pixels: must be an array of 784 numbers/);
  assert.equal((await post('/api/jobs', '{not json')).status, 400);
  // A declared size over the limit (32 MB) is refused before the body is read.
  const res = await raw(server.port, { method: 'POST', path: '/api/jobs', headers: { 'content-type': 'application/json', 'x-graft-token': server.token, 'content-length': String(40 << 20) }, body: '{}' }).catch((e: Error) => ({ status: 0, body: e.message }));
  assert.equal(res.status, 413, res.body);
});
