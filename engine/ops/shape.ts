// Shape ops: reshape/flatten (views), permute/transpose, expand, concat and slice, with derivatives.
// Kernel: kernels/strided_copy.wgsl. Reference: test/reference/shape.ts.
import stridedCopySource from '../../kernels/strided_copy.wgsl';
import { int64s } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { registerKernel, rt } from '../runtime.ts';
import { Tensor, resolveShape, sizeOf, type Shape } from '../tensor.ts';
import { grid, sameShape } from './elementwise.ts';
import { sumTo } from './reduce.ts';

registerKernel('strided_copy', stridedCopySource);

const WG = 256;
const MAX_RANK = 8;
/** Elements each invocation of strided_copy copies along the innermost dim. */
const COPY_RUN = 16;

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Records dst-view <- src-view over `shape`, both given as (offset, strides) in elements. */
export function stridedCopy(
  src: Tensor,
  srcOffset: number,
  srcStrides: number[],
  dst: Tensor,
  dstOffset: number,
  dstStrides: number[],
  shape: Shape,
): void {
  if (sizeOf(shape) === 0) return;
  if (shape.length > MAX_RANK) throw new ShapeError(`copies support at most ${MAX_RANK} dims, got [${shape}]`);
  // A scalar is one run of one element.
  const dims = shape.length ? [...shape] : [1];
  const runs = Math.ceil(dims[dims.length - 1] / COPY_RUN);
  const n = (sizeOf(dims) / dims[dims.length - 1]) * runs;
  const pad = (v: number[]) => [...v, ...new Array(MAX_RANK - v.length).fill(0)];
  const strides = (v: number[]) => pad(shape.length ? v : [1]);
  const { workgroups, row } = grid(n, WG);
  rt().dispatch({
    kernel: 'strided_copy',
    spec: { WG, RUN: COPY_RUN },
    params: [n, row, dims.length, srcOffset, dstOffset, runs, 0, 0, ...pad(dims), ...strides(srcStrides), ...strides(dstStrides)],
    bindings: [{ buffer: src.buffer }, { buffer: dst.buffer }],
    workgroups,
  });
}

/** Same values, another shape (one dim may be -1). Shares the buffer. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const y = x.view(resolveShape(shape, x.size, x.shape));
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: 'reshape',
      inputs: [x],
      backward: (g) => [g.view(x.shape)],
      export: { type: 'Reshape', inputs: [0, int64s([...y.shape])] },
    };
  }
  return y;
}

/** Flattens dims startDim.. into one (torch.flatten). */
export function flatten(x: Tensor, startDim = 1): Tensor {
  return reshape(x, [...x.shape.slice(0, startDim), -1]);
}

/** Reorders dims: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.shape.length || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new ShapeError(`permute: [${perm}] is not a permutation of the ${x.shape.length} dims of [${x.shape}]`);
  }
  const shape = perm.map((p) => x.shape[p]);
  const strides = contiguousStrides(x.shape);
  const out = Tensor.empty(shape);
  stridedCopy(x, 0, perm.map((p) => strides[p]), out, 0, contiguousStrides(shape), shape);
  if (Tensor.needsGrad(x)) {
    const inverse = new Array(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    out.requiresGrad = true;
    out.gradFn = {
      op: 'permute',
      inputs: [x],
      backward: (g) => [permute(g, inverse)],
      export: { type: 'Transpose', attrs: { perm } },
    };
  }
  return out;
}

export function transpose(x: Tensor, dim0 = -2, dim1 = -1): Tensor {
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  const a = (dim0 + rank) % rank;
  const b = (dim1 + rank) % rank;
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return permute(x, perm);
}

/** Broadcasts x (right-aligned, size-1 dims) to `shape` by copying. */
export function expand(x: Tensor, shape: Shape): Tensor {
  const rank = shape.length;
  if (x.shape.length > rank) throw new ShapeError(`expand: [${x.shape}] has more dims than [${shape}]`);
  const xs = contiguousStrides(x.shape);
  const srcStrides = shape.map((d, i) => {
    const k = i - (rank - x.shape.length);
    if (k < 0) return 0;
    if (x.shape[k] !== d && x.shape[k] !== 1) throw new ShapeError(`expand: cannot expand [${x.shape}] to [${shape}]`);
    return x.shape[k] === 1 ? 0 : xs[k];
  });
  const out = Tensor.empty(shape);
  stridedCopy(x, 0, srcStrides, out, 0, contiguousStrides(shape), shape);
  if (Tensor.needsGrad(x)) {
    out.requiresGrad = true;
    out.gradFn = {
      op: 'expand',
      inputs: [x],
      backward: (g) => [sumTo(g, x.shape)],
      export: { type: 'Expand', inputs: [0, int64s([...shape])] },
    };
  }
  return out;
}

/** Joins tensors along `axis`; all other dims must agree. */
export function concat(xs: Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('concat of no tensors');
  const rank = xs[0].shape.length;
  const ax = (axis + rank) % rank;
  for (const t of xs) {
    if (t.shape.length !== rank || t.shape.some((d, i) => i !== ax && d !== xs[0].shape[i])) {
      throw new ShapeError(`concat along dim ${ax}: [${t.shape}] does not match [${xs[0].shape}] outside that dim`);
    }
  }
  const shape = [...xs[0].shape];
  shape[ax] = xs.reduce((s, t) => s + t.shape[ax], 0);
  const out = Tensor.empty(shape);
  const outStrides = contiguousStrides(shape);
  let start = 0;
  for (const t of xs) {
    stridedCopy(t, 0, contiguousStrides(t.shape), out, start * outStrides[ax], outStrides, t.shape);
    start += t.shape[ax];
  }
  if (Tensor.needsGrad(...xs)) {
    // A copy: the caller may grow its array afterwards (DenseNet's list of features).
    const inputs = [...xs];
    out.requiresGrad = true;
    out.gradFn = {
      op: 'concat',
      inputs,
      backward: (g) => {
        let begin = 0;
        return inputs.map((t) => {
          const piece = t.requiresGrad ? sliceRaw(g, ax, begin, begin + t.shape[ax]) : null;
          begin += t.shape[ax];
          return piece;
        });
      },
      export: { type: 'Concat', attrs: { axis: ax } },
    };
  }
  return out;
}

/** x[..., start:end, ...] along `axis` (a copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const rank = x.shape.length;
  const ax = (axis + rank) % rank;
  if (!(0 <= start && start <= end && end <= x.shape[ax])) {
    throw new ShapeError(`slice ${start}:${end} is outside dim ${ax} of [${x.shape}]`);
  }
  const out = sliceRaw(x, ax, start, end);
  if (Tensor.needsGrad(x)) {
    out.requiresGrad = true;
    out.gradFn = {
      op: 'slice',
      inputs: [x],
      backward: (g) => {
        const gx = Tensor.zeros(x.shape);
        const strides = contiguousStrides(x.shape);
        stridedCopy(g, 0, contiguousStrides(g.shape), gx, start * strides[ax], strides, g.shape);
        return [gx];
      },
      export: { type: 'Slice', inputs: [0, int64s([start]), int64s([end]), int64s([ax])] },
    };
  }
  return out;
}

function sliceRaw(x: Tensor, ax: number, start: number, end: number): Tensor {
  const shape = [...x.shape];
  shape[ax] = end - start;
  const strides = contiguousStrides(x.shape);
  const out = Tensor.empty(shape);
  stridedCopy(x, start * strides[ax], strides, out, 0, contiguousStrides(shape), shape);
  return out;
}

export { sameShape };
