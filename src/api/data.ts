// graft/data: datasets, image decoding, loaders, preprocessing and augmentation.
export { type Dataset, type SkippedFile, count, classCounts, classImbalance, stratifiedSplit, takePerClass, subset, assertTrainable } from '../data/dataset.js';
export { loadImageFolder, loadImageFiles, loadLabeledImages, decodeImage, splitFolders, classFolders, isImageFile, IMAGE_EXTENSIONS, type Fit, type ImageOptions } from '../data/images.js';
export { loadData, alignClasses, type DataOptions } from '../data/load.js';
export { loadMnist, parseDigits } from '../data/mnist.js';
export { loadCsv, parseCsv } from '../data/csv.js';
export { loadIdxDataset, parseIdx, readIdx } from '../data/idx.js';
export { standardization, preprocessInPlace, preprocessPreset, type Preprocessing } from '../data/preprocess.js';
export { augmentBatch, augmentedViews, parseAugment, describeAugment, AUGMENT_DEFAULTS, NO_AUGMENT, type AugmentOptions } from '../data/augment.js';
