/**
 * test/reference/gradcheck.ts — finite-difference checks of the reference backward functions (float64).
 *
 * API
 *   numericGrad(f: (x: Float64Array) => number, x: Float64Array, eps = 1e-6): Float64Array
 *       central differences (f(x + eps e_i) - f(x - eps e_i)) / (2 eps); x is perturbed in place and restored.
 *   checkGradient(f, x, analytic: ArrayLike<number> | Arr, opts?: GradCheckOpts): number
 *       compares `analytic` with numericGrad(f, x, eps) by maxRelErr (scale = max |numeric|); throws past tol;
 *       returns the error.
 *   checkBackward(forward: (xs: Arr[]) => Arr, backward: (xs: Arr[], gy: Arr) => Array<Arr | null | undefined>,
 *                 inputs: Arr[], opts?: GradCheckOpts & { seed?: number }): number[]
 *       random projection: R = uniform(-1, 1) of the output's shape (seeded), loss(xs) = sum(forward(xs) * R);
 *       backward(xs, R)[k] must equal d loss / d xs[k] for every k whose entry is not null/undefined (those
 *       inputs, e.g. masks or targets, are skipped). Returns the error per input (NaN where skipped).
 *   interface GradCheckOpts { eps?: number = 1e-6; tol?: number = 1e-6; what?: string }
 *
 * Why 1e-6 relative: with eps = 1e-6 in float64 the truncation error is ~eps^2 * |f'''| ~ 1e-12 and the rounding
 * error ~ 1e-16 * |loss| / eps ~ 1e-10 * |loss|; the test inputs keep |loss| below ~1e2 and stay away from kinks
 * (relu at 0, ties in max), so true agreement is ~1e-8 or better and 1e-6 leaves a wide margin while still
 * catching any wrong term (those give errors of order 1e-2 .. 1).
 */
import { type Arr, zeros, rng, dot, assertClose, shapeStr } from './tensor.ts';

export interface GradCheckOpts {
  eps?: number;
  tol?: number;
  what?: string;
}

export function numericGrad(f: (x: Float64Array) => number, x: Float64Array, eps = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + eps;
    const fp = f(x);
    x[i] = saved - eps;
    const fm = f(x);
    x[i] = saved;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

export function checkGradient(
  f: (x: Float64Array) => number,
  x: Float64Array,
  analytic: ArrayLike<number> | Arr,
  opts: GradCheckOpts = {},
): number {
  const numeric = numericGrad(f, x, opts.eps ?? 1e-6);
  return assertClose(analytic, numeric, opts.tol ?? 1e-6, opts.what ?? 'gradient vs finite differences');
}

export function checkBackward(
  forward: (xs: Arr[]) => Arr,
  backward: (xs: Arr[], gy: Arr) => Array<Arr | null | undefined>,
  inputs: Arr[],
  opts: GradCheckOpts & { seed?: number } = {},
): number[] {
  const xs = inputs.map((a) => ({ data: new Float64Array(a.data), shape: [...a.shape] }));
  const out = forward(xs);
  const R = zeros(out.shape);
  const r = rng(opts.seed ?? 12345);
  for (let i = 0; i < R.data.length; i++) R.data[i] = r.uniform(-1, 1);
  const grads = backward(xs, R);
  const what = opts.what ?? 'backward';
  return xs.map((x, k) => {
    const g = grads[k];
    if (!g) return NaN;
    if (g.data.length !== x.data.length) {
      throw new Error(`${what}: gradient ${k} has shape ${shapeStr(g.shape)}, input is ${shapeStr(x.shape)}`);
    }
    const loss = (): number => dot(forward(xs), R);
    return checkGradient(() => loss(), x.data, g, { eps: opts.eps, tol: opts.tol, what: `${what}: d/d input ${k} ${shapeStr(x.shape)}` });
  });
}
