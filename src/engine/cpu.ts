// What the CPU offers, from /proc/cpuinfo: the kernels Graft, libtorch and onnxruntime pick at
// run time depend on it (bf16, the fused BatchNorm kernels, oneDNN's ISA, int8's u8 x s8 sums).

import { readFileSync } from 'node:fs';

export interface CpuFeatures {
  /** The model name, e.g. "AMD EPYC 7B13"; '' when unknown. */
  model: string;
  /** The SIMD flags that pick kernels: avx*, fma, f16c, amx*, sorted. */
  simd: string[];
  avx2: boolean;
  avx512: boolean;
  /** AVX512-VNNI or AVX-VNNI: 32-bit sums of u8 x s8 products (onnxruntime's int8 without saturation). */
  vnni: boolean;
  avx512Bf16: boolean;
  amxBf16: boolean;
}

let seen: CpuFeatures | undefined;

/** The CPU's features (read once; empty off Linux). */
export function cpuFeatures(): CpuFeatures {
  if (seen) return seen;
  let text = '';
  try { text = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux: nothing to read */ }
  const flags = (/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const has = (f: string) => flags.includes(f);
  return seen = {
    model: (/^model name\s*:(.*)$/m.exec(text)?.[1] ?? '').trim(),
    simd: flags.filter((f) => /^(avx|fma|f16c|amx)/.test(f)).sort(),
    avx2: has('avx2'), avx512: has('avx512f'), vnni: has('avx512_vnni') || has('avx_vnni'),
    avx512Bf16: has('avx512_bf16'), amxBf16: has('amx_bf16'),
  };
}

/** One line for words: "AMD EPYC 7B13 (AVX2, no AVX512, no VNNI)". */
export function cpuLine(c = cpuFeatures()): string {
  const yes = (b: boolean, name: string) => (b ? name : `no ${name}`);
  return `${c.model || 'unknown CPU'} (${[yes(c.avx2, 'AVX2'), yes(c.avx512, 'AVX512'), yes(c.vnni, 'VNNI'), yes(c.avx512Bf16, 'AVX512-BF16')].join(', ')})`;
}
