// graft serve at real sizes: N photos of about M MB each (JPEG) uploaded into one project the
// way the page sends them (one file per request, 4 at a time), then one training job on them.
// Prints the upload rate, the server's peak memory, the training time and what was refused.
// The photos are `distinct` different noise pictures (5 classes of colour-tinted noise, which
// compresses to about M MB at quality 100), each uploaded N / distinct times under its own name,
// so that generating them does not take longer than the run.
//
//   npm run bench:serve -- [--images 2000] [--mb 5] [--distinct 100] [--finetune-epochs 1]

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { makeRng } from '../src/data/random.js';

const { values } = parseArgs({ options: { images: { type: 'string' }, mb: { type: 'string' }, distinct: { type: 'string' }, 'finetune-epochs': { type: 'string' } } });
const images = Number(values.images ?? 2000);
const mb = Number(values.mb ?? 5);
const distinct = Math.min(images, Number(values.distinct ?? 100));
const finetuneEpochs = Number(values['finetune-epochs'] ?? 1);
const classes = ['red', 'green', 'blue', 'yellow', 'grey'];
const tint: Record<string, number[]> = { red: [200, 60, 60], green: [60, 190, 70], blue: [60, 70, 200], yellow: [200, 190, 60], grey: [128, 128, 128] };

async function photo(i: number): Promise<Buffer> {
  // Noise compresses badly: width x height chosen so that a quality-100 JPEG is about `mb` MB.
  const side = Math.round(Math.sqrt((mb * 1024 * 1024) / 2.7));
  const rng = makeRng(1000 + i);
  const c = tint[classes[i % classes.length]];
  const px = Buffer.alloc(side * side * 3);
  for (let p = 0; p < px.length; p++) px[p] = Math.max(0, Math.min(255, c[p % 3] + (rng() - 0.5) * 160));
  return sharp(px, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
}

const work = await mkdtemp(join(tmpdir(), 'graft-bench-serve-'));
const child = spawn(process.execPath, [join(process.cwd(), 'bin', 'graft.js'), 'serve', '--port', '0', '--projects', join(work, 'projects')], { env: { ...process.env, GRAFT_CACHE_DIR: join(work, 'cache') } });
let out = '';
child.stdout.on('data', (d) => { out += d; });
child.stderr.on('data', (d) => { out += d; });
const peakRss = async () => {
  const s = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024;
};
try {
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => { const m = /serving at (http:\/\/\S+\/)/.exec(out); if (m) { clearInterval(t); resolve(m[1]); } }, 100);
    child.on('exit', (code) => reject(new Error(`graft serve exited ${code}: ${out}`)));
  });
  const token = /graft-token" content="([^"]+)"/.exec(await (await fetch(url)).text())![1];
  const H = { 'x-graft-token': token };
  const post = async (path: string, body: unknown) => (await fetch(new URL(path, url), { method: 'POST', headers: { ...H, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<any>;
  const get = async (path: string) => (await fetch(new URL(path, url), { headers: H })).json() as Promise<any>;
  const t0 = Date.now();
  const files: Buffer[] = [];
  for (let i = 0; i < distinct; i++) files.push(await photo(i));
  const generated = (Date.now() - t0) / 1000;
  const bytes = files.reduce((n, f) => n + f.length, 0) / distinct;
  const p = await post('/api/projects', { name: 'bench' });
  const ids: string[] = [];
  for (const c of classes) ids.push((await post(`/api/projects/${p.id}/classes`, { name: c })).class.id);
  let next = 0;
  const refused: string[] = [];
  const t1 = Date.now();
  const worker = async () => {
    for (let i = next++; i < images; i = next++) {
      const d = i % distinct;
      const res = await fetch(new URL(`/api/projects/${p.id}/classes/${ids[d % classes.length]}/samples`, url), {
        method: 'POST', headers: { ...H, 'content-type': 'application/octet-stream', 'x-file-name': `photo-${i}.jpg` }, body: new Uint8Array(files[d]) });
      if (res.status !== 201) refused.push(`photo-${i}.jpg: ${res.status} ${(await res.text()).slice(0, 120)}`);
      else await res.arrayBuffer();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const uploadSeconds = (Date.now() - t1) / 1000;
  const rssAfterUpload = await peakRss();
  await post(`/api/projects/${p.id}`, { settings: { finetuneEpochs } });
  const t2 = Date.now();
  const job = await post(`/api/projects/${p.id}/train`, {});
  let status = job.status as string;
  let last: any;
  while (status === 'queued' || status === 'running') {
    await new Promise((r) => setTimeout(r, 2000));
    last = await get(`/api/jobs/${job.id}`);
    status = last.status;
  }
  const trainSeconds = (Date.now() - t2) / 1000;
  const project = await get(`/api/projects/${p.id}`);
  const result = {
    images, distinct, mbPerImage: +(bytes / 1048576).toFixed(2), totalGB: +((images * bytes) / 1024 ** 3).toFixed(2), generatedSeconds: generated,
    uploadSeconds, uploadMBps: +((images * bytes) / 1048576 / uploadSeconds).toFixed(1), uploadsPerSecond: +(images / uploadSeconds).toFixed(1), refused: refused.length, refusedExamples: refused.slice(0, 3),
    stored: project.classes.reduce((n: number, c: any) => n + c.samples.length, 0), trainStatus: status, trainSeconds,
    trainedOn: project.result?.trainedOn, testAccuracy: project.result?.test?.accuracy, lastEvent: status === 'done' ? undefined : last?.events?.at(-1),
    serverPeakRssMB: Math.round(await peakRss()), serverPeakRssAfterUploadMB: Math.round(rssAfterUpload),
  };
  console.log(JSON.stringify(result));
} finally {
  child.kill('SIGINT');
  await new Promise((r) => child.on('exit', r));
  await rm(work, { recursive: true, force: true });
}
