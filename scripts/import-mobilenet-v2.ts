// Imports the ImageNet-initialised MobileNetV2 (alpha 1.0, 224x224 RGB, Keras 2 LayersModel,
// uint8-quantised weights) that the MIT-licensed npm package nsfwjs 4.4.0 ships inside
// dist/models/mobilenet_v2 as UMD modules, into zoo/mobilenet-v2 (model.json, weights.bin,
// graft.json). Its own head is nsfwjs' 5-class classifier. Run: npm run import:mobilenet
// (it fetches the package tarball with `npm pack` from the npm registry).

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDirAtomic } from '../src/model/io.js';
import { versions, type GraftMeta } from '../src/model/meta.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-nsfwjs-'));
execFileSync('npm', ['pack', 'nsfwjs@4.4.0', '--silent'], { cwd: dir });
execFileSync('tar', ['xzf', 'nsfwjs-4.4.0.tgz'], { cwd: dir });
const require = createRequire(import.meta.url);
const models = join(dir, 'package', 'dist', 'models', 'mobilenet_v2');
const modelJson = require(join(models, 'model.min.js')) as { modelTopology: object; weightsManifest: { paths: string[]; weights: object[] }[] };
const weights = Buffer.from(require(join(models, 'group1-shard1of1.min.js')) as string, 'base64');
modelJson.weightsManifest = [{ paths: ['weights.bin'], weights: modelJson.weightsManifest.flatMap((g) => g.weights) }];
const classNames = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];
const meta: GraftMeta = {
  format: 'graft/1',
  classNames,
  preprocessing: { inputShape: [224, 224, 3], scale: 1 / 255, description: 'RGB pixels 0-255 divided by 255' },
  heads: [{ name: 'nsfwjs', outputLayer: 'dense_3', classNames, layers: [] }],
  zoo: {
    description: 'MobileNetV2 (alpha 1.0, 224x224x3), ImageNet-initialised, fine-tuned by nsfwjs into a 5-class image classifier.',
    suggestedCuts: ['block_13_expand_relu', 'out_relu', 'block_6_expand_relu'],
    provenance: 'npm package nsfwjs 4.4.0 (Infinite Red), dist/models/mobilenet_v2, imported by scripts/import-mobilenet-v2.ts; weights uint8-quantised as shipped.',
    licence: 'MIT (nsfwjs, Copyright (c) 2019 Infinite Red, Inc.).',
  },
  versions: versions(),
  createdAt: new Date().toISOString(),
};
await writeDirAtomic(fileURLToPath(new URL('../../zoo/mobilenet-v2', import.meta.url)), {
  'model.json': JSON.stringify(modelJson),
  'weights.bin': weights,
  'graft.json': JSON.stringify(meta, null, 2),
});
console.log(`wrote zoo/mobilenet-v2 (${(weights.length / 1048576).toFixed(1)} MB of weights)`);
