/**
 * test/reference/tensor.ts — the float64 array type that every reference takes and returns, and helpers.
 *
 * The references in test/reference/ are the ground truth the GPU kernels are checked against: plain float64
 * nested loops, PyTorch semantics, no cleverness. Conventions shared by every file:
 *   - tensors are `Arr` (row-major, contiguous, NCHW for images, OIHW for conv weights);
 *   - a backward function takes the forward's inputs that it needs, then `gy` (the gradient of the output),
 *     then the same options as the forward, and returns one gradient per differentiable input;
 *   - options objects use PyTorch's names in camelCase (stride, padding, dilation, groups, kernelSize, ceilMode...).
 *
 * API
 *   type Arr = { data: Float64Array; shape: number[] }
 *   type Pair = number | [number, number];          pair(v): [number, number]
 *   size(shape): number                              product of the dims (1 for a scalar [])
 *   strides(shape): number[]                         row-major element strides
 *   zeros(shape): Arr    full(shape, v): Arr    fromArray(data: ArrayLike<number>, shape = [data.length]): Arr (copies)
 *   clone(a): Arr        reshapeArr(a, shape): Arr (copies; one -1 allowed)
 *   toFloat32(a): Float32Array      roundF32(a): Arr (values rounded to float32, kept in a Float64Array)
 *   unravel(i, shape): number[]     ravel(idx, shape): number     normAxis(axis, rank): number (negative from the end)
 *   sameShape(a, b): boolean        shapeStr(shape): string   e.g. "[2,3,5]"
 *   rng(seed): Rng                   mulberry32 stream: next() in [0,1), uniform(lo=0,hi=1), normal(mean=0,std=1), int(n)
 *   randArr(shape, seed, lo = -1, hi = 1): Arr      uniform
 *   randnArr(shape, seed, std = 1): Arr             normal(0, std)
 *   dot(a, b): number                               sum of a[i]*b[i] (Arr or ArrayLike)
 *   maxAbsErr(a, b): number                         max |a-b|
 *   maxRelErr(a, b, tiny = 1e-30): number           max |a-b| / max(max|b|, tiny)   (b is the expected side)
 *   assertClose(actual, expected, tol, what): number
 *       throws an Error naming `what`, the error, the worst flat index (and its multi-index when the shape is known),
 *       both values and the shape when maxRelErr(actual, expected) > tol or the lengths differ; returns the error.
 *       NaN/Inf: equal non-finite values count as agreeing; any other NaN makes the error Infinity.
 */

export type Arr = { data: Float64Array; shape: number[] };
export type Pair = number | [number, number];

export function pair(v: Pair): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`reference: bad shape ${shapeStr(shape)}`);
  }
}

export function zeros(shape: readonly number[]): Arr {
  checkShape(shape);
  return { data: new Float64Array(size(shape)), shape: [...shape] };
}

export function full(shape: readonly number[], v: number): Arr {
  const a = zeros(shape);
  a.data.fill(v);
  return a;
}

export function fromArray(data: ArrayLike<number>, shape: readonly number[] = [data.length]): Arr {
  checkShape(shape);
  if (size(shape) !== data.length) {
    throw new Error(`reference: ${data.length} values do not fill shape ${shapeStr(shape)}`);
  }
  return { data: Float64Array.from(data), shape: [...shape] };
}

export function clone(a: Arr): Arr {
  return { data: new Float64Array(a.data), shape: [...a.shape] };
}

export function reshapeArr(a: Arr, shape: readonly number[]): Arr {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = s.filter((_, i) => i !== neg).reduce((x, y) => x * y, 1);
    s[neg] = rest === 0 ? 0 : a.data.length / rest;
  }
  if (size(s) !== a.data.length) {
    throw new Error(`reference: cannot reshape ${shapeStr(a.shape)} to ${shapeStr(shape)}`);
  }
  return fromArray(a.data, s);
}

export function toFloat32(a: Arr | ArrayLike<number>): Float32Array {
  return Float32Array.from(isArr(a) ? a.data : a);
}

export function roundF32(a: Arr): Arr {
  return { data: Float64Array.from(Float32Array.from(a.data)), shape: [...a.shape] };
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d] + idx[d];
  return i;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`reference: axis ${axis} out of range for rank ${rank}`);
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// Seeded random numbers: mulberry32 (32-bit state), Box-Muller for normals.

export interface Rng {
  next(): number;
  uniform(lo?: number, hi?: number): number;
  normal(mean?: number, std?: number): number;
  int(n: number): number;
}

export function rng(seed: number): Rng {
  let state = seed >>> 0;
  let spare: number | null = null;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    uniform: (lo = 0, hi = 1) => lo + (hi - lo) * next(),
    normal: (mean = 0, std = 1) => {
      if (spare !== null) {
        const z = spare;
        spare = null;
        return mean + std * z;
      }
      let u = next();
      while (u === 0) u = next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return mean + std * r * Math.cos(2 * Math.PI * v);
    },
    int: (n: number) => Math.floor(next() * n),
  };
}

export function randArr(shape: readonly number[], seed: number, lo = -1, hi = 1): Arr {
  const a = zeros(shape);
  const r = rng(seed);
  for (let i = 0; i < a.data.length; i++) a.data[i] = r.uniform(lo, hi);
  return a;
}

export function randnArr(shape: readonly number[], seed: number, std = 1): Arr {
  const a = zeros(shape);
  const r = rng(seed);
  for (let i = 0; i < a.data.length; i++) a.data[i] = r.normal(0, std);
  return a;
}

// ---------------------------------------------------------------------------------------------------------------
// Comparison.

function isArr(a: unknown): a is Arr {
  return typeof a === 'object' && a !== null && 'data' in a && 'shape' in a && Array.isArray((a as Arr).shape);
}

function values(a: Arr | ArrayLike<number>): ArrayLike<number> {
  return isArr(a) ? a.data : a;
}

export function dot(a: Arr | ArrayLike<number>, b: Arr | ArrayLike<number>): number {
  const x = values(a);
  const y = values(b);
  if (x.length !== y.length) throw new Error(`reference: dot of lengths ${x.length} and ${y.length}`);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}

/** |a-b| with non-finite values handled: equal values (incl. equal infinities, or both NaN) give 0. */
function absDiff(a: number, b: number): number {
  if (a === b) return 0;
  if (Number.isNaN(a) && Number.isNaN(b)) return 0;
  const d = Math.abs(a - b);
  return Number.isNaN(d) ? Infinity : d;
}

export function maxAbsErr(a: Arr | ArrayLike<number>, b: Arr | ArrayLike<number>): number {
  const x = values(a);
  const y = values(b);
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, absDiff(x[i], y[i]));
  return m;
}

function infNorm(y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) if (Number.isFinite(y[i])) s = Math.max(s, Math.abs(y[i]));
  return s;
}

export function maxRelErr(a: Arr | ArrayLike<number>, b: Arr | ArrayLike<number>, tiny = 1e-30): number {
  return maxAbsErr(a, b) / Math.max(infNorm(values(b)), tiny);
}

export function assertClose(
  actual: Arr | ArrayLike<number>,
  expected: Arr | ArrayLike<number>,
  tol: number,
  what: string,
): number {
  const x = values(actual);
  const y = values(expected);
  const shape = isArr(expected) ? expected.shape : isArr(actual) ? actual.shape : null;
  const shapeText = shape ? ` shape ${shapeStr(shape)}` : '';
  if (isArr(actual) && isArr(expected) && !sameShape(actual.shape, expected.shape)) {
    throw new Error(`${what}: shape ${shapeStr(actual.shape)} differs from expected ${shapeStr(expected.shape)}`);
  }
  if (x.length !== y.length) {
    throw new Error(`${what}: ${x.length} values, expected ${y.length}${shapeText}`);
  }
  const scale = Math.max(infNorm(y), 1e-30);
  let worst = -1;
  let worstDiff = 0;
  for (let i = 0; i < x.length; i++) {
    const d = absDiff(x[i], y[i]);
    if (d > worstDiff) {
      worstDiff = d;
      worst = i;
    }
  }
  const err = worstDiff / scale;
  if (err > tol) {
    const at = shape ? ` (index ${shapeStr(unravel(worst, shape))})` : '';
    throw new Error(
      `${what}: max relative error ${err.toExponential(3)} > tol ${tol.toExponential(1)} at flat index ${worst}${at}: ` +
        `actual ${x[worst]}, expected ${y[worst]}; |expected|_inf ${scale.toExponential(3)};${shapeText}`,
    );
  }
  return err;
}
