// graft/bodies: the networks Graft starts from and what it does to them: the zoo, Keras, ONNX
// and GraphModel bases, inspection, layer lookup, BatchNorm, old heads, extend mode.
export { ZOO, zooEntry, digitsCnn, type ZooEntry } from '../zoo/zoo.js';
export { readKerasModel, isKerasPath } from '../model/keras.js';
export { OnnxBody, readOnnxGraph, formatOnnxGraph, type OnnxBodyInfo, type OnnxGraph, type OnnxNode } from '../model/onnx.js';
export { GraphBody, graphModelJson, graphNodes, formatGraphNodes, type GraphBodyInfo, type GraphNode } from '../model/graph-body.js';
export { inspectModel, formatInspection, type Inspection, type LayerRow } from '../model/inspect.js';
export { findLayer, paramCount, type LayerRef } from '../model/layers.js';
export { attachHead, HEAD_DEFAULTS, type Head } from '../model/head.js';
export { parseUnfreeze, layersToUnfreeze, frozenLayerNames, trainableVariables } from '../model/freeze.js';
export { adoptModel, FreezableBatchNormalization } from '../model/batch-norm.js';
export { findOldHead, multiHeadModel, selectHead, headsMeta, type OldHead } from '../model/multi-head.js';
export { extendModel, mergeClassNames } from '../model/extend.js';
export { readModelFiles } from '../model/io.js';
export { versions, type HeadMeta, type ZooInfo } from '../model/meta.js';
export { defaultCut, resolveCut, frozenBase, frozenMeta, transferFrozen, type FrozenBody, type FrozenTransferOptions } from '../train/transfer.js';
