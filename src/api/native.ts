// graft/native: the libtorch engine (one call per training step or prediction batch) and the
// backend underneath tfjs, and the precision native runs compute in.
export { NativeNet, nativeStatus, setNativeEnabled, NativeUnsupported, type NativeStatus, type NativeNetOptions } from '../engine/native.js';
export { cpuBf16, defaultPrecision, PRECISIONS, resolvePrecision, setPrecision, withPrecision, type CpuBf16, type Precision } from '../engine/native.js';
export { nativePlan, nativeUnsupported } from '../model/native-plan.js';
export { backendInfo, doctor, type BackendInfo, type Doctor } from '../engine/backend.js';
