// Matrix multiplication, 2-D and batched, with optional transposes, and its derivative.
// Kernels: kernels/matmul.wgsl (portable, register-tiled) and kernels/matmul_subgroup.wgsl (software
// adapters: subgroup shuffles, tall tiles). Reference: test/reference/matmul.ts.
import matmulSource from '../../kernels/matmul.wgsl';
import matmulSubgroupSource from '../../kernels/matmul_subgroup.wgsl';
import type { OnnxInput } from '../autograd.ts';
import { KernelError, ShapeError } from '../errors.ts';
import { gpu } from '../gpu.ts';
import { platform } from '../platform/index.ts';
import { registerKernel, rt, type Binding } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { reshape } from './shape.ts';

registerKernel('matmul', matmulSource);
registerKernel('matmul_subgroup', matmulSubgroupSource);

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * GEMM kernel variants. 'tiled': 4x4 outputs per invocation, portable. 'subgroup': tall tiles fed by
 * subgroup shuffles, written for lavapipe, where it is ~7x faster than 'tiled' (bench/RESULTS.md).
 */
export const MATMUL_VARIANTS = ['tiled', 'subgroup'] as const;
export type MatmulVariant = (typeof MATMUL_VARIANTS)[number];

let forcedVariant: MatmulVariant | null = null;

/** Forces a variant for every later GEMM (tests, benches); null restores the automatic choice. */
export function setMatmulVariant(variant: MatmulVariant | null): void {
  if (variant) checkVariant(variant);
  forcedVariant = variant;
}

/**
 * The GEMM variant in use: setMatmulVariant(), else CELGRAD_MATMUL=tiled|subgroup, else 'subgroup'
 * on a software adapter with subgroups (lavapipe) and 'tiled' elsewhere.
 */
export function matmulVariant(): MatmulVariant {
  if (forcedVariant) return forcedVariant;
  const asked = platform().env('CELGRAD_MATMUL');
  if (asked) return checkVariant(asked);
  const g = gpu();
  return g.hasSubgroups && g.facts.isSoftware ? 'subgroup' : 'tiled';
}

function checkVariant(name: string): MatmulVariant {
  if (!(MATMUL_VARIANTS as readonly string[]).includes(name)) {
    throw new KernelError('matmul', `no GEMM variant '${name}' (CELGRAD_MATMUL): use one of ${MATMUL_VARIANTS.join(', ')}`);
  }
  if (name === 'subgroup' && !gpu().hasSubgroups) {
    throw new KernelError('matmul_subgroup', "this adapter does not offer the 'subgroups' feature; use CELGRAD_MATMUL=tiled");
  }
  return name as MatmulVariant;
}

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
      export: { type: 'MatMul', inputs: [transA ? transposed(0, a.shape.length) : 0, transB ? transposed(1, b.shape.length) : 1] },
    };
  }
  return y;
}

/** ONNX: tape input k with its last two dims swapped. */
function transposed(k: number, rank: number): OnnxInput {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return { type: 'Transpose', attrs: { perm }, inputs: [k] };
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
  // k = 0 needs no special case: both kernels then store zeros.
  recordGemm({ a: { buffer: a.buffer }, b: { buffer: b.buffer }, c: { buffer: out.buffer }, m, n, k, batch, transA, transB, aBatch: m * k, bBatch: k * n });
  return out;
}

/** One GEMM over raw buffers: C[i] = op(A[i]) op(B[i]) for i < batch, C contiguous [batch, m, n]. */
export interface Gemm {
  a: Binding;
  b: Binding;
  c: Binding;
  /** Element offsets of the matrices within their bindings (default 0). */
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  m: number;
  n: number;
  k: number;
  batch: number;
  /** A stored [k, m] (else [m, k]); B stored [n, k] (else [k, n]). */
  transA: boolean;
  transB: boolean;
  /** Element strides between batch entries of A and B; 0 shares one matrix across the batch. */
  aBatch: number;
  bBatch: number;
}

/** Up to how many row tiles the subgroup GEMM walks row tiles first. */
const ROWS_X_MAX_TILES = 8;

/** Records one GEMM with the current variant (also used by conv2d's 1x1 fast path). */
export function recordGemm(g: Gemm, variant: MatmulVariant = matmulVariant()): void {
  const { m, n, k, batch, transA, transB, aOffset = 0, bOffset = 0, cOffset = 0 } = g;
  const bindings = [g.a, g.b, g.c];
  if (variant === 'subgroup') {
    const SG = gpu().facts.subgroupSize;
    // 24 rows per lane measured best on lavapipe (16: -10%, 32: -8%, 48: -30%); a multiple of SG.
    const TM = SG <= 8 ? 24 : SG;
    const aContig = transA ? m : k; // A's contiguous dimension
    const bContig = transB ? k : n;
    const rowTiles = Math.ceil(m / TM);
    checkGroups('matmul_subgroup', rowTiles, batch);
    const colTiles = Math.ceil(n / (4 * SG));
    // Few row tiles of A against many columns of B: walk the row tiles first (see the kernel's header).
    const rowsX = rowTiles <= ROWS_X_MAX_TILES && colTiles <= rt().device.limits.maxComputeWorkgroupsPerDimension;
    rt().dispatch({
      kernel: 'matmul_subgroup',
      spec: {
        SG,
        TM,
        A_T: transA,
        B_T: transB,
        A_VEC: aContig % 4 === 0 && g.aBatch % 4 === 0 && aOffset % 4 === 0,
        B_VEC: bContig % 4 === 0 && g.bBatch % 4 === 0 && bOffset % 4 === 0,
        C_VEC: n % 4 === 0 && cOffset % 4 === 0,
        ROWS_X: rowsX,
      },
      params: [m, n, k, g.aBatch, g.bBatch, aOffset, bOffset, cOffset],
      bindings,
      workgroups: rowsX ? [rowTiles, colTiles, batch] : [colTiles, rowTiles, batch],
    });
    return;
  }
  const T = 4; // outputs per invocation along each axis (kernels/matmul.wgsl: TM = TN = 4, 8x8 invocations)
  checkGroups('matmul', Math.ceil(m / (8 * T)), batch);
  rt().dispatch({
    kernel: 'matmul',
    spec: { TM: T, TN: T },
    params: [m, n, k, batch, g.aBatch, ...(transA ? [1, m] : [k, 1]), g.bBatch, ...(transB ? [1, k] : [n, 1]), aOffset, bOffset, cOffset],
    bindings,
    workgroups: [Math.ceil(n / (8 * T)), Math.ceil(m / (8 * T)), batch],
  });
}

function checkGroups(kernel: string, rowGroups: number, batch: number): void {
  const max = rt().device.limits.maxComputeWorkgroupsPerDimension;
  if (rowGroups > max || batch > max) {
    throw new KernelError(kernel, `${rowGroups} row tiles x ${batch} batch entries exceed ${max} workgroups per dimension`);
  }
}
