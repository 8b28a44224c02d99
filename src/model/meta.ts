// graft.json: what Graft knows about a model beyond its tfjs files: class names,
// preprocessing, where it came from and where it was cut, its heads, metrics, history
// and the versions that made it.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { version_layers } from '@tensorflow/tfjs-layers';

/** Per-element input transform: ((x * scale + offset) - mean[c]) / std[c], c = last axis. */
export interface Preprocessing {
  inputShape: number[];
  scale?: number;
  offset?: number;
  mean?: number[];
  std?: number[];
  /** Words for people: "pixels 0-255 scaled to 0-1". */
  description?: string;
  /** Images: how the aspect ratio was matched to the input (centre crop, pad or stretch). */
  imageFit?: 'crop' | 'pad' | 'stretch';
}

export interface HeadMeta {
  name: string;
  /** Output layer of the head in model.json. */
  outputLayer: string;
  classNames: string[];
  layers: string[];
}

export interface EpochRecord {
  phase: 'warm-up' | 'fine-tune' | 'train';
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  /** The phase's peak learning rate (the head's group; the schedule moves each step's rate under it). */
  peakLearningRate: number;
  seconds: number;
  /** Old-task accuracy after this epoch, when old data was given. */
  oldTaskAccuracy?: number;
}

export interface GraftMeta {
  format: 'graft/1';
  classNames: string[];
  preprocessing: Preprocessing;
  base?: {
    source: string;
    cut?: { layer: string; index: number };
    /** The layers the cut removed (the old head), for diagrams. */
    removed?: { name: string; className: string; shape: (number | null)[]; params: number }[];
  };
  heads: HeadMeta[];
  /** A frozen body outside the saved LayersModel (an ONNX file run by onnxruntime, or a tfjs GraphModel); the model's input is its features. */
  body?: { kind: 'onnx' | 'tfjs-graph'; path: string; sha256: string; input: string; output: string; layout: 'NCHW' | 'NHWC'; imageShape: [number, number, number]; featureShape: number[] };
  frozen?: string[];
  metrics?: Record<string, number | null | undefined>;
  history?: EpochRecord[];
  recipe?: Record<string, unknown>;
  /** The test-data evaluation of `graft train --test-data`: accuracy, per class, confusion matrix. */
  evaluation?: { on: string; accuracy: number; loss: number; count: number; classNames: string[]; perClass: { className: string; accuracy: number | null; count: number }[]; confusion: number[][] };
  /** Set when the loss became NaN or infinite: where, at which learning rate, what to change. */
  diverged?: { phase: string; epoch: number; batch: number; learningRate: number; message: string; fix: string };
  /** Old-task accuracy before and after training (eval/forgetting.ts). */
  forgetting?: unknown;
  /** The fitted warm-up: L2 strength, how it was chosen, cross-validated accuracy, convergence (train/head-fit.ts). */
  headFit?: import('../train/head-fit.js').HeadFitReport;
  /** Whether fine-tuning beat the warm-up head, how that was measured, and which was kept (train/keep-better.ts). */
  fineTuneCheck?: import('../train/keep-better.js').FineTuneCheck;
  /** Cross-validation spread and the test accuracy's 95% Wilson interval. */
  uncertainty?: Record<string, unknown>;
  zoo?: ZooInfo;
  /** What graft train read as training data (graft export calibrates int8 on it while it is there). */
  trainingData?: { spec: string; samples: number; /** --test-split held part of spec out as test data. */ testSplit?: boolean };
  /** ONNX files graft export wrote for these weights (graft predict runs a current fp32 one on onnxruntime). */
  exports?: OnnxExportRecord[];
  versions: Record<string, string>;
  createdAt: string;
}

export interface OnnxExportRecord {
  /** The file's path relative to the model folder, or absolute when outside it. */
  file: string;
  quantization: 'none' | 'fp16' | 'int8';
  /** int8: how the weights are stored: uint8 (the same results on every x86 CPU) or int8 (fastest with VNNI). */
  int8Weights?: 'uint8' | 'int8' | 'int8-reduced';
  layout: 'nhwc' | 'nchw';
  includesPreprocessing: boolean;
  /** The heads it answers for. */
  heads: string[];
  sha256: string;
  /** sha256 of weights.bin when exported: a later retraining makes the export stale. */
  weightsSha256: string;
  createdAt: string;
}

export interface ZooInfo {
  description: string;
  suggestedCuts: string[];
  /** Head options that suit this body (e.g. pooling), used unless the user says otherwise. */
  suggestedHead?: { pooling?: 'avg' | 'max' | 'flatten'; hidden?: number[]; dropout?: number };
  provenance: string;
  licence: string;
}

export function graftVersion(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8'));
  return pkg.version as string;
}

export function versions(): Record<string, string> {
  return { graft: graftVersion(), tfjsCore: tf.version_core, tfjsLayers: version_layers, node: process.version, backend: tf.getBackend() };
}
