// graft cache ls | clear: the disk cache of frozen-body features.

import { CACHE_DEFAULTS, cacheDir, clearCache, listCache } from '#internal/train/feature-cache.js';
import { GraftError } from 'graft';
import { parse, str } from '../args.js';

export const usage = `graft cache ls [--json]
graft cache clear [<key-prefix>]

The warm-up phase trains the head on the features of the frozen body. graft train and
graft compare keep those features on disk, keyed by the body (its layers and weights, so
another cut or fine-tuned weights miss), the preprocessing and the decoded input data, and
reuse them when the same body meets the same data again.

  ls      list the entries: key, body, data, samples, feature shape and precision, size, last used
  clear   remove every entry, or those whose key starts with <key-prefix>

Where: $GRAFT_CACHE_DIR, else $XDG_CACHE_HOME/graft, else ~/.cache/graft (features/ inside).
Size budget: $GRAFT_CACHE_MAX_MB (default ${CACHE_DEFAULTS.maxBytes / 1024 / 1024} MB); the least recently used entries go first.
graft train --no-cache leaves the cache alone.`;

export const summary = 'list or clear the disk cache of body features';

const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, usage);
  if (values.help) { console.log(usage); return 0; }
  const [action, arg] = positionals;
  if (action === 'ls' || action === 'list') {
    const entries = await listCache();
    const total = entries.reduce((s, e) => s + e.bytes, 0);
    if (values.json) { console.log(JSON.stringify({ dir: cacheDir(), totalBytes: total, entries })); return 0; }
    console.log(`${cacheDir()}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, ${mb(total)}`);
    for (const e of entries) {
      console.log(`  ${e.key.slice(0, 12)}  ${e.body}; ${e.data}; ${e.count} samples x [${e.featureShape.join(', ')}]${e.precision ? ` in ${e.precision}` : ''}; ${mb(e.bytes)}; last used ${e.lastUsed.slice(0, 16).replace('T', ' ')}`);
    }
    return 0;
  }
  if (action === 'clear') {
    const r = await clearCache(str(arg) ?? '');
    if (values.json) console.log(JSON.stringify(r));
    else console.log(`removed ${r.entries} entr${r.entries === 1 ? 'y' : 'ies'} (${mb(r.bytes)}) from ${cacheDir()}`);
    return 0;
  }
  throw new GraftError('BAD_ARGUMENT', action ? `graft cache ${action} is not a cache command.` : 'graft cache needs ls or clear.', { fix: `Usage:\n${usage}` });
}
