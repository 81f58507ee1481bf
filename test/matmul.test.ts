import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { gpu, initGPU } from '../engine/gpu.ts';
setPlatform(nodePlatform());
await initGPU();

// matmul (2-D, batched, transposed, B shared) and its gradient, for every GEMM variant this adapter
// offers, against the float64 reference (test/reference/matmul.ts).
//
// Tolerance: max |gpu - ref| <= 1e-4 * max |ref|. Each output is an f32 sum of K products of values in
// [-1, 1]; the rounding error is at most ~K u sum |a b| (u = 2^-24), i.e. ~4e-5 of max |ref| in the
// worst case at K = 257, and ~sqrt(K) u (~1e-6, what is measured) for random signs. A wrong index or a
// missing term costs ~1e-1, so 1e-4 separates the two by three orders of magnitude.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KernelError, ShapeError } from '../engine/errors.ts';
import { MATMUL_VARIANTS, matmul, matmulVariant, setMatmulVariant, type MatmulVariant } from '../engine/ops/matmul.ts';
import { Tensor } from '../engine/tensor.ts';
import * as R from './reference/matmul.ts';
import { type Arr, assertClose, randArr } from './reference/tensor.ts';

const TOL = 1e-4;

const toGpu = (a: Arr, requiresGrad = false) =>
  Tensor.fromArray(Float32Array.from(a.data), a.shape).setRequiresGrad(requiresGrad);

/** The stored shape of an operand: [...batch, rows, cols], transposed when asked. */
const stored = (batch: number[], rows: number, cols: number, trans: boolean) => [...batch, ...(trans ? [cols, rows] : [rows, cols])];

const variants = MATMUL_VARIANTS.filter((v) => v !== 'subgroup' || gpu().hasSubgroups);

// [M, N, K]: the awkward sizes 1, 3, 7, 65, 257 in every role, and aligned ones (vec4 loads and stores).
// M = 257 is more than 8 row tiles, where the subgroup GEMM's grid runs column tiles first.
const SIZES: [number, number, number][] = [
  [1, 1, 1],
  [3, 7, 5],
  [257, 65, 7],
  [7, 257, 65],
  [65, 3, 257],
  [1, 257, 3],
  [24, 32, 8],
  [64, 96, 128],
];

async function check(variant: MatmulVariant, batch: number[], [m, n, k]: number[], transA: boolean, transB: boolean, seed: number) {
  const a = randArr(stored(batch, m, k, transA), seed);
  const b = randArr(stored(batch, k, n, transB), seed + 1);
  const y = matmul(toGpu(a), toGpu(b), { transA, transB });
  const what = `${variant} [${batch}] ${m}x${n}x${k} transA=${transA} transB=${transB}`;
  assert.equal([...y.shape], [...batch, m, n], what);
  assertClose(await y.toArray(), R.matmul(a, b, { transposeA: transA, transposeB: transB }), TOL, what);
}

for (const variant of variants) {
  test(`${variant}: odd and aligned sizes, every transpose`, async () => {
    setMatmulVariant(variant);
    let seed = 1;
    for (const size of SIZES) {
      for (const transA of [false, true]) for (const transB of [false, true]) await check(variant, [], size, transA, transB, seed++);
    }
    setMatmulVariant(null);
  });

  test(`${variant}: batched, every transpose`, async () => {
    setMatmulVariant(variant);
    let seed = 100;
    for (const size of [[3, 7, 5], [33, 17, 9], [24, 32, 8]]) {
      for (const transA of [false, true]) for (const transB of [false, true]) await check(variant, [3], size, transA, transB, seed++);
    }
    await check(variant, [2, 3], [5, 4, 3], true, false, seed++);
    setMatmulVariant(null);
  });

  test(`${variant}: a 2-D B folds the batch of A into rows; k = 0 gives zeros`, async () => {
    setMatmulVariant(variant);
    const a = randArr([2, 3, 5, 7], 200);
    const b = randArr([7, 9], 201);
    assertClose(await matmul(toGpu(a), toGpu(b)).toArray(), R.matmul(a, b), TOL, 'folded batch');
    const empty = matmul(Tensor.zeros([4, 0]), Tensor.zeros([0, 6]));
    assert.equal(Array.from(await empty.toArray()), new Array(24).fill(0));
    setMatmulVariant(null);
  });

  test(`${variant}: gradients for every transpose`, async () => {
    setMatmulVariant(variant);
    let seed = 300;
    for (const [batch, size] of [[[], [7, 5, 65]], [[2], [9, 33, 4]]] as [number[], number[]][]) {
      const [m, n, k] = size;
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = randArr(stored(batch, m, k, transA), seed++);
          const b = randArr(stored(batch, k, n, transB), seed++);
          const gy = randArr([...batch, m, n], seed++);
          const ta = toGpu(a, true);
          const tb = toGpu(b, true);
          matmul(ta, tb, { transA, transB }).backward(toGpu(gy));
          const { ga, gb } = R.matmulBackward(a, b, gy, { transposeA: transA, transposeB: transB });
          const what = `${variant} grad [${batch}] ${size} transA=${transA} transB=${transB}`;
          assertClose(await ta.grad!.toArray(), ga, TOL, `${what}: dA`);
          assertClose(await tb.grad!.toArray(), gb, TOL, `${what}: dB`);
        }
      }
    }
    setMatmulVariant(null);
  });
}

test('variant selection: adapter facts, CELGRAD_MATMUL, errors', () => {
  const g = gpu();
  assert.is(matmulVariant(), g.hasSubgroups && g.facts.isSoftware ? 'subgroup' : 'tiled');
  process.env.CELGRAD_MATMUL = 'tiled';
  try {
    assert.is(matmulVariant(), 'tiled');
    process.env.CELGRAD_MATMUL = 'fastest';
    assert.throws(() => matmulVariant(), (e: unknown) => e instanceof KernelError && /tiled, subgroup/.test(e.message));
  } finally {
    delete process.env.CELGRAD_MATMUL;
  }
  assert.throws(() => setMatmulVariant('nope' as MatmulVariant), (e: unknown) => e instanceof KernelError);
});

test('shape errors name both shapes', () => {
  assert.throws(
    () => matmul(Tensor.zeros([2, 3]), Tensor.zeros([4, 5])),
    (e: unknown) => e instanceof ShapeError && /\[2,3\].*\[4,5\]/.test(e.message),
  );
  assert.throws(() => matmul(Tensor.zeros([2, 3, 4]), Tensor.zeros([3, 4, 5])), (e: unknown) => e instanceof ShapeError);
});

test.run();
