#!/usr/bin/env node
// The graft launcher: runs the compiled CLI. Image decoding (sharp) runs on libuv's thread
// pool, 4 threads by default: give it one per core on bigger machines. This must happen
// before the pool starts, so here and not in the library.
import { availableParallelism } from 'node:os';

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, availableParallelism()));
// `graft ... | head` closes the pipe early: that ends the output, it is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw e; });
}
const { main } = await import('../dist/src/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
