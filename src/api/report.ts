// graft/report: pictures and words: network diagrams, charts, sample grids, the HTML report.
export { renderDiagram, diagramOfModel, diagramOfGraft, diagramOfSaved, type DiagramSpec, type DiagramLayer, type LayerState } from '../report/diagram.js';
export { lossChart, accuracyChart, confusionMatrixSvg } from '../report/charts.js';
export { learningCurveSvg } from '../report/compare-chart.js';
export { sampleGridSvg, pickSamples, type SamplePrediction } from '../report/samples.js';
export { renderReport, type ReportInput } from '../report/html.js';
export { explainRun } from '../report/words.js';
export { encodePng, pngDataUri } from '../report/png.js';
