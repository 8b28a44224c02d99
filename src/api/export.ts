// graft/export: ONNX exports and their checks, and writing files safely (Graft never replaces
// a file it did not write).
export { exportOnnx, checkExport, type ExportOptions, type Exported, type ExportCheck, type Quantization } from '../export/export.js';
export { OnnxModel } from '../export/onnx-run.js';
export type { OnnxExportInfo, OnnxExportOptions } from '../export/onnx-export.js';
export { writeDirAtomic, writeFileAtomic, assertWritable } from '../model/io.js';
export { checkOutDir, checkOutFile, holdsGraftModel, type Protected, type OutOptions } from '../model/out-dir.js';
