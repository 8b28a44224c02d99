// Bounded reads and clean errors through the real graft process: FIFOs, devices behind
// symbolic links, hanging and dribbling HTTP servers (on 127.0.0.1), damaged graft.json,
// non-finite input. Each case ends in a coded error, as one JSON object with --json, within
// seconds, with no stack trace.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../../src/engine/backend.js';
import { saveModel } from '../../src/model/io.js';
import { versions } from '../../src/model/meta.js';
import { root } from '../cli.js';

const bin = join(root, 'bin', 'graft.js');
const zoo = join(root, 'zoo', 'digits-cnn');
let dir: string;
let http: Server;
let base: string;

function graft(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args, '--json'], { cwd: dir, timeout: 60000, env: { ...process.env, GRAFT_CACHE_DIR: join(tmpdir(), 'graft-test-cache'), ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr, ms: Date.now() - t });
    });
  });
}

async function expectError(args: string[], code: string, message: RegExp, env: Record<string, string> = {}, withinMs = 15000): Promise<void> {
  const r = await graft(args, env);
  assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  const e = JSON.parse(r.stdout.trim().split('\n').at(-1)!).error;
  assert.equal(e.code, code, `${args.join(' ')}: ${r.stdout}`);
  assert.match(e.message, message);
  assert.ok(e.fix, 'a fix is given');
  assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace: ${r.stderr}`);
  assert.ok(r.ms < withinMs, `${args.join(' ')} took ${r.ms} ms`);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'graft-reads-'));
  http = createServer((req, res) => {
    const u = req.url ?? '/';
    if (u.startsWith('/hang/')) return; // accepts and never answers
    if (u.startsWith('/slow/')) { res.writeHead(200); const t = setInterval(() => res.write('{'), 200); req.on('close', () => clearInterval(t)); return; }
    if (u.startsWith('/loop/')) { res.writeHead(302, { location: `/loop/${Math.random()}` }); res.end(); return; }
    if (u.startsWith('/huge/')) { res.writeHead(200, { 'content-length': String(2 ** 40) }); res.write('x'); return; }
    if (u.startsWith('/big/')) {
      readFile(join(dir, 'big', u.slice('/big/'.length))).then((b) => res.end(b), () => { res.writeHead(404); res.end(); });
      return;
    }
    if (u.startsWith('/html/')) {
      const f = u.slice('/html/'.length);
      if (f === 'graft.json') { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><p>Sign in</p>'); return; }
      readFile(join(zoo, f)).then((b) => res.end(b), () => { res.writeHead(404); res.end(); });
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

after(async () => {
  http.closeAllConnections();
  http.close();
  await rm(dir, { recursive: true, force: true });
});

async function model(name: string, change: (files: { json: string; weights: string; meta: string }) => Promise<void>): Promise<string> {
  const m = join(dir, name);
  await cp(zoo, m, { recursive: true });
  await change({ json: join(m, 'model.json'), weights: join(m, 'weights.bin'), meta: join(m, 'graft.json') });
  return m;
}

async function fifo(path: string): Promise<void> {
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => execFile('mkfifo', [path], (e) => (e ? reject(e) : resolve())));
}

test('FIFOs and devices are refused at once, never read', async () => {
  const m1 = await model('fifo-json', async (f) => fifo(f.json));
  await expectError(['inspect', m1], 'NOT_A_FILE', /model\.json is a FIFO \(named pipe\), not a regular file/);
  const m2 = await model('fifo-shard', async (f) => fifo(f.weights));
  await expectError(['inspect', m2], 'NOT_A_FILE', /weights\.bin is a FIFO/);
  const m3 = await model('fifo-meta', async (f) => fifo(f.meta));
  await expectError(['inspect', m3], 'NOT_A_FILE', /graft\.json is a FIFO/);
  const m4 = await model('zero-json', async (f) => { await rm(f.json); await symlink('/dev/zero', f.json); });
  await expectError(['inspect', m4], 'NOT_A_FILE', /\(a symbolic link to \/dev\/zero\) is a character device/);
  await fifo(join(dir, 'pipe.csv'));
  await expectError(['train', '--base', 'digits-cnn', '--data', 'pipe.csv', '--out', 'o1'], 'NOT_A_FILE', /pipe\.csv is a FIFO/);
  await symlink('/dev/zero', join(dir, 'zero.csv'));
  await expectError(['train', '--base', 'digits-cnn', '--data', 'zero.csv', '--out', 'o2'], 'NOT_A_FILE', /character device/);
  await fifo(join(dir, 'x-images-idx3-ubyte'));
  await expectError(['train', '--base', 'digits-cnn', '--data', 'x-images-idx3-ubyte', '--out', 'o3'], 'NOT_A_FILE', /idx3-ubyte is a FIFO/);
  await fifo(join(dir, 'k.h5'));
  await expectError(['inspect', 'k.h5'], 'NOT_A_FILE', /k\.h5 is a FIFO/);
});

test('a FIFO or /dev/zero among images is skipped with its reason; the rest trains', async () => {
  const data = join(dir, 'digits');
  const sharp = (await import('sharp')).default;
  for (const [cls, v] of [['a', 20], ['b', 230]] as const) {
    await mkdir(join(data, cls), { recursive: true });
    for (let i = 0; i < 6; i++) await writeFile(join(data, cls, `${i}.png`), await sharp(Buffer.alloc(784, v + i), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer());
  }
  await symlink('/dev/zero', join(data, 'a', 'x.png'));
  await fifo(join(data, 'b', 'p.png'));
  const r = await graft(['train', '--base', 'digits-cnn', '--data', 'digits', '--warmup-epochs', '1', '--finetune-epochs', '0', '--out', 'from-images']);
  assert.equal(r.code, 0, r.stderr);
  const skipped = JSON.parse(r.stdout.trim().split('\n').at(-1)!).skipped as { path: string; reason: string }[];
  assert.deepEqual(skipped.map((s) => s.path.split('/').pop()).sort(), ['p.png', 'x.png']);
  assert.ok(r.ms < 30000);
});

test('HTTP: a server that hangs, dribbles, loops, lies about its size or sends HTML ends in a coded error in seconds', async () => {
  const fast = { GRAFT_HTTP_IDLE_MS: '1500' };
  await expectError(['inspect', `${base}/hang/`], 'TIMEOUT', /nothing arrived for 1\.5 s/, fast, 8000);
  await expectError(['inspect', `${base}/slow/`], 'TIMEOUT', /bytes\/s over \d s, below the floor of 1024 bytes\/s/, fast, 8000);
  await expectError(['inspect', `${base}/loop/`], 'NETWORK', /redirects more than 5 times/);
  await expectError(['inspect', `${base}/huge/`], 'TOO_LARGE', /is 1099511627776 bytes or more/);
  await expectError(['inspect', `${base}/html/`], 'BAD_MODEL', /graft\.json is not valid JSON \(it looks like an HTML page\)/);
  await expectError(['train', '--base', `${base}/html/`, '--data', 'mnist-train:5-9', '--out', 'o4'], 'BAD_MODEL', /looks like an HTML page/);
  // With the default limits, a server that never answers is given up within 10 s.
  await expectError(['inspect', `${base}/hang/`], 'TIMEOUT', /nothing arrived for 10 s/, {}, 14000);
});

test('graft.json is checked before use; non-finite weights and CSV values are caught where they enter', async () => {
  const edit = (change: (m: Record<string, any>) => void) => async (f: { meta: string }) => {
    const m = JSON.parse(await readFile(f.meta, 'utf8'));
    change(m);
    await writeFile(f.meta, JSON.stringify(m).replace('"__INF__"', '1e400'));
  };
  await expectError(['inspect', await model('classnames-5', edit((m) => { m.classNames = 5; }))], 'BAD_MODEL', /"classNames" must be a list of strings/);
  await expectError(['inspect', await model('too-few', edit((m) => { m.classNames = ['0', '1']; m.heads[0].classNames = ['0', '1']; }))], 'BAD_MODEL', /names 2 classes, but its output layer predictions has 5 units/);
  await expectError(['inspect', await model('mean-len', edit((m) => { m.preprocessing.mean = [0.1, 0.2, 0.3]; }))], 'BAD_MODEL', /"preprocessing\.mean" has 3 values; the input has 1 channels/);
  await expectError(['inspect', await model('scale-inf', edit((m) => { m.preprocessing.scale = '__INF__'; }))], 'BAD_MODEL', /"preprocessing\.scale" must be a finite number/);
  await expectError(['inspect', await model('not-graft', edit((m) => { m.format = 'other'; }))], 'BAD_MODEL', /has format "other"/);
  const nan = await model('nan-weights', async (f) => {
    const w = await readFile(f.weights);
    w.writeFloatLE(NaN, 4 * 10);
    await writeFile(f.weights, w);
  });
  await expectError(['train', '--base', nan, '--data', 'mnist-train:5-9', '--out', 'o5'], 'BAD_MODEL', /weight "block1_conv\/kernel" \(layer block1_conv\) holds NaN at index 10/);
  await writeFile(join(dir, 'big.csv'), 'a,b,label\n1,2,x\n\n3,1e39,y\n');
  await expectError(['train', '--base', 'digits-cnn', '--data', 'big.csv', '--out', 'o6'], 'BAD_DATA', /big\.csv line 4, column 2 \("b"\): 1e39 is outside the float32 range/);
  await writeFile(join(dir, 'nan.csv'), 'a,b,label\n1,NaN,x\n');
  await expectError(['train', '--base', 'digits-cnn', '--data', 'nan.csv', '--out', 'o7'], 'BAD_DATA', /line 2, column 2 \("b"\): "NaN" is not a finite number/);
});

test('a large download shows its progress', async () => {
  await initBackend();
  const input = tfl.input({ shape: [1000] });
  const out = tfl.layers.dense({ units: 3000, name: 'wide' }).apply(input) as tfl.SymbolicTensor;
  await saveModel(tfl.model({ inputs: input, outputs: out }), join(dir, 'big'), { format: 'graft/1', classNames: [], preprocessing: { inputShape: [1000] }, heads: [], versions: versions(), createdAt: '' });
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, 'inspect', `${base}/big/`], { cwd: dir, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => resolve({ code: err ? 1 : 0, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /downloading http:\/\/127\.0\.0\.1:\d+\/big\/weights\.bin: 11\.5 of 11\.5 MB/);
});
