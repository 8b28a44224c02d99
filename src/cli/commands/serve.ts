// graft serve: the web page on localhost.

import { startServer, SERVE_DEFAULTS } from '#internal/web/server.js';
import { intAtLeast, num, parse, str } from '../args.js';
import { GraftError } from '#internal/errors.js';

export const usage = `graft serve [--port ${SERVE_DEFAULTS.port}] [--host 127.0.0.1] [--projects <dir>] [--models <dir>]... [--preprocess <how>]

Starts the Graft web page, on projects kept on this machine: pick a base model and see its
diagram, choose the cut by clicking a block, add classes of images (choose or drop files, load a
folder with one sub-folder per class, or record from the webcam), train with graft train's
recipe and live progress, stop, see accuracy per class and the confusion matrix on held-out
images, predict an image or a live webcam picture, and download the model. Images are sent as
their files and decoded on this machine as graft train decodes them. The page needs no internet.

  --port <n>      (default ${SERVE_DEFAULTS.port}; 0 picks a free port)
  --host <addr>   a loopback address: 127.0.0.1 (default), ::1 or localhost. The server has no
                  login, so it never listens beyond this machine; tunnel it (ssh -L) for that
  --projects <dir> where projects live: their classes, images (the files as uploaded), settings,
                  trained model and results (default $XDG_DATA_HOME/graft/projects, i.e.
                  ~/.local/share/graft/projects). The page reopens the last project
  --models <dir>  also offer the models in <dir>: a model folder (graft train --out), an .onnx
                  file or a tfjs GraphModel (rebuilt as layers when the server starts), or a
                  folder of them; may be given more than once. The page offers only these and
                  the zoo, never a path or URL typed into it
  --preprocess <how> for --models graphs without graft.json: unit, symmetric, imagenet (torchvision,
                  timm) or none (raw 0-255, the default)

Only this machine's own page can drive it: requests must be for localhost, 127.0.0.1 or [::1]
at this port (421 otherwise), from the page itself (403 for other web pages' Origin), and API
requests without an Origin need the token the page holds (<meta name="graft-token">, sent as
the X-Graft-Token header). Up to 4 jobs are queued or running at a time.

Ctrl-C cancels the jobs (a running one stops after its batch) and stops the server.`;

export const summary = 'a local web page on projects: diagram and cut, classes from files, folders or the webcam, train live, results per class, predict, download';

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, { port: { type: 'string' }, host: { type: 'string' }, models: { type: 'string', multiple: true }, projects: { type: 'string' }, preprocess: { type: 'string' } }, usage);
  if (values.help) { console.log(usage); return 0; }
  const models = (values.models as string[] | undefined) ?? [];
  const preprocess = str(values.preprocess);
  if (preprocess !== undefined && !['unit', 'symmetric', 'imagenet', 'none'].includes(preprocess)) throw new GraftError('BAD_ARGUMENT', `--preprocess "${preprocess}" is not understood.`, { fix: 'Use unit, symmetric, imagenet or none.' });
  const server = await startServer({ port: num(values.port, 'port', (n) => intAtLeast(0)(n) && n <= 65535), host: str(values.host), models, projects: str(values.projects), preprocess });
  console.log(`Graft is serving at ${server.url} (Ctrl-C to stop); projects in ${server.projects}`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  // A second Ctrl-C quits at once; otherwise a running job gets 5 s to stop after its batch.
  process.once('SIGINT', () => process.exit(130));
  process.stderr.write('Stopping: cancelling jobs and closing the server...\n');
  const stopped = await Promise.race([server.close().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
  process.stderr.write(stopped ? 'Stopped.\n' : 'A job did not stop within 5 s; quitting anyway.\n');
  process.exit(0);
}
