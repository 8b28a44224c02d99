// `graft serve` started as a command, driven by real HTTP requests as another web page, a DNS
// rebinding attack or a careless script would: only its own page gets in, bodies are checked
// field by field, no path or URL is opened, jobs are bounded and cancellable, and Ctrl-C ends
// it at once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePng } from '../../src/report/png.js';
import { initBackend } from '../../src/engine/backend.js';
import { loadMnist } from '../../src/data/mnist.js';
import { takePerClass, type Dataset } from '../../src/data/dataset.js';
import { root } from '../cli.js';
import { raw, serve, type Serving } from '../serve.js';

let server: Serving;
let digits: Dataset;
let models: string;

const image = (i: number) => ({
  magic: encodePng(28, 28, 1, digits.x.subarray(i * 784, (i + 1) * 784)).subarray(0, 12).toString('base64'),
  pixels: Array.from(digits.x.subarray(i * 784, (i + 1) * 784)),
});
const ofClass = (label: string, n: number) => Array.from(digits.labels.keys()).filter((i) => digits.classNames[digits.labels[i]] === label).slice(0, n).map(image);
// 100 per class is not "small data", so the recipe does not cross-validate the fine-tune first.
const job = (extra: Record<string, unknown> = {}) => ({
  base: 'digits-cnn', classes: [{ name: 'a', images: ofClass('5', 100) }, { name: 'b', images: ofClass('6', 100) }], warmupEpochs: 1, finetuneEpochs: 0, ...extra,
});

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await raw(server.port, { method, path, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), headers: { 'x-graft-token': server.token, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers } });
  let parsed: Record<string, unknown> = {};
  try { parsed = JSON.parse(r.body); } catch { /* not JSON */ }
  return { ...r, json: parsed };
}

async function waitFor(id: string, states: string[], ms = 60000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const s = String((await api('GET', `/api/jobs/${id}`)).json.status);
    if (states.includes(s)) return s;
    if (Date.now() > end) throw new Error(`job ${id} still ${s}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  await initBackend();
  digits = takePerClass(await loadMnist('train', [5, 6]), 1000, 3);
  models = await mkdtemp(join(tmpdir(), 'graft-serve-models-'));
  await cp(join(root, 'zoo', 'digits-cnn'), join(models, 'my-digits'), { recursive: true });
  server = await serve(['--port', '0', '--models', models]);
});

after(async () => {
  await server?.stop();
  await rm(models, { recursive: true, force: true });
});

test('graft serve with no flags listens on 127.0.0.1:8421, and Ctrl-C ends it at once', async () => {
  const s = await serve([]);
  try {
    assert.equal(s.url, 'http://127.0.0.1:8421/');
    assert.equal((await raw(8421, {})).status, 200);
  } finally {
    const { code, ms } = await s.stop();
    assert.equal(code, 0, s.output());
    assert.ok(ms < 5000, `stopped in ${ms} ms`);
  }
  const refused = await serve(['--host', '0.0.0.0', '--port', '0']).then(() => 'started', (e: Error) => e.message);
  assert.match(refused, /not a loopback address/);
});

test('Host must be this server on loopback (DNS rebinding gets 421)', async () => {
  const p = server.port;
  for (const host of ['evil.example', `evil.example:${p}`, `127.0.0.1:${p + 1}`, `127.0.0.1.evil.example:${p}`, '', `localhost:${p}@evil`, `0.0.0.0:${p}`]) {
    const r = await raw(p, { headers: { host } });
    assert.equal(r.status, 421, `Host ${JSON.stringify(host)}: ${r.status}`);
  }
  for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `[::1]:${p}`, `LOCALHOST:${p}`]) assert.equal((await raw(p, { headers: { host } })).status, 200, host);
});

test('other pages cannot drive it: Origin, token and Content-Type', async () => {
  const p = server.port;
  const evil = await raw(p, { method: 'POST', path: '/api/jobs', headers: { origin: 'http://evil.example', 'content-type': 'text/plain' }, body: JSON.stringify(job()) });
  assert.equal(evil.status, 403, 'a text/plain POST from another origin');
  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${p + 1}`, `https://127.0.0.1:${p}`, `http://localhost:${p}.evil.example`]) {
    assert.equal((await raw(p, { path: '/api/models', headers: { origin } })).status, 403, origin);
  }
  assert.equal((await raw(p, { path: '/api/models' })).status, 403, 'no Origin and no token');
  assert.equal((await raw(p, { path: '/api/models', headers: { 'x-graft-token': 'x'.repeat(server.token.length) } })).status, 403, 'a wrong token');
  assert.equal((await raw(p, { path: '/api/models', headers: { origin: `http://127.0.0.1:${p}` } })).status, 200, 'the page itself');
  const plain = await api('POST', '/api/jobs', JSON.stringify(job()), { 'content-type': 'text/plain' });
  assert.equal(plain.status, 415);
  const form = await api('POST', '/api/jobs', 'base=digits-cnn', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 415);
});

test('every page has a Content-Security-Policy and no inline script', async () => {
  for (const path of ['/', '/app.js', '/app.css', '/api/models', '/nothing']) {
    const r = await api('GET', path);
    assert.match(String(r.headers['content-security-policy']), /default-src 'self'/, path);
  }
  const page = (await raw(server.port, {})).body;
  assert.doesNotMatch(page, /<script>|<script(?![^>]*\bsrc=)[^>]*>|\son\w+=|style=/, 'no inline script, handler or style');
});

test('models come only from the zoo and --models; no path, URL or file contents', async () => {
  let hits = 0;
  const lure = createServer((_, res) => { hits++; res.end('{}'); });
  await new Promise<void>((r) => lure.listen(0, '127.0.0.1', r));
  const lurePort = (lure.address() as AddressInfo).port;
  try {
    const list = (await api('GET', '/api/models')).json as unknown as { name: string }[];
    assert.deepEqual(list.map((m) => m.name), ['digits-cnn', 'nsfwjs-mobilenet-v2', 'my-digits']);
    assert.equal((await api('GET', '/api/inspect?model=my-digits')).status, 200);
    for (const model of ['/etc/passwd', '/etc/shadow', '/dev/zero', `http://127.0.0.1:${lurePort}/`, join(root, 'zoo', 'digits-cnn'), '../zoo/digits-cnn', 'file:///etc/passwd']) {
      const r = await api('GET', `/api/inspect?model=${encodeURIComponent(model)}`);
      assert.equal(r.status, 400, model);
      assert.doesNotMatch(r.body, /root:|daemon:/, 'no file contents');
      const j = await api('POST', '/api/jobs', job({ base: model }));
      assert.equal(j.status, 400, model);
      assert.match(String(j.json.error), /^base: must be one of the models this server offers/);
    }
    assert.equal(hits, 0, 'the server fetched no URL');
  } finally {
    lure.close();
  }
});

test('bodies are checked field by field (400 naming the field)', async () => {
  const cases: Array<[unknown, RegExp]> = [
    ['null', /^body: must be a JSON object; got null/],
    ['[]', /^body: must be a JSON object; got an array/],
    ['5', /^body: must be a JSON object/],
    ['"x"', /^body: must be a JSON object/],
    [{ base: 5 }, /^base: must be a string/],
    [job({ warmupEpochs: 1e9 }), /^warmupEpochs: must be a whole number from 0 to 50; got number 1000000000/],
    [job({ finetuneEpochs: -1 }), /^finetuneEpochs: must be a whole number from 0 to 50/],
    [job({ finetuneEpochs: 1.5 }), /^finetuneEpochs/],
    [job({ unfreeze: 'everything' }), /^unfreeze: must be all, none/],
    [job({ evil: true }), /^body: unknown field "evil"/],
    [job({ classes: 'x' }), /^classes: must be an array of 2 to 50 classes/],
    [job({ classes: [null, null] }), /^classes\[0\]: must be a JSON object/],
    [job({ classes: [{ name: 'a', images: [] }, { name: 'b', images: [image(0)] }] }), /^classes\[0\]\.images: must be an array of 1 to/],
    [job({ classes: [{ name: 7, images: [image(0)] }, { name: 'b', images: [image(0)] }] }), /^classes\[0\]\.name: must be a string/],
    [job({ classes: [{ name: 'a', images: [{ magic: 'x', pixels: new Array(784).fill(NaN) }] }, { name: 'b', images: [image(0)] }] }), /^classes\[0\]\.images\[0\]\.pixels\[0\]: must be a number from 0 to 255; got null/],
    [job({ classes: [{ name: 'a', images: [{ magic: 'x', pixels: new Array(784).fill('1') }] }, { name: 'b', images: [image(0)] }] }), /^classes\[0\]\.images\[0\]\.pixels\[0\]/],
  ];
  for (const [body, want] of cases) {
    const r = await api('POST', '/api/jobs', body);
    assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.body}`);
    assert.match(String(r.json.error), want);
  }
});

test('jobs: a bounded queue, cancel at once, and Ctrl-C stops a running job', async () => {
  // Long enough that a cancel always lands while it trains (a stop after the last batch keeps a
  // finished run): 2x1,000 digits take seconds per fine-tune epoch here, 2x100 can end between two polls.
  const long = job({ classes: [{ name: 'a', images: ofClass('5', 1000) }, { name: 'b', images: ofClass('6', 1000) }], finetuneEpochs: 50 });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await api('POST', '/api/jobs', long);
    assert.equal(r.status, 202, r.body);
    ids.push(String(r.json.id));
  }
  const full = await api('POST', '/api/jobs', long);
  assert.equal(full.status, 429, 'the fifth job is refused while four wait');
  await waitFor(ids[0], ['running']);
  for (const id of ids.slice(1)) assert.equal((await api('POST', `/api/jobs/${id}/cancel`, {})).json.status, 'cancelled');
  const t = Date.now();
  await api('POST', `/api/jobs/${ids[0]}/cancel`, {});
  assert.equal(await waitFor(ids[0], ['cancelled', 'done', 'error'], 10000), 'cancelled');
  assert.ok(Date.now() - t < 5000, `cancelled in ${Date.now() - t} ms`);
  assert.equal((await api('POST', '/api/jobs', job())).status, 202, 'the queue has room again');
  // Ctrl-C while a job trains: the process ends within seconds.
  const own = await serve(['--port', '0']);
  const r = await raw(own.port, { method: 'POST', path: '/api/jobs', headers: { 'x-graft-token': own.token, 'content-type': 'application/json' }, body: JSON.stringify(long) });
  assert.equal(r.status, 202);
  await new Promise((res) => setTimeout(res, 1500));
  const { code, ms } = await own.stop();
  assert.equal(code, 0, own.output());
  assert.ok(ms < 6000, `stopped in ${ms} ms`);
});

test('the diagram\'s models are cached a few at a time and disposed: memory stays flat', async () => {
  const rss = async () => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${server.child.pid}/status`, 'utf8'))![1]) / 1024;
  const cycle = async () => {
    for (const model of ['mobilenet-v2', 'digits-cnn', 'my-digits']) assert.equal((await api('GET', `/api/inspect?model=${model}`)).status, 200);
  };
  for (let i = 0; i < 2; i++) await cycle();
  const before = await rss();
  // With 2 models cached, each cycle drops and reloads MobileNetV2 (14 MB of weights).
  for (let i = 0; i < 6; i++) await cycle();
  const after = await rss();
  assert.ok(after - before < 40, `memory grew ${(after - before).toFixed(0)} MB over 6 reloads of MobileNetV2`);
});
