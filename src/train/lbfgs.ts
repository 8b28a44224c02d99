// L-BFGS: a quasi-Newton minimiser for smooth full-batch objectives (the linear head's
// regularised cross-entropy). Two-loop recursion over the last `memory` steps, backtracking
// line search with the Armijo condition, and a convergence test on the gradient's largest
// entry. Float64 throughout: the head is small and the fit must be exact, not noisy.

export interface LbfgsOptions {
  maxIterations?: number;
  /** Converged when the largest gradient entry is below this. */
  gradientTolerance?: number;
  /** Stop (without claiming convergence) when the objective changed by less than this fraction in one step. */
  relativeTolerance?: number;
  memory?: number;
}

export interface LbfgsResult {
  x: Float64Array;
  value: number;
  gradientNorm: number;
  iterations: number;
  /** The gradient test passed (not merely a stalled objective or the iteration limit). */
  converged: boolean;
}

/** `f(x, grad)` returns the objective at x and writes its gradient into grad. */
export type Objective = (x: Float64Array, grad: Float64Array) => number;

const dot = (a: Float64Array, b: Float64Array) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };
const maxAbs = (a: Float64Array) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i])); return m; };

export function lbfgs(f: Objective, x0: Float64Array, options: LbfgsOptions = {}): LbfgsResult {
  const { maxIterations = 500, gradientTolerance = 1e-5, relativeTolerance = 1e-13, memory = 10 } = options;
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let fx = f(x, g);
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Array<number>(memory);
  const d = new Float64Array(n);
  let it = 0;
  let converged = maxAbs(g) < gradientTolerance;
  let stalled = false;
  while (!converged && !stalled && it < maxIterations) {
    it++;
    // Two-loop recursion: d = -H g.
    d.set(g);
    for (let i = S.length - 1; i >= 0; i--) { alpha[i] = rho[i] * dot(S[i], d); for (let j = 0; j < n; j++) d[j] -= alpha[i] * Y[i][j]; }
    const gamma = S.length ? dot(S[S.length - 1], Y[Y.length - 1]) / dot(Y[Y.length - 1], Y[Y.length - 1]) : 1 / Math.max(1, maxAbs(g));
    for (let j = 0; j < n; j++) d[j] *= gamma;
    for (let i = 0; i < S.length; i++) { const beta = rho[i] * dot(Y[i], d); for (let j = 0; j < n; j++) d[j] += S[i][j] * (alpha[i] - beta); }
    for (let j = 0; j < n; j++) d[j] = -d[j];
    let slope = dot(g, d);
    if (slope >= 0) {
      // Not a descent direction (curvature pairs gone stale): restart from steepest descent.
      S.length = Y.length = rho.length = 0;
      for (let j = 0; j < n; j++) d[j] = -g[j] / Math.max(1, maxAbs(g));
      slope = dot(g, d);
    }
    let step = 1;
    const xn = new Float64Array(n);
    const gn = new Float64Array(n);
    let fn = Infinity;
    for (let tries = 0; tries < 40; tries++) {
      for (let j = 0; j < n; j++) xn[j] = x[j] + step * d[j];
      fn = f(xn, gn);
      if (Number.isFinite(fn) && fn <= fx + 1e-4 * step * slope) break;
      step *= 0.5;
    }
    if (!(fn < fx) && !(fn <= fx)) break;
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let j = 0; j < n; j++) { s[j] = xn[j] - x[j]; y[j] = gn[j] - g[j]; }
    const sy = dot(s, y);
    if (sy > 1e-12) {
      if (S.length === memory) { S.shift(); Y.shift(); rho.shift(); }
      S.push(s); Y.push(y); rho.push(1 / sy);
    }
    const change = Math.abs(fx - fn) / Math.max(1, Math.abs(fx));
    x = xn; g = gn; fx = fn;
    converged = maxAbs(g) < gradientTolerance;
    stalled = change < relativeTolerance;
  }
  return { x, value: fx, gradientNorm: maxAbs(g), iterations: it, converged };
}
