// GraftError: the one error type Graft throws on bad input. It carries a string `code`
// that scripts can match, and a message that says what was received, what was
// expected and how to fix it.

export type GraftErrorCode =
  | 'LAYER_NOT_FOUND'
  | 'EMPTY_CUT'
  | 'HEAD_MISMATCH'
  | 'SHAPE_MISMATCH'
  | 'BAD_MODEL'
  | 'MODEL_NOT_FOUND'
  | 'BAD_DATA'
  | 'BAD_IMAGE'
  | 'BAD_OPTION'
  | 'BAD_ARGUMENT'
  | 'CLASS_MISMATCH'
  | 'WRITE_FAILED'
  | 'UNSUPPORTED'
  | 'NETWORK'
  | 'TRAINING_DIVERGED'
  | 'OUT_OF_MEMORY'
  | 'OUT_NOT_SAFE'
  | 'OUT_BUSY'
  | 'NOT_A_FILE'
  | 'TOO_LARGE'
  | 'TIMEOUT'
  | 'RESUME_MISMATCH'
  | 'MISSING_PACKAGE'
  | 'WORKER_UNREACHABLE'
  | 'WORKERS_DIFFER'
  | 'WORKER_LOST';

export class GraftError extends Error {
  readonly code: GraftErrorCode;
  readonly fix?: string;
  /** The message without the fix line. */
  readonly detail: string;

  constructor(code: GraftErrorCode, message: string, options: { fix?: string; cause?: unknown } = {}) {
    super(options.fix ? `${message}\n  fix: ${options.fix}` : message, { cause: options.cause });
    this.name = 'GraftError';
    this.code = code;
    this.fix = options.fix;
    this.detail = message;
  }
}

/** Closest names by edit distance, for "did you mean" hints. */
export function closeNames(wanted: string, names: readonly string[], max = 5): string[] {
  const scored = names.map((n) => ({ n, d: editDistance(wanted.toLowerCase(), n.toLowerCase()) }));
  scored.sort((a, b) => a.d - b.d || a.n.localeCompare(b.n));
  return scored.slice(0, max).map((s) => s.n);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
