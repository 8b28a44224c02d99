#!/usr/bin/env node
// Builds Graft's native engine (native/graft_native.cc -> build/graft_native.node) against
// Debian's libtorch. Runs from `npm ci` (prepare). Without libtorch's headers it prints one
// line and exits 0: Graft then runs on the wasm fallback. GRAFT_NATIVE=0 skips the build;
// GRAFT_NATIVE=require makes a failed build an error (CI).
//
// No node-gyp: it downloads Node's headers from nodejs.org, which an offline machine cannot
// reach. An N-API addon needs only node_api.h (npm node-api-headers) and node-addon-api's
// C++ wrapper, both header-only, so one g++ command builds it.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'graft_native.cc');
const out = join(root, 'build', 'graft_native.node');
const want = process.env.GRAFT_NATIVE ?? 'auto';
const require = createRequire(import.meta.url);

function fail(message) {
  if (want === 'require') {
    console.error(`graft native engine: ${message}`);
    process.exit(1);
  }
  console.log(`graft native engine: not built (${message}); Graft will use the wasm backend. See README, "Engines".`);
  process.exit(0);
}

if (want === '0' || want === 'off') fail('GRAFT_NATIVE=0');
const torchInclude = '/usr/include/torch/csrc/api/include';
if (!existsSync('/usr/include/ATen') || !existsSync(torchInclude)) {
  fail('libtorch headers missing: apt-get install --no-install-recommends libtorch-dev libopenblas0-pthread');
}
const newest = Math.max(statSync(fileURLToPath(import.meta.url)).mtimeMs, ...readdirSync(join(root, 'native')).map((f) => statSync(join(root, 'native', f)).mtimeMs));
if (existsSync(out) && statSync(out).mtimeMs > newest) {
  console.log('graft native engine: up to date (build/graft_native.node)');
  process.exit(0);
}
let napiInclude, apiHeaders;
try {
  napiInclude = join(dirname(require.resolve('node-addon-api/package.json')));
  apiHeaders = require('node-api-headers').include_dir;
} catch (e) {
  fail(`node-addon-api or node-api-headers missing (${e.message}); run npm ci`);
}
mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
const args = [
  '-std=gnu++17', '-O2', '-fPIC', '-shared', '-fexceptions', '-D_GLIBCXX_USE_CXX11_ABI=1',
  '-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNAPI_CPP_EXCEPTIONS',
  `-I${napiInclude}`, `-I${apiHeaders}`, '-I/usr/include', `-I${torchInclude}`,
  '-Wno-deprecated-declarations', '-Wno-unused-parameter',
  // Data-parallel training (c10d's ProcessGroupGloo, in libtorch_cpu) needs gloo's headers.
  ...(existsSync('/usr/include/gloo/config.h') ? ['-DUSE_C10D_GLOO', '-DUSE_DISTRIBUTED'] : ['-DGRAFT_NO_DIST']),
  source, '-o', tmp,
  '-Wl,--as-needed', '-ltorch_cpu', '-lc10', '-Wl,--no-as-needed',
];
const t0 = Date.now();
console.log('graft native engine: compiling native/graft_native.cc against libtorch (about a minute)...');
try {
  execFileSync(process.env.CXX ?? 'g++', args, { stdio: 'inherit' });
} catch (e) {
  fail(`the compiler failed (${e.message.split('\n')[0]})`);
}
renameSync(tmp, out);
console.log(`graft native engine: built build/graft_native.node in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
