// Graft's public API. The CLI and the web page use nothing else.

export { GraftError, type GraftErrorCode } from './errors.js';
export { initBackend, backendInfo, doctor, type BackendInfo, type Doctor } from './engine/backend.js';
export { NativeNet, nativeStatus, setNativeEnabled, NativeUnsupported, type NativeStatus } from './engine/native.js';
export { nativePlan, nativeUnsupported } from './model/native-plan.js';

export { loadModel, type LoadedModel, type LoadOptions } from './model/load.js';
export { saveModel, readModelFiles, writeDirAtomic, writeFileAtomic, assertWritable } from './model/io.js';
export { checkOutDir, checkOutFile, holdsGraftModel, partialOut, repairSwap, type Protected, type OutOptions } from './model/out-dir.js';
export { adoptModel, FreezableBatchNormalization } from './model/batch-norm.js';
export { versions, type GraftMeta, type HeadMeta, type EpochRecord, type Preprocessing, type ZooInfo } from './model/meta.js';
export { cutBody, type Body } from './model/cut.js';
export { buildHead, attachHead, HEAD_DEFAULTS, type Head, type HeadOptions } from './model/head.js';
export { graft, type Grafted, type GraftOptions } from './model/graft.js';
export { freezeBody, unfreeze, parseUnfreeze, layersToUnfreeze, frozenLayerNames, trainableVariables, type UnfreezeSpec } from './model/freeze.js';
export { inspectModel, formatInspection, type Inspection, type LayerRow } from './model/inspect.js';
export { findLayer, paramCount, type LayerRef } from './model/layers.js';
export { findOldHead, multiHeadModel, selectHead, headsMeta, type OldHead } from './model/multi-head.js';
export { extendModel, mergeClassNames } from './model/extend.js';
export { readKerasModel, isKerasPath, keras3ToKeras2 } from './model/keras.js';
export { GraphBody, graphModelJson, graphNodes, formatGraphNodes, type GraphBodyInfo, type GraphNode } from './model/graph-body.js';
export { OnnxBody, readOnnxGraph, formatOnnxGraph, withOutputs, type OnnxBodyInfo, type OnnxGraph, type OnnxNode } from './model/onnx.js';

export { type Dataset, type SkippedFile, count, classCounts, classImbalance, stratifiedSplit, takePerClass, subset, assertTrainable } from './data/dataset.js';
export { loadImageFolder, loadImageFiles, loadLabeledImages, decodeImage, splitFolders, classFolders, walk, isDir, imageInput, isImageFile, IMAGE_EXTENSIONS, type Fit, type ImageOptions } from './data/images.js';
export { loadData, alignClasses, type DataOptions } from './data/load.js';
export { loadMnist, parseDigits } from './data/mnist.js';
export { loadCsv, parseCsv } from './data/csv.js';
export { loadIdxDataset, parseIdx, readIdx } from './data/idx.js';
export { standardization, preprocessInPlace, assertShape } from './data/preprocess.js';
export { augmentBatch, augmentedViews, parseAugment, describeAugment, isIdentity, AUGMENT_DEFAULTS, NO_AUGMENT, type AugmentOptions } from './data/augment.js';

export { DEFAULTS } from './train/defaults.js';
export { fineTune, layerGroups, type FineTuneOptions, type FineTuneResult, type FineTuneCallbacks, type PhaseInfo, type PhaseSummary, type Phase, type TrainingState, type Divergence, type PhaseControl } from './train/fine-tune.js';
export { writeCheckpoint, readLatestCheckpoint, applyCheckpoint, type Checkpoint } from './train/checkpoint.js';
export { DivergedError } from './train/loop.js';
export { predictAll, featureDataset } from './train/predict.js';
export { cachedFeatureDataset, listCache, clearCache, cacheDir, modelFingerprint, featureKey, CACHE_DEFAULTS, type CacheEntry, type CachedFeatures } from './train/feature-cache.js';
export { lrFactor, evenMults } from './train/schedule.js';
export { AdamW } from './train/optimizer.js';
export { transferFrozen, frozenBase, frozenMeta, resolveCut, type FrozenBody, type FrozenTransferOptions } from './train/transfer.js';
export { exportOnnx, checkExport, type ExportOptions, type Exported, type ExportCheck, type Quantization } from './export/export.js';
export { OnnxModel } from './export/onnx-run.js';
export type { OnnxExportInfo, OnnxExportOptions } from './export/onnx-export.js';
export { transfer, defaultCut, describe, type Transfer, type TransferOptions, type KeepOld } from './train/transfer.js';
export { lwfLoss, distillationLoss, soften, DISTILL_DEFAULTS, type DistillOptions } from './train/distill.js';
export { crossEntropy, type LossFn, type LossContext } from './train/loop.js';

export { evaluate, formatEvaluation, type Evaluation } from './eval/evaluate.js';
export { transferWithForgetting, formatForgetting, type ForgettingReport } from './eval/forgetting.js';

export { ZOO, zooEntry, digitsCnn, type ZooEntry } from './zoo/zoo.js';

export { renderDiagram, diagramOfModel, diagramOfGraft, diagramOfSaved, groupLayers, groupKey, type DiagramSpec, type DiagramLayer, type LayerState } from './report/diagram.js';
export { lossChart, accuracyChart, confusionMatrixSvg } from './report/charts.js';
export { sampleGridSvg, pickSamples, type SamplePrediction } from './report/samples.js';
export { renderReport, type ReportInput } from './report/html.js';
export { explainRun } from './report/words.js';
export { encodePng, pngDataUri, crc32 } from './report/png.js';
export { compareTransfer, VARIANTS, COMPARE_DEFAULTS, type CompareOptions, type CompareResult, type VariantName } from './eval/compare.js';
export { recommend, type VariantResult } from './eval/recommend.js';
export { learningCurveSvg } from './report/compare-chart.js';
