// The graft command line: dispatches to one module per command. Errors that Graft expects
// (GraftError) print their message and fix and exit 1; --debug adds the stack.

import { GraftError, initBackend } from 'graft';
import { nativeStatus, PRECISIONS, setNativeEnabled, setPrecision, type Precision } from '#internal/engine/native.js';
import { setEngineChoice, type EngineChoice } from './onnx-choice.js';
import { givenTwice } from './args.js';
import * as cache from './commands/cache.js';
import * as compare from './commands/compare.js';
import * as demo from './commands/demo.js';
import * as doctor from './commands/doctor.js';
import * as evaluate from './commands/evaluate.js';
import * as exportCmd from './commands/export.js';
import * as inspect from './commands/inspect.js';
import * as predict from './commands/predict.js';
import * as report from './commands/report.js';
import * as serve from './commands/serve.js';
import * as train from './commands/train.js';
import * as lrFind from './commands/lr-find.js';

interface Command {
  usage: string;
  summary: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = { demo, inspect, train, 'lr-find': lrFind, predict, evaluate, export: exportCmd, compare, report, serve, cache, doctor };

function help(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'graft: transfer learning for TypeScript',
    '',
    'Usage: graft <command> [options]     (graft <command> --help for its options)',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(w)}  ${c.summary}`),
    '',
    'Common options: --json (machine-readable output), --engine auto|native|tfjs|onnx (auto: the native',
    'libtorch engine when built, else tfjs, and for predict and evaluate a model folder\'s current ONNX',
    'export on onnxruntime; tfjs: never native; onnx: predict and evaluate on onnxruntime only),',
    '--precision auto|fp32|bf16 (the native engine\'s arithmetic, default fp32; bf16: convolutions and',
    'matrix products in bf16 with fp32 master weights; auto: bf16 where the CPU has AVX512-BF16 or AMX,',
    'see graft doctor), --backend wasm|cpu (the tfjs backend),',
    '--debug (stack traces).',
  ].join('\n');
}

function applyEngine(engine: string | undefined, command: string): void {
  if (engine === undefined || engine === 'auto') return;
  setEngineChoice(engine as EngineChoice);
  if (engine === 'onnx') {
    if (command !== 'predict' && command !== 'evaluate') {
      throw new GraftError('BAD_ARGUMENT', `--engine onnx runs predict and evaluate; graft ${command} does not run on onnxruntime.`, { fix: 'Use --engine auto, native or tfjs.' });
    }
    return;
  }
  if (engine === 'tfjs') {
    setNativeEnabled(false);
    return;
  }
  if (engine !== 'native') throw new GraftError('BAD_ARGUMENT', `--engine "${engine}" is not understood.`, { fix: 'Use auto, native, tfjs or onnx.' });
  const s = nativeStatus();
  if (!s.available) {
    throw new GraftError('BAD_OPTION', `--engine native, but the native engine is ${s.reason}.`, {
      fix: 'Install it (bash scripts/install-system-deps.sh native, then npm ci), or use --engine auto.' });
  }
}

/** Commands whose native runs --precision applies to. */
const PRECISION_COMMANDS = ['demo', 'train', 'lr-find', 'predict', 'evaluate', 'compare', 'serve'];

function applyPrecision(precision: string | undefined, engine: string | undefined, command: string): void {
  if (precision === undefined) return;
  if (precision === '' || precision.startsWith('--')) throw new GraftError('BAD_ARGUMENT', '--precision needs a value.', { fix: 'Use --precision auto, fp32 or bf16.' });
  // Which command it is decides first: an export's precision is --quantize's, not --precision's.
  if (command === 'export') throw new GraftError('BAD_ARGUMENT', '--precision is the arithmetic of training and predicting; graft export writes the saved fp32 model as it is, or smaller with --quantize.', { fix: `Leave --precision out${/^(fp16|int8)$/i.test(precision) ? `, and use --quantize ${precision.toLowerCase()}` : '; --quantize fp16 or int8 writes a smaller file'}.` });
  if (!PRECISIONS.includes(precision as Precision)) throw new GraftError('BAD_ARGUMENT', `--precision ${JSON.stringify(precision.length > 40 ? `${precision.slice(0, 40)}...` : precision)} is not understood.`, { fix: `Use auto, fp32 or bf16 (lower case)${/^(fp|float)16$/i.test(precision) ? '; fp16 is not a training precision here: graft export --quantize fp16 writes an fp16 model file' : ''}.` });
  if (!PRECISION_COMMANDS.includes(command)) throw new GraftError('BAD_ARGUMENT', `--precision applies to commands that train or predict; graft ${command} does neither.`, { fix: `Leave --precision out, or use it with graft ${PRECISION_COMMANDS.join(', ')}.` });
  if (precision === 'bf16') {
    if (engine === 'tfjs' || engine === 'onnx') throw new GraftError('BAD_ARGUMENT', `--precision bf16 runs on the native engine; --engine ${engine} computes in fp32.`, { fix: 'Use --engine auto or native with bf16, or leave --precision out.' });
    const s = nativeStatus();
    if (!s.available) {
      throw new GraftError('BAD_OPTION', `--precision bf16 runs on the native engine, which is ${s.reason}.`, {
        fix: /GRAFT_NATIVE/.test(s.reason ?? '') ? 'Unset GRAFT_NATIVE (or set it to 1), or use --precision auto or fp32.' : 'Install it (bash scripts/install-system-deps.sh native, then npm ci), or use --precision auto or fp32.' });
    }
  }
  setPrecision(precision as Precision);
}

const ERRNO: Record<string, string> = {
  EACCES: 'permission denied', EPERM: 'operation not permitted', ENOENT: 'no such file or folder', ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'is a folder, not a file', ENOSPC: 'no space left on the disk', EROFS: 'the file system is read-only', EMFILE: 'too many open files', ELOOP: 'too many symbolic links',
};

/** A GraftError, or a file-system error the user can fix (a path, a permission), in Graft's words. */
function userError(e: unknown): GraftError | undefined {
  if (e instanceof GraftError) return e;
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err.code !== 'string' || !(err.code in ERRNO)) return undefined;
  const where = err.path ? ` (${err.path})` : '';
  return new GraftError(err.code === 'ENOSPC' ? 'WRITE_FAILED' : 'NOT_A_FILE', `${ERRNO[err.code]}${where}: ${err.syscall ?? 'a file operation'} failed.`, {
    fix: err.code === 'EACCES' || err.code === 'EPERM' ? 'Give yourself read (and for --out, write) permission, or choose another path.' : 'Check the path.', cause: e });
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...given] = argv;
  // --engine and --precision are common to every command: taken out here, applied before the backend starts.
  let engine: string | undefined;
  let precision: string | undefined;
  const rest: string[] = [];
  // Given twice with two values, which was meant is not known: refused below, as the commands'
  // own options are (args.ts), not the last one taken without a word.
  let twice: GraftError | undefined;
  const take = (option: string, before: string | undefined, value: string, takes: string) => {
    if (before !== undefined && before !== value) twice ??= givenTwice(option, before, value, `  --${option} ${takes}`);
    return value;
  };
  const ENGINE = 'auto, native, tfjs or onnx';
  const PRECISION = 'auto, fp32 or bf16';
  for (let i = 0; i < given.length; i++) {
    if (given[i] === '--engine') engine = take('engine', engine, given[++i] ?? '', ENGINE);
    else if (given[i].startsWith('--engine=')) engine = take('engine', engine, given[i].slice('--engine='.length), ENGINE);
    else if (given[i] === '--precision') precision = take('precision', precision, given[++i] ?? '', PRECISION);
    else if (given[i].startsWith('--precision=')) precision = take('precision', precision, given[i].slice('--precision='.length), PRECISION);
    else rest.push(given[i]);
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS[rest[0] ?? ''] : undefined;
    console.log(topic ? topic.usage : help());
    return 0;
  }
  if (name === '--version') {
    const { versions } = await import('#internal/model/meta.js');
    console.log(versions().graft);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`graft: unknown command "${name}".\n\n${help()}`);
    return 2;
  }
  try {
    if (twice) throw twice;
    applyEngine(engine, name);
    applyPrecision(precision, engine, name);
    const i = rest.indexOf('--backend');
    const eq = rest.find((a) => a.startsWith('--backend='));
    await initBackend(i >= 0 ? rest[i + 1] : eq?.slice('--backend='.length));
    return await command.run(rest);
  } catch (e) {
    const error = userError(e);
    if (error) {
      console.error(`graft ${name}: ${error.message}`);
      if (rest.includes('--json')) {
        console.log(JSON.stringify({ error: { code: error.code, message: error.detail, fix: error.fix ?? null } }));
      }
      if (rest.includes('--debug')) console.error((e as Error).stack);
      return 1;
    }
    throw e;
  }
}
