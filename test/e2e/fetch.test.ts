// Named models fetched on first use (--base onnx-zoo:mobilenetv2), end to end against a local
// mirror on 127.0.0.1 (GRAFT_MODEL_MIRROR), as a user meets it: a download that breaks off is
// kept and resumed with an HTTP Range request; the cached file is used without a download
// afterwards; a cached file that changed is refused (and left where it is); offline, the error
// names the file to fetch and where to put it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { colourFolder, graft, lastJson, root } from '../cli.js';

const model = await readFile(join(root, 'test', 'fixtures', 'onnx', 'tiny-cnn.onnx'));
const requests: { path: string; range?: string }[] = [];
// /broken/ sends the first half and drops the connection; /ok/ serves the file with Range support.
const server = createServer((req, res) => {
  const url = req.url ?? '';
  requests.push({ path: url, range: req.headers.range });
  if (!url.endsWith('/mobilenetv2-12.onnx')) { res.writeHead(404).end(); return; }
  if (url.startsWith('/broken/')) {
    res.writeHead(200, { 'content-length': model.length });
    res.write(model.subarray(0, model.length >> 1), () => res.socket?.destroy());
    return;
  }
  // /norange/ ignores Range and sends the whole file; /html/ an error page with 200; /other/ a
  // different file; /badrange/ a 206 of the wrong part.
  if (url.startsWith('/norange/')) { res.writeHead(200, { 'content-length': model.length }).end(model); return; }
  if (url.startsWith('/html/')) { const page = Buffer.from('<!doctype html><html><body>Sign in to download</body></html>'); res.writeHead(200, { 'content-length': page.length }).end(page); return; }
  if (url.startsWith('/other/')) { const other = Buffer.from(model); other[other.length - 10] ^= 0xff; res.writeHead(200, { 'content-length': other.length }).end(other); return; }
  if (url.startsWith('/badrange/') && req.headers.range) { res.writeHead(206, { 'content-length': 10, 'content-range': `bytes 0-9/${model.length}` }).end(model.subarray(0, 10)); return; }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-length': model.length - from, 'content-range': `bytes ${from}-${model.length - 1}/${model.length}` }).end(model.subarray(from));
  } else res.writeHead(200, { 'content-length': model.length }).end(model);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const dir = await mkdtemp(join(tmpdir(), 'graft-fetch-'));
test.after(async () => { server.close(); await rm(dir, { recursive: true, force: true }); });

test('onnx-zoo:mobilenetv2 from a mirror: broken off and resumed, cached, checked against its recorded hash; offline says what to fetch', async () => {
  const home = join(dir, 'home');
  const cached = join(home, 'models', 'onnx-zoo-mobilenetv2', 'mobilenetv2-12.onnx');
  const broken = await graft(['inspect', 'onnx-zoo:mobilenetv2'], { env: { GRAFT_HOME: home, GRAFT_MODEL_MIRROR: `${base}/broken` } });
  assert.equal(broken.code, 1, broken.stdout);
  assert.match(broken.stderr, /Could not download onnx-zoo:mobilenetv2 from .*broke off/);
  assert.match(broken.stderr, /bytes are kept in .*mobilenetv2-12\.onnx\.part; the next run resumes/);
  assert.equal((await stat(`${cached}.part`)).size, model.length >> 1);

  const ok = await graft(['inspect', 'onnx-zoo:mobilenetv2'], { env: { GRAFT_HOME: home, GRAFT_MODEL_MIRROR: `${base}/ok` } });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /resuming the download of mobilenetv2-12\.onnx/);
  assert.equal(requests.at(-1)!.range, `bytes=${model.length >> 1}-`, 'the second request asked for the rest only');
  assert.deepEqual(await readFile(cached), model, 'the resumed file is the whole file');
  const hash = createHash('sha256').update(model).digest('hex');
  assert.equal((await readFile(`${cached}.sha256`, 'utf8')).trim(), hash, 'no published hash: the first download\'s is recorded');
  assert.match(ok.stdout, /Graft rebuilds this graph as \d+ tfjs layers/);

  // Cached: training uses the file without asking the server again.
  const seen = requests.length;
  await colourFolder(join(dir, 'data'), 16, 12, 3, 'png');
  const tr = await graft(['train', '--base', 'onnx-zoo:mobilenetv2', '--cut', '/Relu_1', '--data', join(dir, 'data'), '--finetune-epochs', '1', '--out', join(dir, 'model'), '--json'],
    { env: { GRAFT_HOME: home, GRAFT_MODEL_MIRROR: `${base}/ok` } });
  assert.equal(tr.code, 0, tr.stderr);
  assert.equal(requests.length, seen, 'no download for a cached model');
  assert.equal(lastJson(tr.stdout).onnx.layout, 'nchw');

  // A cached file that changed is refused and left in place.
  const bad = Buffer.from(model);
  bad[bad.length - 10] ^= 0xff;
  await writeFile(cached, bad);
  const changed = await graft(['inspect', 'onnx-zoo:mobilenetv2'], { env: { GRAFT_HOME: home, GRAFT_MODEL_MIRROR: `${base}/ok` } });
  assert.equal(changed.code, 1);
  assert.match(changed.stderr, /changed since it was downloaded/);
  assert.match(changed.stderr, /fix: Delete .*mobilenetv2-12\.onnx and .*\.sha256 and run again/);
  assert.deepEqual(await readFile(cached), bad, 'Graft did not delete or replace it');

  // Offline: the file, its official address and where it goes.
  const offline = await graft(['inspect', 'onnx-zoo:mobilenetv2'], { env: { GRAFT_HOME: join(dir, 'fresh'), GRAFT_MODEL_MIRROR: 'http://127.0.0.1:1' } });
  assert.equal(offline.code, 1);
  assert.match(offline.stderr, /Offline: download https:\/\/github\.com\/onnx\/models\/.*mobilenetv2-12\.onnx on a machine that can, and put it at .*fresh\/models\/onnx-zoo-mobilenetv2\/mobilenetv2-12\.onnx/);
});

test('a download is the file it should be: a mirror that ignores Range, an HTML page, another file, the wrong part are never cached', async () => {
  const home = join(dir, 'home2');
  const env = (mirror: string) => ({ env: { GRAFT_HOME: home, GRAFT_MODEL_MIRROR: `${base}/${mirror}` } });
  const cached = join(home, 'models', 'onnx-zoo-mobilenetv2', 'mobilenetv2-12.onnx');
  // An HTML error page with 200: refused, nothing cached or pinned.
  const html = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('html'));
  assert.equal(html.code, 1);
  assert.match(html.stderr, /is not an ONNX model \(it begins like an HTML page\)\. It was removed, and nothing was cached/);
  await assert.rejects(stat(cached), { code: 'ENOENT' });
  await assert.rejects(stat(`${cached}.sha256`), { code: 'ENOENT' });
  // Broken off, then a mirror that ignores Range: the whole file replaces the part (it was appended after it).
  const broken = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('broken'));
  assert.equal(broken.code, 1);
  assert.ok((await stat(`${cached}.part`)).size > 0);
  const whole = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('norange'));
  assert.equal(whole.code, 0, whole.stderr);
  assert.deepEqual(await readFile(cached), model, 'the cached file is the file, not the part and the file');
  // A later download that differs from the first-download hash is refused, and the record kept.
  const pin = await readFile(`${cached}.sha256`, 'utf8');
  await rm(cached);
  const other = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('other'));
  assert.equal(other.code, 1);
  assert.match(other.stderr, /not the .* recorded at the first download .* It was removed; the record was kept/);
  assert.equal(await readFile(`${cached}.sha256`, 'utf8'), pin);
  await assert.rejects(stat(cached), { code: 'ENOENT' });
  // A 206 that is not the rest of the file: refused, and the part emptied for a fresh start.
  await writeFile(`${cached}.part`, model.subarray(0, 100));
  const bad = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('badrange'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /answered the request for the bytes from 100 on with another part \(bytes 0-9\//);
  assert.equal((await stat(`${cached}.part`)).size, 0);
  const again = await graft(['inspect', 'onnx-zoo:mobilenetv2'], env('ok'));
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await readFile(cached), model);
});
