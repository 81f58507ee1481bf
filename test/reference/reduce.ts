/**
 * test/reference/reduce.ts — sum / mean / max over given axes, float64, forward and backward (PyTorch semantics).
 *
 * `axes`: a number, a list of numbers (negative counts from the end), or undefined / [] for all axes
 * (torch.sum(x, dim=[]) also reduces everything). `keepdim` keeps reduced axes as size 1.
 * `gy` may be given with or without the kept dims: only its size is checked.
 *
 * API
 *   type Axes = number | number[] | undefined
 *   reducedShape(shape, axes, keepdim = false): number[]
 *   sum(x, axes?, keepdim = false): Arr;    sumBackward(x, gy, axes?, keepdim = false): Arr
 *   mean(x, axes?, keepdim = false): Arr;   meanBackward(x, gy, axes?, keepdim = false): Arr
 *   max(x, axes?, keepdim = false): Arr;    maxBackward(x, gy, axes?, keepdim = false): Arr
 *
 * max is torch.amax: NaN propagates, and on ties the backward splits the gradient evenly among all maximal
 * elements (torch's amax / full max() backward). (torch.max(x, dim) with indices instead routes it to the
 * returned index; use pool.ts's argmax rule if a kernel implements that variant.)
 */
import { type Arr, zeros, unravel, normAxis, shapeStr } from './tensor.ts';

export type Axes = number | number[] | undefined;

function axisSet(rank: number, axes: Axes): boolean[] {
  const list = axes === undefined ? [] : typeof axes === 'number' ? [axes] : axes;
  const reduced = new Array<boolean>(rank).fill(list.length === 0);
  for (const a of list) reduced[normAxis(a, rank)] = true;
  return reduced;
}

export function reducedShape(shape: readonly number[], axes: Axes, keepdim = false): number[] {
  const red = axisSet(shape.length, axes);
  const out: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (!red[d]) out.push(shape[d]);
    else if (keepdim) out.push(1);
  }
  return out;
}

/** For each input element, the flat index of the output element it reduces into. */
function outputIndexOf(shape: readonly number[], axes: Axes): Int32Array {
  const red = axisSet(shape.length, axes);
  const n = shape.reduce((a, b) => a * b, 1);
  const map = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    let o = 0;
    for (let d = 0; d < shape.length; d++) {
      if (!red[d]) o = o * shape[d] + idx[d];
    }
    map[i] = o;
  }
  return map;
}

function count(shape: readonly number[], axes: Axes): number {
  const red = axisSet(shape.length, axes);
  let c = 1;
  for (let d = 0; d < shape.length; d++) if (red[d]) c *= shape[d];
  return c;
}

function checkGy(x: Arr, gy: Arr, axes: Axes, what: string): void {
  const expect = reducedShape(x.shape, axes, true).reduce((a, b) => a * b, 1);
  if (gy.data.length !== expect) {
    throw new Error(
      `reference: ${what} backward: gy ${shapeStr(gy.shape)} does not match the reduced shape ` +
        `${shapeStr(reducedShape(x.shape, axes, true))}`,
    );
  }
}

export function sum(x: Arr, axes?: Axes, keepdim = false): Arr {
  const out = zeros(reducedShape(x.shape, axes, keepdim));
  const map = outputIndexOf(x.shape, axes);
  for (let i = 0; i < x.data.length; i++) out.data[map[i]] += x.data[i];
  return out;
}

export function sumBackward(x: Arr, gy: Arr, axes?: Axes, _keepdim = false): Arr {
  checkGy(x, gy, axes, 'sum');
  const gx = zeros(x.shape);
  const map = outputIndexOf(x.shape, axes);
  for (let i = 0; i < x.data.length; i++) gx.data[i] = gy.data[map[i]];
  return gx;
}

export function mean(x: Arr, axes?: Axes, keepdim = false): Arr {
  const out = sum(x, axes, keepdim);
  const c = count(x.shape, axes);
  for (let i = 0; i < out.data.length; i++) out.data[i] /= c;
  return out;
}

export function meanBackward(x: Arr, gy: Arr, axes?: Axes, _keepdim = false): Arr {
  checkGy(x, gy, axes, 'mean');
  const gx = zeros(x.shape);
  const map = outputIndexOf(x.shape, axes);
  const c = count(x.shape, axes);
  for (let i = 0; i < x.data.length; i++) gx.data[i] = gy.data[map[i]] / c;
  return gx;
}

export function max(x: Arr, axes?: Axes, keepdim = false): Arr {
  const out = zeros(reducedShape(x.shape, axes, keepdim));
  out.data.fill(-Infinity);
  const map = outputIndexOf(x.shape, axes);
  for (let i = 0; i < x.data.length; i++) {
    const v = x.data[i];
    const o = map[i];
    if (Number.isNaN(v) || v > out.data[o]) out.data[o] = v; // once NaN, v > NaN is false: NaN sticks
  }
  return out;
}

export function maxBackward(x: Arr, gy: Arr, axes?: Axes, keepdim = false): Arr {
  checkGy(x, gy, axes, 'max');
  const m = max(x, axes, keepdim);
  const map = outputIndexOf(x.shape, axes);
  const ties = new Float64Array(m.data.length);
  for (let i = 0; i < x.data.length; i++) if (x.data[i] === m.data[map[i]]) ties[map[i]] += 1;
  const gx = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) {
    const o = map[i];
    if (x.data[i] === m.data[o]) gx.data[i] = gy.data[o] / ties[o];
  }
  return gx;
}
