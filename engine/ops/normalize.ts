// L2 norms and L2 normalisation of rows (the last dim), each with its derivative: the cosine heads
// (engine/nn/heads.ts) normalise embeddings and class vectors. Composed from elementwise ops and a
// row sum. Reference: test/reference/margin.ts.
import { floats, type OpExport } from '../autograd.ts';
import { Tensor } from '../tensor.ts';
import { mapBinary, mapUnary } from './elementwise.ts';
import { sum } from './reduce.ts';

/** ONNX: ||x|| over the last dim of rank-`rank` input k (opset 17 takes ReduceL2's axes as an attribute). */
const l2Export = (rank: number): OpExport => ({ type: 'ReduceL2', attrs: { axes: [rank - 1], keepdims: 1 }, inputs: [0] });

/** ||x|| over the last dim, keepdim: [..., 1]. Recorded on no tape (x2 does not require grad). */
function norms(x: Tensor): Tensor {
  const x2 = mapUnary(x, 'x * x');
  const s = sum(x2, -1, true);
  const n = mapUnary(s, 'sqrt(x)');
  x2.dispose();
  s.dispose();
  return n;
}

/**
 * ||x|| over the last dim, keepdim: [..., 1]. Derivative g x / ||x||, and 0 on an all-zero row (as
 * torch.linalg.norm), where a composed sqrt(sum(x^2)) would give 0 * inf = NaN.
 */
export function rowNorms(x: Tensor): Tensor {
  const n = norms(x);
  if (Tensor.needsGrad(x)) {
    n.requiresGrad = true;
    n.gradFn = {
      op: 'rowNorms',
      inputs: [x],
      backward: (g) => {
        const share = mapBinary(g, n, 'a / max(b, 1e-30)');
        const gx = mapBinary(x, share, 'a * b');
        share.dispose();
        return [gx];
      },
      export: l2Export(x.shape.length),
    };
  }
  return n;
}

/**
 * torch.nn.functional.normalize(x, p=2, dim=-1, eps): y = x / max(||x||, eps) per row.
 * Derivative: (g - y (g . y)) / ||x|| where ||x|| > eps; g / eps where the norm was clamped (y = x / eps
 * is then linear in x).
 */
export function normalizeRows(x: Tensor, eps = 1e-12): Tensor {
  const n = norms(x);
  const d = mapUnary(n, 'max(x, alpha)', eps);
  const y = mapBinary(x, d, 'a / b');
  if (!Tensor.needsGrad(x)) {
    n.dispose();
    d.dispose();
    return y;
  }
  y.requiresGrad = true;
  y.gradFn = {
    op: 'normalizeRows',
    inputs: [x],
    backward: (g) => {
      const gy = mapBinary(g, y, 'a * b');
      const dot = sum(gy, -1, true);
      // The projection term only where the norm was not clamped.
      const coef = mapBinary(dot, n, 'select(0.0, a, b > alpha)', eps);
      const tangent = mapBinary(y, coef, 'a * b');
      const diff = mapBinary(g, tangent, 'a - b');
      const gx = mapBinary(diff, d, 'a / b');
      for (const t of [gy, dot, coef, tangent, diff]) t.dispose();
      return [gx];
    },
    export: { type: 'Div', inputs: [0, { type: 'Max', inputs: [l2Export(x.shape.length), floats([eps], [])] }] },
  };
  return y;
}
