// Matrix multiplication, 2-D and batched, with optional transposes, and its derivative.
// Kernel: kernels/matmul.wgsl. Reference: test/reference/matmul.ts.
import matmulSource from '../../kernels/matmul.wgsl';
import { ShapeError } from '../errors.ts';
import { registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { reshape } from './shape.ts';

registerKernel('matmul', matmulSource);

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

const TM = 4;
const TN = 4;

/**
 * op(a) @ op(b) over the last two dims, where op transposes when asked. Leading (batch) dims must be
 * equal, or b may be 2-D with a not transposed (a's batch dims then fold into its rows, as in a linear layer).
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false } = options;
  if (b.shape.length === 2 && a.shape.length > 2 && !transA) {
    // Fold A's batch dims into its rows: one GEMM instead of a batch of thin ones.
    const a2 = reshape(a, [-1, a.shape[a.shape.length - 1]]);
    const y2 = matmul(a2, b, options);
    return reshape(y2, [...a.shape.slice(0, -1), y2.shape[1]]);
  }
  const y = matmulRaw(a, b, transA, transB);
  if (Tensor.needsGrad(a, b)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: 'matmul',
      inputs: [a, b],
      backward: (g) => {
        // y = op(A) op(B):  d op(A) = g op(B)^T,  d op(B) = op(A)^T g; transpose back where stored transposed.
        const ga = a.requiresGrad
          ? transA
            ? matmulRaw(b, g, transB, true)
            : matmulRaw(g, b, false, !transB)
          : null;
        const gb = b.requiresGrad ? (transB ? matmulRaw(g, a, true, transA) : matmulRaw(a, g, !transA, false)) : null;
        return [ga, gb];
      },
    };
  }
  return y;
}

function matmulRaw(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const ar = a.shape.length;
  const br = b.shape.length;
  if (ar < 2 || br < 2) throw new ShapeError(`matmul needs at least 2-D tensors, got [${a.shape}] and [${b.shape}]`);
  const [aRows, aCols] = [a.shape[ar - 2], a.shape[ar - 1]];
  const [bRows, bCols] = [b.shape[br - 2], b.shape[br - 1]];
  const batchDims = a.shape.slice(0, -2);
  const bBatchDims = b.shape.slice(0, -2);
  if (batchDims.length !== bBatchDims.length || batchDims.some((d, i) => d !== bBatchDims[i])) {
    throw new ShapeError(`matmul: batch dims of [${a.shape}] and [${b.shape}] must be equal (or B 2-D)`);
  }
  const m = transA ? aCols : aRows;
  const k = transA ? aRows : aCols;
  const kb = transB ? bCols : bRows;
  const n = transB ? bRows : bCols;
  if (k !== kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: [${a.shape}]${transA ? 'ᵀ' : ''} @ [${b.shape}]${transB ? 'ᵀ' : ''} (${k} vs ${kb})`,
    );
  }
  const batch = batchDims.reduce((x, y) => x * y, 1);
  const out = Tensor.empty([...batchDims, m, n]);
  if (out.size === 0) return out;
  rt().dispatch({
    kernel: 'matmul',
    spec: { TM, TN },
    params: [m, n, k, batch, aRows * aCols, ...(transA ? [1, aCols] : [aCols, 1]), bRows * bCols, ...(transB ? [1, bCols] : [bCols, 1])],
    bindings: [{ buffer: a.buffer }, { buffer: b.buffer }, { buffer: out.buffer }],
    workgroups: [Math.ceil(n / (8 * TN)), Math.ceil(m / (8 * TM)), batch],
  });
  return out;
}
