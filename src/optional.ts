// The heavy parts a user may not need are optional peer dependencies, loaded on first use:
// onnxruntime-node (ONNX bases, exports and their checks), h5wasm (Keras .h5/.keras files) and
// @tensorflow/tfjs-converter (tfjs GraphModels). `npm i graft` installs none of them; the
// first feature that needs one says which package to install, and how.

import { GraftError } from './errors.js';

export interface OptionalPackage {
  name: string;
  /** The range package.json's peerDependencies declare. */
  range: string;
  /** Extra npm flags for the install command. */
  flags?: string;
  /** Why the install command is as it is, when it needs saying. */
  note?: string;
}

export const OPTIONAL = {
  onnxruntime: {
    name: 'onnxruntime-node', range: '^1.30.0', flags: ' --onnxruntime-node-install=skip',
    note: 'its CPU binaries ship in the package; the flag skips its download of CUDA libraries',
  },
  h5wasm: { name: 'h5wasm', range: '^0.10.3' },
  converter: { name: '@tensorflow/tfjs-converter', range: '^4.22.0' },
} satisfies Record<string, OptionalPackage>;

/** The install command for an optional package. */
function installCommand(p: OptionalPackage): string {
  return `npm i ${p.name}@"${p.range}"${p.flags ?? ''}`;
}

function missing(e: unknown, name: string): boolean {
  const err = e as { code?: string; message?: string };
  return (err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND') && String(err.message).includes(`'${name}`);
}

/**
 * Imports an optional package (or one of its subpaths), or throws a GraftError saying which
 * feature needs it and the command that installs it.
 */
export async function loadOptional<T>(p: OptionalPackage, purpose: string, load: () => Promise<unknown>): Promise<T> {
  try {
    return (await load()) as T;
  } catch (e) {
    if (!missing(e, p.name)) throw e;
    const why = p.note ? ` (${p.note})` : '';
    throw new GraftError('MISSING_PACKAGE', `${purpose} needs the npm package ${p.name}, which is not installed. Graft leaves it out of a plain install because most users do not need it.`, {
      fix: `${installCommand(p)} in your project${why}.`, cause: e });
  }
}
