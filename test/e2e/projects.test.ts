// The web page as a user meets it: the real `graft serve` command with a projects folder, in
// Debian's chromium (playwright-core) with a fake webcam. The whole flow on real photos (the
// photo fixture, 118 photographs of 5 classes) at default settings against `graft train` on
// the same files; reload mid-training; stop; two tabs on two projects; the webcam; keyboard
// use and axe-core's WCAG 2.1 AA rules; hostile names and requests. Screenshots go to
// test-artifacts/.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { encodePng } from '../../src/report/png.js';
import { initBackend } from '../../src/engine/backend.js';
import { loadMnist } from '../../src/data/mnist.js';
import { takePerClass, type Dataset } from '../../src/data/dataset.js';
import { graft, lastJson, root } from '../cli.js';
import { raw, serve, type Serving } from '../serve.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
const photos = execFileSync(process.execPath, [join(root, 'scripts/photo-fixture.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
const AXE = readFileSync(join(root, 'node_modules/axe-core/axe.min.js'), 'utf8');
let server: Serving;
let browser: Browser;
let work: string;
let projectsDir: string;
let allPhotos: string;
let digits: Dataset;

const png = (d: Dataset, i: number) => encodePng(28, 28, 1, d.x.subarray(i * 784, (i + 1) * 784));
const ofLabel = (d: Dataset, label: string, n: number) => Array.from(d.labels.keys()).filter((i) => d.labels[i] === d.classNames.indexOf(label)).slice(0, n);

async function api(path: string, body?: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(new URL(path, server.url), body === undefined ? { headers: { 'x-graft-token': server.token } }
    : { method: 'POST', headers: { 'content-type': 'application/json', 'x-graft-token': server.token }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Record<string, any> };
}

async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
  const context = await browser.newContext({ viewport, acceptDownloads: true, permissions: ['camera'] });
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  return page;
}

const status = (page: Page) => page.textContent('#status').then((t) => t ?? '');
const waitStatus = (page: Page, re: RegExp, timeout = 600000) => page.waitForFunction((src) => new RegExp(src).test(document.querySelector('#status')!.textContent ?? ''), re.source, { timeout });

async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE);
  const r = await page.evaluate(() => (window as any).axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }));
  return (r.violations as any[]).filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.nodes.length} nodes, e.g. ${JSON.stringify(v.nodes[0].target)} ${v.nodes[0].failureSummary}`);
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (the README's test command does)`);
  await initBackend();
  await mkdir(artifacts, { recursive: true });
  digits = takePerClass(await loadMnist('test', [5, 6]), 40, 3);
  work = await mkdtemp(join(tmpdir(), 'graft-projects-e2e-'));
  projectsDir = join(work, 'projects');
  // All 118 photos of the fixture in one folder of 5 classes (15-30 per class).
  allPhotos = join(work, 'photos');
  for (const part of ['train', 'test']) await cp(join(photos, part), allPhotos, { recursive: true });
  server = await serve(['--port', '0', '--projects', projectsDir], { GRAFT_CACHE_DIR: join(work, 'cache') });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test('keyboard: the skip link reaches the diagram, a block offers its layers as cuts, focus stays; digits: classes, refused files named, train, predict, delete', async () => {
  const page = await newPage();
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  assert.match(await page.textContent('#cutinfo') ?? '', /the suggested cut/);
  await page.selectOption('#zoo', 'digits-cnn');
  await page.waitForFunction(() => /digits-cnn cut after/.test(document.querySelector('#diagram svg title')?.textContent ?? ''));
  // Two key presses from the top of the page to the first block of the diagram.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'diagram');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'button');
  const block = page.locator('#diagram .block[data-group="block3"]');
  await block.focus();
  assert.match(await block.evaluate((b) => b.textContent ?? ''), /^block3: \d+ layers\[/, 'its name is its drawn text');
  assert.equal(await page.textContent(`#${await block.getAttribute('aria-describedby')}`), 'Press to choose a cut inside this block.');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#cut-choices:not([hidden])');
  const offered = await page.$$eval('#cut-choices .choices button', (bs) => bs.map((b) => b.textContent));
  assert.ok(offered.some((t) => t?.startsWith('block3_relu')), `the block's layers are offered: ${offered}`);
  await page.locator('#cut-choices button', { hasText: /^block3_relu/ }).focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#diagram [data-cut="block3_relu"]');
  await page.waitForFunction(() => document.activeElement?.getAttribute('data-group') === 'block3', null, { timeout: 5000 }); // focus comes back to the block
  assert.match(await page.textContent('#cutinfo') ?? '', /Cut after "block3_relu" \(your choice\)/);
  assert.ok(await page.$('#diagram .block[data-state="new-head"]'), 'the new head is drawn');

  // As a user does: add a class, see it come, add the next. Each addition focuses its new
  // name field when the server answers; typing before that answer lands in the next class's
  // field (seen: "five" renamed class 2 when the second answer came between fill's focus and
  // its typing).
  for (const k of [1, 2]) {
    await page.click('#add-class');
    await page.waitForFunction((n) => document.querySelector('#classes-status')!.textContent!.startsWith(`Added "class ${n}"`), k);
  }
  for (const [k, label] of ['5', '6'].entries()) {
    await page.getByLabel(`Name of class ${k + 1}`).fill(label === '5' ? 'five' : 'six');
    await page.getByLabel(`Name of class ${k + 1}`).press('Tab');
    await page.waitForFunction((n) => [...document.querySelectorAll('.class input[id$="-name"]')].some((i) => (i as HTMLInputElement).value === n), label === '5' ? 'five' : 'six');
    const files = ofLabel(digits, label, 20).map((i) => ({ name: `${label}-${i}.png`, mimeType: 'image/png', buffer: png(digits, i) }));
    if (k === 0) files.push({ name: 'README.txt', mimeType: 'image/png', buffer: Buffer.from('not an image') }, { name: 'cut-off.png', mimeType: 'image/png', buffer: png(digits, 0).subarray(0, 60) });
    await page.getByLabel(`Add images to class ${k + 1}`).setInputFiles(files);
    await page.waitForFunction((want) => document.querySelector('#classes-status')!.textContent!.includes(want), `of ${files.length} images`);
  }
  const refused = await page.$$eval('.class ul.errors li', (li) => li.map((x) => x.textContent));
  assert.equal(refused.length, 2, JSON.stringify(refused));
  assert.match(refused.join('\n'), /"README\.txt" is not a PNG, JPEG, GIF or WebP image/);
  assert.match(refused.join('\n'), /"cut-off\.png" looks like a PNG file but is damaged or cut off, so it cannot be decoded .*; export it again or leave it out\./);
  assert.deepEqual(await page.$$eval('.class span.note', (s) => s.map((x) => x.textContent)), ['20 images', '20 images']);
  const alts = await page.locator('.class').first().locator('.thumbs img').evaluateAll((imgs) => imgs.map((i) => i.getAttribute('alt')).sort());
  assert.deepEqual(alts, ofLabel(digits, '5', 20).map((i) => `5-${i}.png`).sort(), 'thumbnails are named by their file');
  await page.fill('#s-finetuneEpochs', '500');
  await page.press('#s-finetuneEpochs', 'Tab');
  assert.match(await page.textContent('#e-finetuneEpochs') ?? '', /whole number from 0 to 50/);
  await page.fill('#s-finetuneEpochs', '1');
  await page.press('#s-finetuneEpochs', 'Tab');
  await page.waitForFunction(() => !document.querySelector('#e-finetuneEpochs')!.textContent);
  await page.click('#train');
  assert.equal(await page.isDisabled('#train'), true, 'Train is disabled while the project trains');
  await waitStatus(page, /^(Done|Training failed)/, 180000);
  assert.match(await status(page), /^Done/);
  assert.match(await page.textContent('#results') ?? '', /Test accuracy \d/);
  await page.setInputFiles('#predict-file', { name: 'query.png', mimeType: 'image/png', buffer: png(digits, ofLabel(digits, '5', 40)[35]) });
  await page.waitForSelector('#prediction li');
  assert.match(await page.textContent('#prediction li') ?? '', /^five/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const zip = await readFile(await download.path());
  for (const name of ['model.json', 'weights.bin', 'graft.json']) assert.ok(zip.includes(Buffer.from(name)), `zip holds ${name}`);
  // The ONNX download, run by the graft CLI on onnxruntime: the same top class as the page said.
  const [onnxDownload] = await Promise.all([page.waitForEvent('download'), page.click('#download-onnx')]);
  assert.match(onnxDownload.suggestedFilename(), /^graft-model-[0-9a-f]{8}\.onnx$/);
  const onnxDir = await mkdtemp(join(tmpdir(), 'graft-web-onnx-'));
  await writeFile(join(onnxDir, 'm.onnx'), await readFile(await onnxDownload.path()));
  await writeFile(join(onnxDir, 'query.png'), png(digits, ofLabel(digits, '5', 40)[35]));
  const viaOnnx = await graft(['predict', join(onnxDir, 'm.onnx'), join(onnxDir, 'query.png'), '--json']);
  assert.equal(viaOnnx.code, 0, viaOnnx.stderr);
  assert.equal(lastJson(viaOnnx.stdout).predictions[0].top[0].className, 'five');
  await rm(onnxDir, { recursive: true, force: true });
  await page.screenshot({ path: join(artifacts, 'projects-1-digits.png'), fullPage: true });
  // Delete one image: the count drops, and focus stays in the class.
  await page.getByRole('button', { name: /^Delete image 5-/ }).first().click();
  await page.waitForFunction(() => document.querySelector('.class span.note')!.textContent === '19 images');
  assert.match(await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? ''), /^Delete image /);
  await page.context().close();
});

let photoProject = '';

test('real photos at the default settings: the page\'s held-out accuracy is within 2 points of graft train on the same files; reload mid-training keeps the project', async () => {
  const page = await newPage();
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  await page.click('#new-project');
  await page.waitForFunction(() => document.querySelectorAll('.class').length === 0 && /Created/.test(document.querySelector('#project-status')!.textContent ?? ''));
  await page.fill('#project-name', 'photos');
  await page.press('#project-name', 'Tab');
  await page.waitForFunction(() => /Renamed/.test(document.querySelector('#project-status')!.textContent ?? ''));
  assert.equal(await page.inputValue('#zoo'), 'nsfwjs-mobilenet-v2');
  await page.setInputFiles('#folder', allPhotos);
  await page.waitForFunction(() => /^Loaded \d+ images into \d+ classes/.test(document.querySelector('#classes-status')!.textContent ?? ''), null, { timeout: 300000 });
  assert.match(await page.textContent('#classes-status') ?? '', /^Loaded 118 images into 5 classes\./);
  photoProject = await page.inputValue('#project');
  await page.screenshot({ path: join(artifacts, 'projects-2-photos.png'), fullPage: true });
  await page.click('#train');
  await waitStatus(page, /warm-up|fine-tune|Decod|Checking/);
  // Reload while it trains: the project, its classes and the running job come back.
  await page.reload();
  await page.waitForSelector('#diagram svg');
  assert.equal(await page.inputValue('#project-name'), 'photos');
  assert.equal(await page.$$eval('.class', (c) => c.length), 5);
  assert.equal(await page.isDisabled('#train'), true, 'the page follows the running job after a reload');
  await waitStatus(page, /^(Done|Training failed)/);
  assert.match(await status(page), /^Done/);
  const mine = (await api(`/api/projects/${photoProject}`)).body.result;
  await page.screenshot({ path: join(artifacts, 'projects-3-photos-trained.png'), fullPage: true });
  // graft train on the same files, the same held-out share and seed.
  const r = await graft(['train', '--base', 'mobilenet-v2', '--data', allPhotos, '--test-split', '0.15', '--seed', '42', '--out', join(work, 'cli-model'), '--json'], { env: { GRAFT_CACHE_DIR: join(work, 'cache') } });
  assert.equal(r.code, 0, r.stderr);
  const cli = lastJson(r.stdout);
  console.log(`photos: graft serve ${mine.test.accuracy} on ${mine.test.count}, graft train ${cli.testAccuracy}`);
  assert.equal(mine.test.count, cli.uncertainty.test.samples, 'the same number of held-out images');
  assert.ok(Math.abs(mine.test.accuracy - cli.testAccuracy) <= 0.02, `page ${mine.test.accuracy} vs graft train ${cli.testAccuracy}`);
  assert.ok(mine.test.accuracy > 0.6, `far above chance (0.2): ${mine.test.accuracy}`);
  assert.equal(await page.$$eval('#results table.confusion tbody tr', (r) => r.length), 5);
  await page.context().close();
});

test('stop: a running job stops after its batch with a checkpoint, the last model stays, and Resume goes on from it', async () => {
  const page = await newPage();
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  if (await page.inputValue('#project') !== photoProject) {
    await page.selectOption('#project', photoProject);
    await page.waitForFunction(() => document.querySelectorAll('.class').length === 5);
  }
  const before = (await api(`/api/projects/${photoProject}`)).body.result.finished;
  await page.click('#train');
  await page.waitForSelector('#stop:not([hidden])');
  await page.click('#stop');
  await waitStatus(page, /^(Stopped|Done)/, 300000);
  // The small-data run checks fine-tuning against the head in folds first: a stop there says so
  // (and Resume redoes the check); a stop in the fine-tune proper names its batch.
  const words = await status(page);
  const inCheck = /^Stopped: stopped while checking whether fine-tuning beats the head, before any fine-tune step; a checkpoint was written/.test(words);
  assert.ok(inCheck || /^Stopped: stopped in the fine-tune phase after 0 epoch\(s\) and \d+ batches; a checkpoint was written/.test(words), words);
  assert.equal(await page.isDisabled('#train'), false);
  const stopped = (await api(`/api/projects/${photoProject}`)).body;
  assert.equal(stopped.result.finished, before, 'the trained model and result are kept');
  assert.equal(stopped.stopped.phase, 'fine-tune');
  assert.ok((await readdir(join(projectsDir, photoProject, 'checkpoints'))).some((n) => /^ckpt-\d{6}$/.test(n)));
  // A reload offers Resume; it goes on from the checkpoint and ends with a new result.
  await page.reload();
  await page.waitForSelector('#resume:not([hidden])');
  assert.match(await status(page), inCheck ? /^Stopped while checking whether fine-tuning beats the head: Resume redoes the warm-up and the check/ : /^Stopped in the fine-tune phase/);
  await page.click('#resume');
  // The status still reads "Stopped in ..." until the resumed job speaks: wait for it first.
  await waitStatus(page, /^(Waiting|Started|Decod|Resuming|warm-up|fine-tune|Checking)/);
  await waitStatus(page, /^(Done|Training failed|Stopped)/);
  assert.match(await status(page), /^Done/);
  const resumed = (await api(`/api/projects/${photoProject}`)).body;
  assert.notEqual(resumed.result.finished, before);
  assert.equal(resumed.stopped, null);
  assert.equal(await page.isHidden('#resume'), true);
  await assert.rejects(readdir(join(projectsDir, photoProject, 'checkpoints')), { code: 'ENOENT' }, 'a finished run leaves no checkpoint');
  await page.context().close();
});

test('two tabs on two projects change only their own; the webcam records frames into a class and previews predictions', async () => {
  const one = await newPage();
  await one.goto(server.url);
  await one.waitForSelector('#diagram svg');
  const two = await newPage();
  await two.goto(server.url);
  await two.waitForSelector('#diagram svg');
  await two.click('#new-project');
  await two.waitForFunction(() => /Created/.test(document.querySelector('#project-status')!.textContent ?? ''));
  const second = await two.inputValue('#project');
  await two.click('#add-class');
  await two.waitForSelector('.class');
  if (await one.inputValue('#project') !== photoProject) {
    await one.selectOption('#project', photoProject);
    await one.waitForFunction(() => document.querySelectorAll('.class').length === 5);
  }
  await one.click('#camera');
  await one.waitForSelector('button.record:not([disabled])');
  const rec = one.getByRole('button', { name: /^Hold to record webcam images for clothes/ });
  const box = (await rec.boundingBox())!;
  await one.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await one.mouse.down();
  // Held until the button counts 3 frames (it says how many while recording), however slow the machine.
  await one.waitForFunction(() => [...document.querySelectorAll('button.record')].some((b) => /^Recording\.\.\. ([3-9]|\d\d+)$/.test(b.textContent ?? '')), undefined, { timeout: 60_000 });
  await one.mouse.up();
  await one.waitForFunction(() => /^Recorded \d+ frames for "clothes"\.$/.test(document.querySelector('#classes-status')!.textContent ?? ''));
  const frames = Number(/Recorded (\d+)/.exec(await one.textContent('#classes-status') ?? '')![1]);
  assert.ok(frames >= 3, `${frames} frames recorded`);
  const a = (await api(`/api/projects/${photoProject}`)).body;
  const b = (await api(`/api/projects/${second}`)).body;
  assert.equal(a.classes.find((c: any) => c.name === 'clothes').samples.filter((s: any) => /^webcam-.*\.jpg$/.test(s.name)).length, frames);
  assert.equal(b.classes.length, 1);
  assert.equal(a.classes.length, 5);
  await one.click('#live');
  await one.waitForSelector('#prediction ol[aria-label="Predictions for webcam frame"] li');
  await one.click('#live');
  await one.screenshot({ path: join(artifacts, 'projects-4-webcam.png'), fullPage: true });
  await one.context().close();
  await two.context().close();
});

test('accessibility: no serious or critical axe-core violations (WCAG 2.1 AA rules), at 1280 px and at 390x844 with 44 px targets and nothing sideways', async () => {
  for (const viewport of [{ width: 1280, height: 900 }, { width: 390, height: 844 }]) {
    const page = await newPage(viewport);
    await page.goto(server.url);
    await page.waitForSelector('#diagram svg');
    if (await page.inputValue('#project') !== photoProject) {
      await page.selectOption('#project', photoProject);
      await page.waitForFunction(() => document.querySelectorAll('.class').length === 5);
    }
    await page.waitForSelector('#results table');
    assert.deepEqual(await axeViolations(page), [], `at ${viewport.width} px`);
    if (viewport.width === 390) {
      const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
      assert.ok(scroll <= width + 1, `page is ${scroll}px wide in a ${width}px window`);
      const small = await page.$$eval('button, select, input:not(.visually-hidden), .filebutton', (els) => els.filter((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && (r.height < 44 || r.width < 44);
      }).map((e) => `${e.tagName} ${e.id || e.textContent?.slice(0, 30)} ${Math.round(e.getBoundingClientRect().width)}x${Math.round(e.getBoundingClientRect().height)}`));
      assert.deepEqual(small, [], 'tap targets of 44 px');
      await page.screenshot({ path: join(artifacts, 'projects-5-narrow.png'), fullPage: true });
    }
    await page.context().close();
  }
});

test('hostile names are shown as text; ids are never paths; a folder with foreign files is not emptied', async () => {
  const hostile = '<img src=x onerror="window.__pwned=1">';
  const p = (await api('/api/projects', { name: hostile, base: 'digits-cnn' })).body;
  await api(`/api/projects/${p.id}/classes`, { name: '"><svg onload="window.__pwned=2">' });
  const page = await newPage();
  const csp: string[] = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });
  await page.goto(server.url);
  await page.waitForSelector('#diagram svg');
  await page.selectOption('#project', p.id);
  await page.waitForFunction(() => document.querySelectorAll('.class').length === 1);
  assert.equal(await page.inputValue('#project-name'), hostile);
  assert.equal(await page.inputValue('.class input[id$="-name"]'), '"><svg onload="window.__pwned=2">');
  assert.equal(await page.evaluate(() => (window as any).__pwned), undefined, 'no script ran');
  assert.deepEqual(csp, []);
  await page.context().close();
  // Ids that are not Graft's are not found, whatever they spell.
  for (const bad of ['..', '..%2F..%2Fetc', 'aaaaaaaaaaaaaaaa', '%2e%2e']) {
    const r = await raw(server.port, { path: `/api/projects/${bad}`, headers: { 'x-graft-token': server.token } });
    assert.equal(r.status, 404, `${bad}: ${r.body}`);
  }
  // An upload must be the file's bytes; JSON there is refused, and so is a file over 32 MB.
  const cls = (await api(`/api/projects/${p.id}`)).body.classes[0].id;
  const asJson = await raw(server.port, { method: 'POST', path: `/api/projects/${p.id}/classes/${cls}/samples`, headers: { 'x-graft-token': server.token, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(asJson.status, 415);
  const big = await raw(server.port, { method: 'POST', path: `/api/projects/${p.id}/classes/${cls}/samples`, headers: { 'x-graft-token': server.token, 'content-type': 'application/octet-stream', 'x-file-name': 'huge.png', 'content-length': String(40 << 20) }, body: '' }).catch((e: Error) => ({ status: 0, body: e.message }));
  assert.equal(big.status, 413, big.body);
  assert.match(JSON.parse(big.body).error, /^"huge\.png" is larger than 32 MB/);
  // Deleting a project whose folder holds a file Graft did not write deletes nothing: checked
  // first (it deleted the images and the model, then answered, leaving a broken project).
  const png = Buffer.from(encodePng(8, 8, 3, new Uint8Array(8 * 8 * 3).map((_, i) => (i * 37) % 251)));
  const up = await raw(server.port, { method: 'POST', path: `/api/projects/${p.id}/classes/${cls}/samples`, headers: { 'x-graft-token': server.token, 'content-type': 'application/octet-stream', 'x-file-name': 'a.png' }, body: png });
  assert.equal(up.status, 201, up.body);
  const foreign = join(projectsDir, p.id, 'notes.txt');
  await writeFile(foreign, 'mine');
  const before = (await readdir(join(projectsDir, p.id, 'samples'))).sort();
  const del = await api(`/api/projects/${p.id}/delete`, {});
  assert.equal(del.status, 409);
  assert.equal(del.body.code, 'FOREIGN_FILES');
  assert.match(String(del.body.error), /not deleted: .* holds 1 file\(s\) Graft did not write \(notes\.txt\)/);
  assert.equal(await readFile(foreign, 'utf8'), 'mine');
  assert.deepEqual((await readdir(join(projectsDir, p.id, 'samples'))).sort(), before, 'its images are all there');
  assert.equal((await api(`/api/projects/${p.id}`)).status, 200, 'the project is whole');
  // A copied project.json whose ids are paths is refused before any file is touched.
  const victim = join(work, 'victim.png');
  await writeFile(victim, 'keep me');
  await rm(foreign);
  const pj = join(projectsDir, p.id, 'project.json');
  const doc = JSON.parse(await readFile(pj, 'utf8'));
  doc.classes[0].samples.push({ id: `../../../${'x'.repeat(2)}/../victim`, name: 'v', ext: 'png', bytes: 7 });
  await writeFile(pj, JSON.stringify(doc));
  await server.stop();
  server = await serve(['--port', '0', '--projects', projectsDir], { GRAFT_CACHE_DIR: join(work, 'cache') });
  const del2 = await api(`/api/projects/${p.id}/delete`, {});
  assert.equal(del2.status, 500);
  assert.equal(del2.body.code, 'BAD_PROJECT');
  assert.equal(await readFile(victim, 'utf8'), 'keep me');
  assert.deepEqual((await readdir(join(projectsDir, p.id, 'samples'))).sort(), before);
  // Put right, it deletes.
  doc.classes[0].samples.pop();
  await writeFile(pj, JSON.stringify(doc));
  await server.stop();
  server = await serve(['--port', '0', '--projects', projectsDir], { GRAFT_CACHE_DIR: join(work, 'cache') });
  assert.equal((await api(`/api/projects/${p.id}/delete`, {})).status, 200);
  await assert.rejects(stat(join(projectsDir, p.id)), { code: 'ENOENT' });
});

test('a restarted server has the projects, their results and models; a setting it is given is kept', async () => {
  await api(`/api/projects/${photoProject}`, { settings: { findLr: true } });
  assert.equal((await api(`/api/projects/${photoProject}`, { settings: { lr: 7 } })).status, 400, 'a setting out of range is refused');
  // Names of Object.prototype's members are unknown settings, not a 500.
  for (const k of ['hasOwnProperty', 'valueOf', 'toString', 'constructor']) {
    const r = await api(`/api/projects/${photoProject}`, { settings: { [k]: 1 } });
    assert.equal(r.status, 400, k);
    assert.match(String(r.body.error), new RegExp(`settings: unknown field "${k}"`));
  }
  const proto = await api(`/api/projects/${photoProject}`, JSON.parse('{"settings":{"__proto__":{"lr":1}}}'));
  assert.equal(proto.status, 400);
  await server.stop();
  server = await serve(['--port', '0', '--projects', projectsDir], { GRAFT_CACHE_DIR: join(work, 'cache') });
  const list = (await api('/api/projects')).body as unknown as { id: string; name: string }[];
  assert.ok(list.some((p) => p.id === photoProject && p.name === 'photos'), JSON.stringify(list));
  const p = (await api(`/api/projects/${photoProject}`)).body;
  assert.equal(p.settings.findLr, true);
  assert.equal(p.classes.length, 5);
  assert.ok(p.result.test.accuracy > 0.6);
  const img = await readFile(join(photos, 'test', 'mammals', (await readdir(join(photos, 'test', 'mammals')))[0]));
  const res = await fetch(new URL(`/api/projects/${photoProject}/predict`, server.url), { method: 'POST', headers: { 'x-graft-token': server.token, 'content-type': 'application/octet-stream', 'x-file-name': 'mammal.png' }, body: new Uint8Array(img) });
  assert.equal(res.status, 200);
  const top = (await res.json() as { top: { className: string }[] }).top;
  assert.equal(top.length, 3);
  assert.ok(p.classes.some((c: { name: string }) => c.name === top[0].className));
});
