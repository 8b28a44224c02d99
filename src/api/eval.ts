// graft/eval: was transfer worth it, and what was forgotten: compare, recommend, forgetting.
export { formatEvaluation } from '../eval/evaluate.js';
export { transferWithForgetting, formatForgetting, type ForgettingReport } from '../eval/forgetting.js';
export { compareTransfer, VARIANTS, COMPARE_DEFAULTS, type CompareOptions, type CompareResult, type VariantName } from '../eval/compare.js';
export { recommend, type VariantResult } from '../eval/recommend.js';
