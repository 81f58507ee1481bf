/**
 * test/reference/elementwise.ts — elementwise ops with numpy/PyTorch broadcasting, float64, forward and backward.
 *
 * Broadcasting: shapes are aligned from the right; each pair of dims must be equal or one of them 1.
 * Binary backward returns each gradient already summed back to that input's own shape.
 *
 * API
 *   type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum' | 'pow'
 *   type UnaryOp  = 'neg' | 'relu' | 'exp' | 'log' | 'sqrt' | 'sigmoid' | 'tanh' | 'abs'
 *   type ScalarOp = 'add' | 'sub' | 'rsub' | 'mul' | 'div' | 'rdiv' | 'pow'
 *                   (x+s, x-s, s-x, x*s, x/s, s/x, x^s)
 *   broadcastShape(a: number[], b: number[]): number[]          throws on incompatible shapes
 *   sumToShape(g: Arr, shape: number[]): Arr                    sums g over broadcast dims down to `shape`
 *   binary(op, a, b): Arr;             binaryBackward(op, a, b, gy): { ga, gb }
 *   add/sub/mul/div/maximum/minimum/pow(a, b): Arr;   <op>Backward(a, b, gy): { ga, gb }
 *   unary(op, x): Arr;                 unaryBackward(op, x, gy): Arr
 *   neg/relu/exp/log/sqrt/sigmoid/tanh/abs(x): Arr;  <op>Backward(x, gy): Arr
 *   scalar(op, x, s): Arr;             scalarBackward(op, x, s, gy): Arr  (gradient w.r.t. x only)
 *   addScalar/subScalar/rsubScalar/mulScalar/divScalar/rdivScalar/powScalar(x, s): Arr
 *   guidedReluBackward(x, gy): Arr     gy * [x > 0] * [gy > 0]  (guided backprop, Springenberg et al.)
 *
 * PyTorch conventions at the kinks (these are what torch's derivatives.yaml does):
 *   relu'(0) = 0 (threshold_backward on x > 0); abs'(0) = sign(0) = 0;
 *   maximum/minimum: where a == b the gradient is split in half between a and b;
 *   pow(a, b): d/da = b * a^(b-1), 0 where b == 0;  d/db = a^b * ln(a), 0 where a == 0 and b >= 0.
 */
import { type Arr, zeros, unravel, shapeStr } from './tensor.ts';

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum' | 'pow';
export type UnaryOp = 'neg' | 'relu' | 'exp' | 'log' | 'sqrt' | 'sigmoid' | 'tanh' | 'abs';
export type ScalarOp = 'add' | 'sub' | 'rsub' | 'mul' | 'div' | 'rdiv' | 'pow';

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`reference: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Flat index into an input of shape `inShape` for the multi-index `outIdx` of the broadcast output. */
function sourceIndex(outIdx: readonly number[], inShape: readonly number[]): number {
  const off = outIdx.length - inShape.length;
  let i = 0;
  for (let d = 0; d < inShape.length; d++) {
    const k = inShape[d] === 1 ? 0 : outIdx[d + off];
    i = i * inShape[d] + k;
  }
  return i;
}

export function sumToShape(g: Arr, shape: readonly number[]): Arr {
  const full = broadcastShape(shape, g.shape);
  if (full.length !== g.shape.length || full.some((d, i) => d !== g.shape[i])) {
    throw new Error(`reference: cannot sum ${shapeStr(g.shape)} down to ${shapeStr(shape)}`);
  }
  const out = zeros(shape);
  for (let i = 0; i < g.data.length; i++) {
    out.data[sourceIndex(unravel(i, g.shape), shape)] += g.data[i];
  }
  return out;
}

function binaryValue(op: BinaryOp, a: number, b: number): number {
  switch (op) {
    case 'add':
      return a + b;
    case 'sub':
      return a - b;
    case 'mul':
      return a * b;
    case 'div':
      return a / b;
    case 'maximum':
      return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
    case 'minimum':
      return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b);
    case 'pow':
      return Math.pow(a, b);
  }
}

/** Partial derivatives [d/da, d/db] of binaryValue at (a, b). */
function binaryPartials(op: BinaryOp, a: number, b: number): [number, number] {
  switch (op) {
    case 'add':
      return [1, 1];
    case 'sub':
      return [1, -1];
    case 'mul':
      return [b, a];
    case 'div':
      return [1 / b, -a / (b * b)];
    case 'maximum':
      if (a === b) return [0.5, 0.5];
      return a > b ? [1, 0] : [0, 1];
    case 'minimum':
      if (a === b) return [0.5, 0.5];
      return a < b ? [1, 0] : [0, 1];
    case 'pow': {
      const da = b === 0 ? 0 : b * Math.pow(a, b - 1);
      const db = a === 0 && b >= 0 ? 0 : Math.pow(a, b) * Math.log(a);
      return [da, db];
    }
  }
}

export function binary(op: BinaryOp, a: Arr, b: Arr): Arr {
  const shape = broadcastShape(a.shape, b.shape);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    out.data[i] = binaryValue(op, a.data[sourceIndex(idx, a.shape)], b.data[sourceIndex(idx, b.shape)]);
  }
  return out;
}

export function binaryBackward(op: BinaryOp, a: Arr, b: Arr, gy: Arr): { ga: Arr; gb: Arr } {
  const shape = broadcastShape(a.shape, b.shape);
  if (gy.data.length !== shape.reduce((x, y) => x * y, 1)) {
    throw new Error(`reference: ${op} backward: gy ${shapeStr(gy.shape)} does not match output ${shapeStr(shape)}`);
  }
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  for (let i = 0; i < gy.data.length; i++) {
    const idx = unravel(i, shape);
    const ia = sourceIndex(idx, a.shape);
    const ib = sourceIndex(idx, b.shape);
    const [pa, pb] = binaryPartials(op, a.data[ia], b.data[ib]);
    ga.data[ia] += gy.data[i] * pa;
    gb.data[ib] += gy.data[i] * pb;
  }
  return { ga, gb };
}

export const add = (a: Arr, b: Arr): Arr => binary('add', a, b);
export const sub = (a: Arr, b: Arr): Arr => binary('sub', a, b);
export const mul = (a: Arr, b: Arr): Arr => binary('mul', a, b);
export const div = (a: Arr, b: Arr): Arr => binary('div', a, b);
export const maximum = (a: Arr, b: Arr): Arr => binary('maximum', a, b);
export const minimum = (a: Arr, b: Arr): Arr => binary('minimum', a, b);
export const pow = (a: Arr, b: Arr): Arr => binary('pow', a, b);
export const addBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('add', a, b, gy);
export const subBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('sub', a, b, gy);
export const mulBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('mul', a, b, gy);
export const divBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('div', a, b, gy);
export const maximumBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('maximum', a, b, gy);
export const minimumBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('minimum', a, b, gy);
export const powBackward = (a: Arr, b: Arr, gy: Arr) => binaryBackward('pow', a, b, gy);

// ---------------------------------------------------------------------------------------------------------------
// Unary.

function sigmoidValue(x: number): number {
  // Two branches so that neither exp overflows.
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

function unaryValue(op: UnaryOp, x: number): number {
  switch (op) {
    case 'neg':
      return -x;
    case 'relu':
      return x > 0 ? x : Number.isNaN(x) ? NaN : 0;
    case 'exp':
      return Math.exp(x);
    case 'log':
      return Math.log(x);
    case 'sqrt':
      return Math.sqrt(x);
    case 'sigmoid':
      return sigmoidValue(x);
    case 'tanh':
      return Math.tanh(x);
    case 'abs':
      return Math.abs(x);
  }
}

function unaryDerivative(op: UnaryOp, x: number): number {
  switch (op) {
    case 'neg':
      return -1;
    case 'relu':
      return x > 0 ? 1 : 0;
    case 'exp':
      return Math.exp(x);
    case 'log':
      return 1 / x;
    case 'sqrt':
      return 1 / (2 * Math.sqrt(x));
    case 'sigmoid': {
      const s = sigmoidValue(x);
      return s * (1 - s);
    }
    case 'tanh': {
      const t = Math.tanh(x);
      return 1 - t * t;
    }
    case 'abs':
      return x > 0 ? 1 : x < 0 ? -1 : 0;
  }
}

export function unary(op: UnaryOp, x: Arr): Arr {
  const out = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) out.data[i] = unaryValue(op, x.data[i]);
  return out;
}

export function unaryBackward(op: UnaryOp, x: Arr, gy: Arr): Arr {
  checkSameSize(x, gy, op);
  const gx = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) gx.data[i] = gy.data[i] * unaryDerivative(op, x.data[i]);
  return gx;
}

export const neg = (x: Arr): Arr => unary('neg', x);
export const relu = (x: Arr): Arr => unary('relu', x);
export const exp = (x: Arr): Arr => unary('exp', x);
export const log = (x: Arr): Arr => unary('log', x);
export const sqrt = (x: Arr): Arr => unary('sqrt', x);
export const sigmoid = (x: Arr): Arr => unary('sigmoid', x);
export const tanh = (x: Arr): Arr => unary('tanh', x);
export const abs = (x: Arr): Arr => unary('abs', x);
export const negBackward = (x: Arr, gy: Arr): Arr => unaryBackward('neg', x, gy);
export const reluBackward = (x: Arr, gy: Arr): Arr => unaryBackward('relu', x, gy);
export const expBackward = (x: Arr, gy: Arr): Arr => unaryBackward('exp', x, gy);
export const logBackward = (x: Arr, gy: Arr): Arr => unaryBackward('log', x, gy);
export const sqrtBackward = (x: Arr, gy: Arr): Arr => unaryBackward('sqrt', x, gy);
export const sigmoidBackward = (x: Arr, gy: Arr): Arr => unaryBackward('sigmoid', x, gy);
export const tanhBackward = (x: Arr, gy: Arr): Arr => unaryBackward('tanh', x, gy);
export const absBackward = (x: Arr, gy: Arr): Arr => unaryBackward('abs', x, gy);

export function guidedReluBackward(x: Arr, gy: Arr): Arr {
  checkSameSize(x, gy, 'guided relu');
  const gx = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) {
    gx.data[i] = x.data[i] > 0 && gy.data[i] > 0 ? gy.data[i] : 0;
  }
  return gx;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-scalar.

function scalarValue(op: ScalarOp, x: number, s: number): number {
  switch (op) {
    case 'add':
      return x + s;
    case 'sub':
      return x - s;
    case 'rsub':
      return s - x;
    case 'mul':
      return x * s;
    case 'div':
      return x / s;
    case 'rdiv':
      return s / x;
    case 'pow':
      return Math.pow(x, s);
  }
}

function scalarDerivative(op: ScalarOp, x: number, s: number): number {
  switch (op) {
    case 'add':
    case 'sub':
      return 1;
    case 'rsub':
      return -1;
    case 'mul':
      return s;
    case 'div':
      return 1 / s;
    case 'rdiv':
      return -s / (x * x);
    case 'pow':
      return s === 0 ? 0 : s * Math.pow(x, s - 1);
  }
}

export function scalar(op: ScalarOp, x: Arr, s: number): Arr {
  const out = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) out.data[i] = scalarValue(op, x.data[i], s);
  return out;
}

export function scalarBackward(op: ScalarOp, x: Arr, s: number, gy: Arr): Arr {
  checkSameSize(x, gy, `${op} scalar`);
  const gx = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) gx.data[i] = gy.data[i] * scalarDerivative(op, x.data[i], s);
  return gx;
}

export const addScalar = (x: Arr, s: number): Arr => scalar('add', x, s);
export const subScalar = (x: Arr, s: number): Arr => scalar('sub', x, s);
export const rsubScalar = (x: Arr, s: number): Arr => scalar('rsub', x, s);
export const mulScalar = (x: Arr, s: number): Arr => scalar('mul', x, s);
export const divScalar = (x: Arr, s: number): Arr => scalar('div', x, s);
export const rdivScalar = (x: Arr, s: number): Arr => scalar('rdiv', x, s);
export const powScalar = (x: Arr, s: number): Arr => scalar('pow', x, s);

function checkSameSize(x: Arr, gy: Arr, what: string): void {
  if (x.data.length !== gy.data.length) {
    throw new Error(`reference: ${what} backward: gy ${shapeStr(gy.shape)} does not match x ${shapeStr(x.shape)}`);
  }
}
