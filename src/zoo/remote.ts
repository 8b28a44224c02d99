// Named pretrained models fetched on first use, as Keras Applications and timm do: a small
// table of well-known ImageNet CNNs from their official home (the ONNX model zoo), downloaded
// once into the cache ($GRAFT_HOME, default ~/.cache/graft) with progress, resumed when a
// download broke off, and checked: against the publisher's SHA-256 where one is published,
// else against the hash recorded on the first download (a later change is refused).
// GRAFT_MODEL_MIRROR=<url> fetches <url>/<file> instead (a local copy, or tests on 127.0.0.1).

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GraftError } from '../errors.js';
import { httpDownload } from '../model/http.js';

export interface RemoteModel {
  /** What --base takes: onnx-zoo:<name>. */
  name: string;
  url: string;
  file: string;
  /** Approximate size, for the words before a download. */
  megabytes: number;
  license: string;
  /** The publisher's SHA-256 of the file, where one is published. */
  sha256?: string;
  preprocessing: 'imagenet' | 'unit' | 'symmetric';
  /** The last layers before the classifier, as node or value names of the graph. */
  suggestedCuts: string[];
  about: string;
}

const ZOO = 'https://github.com/onnx/models/raw/main/validated/vision/classification';

export const REMOTE_MODELS: RemoteModel[] = [
  {
    name: 'onnx-zoo:mobilenetv2', url: `${ZOO}/mobilenet/model/mobilenetv2-12.onnx`, file: 'mobilenetv2-12.onnx', megabytes: 14, license: 'Apache-2.0',
    preprocessing: 'imagenet', suggestedCuts: [], about: 'MobileNetV2 1.0 (ImageNet, 224x224, NCHW), ONNX model zoo, opset 12',
  },
  {
    name: 'onnx-zoo:resnet50', url: `${ZOO}/resnet/model/resnet50-v2-7.onnx`, file: 'resnet50-v2-7.onnx', megabytes: 98, license: 'Apache-2.0',
    preprocessing: 'imagenet', suggestedCuts: [], about: 'ResNet-50 v2 (ImageNet, 224x224, NCHW), ONNX model zoo, opset 7',
  },
  {
    name: 'onnx-zoo:efficientnet-lite4', url: `${ZOO}/efficientnet-lite4/model/efficientnet-lite4-11.onnx`, file: 'efficientnet-lite4-11.onnx', megabytes: 50, license: 'Apache-2.0',
    preprocessing: 'symmetric', suggestedCuts: [], about: 'EfficientNet-Lite4 (ImageNet, 224x224, NHWC), ONNX model zoo, opset 11',
  },
];

export function remoteModel(spec: string): RemoteModel | undefined {
  return REMOTE_MODELS.find((m) => m.name === spec);
}

export function graftHome(): string {
  return process.env.GRAFT_HOME || join(homedir(), '.cache', 'graft');
}

/** The first bytes of a file. */
async function readHead(path: string, n = 64): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface FetchOptions {
  onProgress?: (url: string, received: number, total: number | undefined) => void;
  /** Words for the user (downloading, resumed, verified). */
  log?: (line: string) => void;
}

/** The cached file of `m`, downloaded first if it is not there; verified either way. */
export async function fetchRemoteModel(m: RemoteModel, options: FetchOptions = {}): Promise<string> {
  const dir = join(graftHome(), 'models', m.name.replace(/[^A-Za-z0-9._-]/g, '-'));
  const path = join(dir, m.file);
  const pin = `${path}.sha256`;
  const part = `${path}.part`;
  const mirror = process.env.GRAFT_MODEL_MIRROR;
  const url = mirror ? `${mirror.replace(/\/+$/, '')}/${m.file}` : m.url;
  const expected = m.sha256 ?? (await readFile(pin, 'utf8').then((s) => s.trim(), () => undefined));
  const cached = await stat(path).then((s) => s.isFile(), () => false);
  if (cached) {
    const got = await sha256File(path);
    if (expected && got !== expected) {
      throw new GraftError('BAD_MODEL', `The cached ${m.name} (${path}) has the SHA-256 ${got.slice(0, 16)}..., not the ${m.sha256 ? 'published' : 'first-downloaded'} ${expected.slice(0, 16)}...: it changed since it was downloaded.`, {
        fix: `Delete ${path}${m.sha256 ? '' : ` and ${pin}`} and run again to download it afresh.` });
    }
    return path;
  }
  await mkdir(dir, { recursive: true });
  const resumeFrom = await stat(part).then((s) => s.size, () => 0);
  options.log?.(`${m.name}: ${resumeFrom ? `resuming the download of ${m.file} after ${(resumeFrom / 1024 ** 2).toFixed(1)} MB` : `downloading ${m.file} (about ${m.megabytes} MB, ${m.license})`} from ${url} into ${dir}`);
  try {
    await httpDownload(url, part, { maxBytes: 2 * 1024 ** 3, onProgress: options.onProgress && ((r, t) => options.onProgress!(url, r, t)) });
  } catch (e) {
    const kept = await stat(part).then((s) => s.size, () => 0);
    throw new GraftError('NETWORK', `Could not download ${m.name} from ${url}: ${(e as Error).message}${kept ? ` (${kept} bytes are kept in ${part}; the next run resumes from there)` : ''}`, {
      fix: `Run again when the network is back. Offline: download ${m.url} on a machine that can, and put it at ${path} (or set GRAFT_MODEL_MIRROR to a server that holds ${m.file}).`, cause: e });
  }
  const got = await sha256File(part);
  // The file must be what its name says: an HTML error page or a proxy's answer is not cached.
  const head = await readHead(part);
  if (m.file.endsWith('.onnx') && head[0] !== 0x08) {
    await rm(part, { force: true });
    const text = /^\s*</.test(head.toString('latin1')) ? ' (it begins like an HTML page)' : '';
    throw new GraftError('BAD_MODEL', `The download of ${m.name} from ${url} is not an ONNX model${text}. It was removed, and nothing was cached.`, {
      fix: 'Run again; if it happens again, the server sends something else (a login or error page?): download the file yourself, check it, and put it at ' + path + '.' });
  }
  // A second download of a file whose hash was recorded at the first must be the same file.
  if (!m.sha256 && expected && got !== expected) {
    await rm(part, { force: true });
    throw new GraftError('BAD_MODEL', `The download of ${m.name} from ${url} has the SHA-256 ${got.slice(0, 16)}..., not the ${expected.slice(0, 16)}... recorded at the first download in ${pin}. It was removed; the record was kept.`, {
      fix: `If the publisher changed the file on purpose, delete ${pin} and run again; otherwise the server sends something else.` });
  }
  if (m.sha256 && got !== m.sha256) {
    await rm(part, { force: true });
    throw new GraftError('BAD_MODEL', `The download of ${m.name} from ${url} is not the published file: its SHA-256 is ${got.slice(0, 16)}..., the publisher's ${m.sha256.slice(0, 16)}.... It was removed.`, {
      fix: 'Run again; if it happens again, the server sends something else (a proxy page?): download the file yourself and check its hash.' });
  }
  await rename(part, path);
  if (!m.sha256) {
    await writeFile(pin, `${got}\n`);
    options.log?.(`${m.name}: no published SHA-256; recorded ${got.slice(0, 16)}... in ${pin}, and later runs check the file against it`);
  } else options.log?.(`${m.name}: verified against the published SHA-256`);
  return path;
}
