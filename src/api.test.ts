// The public API as docs/api.md describes it: the reference part lists exactly what each entry
// point exports (generated from the types; this fails when they drift apart), the root stays
// small, every entry point imports, and the doc's own example of a user-written schedule runs
// as written, against the package's self-reference ('graft', 'graft/data', ...).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);

test('docs/api.md lists exactly the exports of every entry point, and the root has about 40 values', async () => {
  const { exportsOf, reference, MARKER } = await import(join(root, 'scripts', 'api-docs.mjs'));
  const doc = await readFile(join(root, 'docs', 'api.md'), 'utf8');
  const at = doc.indexOf(MARKER);
  assert.ok(at > 0, 'docs/api.md has its generated reference');
  assert.equal(doc.slice(at), reference(), 'docs/api.md is out of step with the exports: run node scripts/api-docs.mjs');
  const entries = exportsOf() as { spec: string; names: { name: string; kind: string }[] }[];
  const rootNames = entries.find((e) => e.spec === 'graft')!.names;
  const values = rootNames.filter((n) => !['interface', 'type'].includes(n.kind));
  assert.ok(values.length >= 25 && values.length <= 45, `the root exports ${values.length} values`);
  for (const need of ['loadModel', 'saveModel', 'cutBody', 'buildHead', 'graft', 'freezeBody', 'unfreeze', 'layerGroups', 'runPhase', 'fineTune', 'transfer', 'evaluate', 'predictAll', 'lwfLoss', 'ewcLoss', 'writeCheckpoint', 'readLatestCheckpoint', 'initBackend', 'GraftError', 'DEFAULTS', 'preprocessPreset', 'earlyStopping', 'nanGuard', 'checkpoints', 'unfreezeSchedule', 'progress']) {
    assert.ok(rootNames.some((n) => n.name === need), `the root exports ${need}`);
  }
  for (const e of entries) {
    const mod = await import(e.spec);
    const runtime = Object.keys(mod).sort();
    const declared = e.names.filter((n) => !['interface', 'type'].includes(n.kind)).map((n) => n.name).sort();
    assert.deepEqual(runtime, declared, `${e.spec}: the values at run time are the declared ones`);
  }
  const all = entries.flatMap((e) => e.names.map((n) => n.name));
  assert.ok(!all.includes('crc32') && !all.includes('describe') && !all.includes('Unsupported'), 'no internals or too generic names are public');
});

test('the doc example of a user-written schedule (gradual unfreezing by phases) runs as written and learns', async () => {
  const doc = await readFile(join(root, 'docs', 'api.md'), 'utf8');
  const m = /<!-- example: gradual -->\n```js\n([\s\S]*?)```/.exec(doc);
  assert.ok(m, 'docs/api.md has the example');
  const lines = m[1].trim().split('\n');
  assert.ok(lines.length <= 25, `the example is ${lines.length} lines`);
  // Inside the package directory, so that 'graft' resolves to this package (self-reference).
  const dir = join(root, 'dist', 'doc-examples');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'gradual.mjs');
  await writeFile(file, m[1]);
  const { stdout } = await run(process.execPath, [file], { cwd: root, maxBuffer: 1 << 24 });
  const out = stdout.trim().split('\n');
  const result = JSON.parse(out[out.length - 1]);
  assert.ok(out.some((l) => l.startsWith('warm-up 1:')) && out.some((l) => l.startsWith('fine-tune 1:')), stdout);
  assert.ok(result.epochs >= 40, `${result.epochs} epochs ran`);
  assert.ok(result.accuracy > 0.85, `accuracy ${result.accuracy} on 500 test digits`);
});
