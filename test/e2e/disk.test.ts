// Disk full and read-only output directories, on a small tmpfs mounted in a user namespace
// (unshare -r -m): a clear WRITE_FAILED error, and the previous model left intact.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'bin', 'graft.js');
const lib = join(root, 'dist', 'src', 'index.js');

const canMount = spawnSync('unshare', ['-r', '-m', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d"'], { encoding: 'utf8' }).status === 0;

test('a full disk and a read-only directory give WRITE_FAILED and keep the previous model', { skip: canMount ? false : 'user namespaces (unshare -r -m) are not available here' }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-disk-'));
  const prev = join(dir, 'prev');
  const made = spawnSync(process.execPath, [bin, 'train', '--base', 'digits-cnn', '--data', 'mnist-train:5-9', '--per-class', '10', '--warmup-epochs', '1', '--finetune-epochs', '0', '--out', prev], { cwd: root, encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const mnt = join(dir, 'mnt');
  const saveScript = `import { loadModel, saveModel } from ${JSON.stringify(lib)};
const m = await loadModel(process.argv[2]);
try { await saveModel(m.model, process.argv[3], { ...m.meta, padding: 'x'.repeat(400000) }); console.log('saved'); }
catch (e) { console.log(e.code, e.message); }`;
  const script = join(dir, 'save.mjs');
  await writeFile(script, saveScript);
  const sha = `$(find ${mnt}/model -type f | sort | xargs cat | sha256sum)`;
  const sh = `set -e
mkdir -p ${mnt}
mount -t tmpfs -o size=1m tmpfs ${mnt}
cp -r ${prev} ${mnt}/model
rm -rf ${mnt}/model/checkpoints
sha_before=${sha}
head -c 680000 /dev/zero > ${mnt}/filler || true
echo "== train on a full disk"
${process.execPath} ${bin} train --base digits-cnn --data mnist-train:5-9 --per-class 10 --warmup-epochs 1 --finetune-epochs 0 --out ${mnt}/model 2>&1 || echo "exit $?"
echo "== save a bigger model over the old one"
${process.execPath} ${script} ${mnt}/model ${mnt}/model
echo "== leftovers: $(ls -A ${mnt} | tr '\\n' ' ')"
mount -o remount,ro ${mnt}
echo "== train into a read-only directory"
${process.execPath} ${bin} train --base digits-cnn --data mnist-train:5-9 --per-class 10 --warmup-epochs 1 --finetune-epochs 0 --out ${mnt}/model 2>&1 || echo "exit $?"
sha_after=${sha}
[ "$sha_before" = "$sha_after" ] && echo "== previous model intact" || echo "== previous model CHANGED"`;
  const r = spawnSync('unshare', ['-r', '-m', 'sh', '-c', sh], { cwd: root, encoding: 'utf8' });
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.status, 0, out);
  assert.match(out, /== train on a full disk[\s\S]*Only \d+ KB are free[\s\S]*exit 1/);
  assert.match(out, /== save a bigger model over the old one\s+WRITE_FAILED Could not write the model/);
  assert.match(out, /== leftovers: filler model\s*\n/, 'no temporary directories left behind');
  assert.match(out, /== train into a read-only directory[\s\S]*Cannot write in[\s\S]*exit 1/);
  assert.match(out, /== previous model intact/);
  await rm(dir, { recursive: true, force: true });
});
