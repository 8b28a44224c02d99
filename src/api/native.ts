// graft/native: the libtorch engine (one call per training step or prediction batch) and the
// backend underneath tfjs, the precision native runs compute in, and data-parallel runs.
export { NativeNet, nativeStatus, setNativeEnabled, NativeUnsupported, type NativeStatus, type NativeNetOptions } from '../engine/native.js';
export { cpuBf16, defaultPrecision, PRECISIONS, resolvePrecision, setPrecision, withPrecision, type CpuBf16, type Precision } from '../engine/native.js';
export { nativePlan, nativeUnsupported } from '../model/native-plan.js';
export { backendInfo, doctor, type BackendInfo, type Doctor } from '../engine/backend.js';
// Data-parallel training (docs/scale.md): joinRun makes this process one worker of a run;
// fineTune, transfer and runPhase then train their shard of every batch.
export { joinRun, leaveRun, distributed, type DistOptions, type Distributed } from '../engine/dist.js';
