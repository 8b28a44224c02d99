// Graft's native engine (native/graft_native.cc, built by scripts/build-native.mjs against
// Debian's libtorch): a tfjs-layers model described as a list of ops, whose training step
// (forward, the loss, backward, AdamW) and prediction each run in one native call. The loss is
// cross-entropy, or cross-entropy plus a term that keeps the old task: LwF distillation
// (train/distill.ts) or the EWC penalty (train/ewc.ts), both computed by the addon.
//
// This file loads the addon and runs a NativePlan (model/native-plan.ts translates a
// LayersModel into the addon's ops and weights). Models with a layer the addon does not know,
// and losses without a native form, run on tfjs as before; `nativePlan` says why for a model.

import { AsyncLocalStorage } from 'node:async_hooks';
import { cpuFeatures } from './cpu.js';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type { LayerVariable } from '@tensorflow/tfjs-layers';
import type { NativeKernelAddon } from './native-kernels.js';
import { GraftError } from '../errors.js';
import { distributed, lostWorker } from './dist.js';

interface AddonNet {
  trainStep(x: Float32Array, n: number, labels: Int32Array, lrs: Float64Array, seed: number, classWeights?: Float32Array | null, distillTargets?: Float32Array | null,
    dist?: { globalN: number; pause: boolean }): { loss: number; correct: number; pause?: boolean; allreduceWaitMs?: number };
  setGroup(group: AddonGroup): void;
  setLoss(spec: object): void;
  predict(x: Float32Array, n: number): Float32Array;
  getWeights(): Float32Array[];
  getOptimizerState(): Array<Moments | null>;
  setOptimizerState(index: number, step: number, m: Float32Array, v: Float32Array): void;
  dispose(): void;
}

/** One worker's membership in a data-parallel run: c10d's ProcessGroupGloo over a TCPStore. */
export interface AddonGroup {
  set(key: string, value: string): void;
  get(key: string): string;
  allreduce(values: Float32Array | Float64Array, op?: 'sum' | 'max' | 'min'): void;
  allgather(values: Float32Array | Float64Array, out: Float32Array | Float64Array): void;
  broadcast(values: Float32Array | Float64Array, root: number): void;
  barrier(): void;
  close(): void;
}

interface Addon extends NativeKernelAddon {
  Net: new (ops: OpSpec[], params: ParamSpec[], options: NetOptions) => AddonNet;
  /** Data-parallel training (engine/dist.ts); absent from a build without gloo's headers. */
  Group?: new (o: { rank: number; worldSize: number; host: string; port: number; timeoutMs: number; bind: string }) => AddonGroup;
  matmul64(o: { a: Float64Array; aRows: number; aCols: number; b: Float64Array; bCols: number; transposeA: boolean; out: Float64Array }): void;
  setThreads(n: number): void;
  info(): { threads: number; torch: string; mkldnn: boolean; onednnIsa: string | null; fusedBatchNormBf16: boolean; cpu?: AddonCpuid };
  /** One training BatchNorm (+ ReLU6) in bf16, forward and back, by the fused kernels or ATen's ops (tests). */
  batchNormBf16(o: { x: Float32Array; shape: number[]; gamma: Float32Array; beta: Float32Array; dy: Float32Array; eps: number; relu6: boolean; fused: boolean; repeat?: number }): {
    y: Float32Array; dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array; mean: Float32Array; var: Float32Array; fused: boolean; /** with repeat: ms per forward and backward over that many more runs */ ms?: number;
  };
}

export interface OpSpec {
  kind: string;
  inputs: number[];
  /** Which layer this op comes from (for messages). */
  layer?: string;
  [key: string]: unknown;
}

export interface ParamSpec {
  data: Float32Array;
  shape: number[];
  layout: 'plain' | 'conv' | 'depthwise';
  trainable: boolean;
  group: number;
}

interface NetOptions {
  inputShape: number[];
  output: number;
  output2?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
  labelSmoothing?: number;
  precision?: 'fp32' | 'bf16';
}

/** AdamW's moments of one variable. */
export interface Moments {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

/** A loss beyond cross-entropy, as the addon computes it (distillation, EWC). */
export type NativeLossSpec =
  | { kind: 'lwf'; targets: Float32Array; oldClasses: number; temperature: number; lambda: number; from: 'second-output' | 'old-columns' }
  | { kind: 'ewc'; lambda: number; terms: () => Array<{ variable: LayerVariable; fisher: Float32Array; anchor: Float32Array }> };

let addon: Addon | null | undefined;
let loadError = '';
let enabled = !/^(0|off|false)$/i.test(process.env.GRAFT_NATIVE ?? '');

function load(): Addon | null {
  if (addon !== undefined) return addon;
  try {
    const require = createRequire(import.meta.url);
    // libtorch logs through glog (c10d's socket retries, "Logging before InitGoogleLogging"):
    // errors only; Graft says what went wrong in its own words.
    process.env.GLOG_minloglevel ??= '2';
    process.env.TORCH_CPP_LOG_LEVEL ??= 'ERROR';
    // dist/src/engine/native.js -> <package>/build/graft_native.node
    addon = require(new URL('../../../build/graft_native.node', import.meta.url).pathname) as Addon;
    // GRAFT_THREADS: a data-parallel worker's share of the cores (graft train --workers sets it).
    addon.setThreads(Number(process.env.GRAFT_THREADS) >= 1 ? Math.floor(Number(process.env.GRAFT_THREADS)) : availableParallelism());
  } catch (e) {
    addon = null;
    const m = String((e as Error).message).split('\n')[0];
    loadError = /Cannot find module/.test(m)
      ? 'not built (needs libtorch-dev when npm ci runs: bash scripts/install-system-deps.sh, then npm ci)'
      : `failed to load: ${m}`;
  }
  return addon;
}

/** The loaded addon, unless the engine is off or not built. */
export function nativeAddon(): Addon | undefined {
  return enabled ? load() ?? undefined : undefined;
}

/** Turns the native engine on or off for this process (GRAFT_NATIVE=0 starts it off). */
export function setNativeEnabled(on: boolean): void {
  enabled = on;
}

/**
 * out = op(a) b in float64 on libtorch's BLAS, a [aRows, aCols] row-major, op(a) = a or its
 * transpose; false (nothing written) without the native engine.
 */
export function matmul64(a: Float64Array, aRows: number, aCols: number, b: Float64Array, bCols: number, transposeA: boolean, out: Float64Array): boolean {
  const x = nativeAddon();
  if (!x) return false;
  x.matmul64({ a, aRows, aCols, b, bCols, transposeA, out });
  return true;
}

export interface NativeStatus {
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  threads?: number;
  torch?: string;
  oneDNN?: boolean;
}

export function nativeStatus(): NativeStatus {
  if (!enabled) return { available: false, reason: 'turned off (--engine tfjs or GRAFT_NATIVE=0)' };
  const a = load();
  if (!a) return { available: false, reason: loadError };
  const i = a.info();
  return { available: true, threads: i.threads, torch: i.torch, oneDNN: i.mkldnn };
}

/** A model as the addon's ops and params (model/native-plan.ts makes one from a LayersModel). */
export interface NativePlan {
  ops: OpSpec[];
  params: ParamSpec[];
  /** The model's variables in the order of the addon's params. */
  variables: LayerVariable[];
  inputShape: number[];
  output: number;
  /** A second output (the old head, for distillation), or -1. */
  output2: number;
}

/** Why a model cannot run natively. */
export class NativeUnsupported extends Error {}

export interface NativeNetOptions {
  weightDecay?: number;
  /** A loss beyond cross-entropy (distillation, EWC), as LossFn.native describes it. */
  loss?: NativeLossSpec;
  /** Label smoothing of the cross-entropy: the target is (1 - e) one-hot + e / classes. */
  labelSmoothing?: number;
  /** AdamW's epsilon (default 1e-7, as tfjs' Adam). */
  epsilon?: number;
  /**
   * 'bf16': convolutions and matrix products in bf16 on oneDNN, with fp32 master weights,
   * gradients and AdamW moments, and BatchNorm statistics, softmax and the loss in fp32.
   * Default 'fp32'. `resolvePrecision` turns 'auto' into one of these.
   */
  precision?: 'fp32' | 'bf16';
}

let bf16Steps = 0;

/** A model copied into the native engine. Weights go back with `syncWeights`. */
export class NativeNet {
  private readonly net: AddonNet;
  /** The model's variables in the order of the addon's params. */
  private readonly variables: LayerVariable[];
  /** Whether any weight trains. */
  readonly trainable: boolean;
  readonly precision: 'fp32' | 'bf16';

  /** `plan`: nativePlan(model, groups) of model/native-plan.ts (groups train; none: inference only). */
  constructor(plan: NativePlan, options: NativeNetOptions = {}) {
    const a = nativeAddon();
    if (!a) throw new NativeUnsupported(`native engine ${nativeStatus().reason}`);
    this.precision = options.precision ?? 'fp32';
    this.net = new a.Net(plan.ops, plan.params, { inputShape: plan.inputShape, output: plan.output, output2: plan.output2, weightDecay: options.weightDecay ?? 0, labelSmoothing: options.labelSmoothing ?? 0, precision: this.precision, ...(options.epsilon === undefined ? {} : { epsilon: options.epsilon }) });
    const l = options.loss;
    if (l?.kind === 'lwf') this.net.setLoss({ kind: 'lwf', lambda: l.lambda, temperature: l.temperature, from: l.from, oldClasses: l.oldClasses });
    if (l?.kind === 'ewc') {
      const terms = l.terms().map((t) => ({ param: plan.variables.indexOf(t.variable), fisher: t.fisher, anchor: t.anchor })).filter((t) => t.param >= 0);
      this.net.setLoss({ kind: 'ewc', lambda: l.lambda, terms });
    }
    // Only the variables are kept: the params' values now live in the addon.
    this.variables = plan.variables;
    this.trainable = plan.params.some((p) => p.trainable);
    // A worker of a data-parallel run: steps given `dist` train its share of the global batch.
    const d = distributed();
    if (d && this.trainable) this.net.setGroup(d.group);
  }

  private buffer?: Float32Array;

  /** A reusable input buffer of at least `n` values (the training loop writes each batch into it). */
  batchBuffer(n: number): Float32Array {
    if (!this.buffer || this.buffer.length < n) this.buffer = new Float32Array(n);
    return this.buffer;
  }

  /** One training step on a batch in tfjs layout; no update when the loss is not finite. */
  trainStep(x: Float32Array, labels: Int32Array, lrs: Float64Array, seed: number, classWeights?: Float32Array, distillTargets?: Float32Array,
    dist?: { globalN: number; pause: boolean }): { loss: number; correct: number; pause?: boolean; allreduceWaitMs?: number } {
    // Fault injection for the test of auto's fallback (a bf16-only divergence cannot be made to order).
    if (this.precision === 'bf16' && ++bf16Steps === Number(process.env.GRAFT_TEST_BF16_NAN_AT)) return { loss: NaN, correct: 0 };
    try {
      return this.net.trainStep(x, labels.length, labels, lrs, seed, classWeights ?? null, distillTargets ?? null, dist);
    } catch (e) {
      throw dist && !/out of memory|bad_alloc/i.test(String((e as Error).message)) ? lostWorker(e, 'a training step') : e;
    }
  }

  predict(x: Float32Array, n: number): Float32Array {
    return this.net.predict(x, n);
  }

  /** Writes the native weights (BatchNorm statistics included) back into the tfjs model. */
  syncWeights(): void {
    const values = this.net.getWeights();
    this.variables.forEach((v, i) => {
      const t = tf.tensor(values[i], v.shape as number[]);
      v.write(t);
      t.dispose();
    });
  }

  /** AdamW moments of each variable that has trained natively. */
  optimizerState(): Map<LayerVariable, Moments> {
    const out = new Map<LayerVariable, Moments>();
    this.net.getOptimizerState().forEach((s, i) => { if (s) out.set(this.variables[i], s); });
    return out;
  }

  setOptimizerState(v: LayerVariable, s: Moments): void {
    const i = this.variables.indexOf(v);
    if (i >= 0) this.net.setOptimizerState(i, s.step, s.m, s.v);
  }

  dispose(): void {
    this.net.dispose();
  }
}

/** The arithmetic of native steps and predictions: 'auto' picks bf16 where the CPU has bf16 instructions. */
export type Precision = 'auto' | 'fp32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['auto', 'fp32', 'bf16'];

/** What the process's CPUID says, read by the addon (__builtin_cpu_supports). */
interface AddonCpuid { avx2: boolean; avx512f: boolean; avx512bf16: boolean; avx512vnni: boolean; avxvnni: boolean; amxbf16: boolean }

export interface CpuBf16 {
  /** AVX512-BF16 (bf16 dot products in AVX-512): from CPUID with the native engine (what its kernels go by), else the CPU flags. */
  avx512Bf16: boolean;
  /** AMX-BF16 tiles, from CPUID or the flags as avx512Bf16. */
  amxBf16: boolean;
  /** Where the two came from; 'cpuid' differs from /proc/cpuinfo under an emulator or a VM that masks flags. */
  source: 'cpuid' | 'flags';
  /** Set where /proc/cpuinfo and CPUID disagree: what the flags said. */
  flagsSay?: { avx512Bf16: boolean; amxBf16: boolean };
  /** What oneDNN (inside libtorch) will use on this CPU, e.g. avx512_core_bf16 or avx512_core_amx; null without the native engine. */
  onednnIsa: string | null;
  /** Whether the addon's fused bf16 BatchNorm kernels (AVX512 F/BW/VL and AVX512-BF16) run here; false without the native engine. */
  fusedBatchNorm: boolean;
}

let cpu: CpuBf16 | undefined;

/** The CPU's bf16 support: CPUID as the native engine sees it (else /proc/cpuinfo's flags) and oneDNN's ISA. */
export function cpuBf16(): CpuBf16 {
  if (cpu) return cpu;
  const f = cpuFeatures();
  const a = load();
  const info = a?.info();
  const id = info?.cpu;
  const seen = id ? { avx512Bf16: id.avx512bf16, amxBf16: id.amxbf16 } : { avx512Bf16: f.avx512Bf16, amxBf16: f.amxBf16 };
  const differs = id && (seen.avx512Bf16 !== f.avx512Bf16 || seen.amxBf16 !== f.amxBf16);
  return cpu = { ...seen, source: id ? 'cpuid' : 'flags', ...(differs ? { flagsSay: { avx512Bf16: f.avx512Bf16, amxBf16: f.amxBf16 } } : {}),
    onednnIsa: info ? info.onednnIsa : null, fusedBatchNorm: info ? info.fusedBatchNormBf16 === true : false };
}

let processPrecision: Precision = 'fp32';
let processPrecisionGiven = false;
const scoped = new AsyncLocalStorage<Precision>();

function checkPrecision(p: unknown): asserts p is Precision {
  if (!PRECISIONS.includes(p as Precision)) throw new GraftError('BAD_OPTION', `precision must be one of ${PRECISIONS.join(', ')}; got ${JSON.stringify(p)}.`, { fix: 'Use auto, fp32 or bf16 (on the command line, --precision).' });
}

/** The precision native runs take when a call names none (the CLI sets it from --precision). Default 'fp32'. */
export function setPrecision(p: Precision): void {
  checkPrecision(p);
  processPrecision = p;
  processPrecisionGiven = true;
}

/** Whether a precision was chosen (setPrecision, withPrecision), not left at the default. */
export function precisionGiven(): boolean {
  return scoped.getStore() !== undefined || processPrecisionGiven;
}

/** Runs `fn` with `p` as the default precision of every native run inside it (async calls included). */
export function withPrecision<T>(p: Precision | undefined, fn: () => T): T {
  if (typeof fn !== 'function') throw new GraftError('BAD_OPTION', `withPrecision needs a function to run; got ${typeof fn}.`, { fix: 'Call withPrecision(precision, () => ...).' });
  if (p === undefined) return fn();
  checkPrecision(p);
  return scoped.run(p, fn);
}

/** The precision in force here (withPrecision's, else setPrecision's). */
export function defaultPrecision(): Precision {
  return scoped.getStore() ?? processPrecision;
}

/** The precision of a run's native computations here, and why: resolvePrecision's, or fp32 where the native engine is not available (tfjs computes in fp32). */
export function runPrecision(requested: Precision = defaultPrecision()): { precision: 'fp32' | 'bf16'; requested: Precision; why: string } {
  const native = nativeStatus();
  return native.available ? resolvePrecision(requested) : { precision: 'fp32', requested, why: `the native engine is ${native.reason}; tfjs computes in fp32` };
}

/** What a requested precision means on this CPU, and why (for the run's words and JSON). */
export function resolvePrecision(requested: Precision = defaultPrecision()): { precision: 'fp32' | 'bf16'; requested: Precision; why: string } {
  checkPrecision(requested);
  const c = cpuBf16();
  const hw = c.amxBf16 ? 'AMX-BF16' : c.avx512Bf16 ? 'AVX512-BF16' : '';
  const isa = c.onednnIsa ? `, oneDNN ${c.onednnIsa}` : '';
  if (requested === 'fp32') return { precision: 'fp32', requested, why: precisionGiven() ? 'fp32 requested' : `fp32, the default${hw ? `; --precision auto would pick bf16 on this CPU (${hw})` : ''}` };
  if (requested === 'bf16') return { precision: 'bf16', requested, why: hw ? `bf16 requested; the CPU has ${hw}${isa}` : `bf16 requested, but this CPU has no AVX512-BF16 or AMX: bf16 runs emulated, likely slower than fp32` };
  return hw ? { precision: 'bf16', requested, why: `auto: the CPU has ${hw}${isa}` } : { precision: 'fp32', requested, why: 'auto: the CPU has no AVX512-BF16 or AMX' };
}
