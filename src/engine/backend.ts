// Backend selection in one place: tfjs runs on wasm (with Graft's own conv gradient kernels,
// so fine-tuning works there too), else cpu. Training steps and predictions of models whose
// layers the native engine knows run in that engine instead (native.ts), when it is built.

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// tfjs-layers' node bundle registers tfjs-core's gradient functions in the shared registry.
import '@tensorflow/tfjs-layers';
import { GraftError } from '../errors.js';
import { registerWasmGradKernels, WASM_GRAD_KERNELS } from './wasm-conv-grad.js';
import { registerBatchNormGrad } from './batch-norm-grad.js';
import { cpuBf16, nativeStatus, resolvePrecision, type CpuBf16, type NativeStatus } from './native.js';
import { nativeKernels, setNativeKernels } from './native-kernels.js';
import { cpuFeatures, type CpuFeatures } from './cpu.js';

export type BackendName = 'wasm' | 'cpu';

export interface BackendInfo {
  name: string;
  /** Why this backend was chosen, in one line for the user. */
  reason: string;
}

const PREFERENCE: BackendName[] = ['wasm', 'cpu'];
let chosen: BackendInfo | undefined;

/**
 * Picks and initialises the backend. `wanted` forces one (e.g. from `--backend` or the
 * GRAFT_BACKEND environment variable); otherwise the fastest one that starts is used.
 */
export async function initBackend(wanted?: string): Promise<BackendInfo> {
  silenceNodeAdvert();
  const request = wanted ?? process.env.GRAFT_BACKEND;
  if (chosen && (!request || chosen.name === request)) return chosen;
  registerWasmGradKernels();
  registerBatchNormGrad();
  // Convolutions and matrix products of the wasm backend run natively when the engine is built.
  setNativeKernels(true);
  if (request) {
    if (!PREFERENCE.includes(request as BackendName)) {
      throw new GraftError('BAD_OPTION', `Unknown backend "${request}".`, { fix: `Use one of: ${PREFERENCE.join(', ')}.` });
    }
    if (!(await tf.setBackend(request))) {
      throw new GraftError('BAD_OPTION', `Backend "${request}" failed to start.`, { fix: 'Leave the backend unset to let Graft choose.' });
    }
    chosen = { name: request, reason: 'requested' };
    return chosen;
  }
  for (const name of PREFERENCE) {
    if (await tf.setBackend(name)) {
      chosen = {
        name,
        reason: name === 'wasm'
          ? nativeKernels().length
            ? 'wasm, its convolutions and matrix products in the native engine; for what the native training step does not run'
            : 'wasm with Graft gradient kernels (single-threaded)'
          : 'wasm unavailable; pure-JS cpu backend (slow)',
      };
      return chosen;
    }
  }
  throw new GraftError('BAD_OPTION', 'No tfjs backend could be started.');
}

/** tfjs-cpu advertises tfjs-node on its first tensor; Graft has its own backends, so the advert misleads. */
function silenceNodeAdvert(): void {
  const cpu = tf.findBackend('cpu') as (tf.KernelBackend & { firstUse?: boolean }) | null;
  if (cpu) cpu.firstUse = false;
}

export function backendInfo(): BackendInfo | undefined {
  return chosen;
}

export interface Doctor {
  backend: string;
  reason: string;
  threads: number;
  cores: number;
  /** A per-op tfjs backend over libtorch (not built: the native engine runs whole steps instead). */
  nativeBackend: boolean;
  /** The native engine: one call per training step and per prediction batch. */
  nativeTrainingStep: boolean;
  native: NativeStatus;
  /** The CPU's bf16 support (flags and oneDNN's ISA), what --precision auto picks, and why. */
  bf16: CpuBf16 & { auto: 'fp32' | 'bf16'; why: string };
  /** wasm kernels that run in the native engine (convolutions and matrix products). */
  nativeKernels: string[];
  /** Gradient kernels Graft adds to wasm (it ships without them). */
  graftWasmKernels: string[];
  /** The CPU: its model, the SIMD flags that pick kernels (bf16, fused BatchNorm, oneDNN's ISA, int8). */
  cpu: CpuFeatures;
  node: string;
  tfjs: string;
}

/** What `graft doctor` prints: the backend in use, its threads, and what runs where. */
export async function doctor(): Promise<Doctor> {
  const info = await initBackend();
  const { availableParallelism } = await import('node:os');
  const native = nativeStatus();
  return {
    backend: info.name,
    reason: info.reason,
    // tfjs-backend-wasm runs single-threaded in Node; the cpu backend is plain JavaScript.
    threads: 1,
    cores: availableParallelism(),
    nativeBackend: false,
    nativeTrainingStep: native.available,
    native,
    bf16: { ...cpuBf16(), auto: native.available ? resolvePrecision('auto').precision : 'fp32', why: native.available ? resolvePrecision('auto').why : `the native engine is ${native.reason}: fp32` },
    nativeKernels: nativeKernels(),
    // Graft's JS gradient kernels; with the native kernels in, those names run natively instead.
    graftWasmKernels: Object.keys(WASM_GRAD_KERNELS).filter((k) => tf.getKernel(k, 'wasm')?.kernelFunc === WASM_GRAD_KERNELS[k as keyof typeof WASM_GRAD_KERNELS] || nativeKernels().includes(k)),
    cpu: cpuFeatures(),
    node: process.version,
    tfjs: tf.version_core,
  };
}
