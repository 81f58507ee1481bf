/**
 * test/reference/matmul.ts — 2-D and batched matrix multiply with transpose flags, float64, forward and backward.
 *
 * a is stored as [...batchA, M, K] (or [...batchA, K, M] with transposeA), b as [...batchB, K, N]
 * (or [...batchB, N, K] with transposeB); both must have rank >= 2. The batch dims broadcast as in
 * torch.matmul (numpy rules), so a 2-D operand is shared by every batch entry. The output is [...batch, M, N].
 * matmul(a, b, { transposeA: true }) equals torch.matmul(a.transpose(-2, -1), b).
 *
 * API
 *   interface MatmulOpts { transposeA?: boolean; transposeB?: boolean }
 *   matmulShape(aShape, bShape, opts = {}): number[]
 *   matmul(a, b, opts = {}): Arr
 *   matmulBackward(a, b, gy, opts = {}): { ga, gb }   each in its input's stored shape (transposed layout kept),
 *                                                      summed over broadcast batch dims
 */
import { type Arr, zeros, unravel, shapeStr } from './tensor.ts';
import { broadcastShape } from './elementwise.ts';

export interface MatmulOpts {
  transposeA?: boolean;
  transposeB?: boolean;
}

interface Plan {
  batch: number[];
  M: number;
  K: number;
  N: number;
  aBatch: number[];
  bBatch: number[];
}

function plan(aShape: readonly number[], bShape: readonly number[], opts: MatmulOpts): Plan {
  if (aShape.length < 2 || bShape.length < 2) {
    throw new Error(`reference: matmul needs rank >= 2, got ${shapeStr(aShape)} and ${shapeStr(bShape)}`);
  }
  const ar = aShape[aShape.length - 2];
  const ac = aShape[aShape.length - 1];
  const br = bShape[bShape.length - 2];
  const bc = bShape[bShape.length - 1];
  const [M, Ka] = opts.transposeA ? [ac, ar] : [ar, ac];
  const [Kb, N] = opts.transposeB ? [bc, br] : [br, bc];
  if (Ka !== Kb) {
    throw new Error(
      `reference: matmul inner dims differ: ${shapeStr(aShape)}${opts.transposeA ? 'ᵀ' : ''} x ` +
        `${shapeStr(bShape)}${opts.transposeB ? 'ᵀ' : ''}`,
    );
  }
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  return { batch: broadcastShape(aBatch, bBatch), M, K: Ka, N, aBatch, bBatch };
}

/** Flat batch index into an operand's own batch shape for the broadcast batch multi-index. */
function batchIndex(idx: readonly number[], own: readonly number[]): number {
  const off = idx.length - own.length;
  let i = 0;
  for (let d = 0; d < own.length; d++) i = i * own[d] + (own[d] === 1 ? 0 : idx[d + off]);
  return i;
}

export function matmulShape(aShape: readonly number[], bShape: readonly number[], opts: MatmulOpts = {}): number[] {
  const p = plan(aShape, bShape, opts);
  return [...p.batch, p.M, p.N];
}

export function matmul(a: Arr, b: Arr, opts: MatmulOpts = {}): Arr {
  const { batch, M, K, N, aBatch, bBatch } = plan(a.shape, b.shape, opts);
  const out = zeros([...batch, M, N]);
  const nBatch = batch.reduce((x, y) => x * y, 1);
  for (let t = 0; t < nBatch; t++) {
    const idx = unravel(t, batch);
    const aOff = batchIndex(idx, aBatch) * M * K;
    const bOff = batchIndex(idx, bBatch) * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = opts.transposeA ? a.data[aOff + k * M + i] : a.data[aOff + i * K + k];
          const bv = opts.transposeB ? b.data[bOff + j * K + k] : b.data[bOff + k * N + j];
          s += av * bv;
        }
        out.data[(t * M + i) * N + j] = s;
      }
    }
  }
  return out;
}

export function matmulBackward(a: Arr, b: Arr, gy: Arr, opts: MatmulOpts = {}): { ga: Arr; gb: Arr } {
  const { batch, M, K, N, aBatch, bBatch } = plan(a.shape, b.shape, opts);
  const nBatch = batch.reduce((x, y) => x * y, 1);
  if (gy.data.length !== nBatch * M * N) {
    throw new Error(`reference: matmul backward: gy ${shapeStr(gy.shape)} does not match ${shapeStr([...batch, M, N])}`);
  }
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  for (let t = 0; t < nBatch; t++) {
    const idx = unravel(t, batch);
    const aOff = batchIndex(idx, aBatch) * M * K;
    const bOff = batchIndex(idx, bBatch) * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        const g = gy.data[(t * M + i) * N + j];
        for (let k = 0; k < K; k++) {
          const ai = opts.transposeA ? aOff + k * M + i : aOff + i * K + k;
          const bi = opts.transposeB ? bOff + j * K + k : bOff + k * N + j;
          // y[i,j] += A[i,k] * B[k,j]
          ga.data[ai] += g * b.data[bi];
          gb.data[bi] += g * a.data[ai];
        }
      }
    }
  }
  return { ga, gb };
}
