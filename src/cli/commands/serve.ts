// graft serve: the web page on localhost.

import { startServer, SERVE_DEFAULTS } from '../../web/server.js';
import { intAtLeast, num, parse, str } from '../args.js';

export const usage = `graft serve [--port ${SERVE_DEFAULTS.port}] [--host 127.0.0.1]

Starts the Graft web page: pick a base model and see its diagram, choose the cut by clicking a
layer, define classes from images (drop files, choose files, or load a folder with one
sub-folder per class), train with live progress, predict an image, and download the model.
Training runs on this machine; the page needs no internet. It listens on 127.0.0.1 only,
unless --host says otherwise (e.g. --host 0.0.0.0 to let other machines in).`;

export const summary = 'a local web page: diagram, choose the cut, classes from images, train live, predict, download';

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { port: { type: 'string' }, host: { type: 'string' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  const server = await startServer({ port: num(values.port, 'port', intAtLeast(0)), host: str(values.host) });
  console.log(`Graft is serving at ${server.url} (Ctrl-C to stop)`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  await server.close();
  return 0;
}
