// graft serve, started as a command, in a real browser (Debian chromium driven by
// playwright-core): open the page, choose the cut with the keyboard, add two classes of real PNG
// images, train, predict, download; plus the API's isolation, upload checks and a closed tab.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { encodePng, initBackend, loadMnist, takePerClass, type Dataset } from '../../src/index.js';
import { raw, serve, type Serving } from '../serve.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
let server: Serving;
let browser: Browser;
let digits: Dataset;

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
  server = await serve(['--port', '0']);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the server listens on localhost only by default', () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
});

test('in the browser: diagram, keyboard cut, two classes of images, train, predict, download', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  await page.screenshot({ path: join(artifacts, 'serve-1-diagram.png'), fullPage: true });

  // Choose the cut with the keyboard: focus the button and press Enter.
  await page.focus('button[data-layer="block3_relu"]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#layers li.cut button[data-layer="block3_relu"]');
  assert.match(await page.innerHTML('#diagram'), /data-cut="block3_relu"/);
  assert.match(await page.textContent('#cutinfo') ?? '', /input node stays "image"/);

  await page.click('#add-class');
  await page.click('#add-class');
  const names = ['five', 'six'];
  for (const [k, label] of ['5', '6'].entries()) {
    const cls = page.locator('.class').nth(k);
    await cls.locator('.cname').fill(names[k]);
    await cls.locator('.cfiles').setInputFiles(indicesOf(digits, label, 25).map((i) => ({ name: `${label}-${i}.png`, mimeType: 'image/png', buffer: png(digits, i) })));
    await cls.locator('.count', { hasText: '25 images' }).waitFor();
  }
  await page.fill('#warmup', '4');
  await page.fill('#finetune', '1');
  await page.click('#train');
  await page.waitForSelector('body[data-job="done"]', { timeout: 180000 });
  assert.match(await page.textContent('#status') ?? '', /Done/);
  await page.waitForSelector('#curves img');
  await page.screenshot({ path: join(artifacts, 'serve-2-trained.png'), fullPage: true });

  const test5 = indicesOf(digits, '5', 40)[30];
  await page.setInputFiles('#predict-file', { name: 'query.png', mimeType: 'image/png', buffer: png(digits, test5) });
  await page.waitForSelector('#prediction li');
  assert.match(await page.textContent('#prediction li') ?? '', /^five/, 'the top class of a 5 is "five"');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const file = join(artifacts, 'model.zip');
  await download.saveAs(file);
  const zipBytes = await readFile(file);
  assert.equal(zipBytes.readUInt32LE(0), 0x04034b50, 'a zip file');
  for (const name of ['model.json', 'weights.bin', 'graft.json']) assert.ok(zipBytes.includes(Buffer.from(name)), `zip holds ${name}`);
  await page.screenshot({ path: join(artifacts, 'serve-3-predicted.png'), fullPage: true });
  await page.close();
});

test('narrow screen: nothing overflows sideways', async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width + 1, `page is ${scroll}px wide in a ${width}px window`);
  await page.screenshot({ path: join(artifacts, 'serve-narrow.png'), fullPage: true });
  await page.close();
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

test('hostile class names reach the page as text, never as HTML', async () => {
  const hostile = ['<img src=y onerror="window.__pwned=1">', '"><svg onload="window.__pwned=2">'];
  const classes = hostile.map((name, k) => ({ name, images: indicesOf(digits, k ? '6' : '5', 12).map((i) => pixels(digits, i)) }));
  const job = await post('/api/jobs', { base: 'digits-cnn', classes, warmupEpochs: 1, finetuneEpochs: 0 });
  assert.equal(job.status, 202, JSON.stringify(job.body));
  await waitDone(String(job.body.id));
  const page = await browser.newPage();
  const violations: string[] = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await page.goto(`${server.url}#job=${job.body.id}`);
  await page.waitForSelector('body[data-job="done"]');
  await page.setInputFiles('#predict-file', { name: 'q.png', mimeType: 'image/png', buffer: png(digits, indicesOf(digits, '5', 40)[30]) });
  await page.waitForSelector('#prediction li');
  const shown = await page.$$eval('#prediction li b', (bs) => bs.map((b) => b.textContent));
  assert.deepEqual([...shown].sort(), [...hostile].sort(), 'the names are shown as they are');
  assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'no script ran');
  assert.equal(await page.$$eval('#prediction img, #prediction svg', (e) => e.length), 0, 'no element was made from a name');
  assert.deepEqual(violations, []);
  await page.close();
});
