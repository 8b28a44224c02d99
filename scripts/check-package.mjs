#!/usr/bin/env node
// The package as a library user meets it (.ci/run): npm pack, install the tarball in a fresh
// project (npm i, with the tfjs peers it brings and none of the optional packages), type-check
// a consumer file against the published types, run it (it uses the application's own tfjs),
// run the bin, and check the tarball holds no tests, fixtures or source maps.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'graft-package-'));
const run = (cmd, args, cwd, opts = {}) => {
  console.log(`check-package: ${cmd} ${args.join(' ')}   (in ${cwd})`);
  return execFileSync(cmd, args, { cwd, stdio: opts.capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8', env: { ...process.env, ...opts.env } });
};
const fail = (m) => { console.error(`check-package: FAILED: ${m}`); process.exit(1); };

const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], root, { capture: true }));
const files = packed[0].files.map((f) => f.path);
const bad = files.filter((f) => /\.test\.|\.map$|^test\/|fixtures|^src\//.test(f));
if (bad.length) fail(`the tarball ships ${bad.length} files a user does not need: ${bad.slice(0, 5).join(', ')}`);
for (const need of ['LICENSE', 'README.md', 'docs/api.md', 'bin/graft.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'native/graft_native.cc']) {
  if (!files.includes(need)) fail(`the tarball lacks ${need}`);
}
const tgz = join(work, packed[0].filename);
const app = join(work, 'app');
run('mkdir', ['-p', app], work);
const tsVersion = JSON.parse(readFileSync(join(root, 'node_modules/typescript/package.json'), 'utf8')).version;
const typesNode = JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8')).version;
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'graft-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2));
// No .npmrc here: a user's project has none of Graft's settings.
run('npm', ['i', '--no-audit', '--no-fund', '--prefer-offline', tgz, `typescript@${tsVersion}`, `@types/node@${typesNode}`], app);
const installed = readdirSync(join(app, 'node_modules'));
for (const optional of ['onnxruntime-node', 'h5wasm']) if (installed.includes(optional)) fail(`npm i graft installed the optional ${optional}`);
copyFileSync(join(root, 'test/package/consumer.mts'), join(app, 'consumer.mts'));
writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, noEmit: false, outDir: 'out', types: ['node'] }, files: ['consumer.mts'] }, null, 2));
// The published types name no optional package: a user without them type-checks cleanly.
const typeFiles = files.filter((f) => f.endsWith('.d.ts'));
for (const f of typeFiles) {
  const text = readFileSync(join(app, 'node_modules/graft', f), 'utf8');
  const m = /from '(onnxruntime-node|h5wasm[^']*|@tensorflow\/tfjs-converter)'|import\('(onnxruntime-node|h5wasm[^']*|@tensorflow\/tfjs-converter)'\)/.exec(text);
  if (m) fail(`${f} refers to the optional package ${m[1] ?? m[2]}`);
}
run('npx', ['tsc', '-p', 'tsconfig.json'], app);
const out = run('node', ['out/consumer.mjs'], app, { capture: true });
const last = JSON.parse(out.trim().split('\n').pop());
if (!last.ok) fail(`the consumer said ${out}`);
console.log(`check-package: consumer ran: ${JSON.stringify(last)}`);
run('npx', ['graft', '--help'], app, { capture: true });
run('npx', ['graft', 'doctor'], app);
const demo = run('npx', ['graft', 'demo', '--unfreeze', 'none'], app, { capture: true });
if (!/new task \(digits 5-9\): \d/.test(demo)) fail(`graft demo did not report a result:\n${demo}`);
// An optional package that is missing: a clear error naming the install command.
const h5 = spawnSync('npx', ['graft', 'inspect', join(root, 'test/fixtures/keras/cnn.h5')], { cwd: app, encoding: 'utf8' });
if (h5.status === 0 || !h5.stderr.includes('npm i h5wasm')) fail(`graft inspect of a Keras file without h5wasm: exit ${h5.status}, ${h5.stderr}`);
if (existsSync(join(app, 'node_modules/graft/dist/src/index.test.js'))) fail('a compiled test was installed');
console.log(`check-package: ok (${files.length} files in ${packed[0].filename}, ${(packed[0].size / 1e6).toFixed(1)} MB)`);
