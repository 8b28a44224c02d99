// graft/native: the libtorch engine (one call per training step or prediction batch) and the
// backend underneath tfjs.
export { NativeNet, nativeStatus, setNativeEnabled, NativeUnsupported, type NativeStatus } from '../engine/native.js';
export { nativePlan, nativeUnsupported } from '../model/native-plan.js';
export { backendInfo, doctor, type BackendInfo, type Doctor } from '../engine/backend.js';
