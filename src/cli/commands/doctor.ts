// graft doctor: which backend runs, on how many threads, and what Graft adds to it.

import { doctor } from '#internal/engine/backend.js';
import { parse } from '../args.js';
import { cpuLine } from '#internal/engine/cpu.js';

export const usage = `graft doctor [--json]

Prints the backend in use and why, the CPU and the SIMD flags it has (they pick the kernels
of bf16, the fused BatchNorm, oneDNN and int8), its threads, the machine's cores, whether the native
libtorch backend and its one-call training step are available, and the gradient kernels
Graft adds to wasm so conv and depthwise layers can be fine-tuned there, and the CPU's bf16
support (AVX512-BF16 and AMX-BF16 from its flags, the ISA oneDNN uses) with what
--precision auto picks on it.`;

export const summary = 'backend, threads, native engine, and the kernels Graft adds';

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {}, usage);
  if (values.help) { console.log(usage); return 0; }
  const d = await doctor();
  if (values.json) { console.log(JSON.stringify(d)); return 0; }
  console.log(`backend: ${d.backend} (${d.reason})`);
  console.log(`CPU: ${cpuLine(d.cpu)}; SIMD flags: ${d.cpu.simd.join(' ') || 'none read'}`);
  console.log(`tfjs threads: ${d.threads} of ${d.cores} cores`);
  const n = d.native;
  console.log(n.available
    ? `native engine: yes (libtorch ${n.torch}, ${n.threads} threads, oneDNN ${n.oneDNN ? 'on' : 'off'}): training steps and predictions of supported models run there, one call per batch`
    : `native engine: no (${n.reason})`);
  console.log(`native training step: ${d.nativeTrainingStep ? 'yes' : 'no'}`);
  const b = d.bf16;
  const differs = b.flagsSay ? `; /proc/cpuinfo says AVX512-BF16 ${b.flagsSay.avx512Bf16 ? 'yes' : 'no'}, AMX-BF16 ${b.flagsSay.amxBf16 ? 'yes' : 'no'}: an emulator or VM masks flags, and the kernels go by CPUID` : '';
  console.log(`bf16: AVX512-BF16 ${b.avx512Bf16 ? 'yes' : 'no'}, AMX-BF16 ${b.amxBf16 ? 'yes' : 'no'} (${b.source === 'cpuid' ? 'CPUID' : 'CPU flags'}${differs}); oneDNN ISA ${b.onednnIsa ?? 'unknown (no native engine)'}; --precision auto picks ${b.auto} (${b.why.replace(/^auto: /, '')}); fused bf16 BatchNorm kernels: ${b.fusedBatchNorm ? 'yes' : 'no'}`);
  console.log(d.nativeKernels.length
    ? `native kernels in the ${d.backend} backend (per-op path: layers the engine does not know, losses without a native form): ${d.nativeKernels.join(', ')}`
    : 'native kernels in the tfjs backend: none');
  console.log(`Graft's wasm gradient kernels: ${d.graftWasmKernels.join(', ') || 'none'}${d.nativeKernels.length ? ' (JavaScript; in use when the native engine is off)' : ''}`);
  console.log(`node ${d.node}, tfjs ${d.tfjs}`);
  return 0;
}
