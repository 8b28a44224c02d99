// Fuzz: a few hundred seeded corruptions of model.json, weight shards, CSV and IDX files; every
// input replaced by a FIFO, a device, a socket or a bad symbolic link; models fetched from
// HTTP servers on 127.0.0.1 that hang, dribble, loop or lie; and `graft serve` (started as a
// command) sent hostile Host and Origin headers, paths and JSON bodies. Each must end in a
// GraftError (or a 4xx answer) within its bound, or a clean load: no other exception, no hang,
// and no file changed outside the output folder (a canary tree and the zoo are hashed).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { cp, symlink } from 'node:fs/promises';
import { GraftError } from '../../src/errors.js';
import { initBackend } from '../../src/engine/backend.js';
import { loadCsv } from '../../src/data/csv.js';
import { loadData } from '../../src/data/load.js';
import { loadIdxDataset, parseIdx } from '../../src/data/idx.js';
import { loadModel } from '../../src/model/load.js';
import { readKerasModel } from '../../src/model/keras.js';
import { makeRng, type Rng } from '../../src/data/random.js';
import { hashTree, plantCanary } from '../canary.js';
import { root } from '../cli.js';
import { raw, serve } from '../serve.js';

const zoo = fileURLToPath(new URL('../../../zoo/digits-cnn/', import.meta.url));
const TIMEOUT_MS = 10000;

type Outcome = 'graft-error' | 'ok';

async function outcome(work: () => Promise<unknown>, what: string): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`hang: ${what}`)), TIMEOUT_MS); });
  try {
    await Promise.race([work(), timeout]);
    return 'ok';
  } catch (e) {
    if (e instanceof GraftError) return 'graft-error';
    throw new Error(`${what}: not a GraftError: ${(e as Error).stack}`);
  } finally {
    clearTimeout(timer);
  }
}

function truncate(buf: Buffer, rng: Rng): Buffer {
  return buf.subarray(0, Math.floor(rng() * buf.length));
}

function flip(buf: Buffer, rng: Rng, n: number): Buffer {
  const out = Buffer.from(buf);
  for (let i = 0; i < n; i++) out[Math.floor(rng() * out.length)] = Math.floor(rng() * 256);
  return out;
}

function garbage(rng: Rng, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rng() * 256)));
}

/** Replaces one random value deep in a JSON document with a value of the wrong type. */
function wrongType(doc: unknown, rng: Rng): unknown {
  const copy = JSON.parse(JSON.stringify(doc));
  const paths: Array<[Record<string, unknown>, string]> = [];
  const walk = (node: unknown) => {
    if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
        paths.push([node as Record<string, unknown>, k]);
        walk(v);
      }
    }
  };
  walk(copy);
  const [parent, key] = paths[Math.floor(rng() * paths.length)];
  const choices = [null, 'x', -1, 0, [], {}, true, [null], 3.5];
  parent[key] = choices[Math.floor(rng() * choices.length)];
  return copy;
}

async function snapshotDir(dir: string): Promise<string> {
  const names = (await readdir(dir)).sort();
  return JSON.stringify(await Promise.all(names.map(async (n) => [n, (await readFile(join(dir, n))).toString('base64')])));
}

test('fuzzed model files end in GraftError or load, never crash, hang or write', async () => {
  await initBackend();
  const json = await readFile(join(zoo, 'model.json'));
  const weights = await readFile(join(zoo, 'weights.bin'));
  const doc = JSON.parse(json.toString('utf8'));
  const rng = makeRng(2026);
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-'));
  await writeFile(join(dir, 'existing.txt'), 'keep me');
  const cases: Array<[string, Buffer, Buffer]> = [];
  for (let i = 0; i < 60; i++) cases.push([`truncated model.json ${i}`, truncate(json, rng), weights]);
  for (let i = 0; i < 50; i++) cases.push([`flipped model.json ${i}`, flip(json, rng, 1 + Math.floor(rng() * 8)), weights]);
  for (let i = 0; i < 20; i++) cases.push([`garbage model.json ${i}`, garbage(rng, Math.floor(rng() * 4000)), weights]);
  for (let i = 0; i < 60; i++) cases.push([`wrong-typed model.json ${i}`, Buffer.from(JSON.stringify(wrongType(doc, rng))), weights]);
  for (let i = 0; i < 30; i++) cases.push([`truncated weights ${i}`, json, truncate(weights, rng)]);
  for (let i = 0; i < 10; i++) cases.push([`extended weights ${i}`, json, Buffer.concat([weights, garbage(rng, 1 + Math.floor(rng() * 64))])]);
  const counts = { 'graft-error': 0, ok: 0 };
  for (const [what, m, w] of cases) {
    const modelDir = join(dir, 'model');
    await rm(modelDir, { recursive: true, force: true });
    await mkdir(modelDir);
    await writeFile(join(modelDir, 'model.json'), m);
    await writeFile(join(modelDir, 'weights.bin'), w);
    const before = await snapshotDir(modelDir);
    if (process.env.GRAFT_FUZZ_TRACE) console.error(what);
    counts[await outcome(() => loadModel(modelDir), what)]++;
    assert.equal(await snapshotDir(modelDir), before, `${what}: files changed`);
  }
  assert.equal(await readFile(join(dir, 'existing.txt'), 'utf8'), 'keep me');
  assert.ok(counts['graft-error'] >= 200, `most cases must be refused: ${JSON.stringify(counts)}`);
  await rm(dir, { recursive: true, force: true });
});

test('fuzzed CSV and IDX files end in GraftError or a consistent dataset', async () => {
  const rng = makeRng(7);
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-'));
  const csv = Buffer.from(`a,b,c,label\n${Array.from({ length: 30 }, (_, i) => `${i},${i * 2},${(i % 7) / 3},${i % 3 === 0 ? 'x' : 'y'}`).join('\n')}\n`);
  const idxHead = (dims: number[]) => { const h = Buffer.alloc(4 + 4 * dims.length); h[2] = 8; h[3] = dims.length; dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i)); return h; };
  const images = Buffer.concat([idxHead([6, 2, 2]), garbage(rng, 24)]);
  const labels = Buffer.concat([idxHead([6]), Buffer.from([1, 2, 1, 2, 1, 2])]);
  let errors = 0;
  let total = 0;
  const check = async (what: string, work: () => Promise<{ x: { length: number }; labels: Int32Array; sampleShape: number[]; classNames: string[] }>) => {
    total++;
    let result: Awaited<ReturnType<typeof work>> | undefined;
    const o = await outcome(async () => { result = await work(); }, what);
    if (o === 'graft-error') { errors++; return; }
    const size = result!.sampleShape.reduce((a, b) => a * b, 1);
    assert.equal(result!.x.length, result!.labels.length * size, `${what}: inconsistent shapes`);
    assert.ok(result!.labels.every((y) => y >= 0 && y < result!.classNames.length), `${what}: label out of range`);
  };
  for (let i = 0; i < 40; i++) {
    const p = join(dir, `t${i}.csv`);
    await writeFile(p, i < 15 ? truncate(csv, rng) : i < 30 ? flip(csv, rng, 3) : garbage(rng, 200));
    await check(`csv ${i}`, () => loadCsv(p));
  }
  for (let i = 0; i < 40; i++) {
    const ip = join(dir, `i${i}-images-idx3-ubyte`);
    const lp = join(dir, `i${i}-labels-idx1-ubyte`);
    await writeFile(ip, i < 15 ? truncate(images, rng) : i < 30 ? flip(images.subarray(0, 16), rng, 2) : garbage(rng, 40));
    await writeFile(lp, i % 2 ? truncate(labels, rng) : labels);
    await check(`idx ${i}`, () => loadIdxDataset(ip, lp));
  }
  for (let i = 0; i < 20; i++) assert.throws(() => parseIdx(garbage(rng, i), `g${i}`), GraftError);
  assert.ok(errors >= 50, `most corrupt files are refused: ${errors}/${total}`);
  await rm(dir, { recursive: true, force: true });
});


const zooTree = join(zoo, '..');

test('every input as a FIFO, device, socket, folder or bad symbolic link: a coded error at once', async (t) => {
  await initBackend();
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-kinds-'));
  const canary = join(dir, 'canary');
  await plantCanary(canary);
  const before = [await hashTree(canary), await hashTree(zooTree)];
  const sockets: Array<{ close: () => void }> = [];
  // Closed whatever happens: a socket left listening kept the test process alive after a failure.
  t.after(() => { for (const srv of sockets) srv.close(); });
  const kinds: Record<string, (path: string) => Promise<void>> = {
    fifo: (p) => new Promise((resolve, reject) => execFile('mkfifo', [p], (e) => (e ? reject(e) : resolve()))),
    'link to /dev/zero': (p) => symlink('/dev/zero', p),
    'link to /dev/null': (p) => symlink('/dev/null', p),
    'link to /dev/urandom': (p) => symlink('/dev/urandom', p),
    'link to a fifo': async (p) => { await kinds.fifo(`${p}.fifo`); await symlink(`${p}.fifo`, p); },
    'link loop': async (p) => { await symlink(`${p}.b`, p); await symlink(p, `${p}.b`); },
    'dangling link': (p) => symlink(join(dir, 'nowhere'), p),
    'link to a folder': (p) => symlink(canary, p),
    folder: (p) => mkdir(p),
    socket: (p) => new Promise((resolve) => { const srv = createNetServer().listen(p, () => resolve()); sockets.push(srv); }),
  };
  const json = await readFile(join(zoo, 'model.json'));
  const csv = 'a,b,label\n1,2,x\n3,4,y\n';
  // Each target: how to lay out a working input, which file to replace, and how to load it.
  const targets: Record<string, { file: string; setup: (d: string) => Promise<void>; load: (d: string) => Promise<unknown> }> = {
    'model.json': { file: 'model.json', setup: (d) => cp(zoo, d, { recursive: true }), load: (d) => loadModel(d) },
    'model.json named directly': { file: 'model.json', setup: (d) => cp(zoo, d, { recursive: true }), load: (d) => loadModel(join(d, 'model.json')) },
    'weights shard': { file: 'weights.bin', setup: (d) => cp(zoo, d, { recursive: true }), load: (d) => loadModel(d) },
    'graft.json': { file: 'graft.json', setup: (d) => cp(zoo, d, { recursive: true }), load: (d) => loadModel(d) },
    'CSV': { file: 'data.csv', setup: async (d) => { await mkdir(d); await writeFile(join(d, 'x'), json); }, load: (d) => loadCsv(join(d, 'data.csv')) },
    'CSV by loadData': { file: 'data.csv', setup: async (d) => { await mkdir(d); await writeFile(join(d, 'x'), csv); }, load: (d) => loadData(join(d, 'data.csv')) },
    'IDX images': { file: 't-images-idx3-ubyte', setup: (d) => mkdir(d), load: (d) => loadIdxDataset(join(d, 't-images-idx3-ubyte'), join(d, 't-labels-idx1-ubyte')) },
    'Keras .h5': { file: 'm.h5', setup: (d) => mkdir(d), load: (d) => readKerasModel(join(d, 'm.h5')) },
    'Keras .keras': { file: 'm.keras', setup: (d) => mkdir(d), load: (d) => readKerasModel(join(d, 'm.keras')) },
  };
  let n = 0;
  for (const [target, t] of Object.entries(targets)) {
    for (const [kind, make] of Object.entries(kinds)) {
      const d = join(dir, `case-${n++}`);
      await t.setup(d);
      await rm(join(d, t.file), { force: true, recursive: true });
      await make(join(d, t.file));
      const started = Date.now();
      assert.equal(await outcome(() => t.load(d), `${target} as ${kind}`), 'graft-error', `${target} as ${kind} must be refused`);
      assert.ok(Date.now() - started < 3000, `${target} as ${kind}: ${Date.now() - started} ms`);
    }
  }
  // Among images, each kind is skipped with its reason and the rest loads.
  const images = join(dir, 'images');
  await mkdir(join(images, 'a'), { recursive: true });
  await mkdir(join(images, 'b'), { recursive: true });
  const { encodePng } = await import('../../src/report/png.js');
  for (const c of ['a', 'b']) for (let i = 0; i < 2; i++) await writeFile(join(images, c, `${i}.png`), encodePng(28, 28, 1, new Uint8Array(784).fill(c === 'a' ? 10 + i : 240 - i)));  // four different images: copies would be used once
  for (const [kind, make] of Object.entries(kinds)) { await make(join(images, 'a', `${kind.replace(/\W+/g, '-')}.png`)); n++; }
  const d = await loadData(images, { image: { size: [28, 28], channels: 1 } });
  assert.equal(d.labels.length, 4, 'the four real images load');
  assert.ok((d.skipped ?? []).length >= Object.keys(kinds).length - 2, `each odd file is skipped: ${JSON.stringify(d.skipped)}`);
  for (const srv of sockets) srv.close();
  assert.deepEqual([await hashTree(canary), await hashTree(zooTree)], before, 'no file changed');
  console.log(`file-kind fuzz cases: ${n}`);
  assert.ok(n >= 100);
  await rm(dir, { recursive: true, force: true });
});

test('models from HTTP servers that hang, dribble, loop, lie or break off: a coded error within seconds', async () => {
  await initBackend();
  const saved = process.env.GRAFT_HTTP_IDLE_MS;
  process.env.GRAFT_HTTP_IDLE_MS = '300';
  const files: Record<string, Buffer> = Object.fromEntries(await Promise.all(['model.json', 'weights.bin', 'graft.json'].map(async (f) => [f, await readFile(join(zoo, f))])));
  const rng = makeRng(99);
  type Behaviour = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;
  const behaviours: Record<string, Behaviour> = {
    'never answers': () => undefined,
    'headers, then nothing': (_, res) => { res.writeHead(200); res.flushHeaders(); },
    'dribbles a byte at a time': (req, res, body) => { res.writeHead(200); let i = 0; const t = setInterval(() => res.write(body.subarray(i, ++i)), 100); req.on('close', () => clearInterval(t)); },
    'redirect loop': (req, res) => { res.writeHead(302, { location: `${req.url}x` }); res.end(); },
    'redirect to ftp': (_, res) => { res.writeHead(301, { location: 'ftp://127.0.0.1/model.json' }); res.end(); },
    'redirect without a location': (_, res) => { res.writeHead(302); res.end(); },
    'declares a terabyte': (_, res) => { res.writeHead(200, { 'content-length': String(2 ** 40) }); res.write('{'); },
    'endless chunks': (req, res) => { res.writeHead(200); const big = Buffer.alloc(1 << 20, 32); const pump = () => { while (res.write(big)) { /* fill */ } }; res.on('drain', pump); pump(); req.on('close', () => res.destroy()); },
    'breaks off': (_, res, body) => { res.writeHead(200, { 'content-length': String(body.length) }); res.write(body.subarray(0, body.length >> 1)); setTimeout(() => res.destroy(), 20); },
    'HTTP 500': (_, res) => { res.writeHead(500); res.end('oops'); },
    'HTTP 403': (_, res) => { res.writeHead(403); res.end(); },
    'HTTP 204': (_, res) => { res.writeHead(204); res.end(); },
    'HTML page': (_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>Login</title>'); },
    'empty body': (_, res) => { res.writeHead(200); res.end(); },
    'garbage bytes': (_, res) => { res.writeHead(200); res.end(garbage(rng, 300)); },
    'truncated': (_, res, body) => { res.writeHead(200); res.end(truncate(body, rng)); },
    'flipped bytes': (_, res, body) => { res.writeHead(200); res.end(flip(body, rng, 8)); },
    'resets the connection': (req) => { req.socket.destroy(); },
  };
  let current: { file: string; behaviour: Behaviour } = { file: '', behaviour: () => undefined };
  const server = createHttpServer((req, res) => {
    const file = (req.url ?? '/').split('/').pop()!.replace(/x+$/, '');
    if (file === current.file || (current.file === '*' && file in files)) return current.behaviour(req, res, files[file] ?? Buffer.alloc(0));
    if (file in files) { res.end(files[file]); return; }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/`;
  let n = 0;
  const counts = { 'graft-error': 0, ok: 0 };
  try {
    for (const file of ['model.json', 'weights.bin', 'graft.json']) {
      for (const [what, behaviour] of Object.entries(behaviours)) {
        current = { file, behaviour };
        n++;
        const started = Date.now();
        const o = await outcome(() => loadModel(url).then((m) => m.model.dispose()), `${file}: ${what}`);
        counts[o]++;
        // Flipped or truncated bytes may still parse; every other behaviour must be refused.
        if (!['flipped bytes', 'truncated'].includes(what) && !(file === 'graft.json' && ['HTTP 204', 'empty body'].includes(what))) assert.equal(o, 'graft-error', `${file}: ${what}`);
        assert.ok(Date.now() - started < 5000, `${file}: ${what} took ${Date.now() - started} ms`);
        server.closeAllConnections();
      }
    }
  } finally {
    if (saved === undefined) delete process.env.GRAFT_HTTP_IDLE_MS;
    else process.env.GRAFT_HTTP_IDLE_MS = saved;
    server.closeAllConnections();
    server.close();
  }
  console.log(`HTTP fuzz cases: ${n}`, counts);
  assert.ok(n >= 50);
});

test('graft serve (a command) under hostile Host, Origin, paths and JSON bodies: 4xx with a code, never 500, nothing changed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-fuzz-serve-'));
  const canary = join(dir, 'canary');
  await plantCanary(canary);
  const before = [await hashTree(canary), await hashTree(zooTree)];
  const s = await serve(['--port', '0']);
  // A failed assertion must not leave the server running (the test would never end).
  const killer = setTimeout(() => s.child.kill('SIGKILL'), 240_000).unref();
  let n = 0;
  const statuses: Record<number, number> = {};
  try {
  const rng = makeRng(4242);
  const pick = <T>(xs: T[]) => xs[Math.floor(rng() * xs.length)];
  const junk = (n: number) => Array.from({ length: n }, () => String.fromCharCode(33 + Math.floor(rng() * 94))).join('');
  const check = async (what: string, options: Parameters<typeof raw>[1], allowed: (status: number) => boolean) => {
    n++;
    const t = Date.now();
    const r = await raw(s.port, options).catch((e: Error) => ({ status: 0, body: e.message, headers: {} }));
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    if (process.env.GRAFT_FUZZ_TRACE) console.error(`${Date.now() - t} ms ${r.status} ${what.slice(0, 80)}`);
    assert.ok(allowed(r.status), `${what}: status ${r.status} ${r.body.slice(0, 200)}`);
    assert.ok(Date.now() - t < 5000, `${what}: ${Date.now() - t} ms`);
    if (r.status >= 400) assert.ok(JSON.parse(r.body).code, `${what}: a code`);
    assert.doesNotMatch(r.body, /root:x:0|    at /, `${what}: no file contents or stack`);
    return r;
  };
  const p = s.port;
  const hosts = ['evil.example', `evil.example:${p}`, `127.0.0.2:${p}`, `127.0.0.1:${p + 1}`, `localhost.:${p}`, `[::2]:${p}`, `0x7f000001:${p}`, `2130706433:${p}`, `127.1:${p}`, `LOCALHOST.evil:${p}`, `127.0.0.1:${p}/`, `127.0.0.1:0${p}`];
  for (let i = 0; i < 40; i++) {
    const host = i < hosts.length ? hosts[i] : pick([`${junk(1 + Math.floor(rng() * 20))}:${p}`, junk(1 + Math.floor(rng() * 40)), `${pick(['127.0.0.1', 'localhost', '[::1]'])}:${Math.floor(rng() * 65536)}`]);
    if (host === `127.0.0.1:${p}` || host === `localhost:${p}` || host === `[::1]:${p}`) continue;
    await check(`Host ${JSON.stringify(host)}`, { path: pick(['/', '/api/models', '/app.js']), headers: { host } }, (st) => st === 421 || st === 400);
  }
  const origins = ['http://evil.example', 'null', `http://127.0.0.1:${p + 1}`, `https://127.0.0.1:${p}`, `http://localhost:${p}.evil.example`, `http://127.0.0.1:${p}/`, 'file://', `http://[::1]:${p}`, `HTTP://127.0.0.1:${p}`];
  for (let i = 0; i < 40; i++) {
    const origin = i < origins.length ? origins[i] : pick([`http://${junk(8)}.example`, `http://${junk(5)}:${p}`, junk(20), `http://127.0.0.1:${Math.floor(rng() * 65536)}`]);
    if (origin === `http://127.0.0.1:${p}`) continue;
    const post = rng() < 0.5;
    await check(`Origin ${JSON.stringify(origin)}`, { method: post ? 'POST' : 'GET', path: post ? '/api/jobs' : '/api/models', headers: { origin, 'content-type': pick(['application/json', 'text/plain']) }, body: post ? '{}' : undefined }, (st) => st === 403);
  }
  const token = { 'x-graft-token': s.token };
  const paths = ['/api/inspect?model=/etc/passwd', '/api/inspect?model=..%2F..%2Fetc%2Fpasswd', '/api/inspect?model=http://127.0.0.1:1/', '/api/inspect?model=/dev/zero', '/api/inspect', '/api/jobs/x/events', '/api/jobs/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/api/jobs//download', `/api/inspect?model=digits-cnn&cut=${'x'.repeat(300)}`, '/api/jobs/1/2/3/4'];
  for (let i = 0; i < 30; i++) {
    const path = i < paths.length ? paths[i] : `/${pick(['api/', 'api/jobs/', 'api/inspect?model=', ''])}${encodeURIComponent(junk(1 + Math.floor(rng() * 30)))}`;
    await check(`path ${path}`, { path, headers: token }, (st) => st >= 400 && st < 500);
  }
  const image = { magic: Buffer.from([137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13]).toString('base64'), pixels: new Array(784).fill(7) };
  const valid = { base: 'digits-cnn', classes: [{ name: 'a', images: [image] }, { name: 'b', images: [image] }], warmupEpochs: 0, finetuneEpochs: 0, unfreeze: 'none' };
  const json = { ...token, 'content-type': 'application/json' };
  for (let i = 0; i < 120; i++) {
    const body = i < 10 ? ['null', '[]', '5', '"x"', 'true', '{', '{"base":5}', '{"__proto__":{"x":1}}', 'a'.repeat(1000), '\u0000'][i]
      : i < 25 ? garbage(rng, Math.floor(rng() * 500)).toString('latin1')
      : JSON.stringify(wrongType(valid, rng));
    const r = await check(`body ${body.slice(0, 60)}`, { method: 'POST', path: '/api/jobs', headers: json, body }, (st) => (st >= 400 && st < 500) || st === 202);
    if (r.status === 202) await raw(s.port, { method: 'POST', path: `/api/jobs/${JSON.parse(r.body).id}/cancel`, headers: json, body: '{}' });
  }
  for (let i = 0; i < 20; i++) {
    const body = JSON.stringify(wrongType({ pixels: image.pixels, topK: 3 }, rng));
    await check(`predict body ${body.slice(0, 60)}`, { method: 'POST', path: `/api/jobs/${'0'.repeat(8)}/predict`, headers: json, body }, (st) => st >= 400 && st < 500);
  }
  assert.equal((await raw(s.port, { path: '/api/models', headers: token })).status, 200, 'still serving');
  } catch (e) {
    s.child.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(killer);
  }
  const { code } = await s.stop();
  assert.equal(code, 0, s.output());
  assert.doesNotMatch(s.output(), /TypeError|    at /, 'no exception in the server');
  assert.deepEqual([await hashTree(canary), await hashTree(zooTree)], before, 'no file changed');
  console.log(`serve fuzz cases: ${n}`, statuses);
  assert.ok(n >= 200);
  await rm(dir, { recursive: true, force: true });
});
