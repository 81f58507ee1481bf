// Reductions over axes: sum, mean, max, with derivatives. Kernel: kernels/reduce.wgsl.
// Reference: test/reference/reduce.ts.
import reduceSource from '../../kernels/reduce.wgsl';
import { int64s, type OpExport } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { Tensor, type Shape } from '../tensor.ts';
import { grid, mapBinary, mapUnary } from './elementwise.ts';
import { contiguousStrides, expand } from './shape.ts';

registerKernel('reduce', reduceSource);

const WG = 256;
/** Above this many elements per output, a whole workgroup reduces each output. */
const PER_GROUP_THRESHOLD = 512;

type ReduceKind = 'sum' | 'mean' | 'max';

function normaliseAxes(shape: Shape, axes?: number | number[]): number[] {
  // As torch: no axes (undefined or []) reduces everything.
  const list = axes === undefined || (Array.isArray(axes) && axes.length === 0) ? [...shape.keys()] : Array.isArray(axes) ? axes : [axes];
  const out = [...new Set(list.map((a) => (a < 0 ? a + shape.length : a)))].sort((a, b) => a - b);
  for (const a of out) {
    if (a < 0 || a >= shape.length) throw new ShapeError(`axis ${a} is out of range for shape [${shape}]`);
  }
  return out;
}

/** Records the reduction; returns a tensor of the kept dims (keepdim=false shape). */
function reduceRaw(x: Tensor, axes: number[], kind: ReduceKind): Tensor {
  const strides = contiguousStrides(x.shape);
  // Merge runs of neighbouring dims of the same kind (kept / reduced): fewer index divisions.
  const kept: [number, number][] = [];
  const red: [number, number][] = [];
  x.shape.forEach((size, d) => {
    if (size === 1) return;
    const list = axes.includes(d) ? red : kept;
    const last = list[list.length - 1];
    if (last && last[1] === strides[d] * size && list === (axes.includes(d - 1) ? red : kept) && x.shape[d - 1] !== 1) {
      last[0] *= size;
      last[1] = strides[d];
    } else list.push([size, strides[d]]);
  });
  if (kept.length > 4 || red.length > 4) {
    throw new ShapeError(`reduction over axes [${axes}] of [${x.shape}] needs more than 4 kept or reduced dim groups`);
  }
  const outShape = x.shape.filter((_, d) => !axes.includes(d));
  const out = Tensor.empty(outShape);
  const nOut = out.size;
  const r = red.reduce((a, [s]) => a * s, 1);
  const perGroup = r > PER_GROUP_THRESHOLD;
  const { workgroups, row } = perGroup ? grid(nOut * WG, WG) : grid(nOut, WG);
  const vec = (list: [number, number][], k: 0 | 1) => [0, 1, 2, 3].map((i) => list[i]?.[k] ?? 1);
  rt().dispatch({
    kernel: 'reduce',
    spec: { WG, PER_GROUP: perGroup, IS_MAX: kind === 'max', INIT: kind === 'max' ? '-3.4028234663852886e38' : '0.0' },
    params: [
      nOut,
      perGroup ? row / WG : row,
      r,
      f32(kind === 'mean' ? 1 / r : 1),
      kept.length,
      red.length,
      0,
      0,
      ...vec(kept, 0),
      ...vec(kept, 1),
      ...vec(red, 0),
      ...vec(red, 1),
    ],
    bindings: [{ buffer: x.buffer }, { buffer: out.buffer }],
    workgroups,
  });
  return out;
}

function keptShape(shape: Shape, axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function reduceOp(x: Tensor, axes: number | number[] | undefined, keepdim: boolean, kind: ReduceKind): Tensor {
  const ax = normaliseAxes(x.shape, axes);
  const raw = reduceRaw(x, ax, kind);
  const y = keepdim ? raw.view(keptShape(x.shape, ax)) : raw;
  if (keepdim) raw.dispose();
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: kind,
      inputs: [x],
      backward: (g) => {
        const gk = g.view(keptShape(x.shape, ax));
        let gx: Tensor;
        if (kind === 'max') {
          // As torch.amax: the gradient is split evenly among the elements equal to the maximum.
          const yk = y.view(keptShape(x.shape, ax));
          const mask = mapBinary(x, yk, 'select(0.0, 1.0, a == b)');
          const ties = reduceRaw(mask, ax, 'sum');
          const tiesKept = ties.view(gk.shape);
          const share = mapBinary(gk, tiesKept, 'a / b');
          gx = mapBinary(mask, share, 'a * b');
          for (const t of [mask, ties, tiesKept, share, yk]) t.dispose();
        } else if (kind === 'mean') {
          const spread = expand(gk, x.shape);
          gx = mapUnary(spread, 'x * alpha', ax.reduce((a, d) => a / x.shape[d], 1));
          spread.dispose();
        } else gx = expand(gk, x.shape);
        gk.dispose();
        return [gx];
      },
      export: reduceExport(kind, ax, keepdim),
    };
  }
  return y;
}

/** Opset 17 takes ReduceSum's axes as an input, ReduceMean's and ReduceMax's as an attribute. */
function reduceExport(kind: ReduceKind, axes: number[], keepdim: boolean): OpExport {
  const keepdims = keepdim ? 1 : 0;
  if (kind === 'sum') return { type: 'ReduceSum', attrs: { keepdims }, inputs: [0, int64s(axes)] };
  return { type: kind === 'mean' ? 'ReduceMean' : 'ReduceMax', attrs: { axes, keepdims } };
}

export const sum = (x: Tensor, axes?: number | number[], keepdim = false) => reduceOp(x, axes, keepdim, 'sum');
export const mean = (x: Tensor, axes?: number | number[], keepdim = false) => reduceOp(x, axes, keepdim, 'mean');
export const max = (x: Tensor, axes?: number | number[], keepdim = false) => reduceOp(x, axes, keepdim, 'max');

/** Sums `g` down to `shape` (the inverse of broadcasting), without tape recording. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  const offset = g.shape.length - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, i) => {
    if (i < offset || (shape[i - offset] === 1 && d !== 1)) axes.push(i);
  });
  if (axes.length === 0) return g.view(shape);
  const raw = reduceRaw(g, axes, 'sum');
  const out = raw.view(shape);
  raw.dispose();
  return out;
}
