// graft export as a user runs it: a model trained with the old head kept, exported to fp32,
// fp16 and int8 (calibrated on the training data graft.json recorded), each checked by an
// independent runtime (onnxruntime) against the tfjs model; predict and evaluate on the
// exports; the folder's current export chosen by itself and dropped when the weights change;
// and --out that would replace a file Graft did not write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { graft, lastJson } from '../cli.js';

const dir = await mkdtemp(join(tmpdir(), 'graft-export-'));
const model = join(dir, 'model');
const trained = await graft(['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '60', '--keep-old', 'head', '--finetune-epochs', '1', '--out', model, '--json']);

test.after(() => rm(dir, { recursive: true, force: true }));

test('fp32 with both heads equals the tfjs model within 1e-4; int8 and fp16 agree on MNIST 5-9 and keep its accuracy within a point', async () => {
  assert.equal(trained.code, 0, trained.stderr);
  const fp32 = await graft(['export', model, '--head', 'all', '--json']);
  assert.equal(fp32.code, 0, fp32.stderr);
  const a = lastJson(fp32.stdout);
  assert.equal(a.out, join(model, 'model.onnx'));
  assert.deepEqual(a.outputs.map((o: { head: string }) => o.head), ['new', 'old']);
  assert.deepEqual(a.outputs[1].classNames, ['0', '1', '2', '3', '4']);
  assert.ok(a.check.maxAbsDiff < 1e-4, `fp32 differs by ${a.check.maxAbsDiff}`);
  assert.equal(a.check.top1Agreement, 1);

  const int8 = await graft(['export', model, '--quantize', 'int8', '--test-data', 'mnist-test:5-9', '--json']);
  assert.equal(int8.code, 0, int8.stderr);
  const q = lastJson(int8.stdout);
  assert.equal(q.calibration.on, 'mnist-train:5-9', 'calibrated on the training data graft.json recorded');
  assert.equal(q.calibration.samples, 256);
  assert.ok(q.check.top1Agreement >= 0.99, `int8 agrees on ${q.check.top1Agreement}`);
  assert.ok(Math.abs(q.check.accuracy.onnx - q.check.accuracy.tfjs) <= 0.01, JSON.stringify(q.check.accuracy));
  assert.ok(q.bytes < a.bytes, `int8 ${q.bytes} bytes vs fp32 ${a.bytes}`);

  const fp16 = await graft(['export', model, '--quantize', 'fp16', '--layout', 'nchw', '--include-preprocessing', '--test-data', 'mnist-test:5-9', '--json']);
  assert.equal(fp16.code, 0, fp16.stderr);
  const h = lastJson(fp16.stdout);
  assert.ok(h.check.maxAbsDiff < 1e-2, `fp16 differs by ${h.check.maxAbsDiff}`);
  assert.ok(h.check.top1Agreement >= 0.99);

  // The whole test set through the int8 file alone, and through the tfjs model.
  const e8 = await graft(['evaluate', join(model, 'model.int8.onnx'), 'mnist-test:5-9', '--json']);
  const et = await graft(['evaluate', model, 'mnist-test:5-9', '--engine', 'tfjs', '--json']);
  assert.equal(e8.code, 0, e8.stderr);
  const [r8, rt] = [lastJson(e8.stdout), lastJson(et.stdout)];
  assert.equal(r8.engine, 'onnxruntime');
  assert.equal(r8.count, 4861);
  assert.ok(Math.abs(r8.accuracy - rt.accuracy) <= 0.01, `int8 ${r8.accuracy} vs tfjs ${rt.accuracy}`);
  assert.ok(rt.accuracy > 0.95);

  // A file of one head other than "new" answers without --head.
  const old = join(dir, 'old-head.onnx');
  assert.equal((await graft(['export', model, '--head', 'old', '--out', old])).code, 0);
  const eo = await graft(['evaluate', old, 'mnist-test:0-4', '--json']);
  assert.equal(eo.code, 0, eo.stderr);
  assert.ok(lastJson(eo.stdout).accuracy > 0.9);
  const all = await graft(['evaluate', old, 'mnist-test:0-4', '--head', 'all']);
  assert.match(all.stderr, /scores one head at a time/);
});

test('int8 is checked on images it was not calibrated on, and flat, copied or too few calibration images are warned about', async () => {
  assert.equal(trained.code, 0, trained.stderr);
  // Default: calibrated on 256 of the training data graft.json records, checked on others of it.
  const d = await graft(['export', model, '--quantize', 'int8', '--out', join(dir, 'held.onnx'), '--json']);
  assert.equal(d.code, 0, d.stderr);
  const q = lastJson(d.stdout);
  assert.equal(q.calibration.samples, 256);
  assert.deepEqual(q.calibration.warnings, []);
  assert.match(q.check.from, /^held out of the calibration data: not among the \d+ calibrated on$/);
  // 12 copies of one grey image: said in words and JSON, and the check runs on the training data.
  const grey = join(dir, 'grey', 'any');
  await mkdir(grey, { recursive: true });
  for (let i = 0; i < 12; i++) await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toFile(join(grey, `${i}.png`));
  const g = await graft(['export', model, '--quantize', 'int8', '--calibration', join(dir, 'grey'), '--out', join(dir, 'grey.onnx'), '--json']);
  assert.equal(g.code, 0, g.stderr);
  const qg = lastJson(g.stdout);
  // The copies are left out as the folder is read, and counted.
  assert.match(g.stderr, /calibration: only 1 calibration sample \(.*\); 1 of the 1 calibration samples is one flat colour.*; 1 distinct sample for 5 classes, fewer than one per class; 11 calibration images were copies of others and left out\. Give --calibration/);
  assert.equal(qg.calibration.warnings.length, 4);
  // Twelve different flat colours (distinct once made grey for digits-cnn): flat, each of them.
  const colours = join(dir, 'colours', '5');
  await mkdir(colours, { recursive: true });
  for (let i = 0; i < 12; i++) await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 20 * i + 5, g: 20 * i + 5, b: 20 * i + 5 } } }).png().toFile(join(colours, `${i}.png`));
  const c = await graft(['export', model, '--quantize', 'int8', '--calibration', join(dir, 'colours'), '--out', join(dir, 'colours.onnx'), '--json']);
  assert.equal(c.code, 0, c.stderr);
  assert.match(lastJson(c.stdout).calibration.warnings.join('\n'), /12 of the 12 calibration samples are one flat colour/);
  // --test-data that is the calibration data: said.
  const same = await graft(['export', model, '--quantize', 'int8', '--calibration', join(dir, 'colours'), '--test-data', join(dir, 'colours'), '--out', join(dir, 'same.onnx'), '--json']);
  assert.match(lastJson(same.stdout).calibration.warnings.join('\n'), /12 of the 12 --test-data samples are calibration samples too/);
  assert.equal(qg.check.from, 'the training data graft.json records, not calibrated on');
  assert.match(qg.check.on, /^mnist-train/);
  assert.ok(qg.check.samples > 12);
});

test('predict runs the folder\'s current fp32 export by itself, the old head too; a retrained folder goes back to tfjs', async () => {
  assert.equal(trained.code, 0, trained.stderr);
  const auto = await graft(['predict', model, 'mnist-test:5-9', '--limit', '8', '--head', 'all', '--json']);
  const tfjs = await graft(['predict', model, 'mnist-test:5-9', '--limit', '8', '--head', 'all', '--engine', 'tfjs', '--json']);
  assert.equal(auto.code, 0, auto.stderr);
  const [o, t] = [lastJson(auto.stdout), lastJson(tfjs.stdout)];
  assert.equal(o.engine, 'onnxruntime');
  assert.equal(o.onnx, join(model, 'model.onnx'));
  assert.notEqual(t.engine, 'onnxruntime');
  assert.deepEqual(o.precision, { requested: 'default', used: 'fp32', why: 'onnxruntime runs the export in fp32' });
  // --precision bf16 is not answered by the fp32 export: the native engine runs it, and says why.
  const bf16 = await graft(['predict', model, 'mnist-test:5-9', '--limit', '2', '--precision', 'bf16']);
  if (!/native engine .*(not built|turned off|unavailable)/.test(bf16.stderr) && bf16.code === 0) {
    assert.match(bf16.stdout, /engine: the native engine \(libtorch\), bf16 \(bf16 requested[\s\S]*not using the ONNX export: it computes in fp32, and --precision bf16 runs on the native engine/);
    const j = lastJson((await graft(['predict', model, 'mnist-test:5-9', '--limit', '2', '--precision', 'bf16', '--json'])).stdout);
    assert.equal(j.engine, 'native');
    assert.equal(j.precision.used, 'bf16');
    assert.equal(j.precision.requested, 'bf16');
  }
  for (let i = 0; i < 8; i++) {
    for (let k = 0; k < 2; k++) {
      const [x, y] = [o.predictions[i].heads[k].top[0], t.predictions[i].heads[k].top[0]];
      assert.equal(x.className, y.className);
      assert.ok(Math.abs(x.probability - y.probability) < 1e-4);
    }
  }
  const words = await graft(['predict', join(model, 'model.int8.onnx'), 'mnist-test:5-9', '--limit', '2']);
  assert.match(words.stdout, /engine: .*model\.int8\.onnx on onnxruntime \(int8\)/);

  // Retrained into the same folder: the exports are gone with the old weights.
  const again = await graft(['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '20', '--finetune-epochs', '0', '--out', model, '--json']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /the earlier model's exports \(.*model\.onnx.*\), of the old weights, will be removed when the new model is saved/);
  await assert.rejects(lstat(join(model, 'model.onnx')));
  const after = lastJson((await graft(['predict', model, 'mnist-test:5-9', '--limit', '2', '--json'])).stdout);
  assert.notEqual(after.engine, 'onnxruntime');
  const forced = await graft(['predict', model, 'mnist-test:5-9', '--engine', 'onnx']);
  assert.equal(forced.code, 1);
  assert.match(forced.stderr, /no current fp32 ONNX export[\s\S]*graft export/);
});

test('--out never replaces what Graft did not write, and says what to do', async () => {
  assert.equal(trained.code, 0, trained.stderr);
  const theirs = join(dir, 'theirs.onnx');
  await writeFile(theirs, 'a model of their own');
  const r1 = await graft(['export', model, '--out', theirs]);
  assert.equal(r1.code, 1);
  assert.match(r1.stderr, /OUT_NOT_SAFE|did not write/);
  assert.equal(await readFile(theirs, 'utf8'), 'a model of their own');

  const folder = join(dir, 'a-folder.onnx');
  await mkdir(folder);
  const r2 = await graft(['export', model, '--out', folder]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /folder/);

  await symlink(theirs, join(dir, 'link.onnx'));
  const r3 = await graft(['export', model, '--out', join(dir, 'link.onnx')]);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, /symbolic link/);
  assert.equal(await readFile(theirs, 'utf8'), 'a model of their own');

  const r4 = await graft(['export', model, '--out', join(dir, 'model.txt')]);
  assert.equal(r4.code, 1);
  assert.match(r4.stderr, /does not end in \.onnx/);

  const r5 = await graft(['export', 'digits-cnn']);
  assert.equal(r5.code, 1);
  assert.match(r5.stderr, /needs --out/);

  const r6 = await graft(['export', model, '--quantize', 'int4']);
  assert.equal(r6.code, 1);
  assert.match(r6.stderr, /--quantize "int4" is not understood[\s\S]*none, fp16 or int8/);

  // Its own file it replaces.
  const mine = join(dir, 'mine.onnx');
  assert.equal((await graft(['export', model, '--out', mine])).code, 0);
  assert.equal((await graft(['export', model, '--out', mine])).code, 0);
  const r7 = await graft(['predict', mine, 'mnist-test:5-9', '--engine', 'tfjs']);
  assert.equal(r7.code, 1);
  assert.match(r7.stderr, /ONNX file: it runs on onnxruntime/);
});

test('an --extend model (one head for old and new classes) exports within 1e-4 of tfjs', async () => {
  const extended = join(dir, 'extended');
  const t = await graft(['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '30', '--extend', '--finetune-epochs', '1', '--out', extended, '--json']);
  assert.equal(t.code, 0, t.stderr);
  const r = await graft(['export', extended, '--test-data', 'mnist-test:0-9', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const o = lastJson(r.stdout);
  assert.deepEqual(o.outputs[0].classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.equal(o.check.samples, 512);
  assert.ok(o.check.maxAbsDiff < 1e-4, `differs by ${o.check.maxAbsDiff}`);
  assert.equal(o.check.accuracy.onnx, o.check.accuracy.tfjs);
});

test('what a stranger tried: another model\'s export, data folders, relative and new paths, a one-head file, empty and foreign files', async () => {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  for (const m of [a, b]) {
    const t = await graft(['train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '20', '--finetune-epochs', '0', '--out', m, '--json']);
    assert.equal(t.code, 0, t.stderr);
  }
  assert.equal((await graft(['export', b])).code, 0);
  const theirs = await readFile(join(b, 'model.onnx'));
  // a's export may not replace b's, though both are Graft exports.
  const r1 = await graft(['export', a, '--out', join(b, 'model.onnx')]);
  assert.equal(r1.code, 1);
  assert.match(r1.stderr, /not an export of this model recorded in its graft\.json/);
  assert.deepEqual(await readFile(join(b, 'model.onnx')), theirs);
  // Nothing is written into data folders.
  const data = join(dir, 'cal');
  await mkdir(join(data, 'x'), { recursive: true });
  const r2 = await graft(['export', a, '--quantize', 'int8', '--calibration', data, '--out', join(data, 'x', 'm.onnx')]);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /inside the calibration data/);
  // A relative --out outside the folder is recorded so that predict finds it; a new folder is made.
  const rel = await graft(['export', a, '--out', join(dir, 'new-folder', 'a.onnx').replace(`${process.cwd()}/`, '')]);
  assert.equal(rel.code, 0, rel.stderr);
  const meta = JSON.parse(await readFile(join(a, 'graft.json'), 'utf8'));
  assert.equal(meta.exports[0].file, join(dir, 'new-folder', 'a.onnx'));
  const p = lastJson((await graft(['predict', a, 'mnist-test:5-9', '--limit', '1', '--json'])).stdout);
  assert.equal(p.onnx, join(dir, 'new-folder', 'a.onnx'));
  // Empty and foreign files are named for what they are.
  await writeFile(join(dir, 'empty.onnx'), '');
  assert.match((await graft(['predict', join(dir, 'empty.onnx'), 'mnist-test:5-9'])).stderr, /is empty/);
  await writeFile(join(dir, 'noise.onnx'), Buffer.from([0xff, 0xff, 0xff, 0x01, 0x02]));
  const noise = await graft(['predict', join(dir, 'noise.onnx'), 'mnist-test:5-9']);
  assert.equal(noise.code, 1);
  assert.match(noise.stderr, /not a readable ONNX model[\s\S]*graft export/);
  assert.doesNotMatch(noise.stderr, /at .*\.js:\d+/, 'no stack trace');
  const stray = await graft(["export", a, "--calibration", data]);
  assert.match(stray.stderr, /are for --quantize int8/);
});
