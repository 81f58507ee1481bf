/**
 * test/reference/shape.ts — reshape / flatten / permute / transpose / concat / slice, float64, forward and backward.
 *
 * Axes may be negative (counted from the end). slice follows Python/PyTorch: negative start/end count from the
 * end, out-of-range bounds are clamped, step >= 1 (x[..., start:end:step, ...] along `axis`).
 *
 * API
 *   reshape(x, shape): Arr                       one -1 allowed;  reshapeBackward(x, gy): Arr
 *   flatten(x, startDim = 0, endDim = -1): Arr   as torch.flatten; flattenBackward(x, gy): Arr
 *   permute(x, perm: number[]): Arr              out.shape[i] = x.shape[perm[i]]
 *   permuteBackward(x, gy, perm): Arr
 *   transpose(x, dim0, dim1): Arr;               transposeBackward(x, gy, dim0, dim1): Arr
 *   concat(xs: Arr[], axis): Arr;                concatBackward(xs, gy, axis): Arr[]
 *   sliceRange(len, start, end, step = 1): { start, end, step, count }   the clamped Python range
 *   slice(x, axis, start, end, step = 1): Arr;   sliceBackward(x, gy, axis, start, end, step = 1): Arr
 */
import { type Arr, zeros, unravel, ravel, normAxis, reshapeArr, shapeStr } from './tensor.ts';

export function reshape(x: Arr, shape: readonly number[]): Arr {
  return reshapeArr(x, shape);
}

export function reshapeBackward(x: Arr, gy: Arr): Arr {
  return reshapeArr(gy, x.shape);
}

export function flatten(x: Arr, startDim = 0, endDim = -1): Arr {
  if (x.shape.length === 0) return reshapeArr(x, [1]);
  const s = normAxis(startDim, x.shape.length);
  const e = normAxis(endDim, x.shape.length);
  if (s > e) throw new Error(`reference: flatten start ${startDim} after end ${endDim}`);
  const mid = x.shape.slice(s, e + 1).reduce((a, b) => a * b, 1);
  return reshapeArr(x, [...x.shape.slice(0, s), mid, ...x.shape.slice(e + 1)]);
}

export function flattenBackward(x: Arr, gy: Arr): Arr {
  return reshapeArr(gy, x.shape);
}

function checkPerm(perm: readonly number[], rank: number): number[] {
  if (perm.length !== rank) throw new Error(`reference: permutation ${shapeStr(perm)} for rank ${rank}`);
  const p = perm.map((a) => normAxis(a, rank));
  if (new Set(p).size !== rank) throw new Error(`reference: ${shapeStr(perm)} is not a permutation`);
  return p;
}

export function permute(x: Arr, perm: readonly number[]): Arr {
  const p = checkPerm(perm, x.shape.length);
  const outShape = p.map((a) => x.shape[a]);
  const out = zeros(outShape);
  for (let o = 0; o < out.data.length; o++) {
    const oi = unravel(o, outShape);
    const xi = new Array<number>(x.shape.length);
    for (let d = 0; d < p.length; d++) xi[p[d]] = oi[d];
    out.data[o] = x.data[ravel(xi, x.shape)];
  }
  return out;
}

export function permuteBackward(x: Arr, gy: Arr, perm: readonly number[]): Arr {
  const p = checkPerm(perm, x.shape.length);
  const outShape = p.map((a) => x.shape[a]);
  if (gy.data.length !== outShape.reduce((a, b) => a * b, 1)) {
    throw new Error(`reference: permute backward: gy ${shapeStr(gy.shape)} vs output ${shapeStr(outShape)}`);
  }
  const gx = zeros(x.shape);
  for (let o = 0; o < gy.data.length; o++) {
    const oi = unravel(o, outShape);
    const xi = new Array<number>(x.shape.length);
    for (let d = 0; d < p.length; d++) xi[p[d]] = oi[d];
    gx.data[ravel(xi, x.shape)] += gy.data[o];
  }
  return gx;
}

function swapPerm(rank: number, dim0: number, dim1: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  const a = normAxis(dim0, rank);
  const b = normAxis(dim1, rank);
  p[a] = b;
  p[b] = a;
  return p;
}

export function transpose(x: Arr, dim0: number, dim1: number): Arr {
  return permute(x, swapPerm(x.shape.length, dim0, dim1));
}

export function transposeBackward(x: Arr, gy: Arr, dim0: number, dim1: number): Arr {
  return permuteBackward(x, gy, swapPerm(x.shape.length, dim0, dim1));
}

export function concat(xs: readonly Arr[], axis: number): Arr {
  if (xs.length === 0) throw new Error('reference: concat of nothing');
  const rank = xs[0].shape.length;
  const ax = normAxis(axis, rank);
  for (const x of xs) {
    if (x.shape.length !== rank || x.shape.some((d, i) => i !== ax && d !== xs[0].shape[i])) {
      throw new Error(`reference: concat along ${axis}: ${xs.map((t) => shapeStr(t.shape)).join(' ')}`);
    }
  }
  const outShape = [...xs[0].shape];
  outShape[ax] = xs.reduce((s, x) => s + x.shape[ax], 0);
  const out = zeros(outShape);
  let offset = 0;
  for (const x of xs) {
    for (let i = 0; i < x.data.length; i++) {
      const idx = unravel(i, x.shape);
      idx[ax] += offset;
      out.data[ravel(idx, outShape)] = x.data[i];
    }
    offset += x.shape[ax];
  }
  return out;
}

export function concatBackward(xs: readonly Arr[], gy: Arr, axis: number): Arr[] {
  const ax = normAxis(axis, xs[0].shape.length);
  let offset = 0;
  const grads: Arr[] = [];
  for (const x of xs) {
    const g = zeros(x.shape);
    for (let i = 0; i < g.data.length; i++) {
      const idx = unravel(i, x.shape);
      idx[ax] += offset;
      g.data[i] = gy.data[ravel(idx, gy.shape)];
    }
    grads.push(g);
    offset += x.shape[ax];
  }
  if (offset !== gy.shape[ax]) throw new Error(`reference: concat backward: gy ${shapeStr(gy.shape)} along ${axis}`);
  return grads;
}

export function sliceRange(len: number, start: number, end: number, step = 1): { start: number; end: number; step: number; count: number } {
  if (!Number.isInteger(step) || step < 1) throw new Error(`reference: slice step must be a positive integer, got ${step}`);
  let s = start < 0 ? start + len : start;
  let e = end < 0 ? end + len : end;
  s = Math.min(Math.max(s, 0), len);
  e = Math.min(Math.max(e, 0), len);
  const count = e > s ? Math.floor((e - s + step - 1) / step) : 0;
  return { start: s, end: e, step, count };
}

export function slice(x: Arr, axis: number, start: number, end: number, step = 1): Arr {
  const ax = normAxis(axis, x.shape.length);
  const r = sliceRange(x.shape[ax], start, end, step);
  const outShape = [...x.shape];
  outShape[ax] = r.count;
  const out = zeros(outShape);
  for (let o = 0; o < out.data.length; o++) {
    const idx = unravel(o, outShape);
    idx[ax] = r.start + idx[ax] * r.step;
    out.data[o] = x.data[ravel(idx, x.shape)];
  }
  return out;
}

export function sliceBackward(x: Arr, gy: Arr, axis: number, start: number, end: number, step = 1): Arr {
  const ax = normAxis(axis, x.shape.length);
  const r = sliceRange(x.shape[ax], start, end, step);
  const outShape = [...x.shape];
  outShape[ax] = r.count;
  if (gy.data.length !== outShape.reduce((a, b) => a * b, 1)) {
    throw new Error(`reference: slice backward: gy ${shapeStr(gy.shape)} vs output ${shapeStr(outShape)}`);
  }
  const gx = zeros(x.shape);
  for (let o = 0; o < gy.data.length; o++) {
    const idx = unravel(o, outShape);
    idx[ax] = r.start + idx[ax] * r.step;
    gx.data[ravel(idx, x.shape)] += gy.data[o];
  }
  return gx;
}
