// The graft command line: dispatches to one module per command. Errors that Graft expects
// (GraftError) print their message and fix and exit 1; --debug adds the stack.

import { GraftError, initBackend } from '../index.js';
import * as cache from './commands/cache.js';
import * as compare from './commands/compare.js';
import * as demo from './commands/demo.js';
import * as doctor from './commands/doctor.js';
import * as evaluate from './commands/evaluate.js';
import * as inspect from './commands/inspect.js';
import * as predict from './commands/predict.js';
import * as report from './commands/report.js';
import * as serve from './commands/serve.js';
import * as train from './commands/train.js';

interface Command {
  usage: string;
  summary: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = { demo, inspect, train, predict, evaluate, compare, report, serve, cache, doctor };

function help(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'graft: transfer learning for TypeScript',
    '',
    'Usage: graft <command> [options]     (graft <command> --help for its options)',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(w)}  ${c.summary}`),
    '',
    'Common options: --json (machine-readable output), --backend wasm|cpu, --debug (stack traces).',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS[rest[0] ?? ''] : undefined;
    console.log(topic ? topic.usage : help());
    return 0;
  }
  if (name === '--version') {
    const { versions } = await import('../index.js');
    console.log(versions().graft);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`graft: unknown command "${name}".\n\n${help()}`);
    return 2;
  }
  try {
    const i = rest.indexOf('--backend');
    const eq = rest.find((a) => a.startsWith('--backend='));
    await initBackend(i >= 0 ? rest[i + 1] : eq?.slice('--backend='.length));
    return await command.run(rest);
  } catch (e) {
    if (e instanceof GraftError) {
      console.error(`graft ${name}: ${e.message}`);
      if (rest.includes('--debug')) console.error(e.stack);
      return 1;
    }
    throw e;
  }
}
