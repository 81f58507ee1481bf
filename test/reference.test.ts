// The float64 CPU references in test/reference/ checked three independent ways:
//   (1) every backward against central finite differences in float64 (eps 1e-6) on small odd-shaped random inputs,
//       through a random projection loss = sum(out * R); tolerance FD_TOL = 1e-6 relative to max |numeric grad|;
//   (2) conv2d forward / input grad / weight grad, max and avg pooling (fwd + bwd) and batch norm against TF.js's CPU
//       backend (float32) on seeded random configurations; both sides get the same float32-rounded inputs, so the
//       difference is TF's float32 arithmetic only; tolerance TF_TOL = 1e-5 relative to max |reference|;
//   (3) hand-computed values for tiny cases (bin edges, ceil-mode window counts, label smoothing, bilinear taps, ties).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Arr, fromArray, randArr, randnArr, rng, roundF32, assertClose, maxRelErr, zeros, full } from './reference/tensor.ts';
import { checkBackward, checkGradient, numericGrad } from './reference/gradcheck.ts';
import {
  type BinaryOp,
  type UnaryOp,
  type ScalarOp,
  binary,
  binaryBackward,
  unary,
  unaryBackward,
  scalar,
  scalarBackward,
  guidedReluBackward,
  sumToShape,
  maximumBackward,
  broadcastShape,
} from './reference/elementwise.ts';
import { sum, sumBackward, mean, meanBackward, max, maxBackward, type Axes } from './reference/reduce.ts';
import { matmul, matmulBackward, type MatmulOpts } from './reference/matmul.ts';
import {
  permute,
  permuteBackward,
  transpose,
  transposeBackward,
  concat,
  concatBackward,
  slice,
  sliceBackward,
  reshape,
  reshapeBackward,
  flatten,
  flattenBackward,
} from './reference/shape.ts';
import { conv2d, conv2dBackward, conv2dOutShape, type Conv2dOpts } from './reference/conv2d.ts';
import { batchNorm2d, batchNorm2dBackward, type BatchNormOpts } from './reference/batchnorm.ts';
import {
  maxPool2d,
  maxPool2dBackward,
  maxPool2dIndices,
  avgPool2d,
  avgPool2dBackward,
  adaptiveAvgPool2d,
  adaptiveAvgPool2dBackward,
  adaptiveBins,
  poolOutSize,
  type MaxPool2dOpts,
  type AvgPool2dOpts,
} from './reference/pool.ts';
import {
  softmax,
  softmaxBackward,
  logSoftmax,
  logSoftmaxBackward,
  crossEntropy,
  crossEntropyBackward,
  type CrossEntropyOpts,
} from './reference/softmax.ts';
import { dropout, dropoutBackward, bernoulliMask } from './reference/dropout.ts';
import { upsampleBilinear2d, upsampleBilinear2dBackward, type UpsampleOpts } from './reference/upsample.ts';
import { linear, linearBackward } from './reference/linear.ts';
import {
  initTf,
  tfConv2d,
  tfConv2dBackpropInput,
  tfConv2dBackpropFilter,
  tfMaxPool2d,
  tfMaxPool2dBackward,
  tfAvgPool2d,
  tfAvgPool2dBackward,
  tfBatchNorm,
  tfMoments,
  type TfConvOpts,
} from './external/tfjs.ts';

/** Finite differences in float64: see gradcheck.ts for why 1e-6 is both safe and strict. */
const FD_TOL = 1e-6;
/** TF.js float32 vs float64 reference on identical float32 inputs: sums of <= ~200 products of O(1) values
 *  accumulate ~1e-7..1e-6 relative rounding error; 1e-5 keeps a 10x margin and still catches any indexing slip. */
const TF_TOL = 1e-5;

const worst = new Map<string, number>();
function note(family: string, err: number): void {
  worst.set(family, Math.max(worst.get(family) ?? 0, Number.isNaN(err) ? 0 : err));
}

/** checkBackward with FD_TOL, recording the worst error per family. */
function fd(
  family: string,
  what: string,
  forward: (xs: Arr[]) => Arr,
  backward: (xs: Arr[], gy: Arr) => Array<Arr | null | undefined>,
  inputs: Arr[],
  seed = 7,
): void {
  const errs = checkBackward(forward, backward, inputs, { tol: FD_TOL, what: `${family} ${what}`, seed });
  for (const e of errs) note(family, e);
}

let seedCounter = 1000;
const nextSeed = (): number => seedCounter++;
const rand = (shape: number[], lo = -1, hi = 1): Arr => randArr(shape, nextSeed(), lo, hi);

test.before(async () => {
  await initTf();
});

test.after(() => {
  const lines = [...worst.entries()].map(([k, v]) => `  ${k.padEnd(28)} ${v.toExponential(2)}`);
  console.log(`\nreference checks, worst relative error per family:\n${lines.join('\n')}`);
});

// =====================================================================================================================
// (1) Finite differences
// =====================================================================================================================

test('fd: elementwise binary ops with broadcasting', () => {
  const shapes: Array<[number[], number[]]> = [
    [[3, 1, 5], [7, 1]],
    [[1], [3, 5]],
    [[5], [3, 1]],
    [[1, 1], [1]],
    [[3, 5], [3, 5]],
  ];
  const ops: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow'];
  for (const op of ops) {
    for (const [sa, sb] of shapes) {
      const a = op === 'pow' ? rand(sa, 0.5, 2) : rand(sa);
      const b = op === 'div' ? rand(sb, 0.5, 1.5) : op === 'pow' ? rand(sb, -1.5, 1.5) : rand(sb);
      const out = binary(op, a, b);
      assert.equal(out.shape, broadcastShape(sa, sb));
      fd(
        'elementwise',
        `${op} ${sa} ${sb}`,
        ([x, y]) => binary(op, x, y),
        ([x, y], gy) => {
          const { ga, gb } = binaryBackward(op, x, y, gy);
          return [ga, gb];
        },
        [a, b],
      );
    }
  }
});

test('fd: elementwise unary and scalar ops, guided relu', () => {
  const unaryOps: UnaryOp[] = ['neg', 'relu', 'exp', 'log', 'sqrt', 'sigmoid', 'tanh', 'abs'];
  for (const op of unaryOps) {
    for (const shape of [[7], [3, 5, 1]]) {
      const x = op === 'log' || op === 'sqrt' ? rand(shape, 0.5, 2) : rand(shape, -2, 2);
      fd('elementwise', `${op} ${shape}`, ([t]) => unary(op, t), ([t], gy) => [unaryBackward(op, t, gy)], [x]);
    }
  }
  const scalarOps: Array<[ScalarOp, number]> = [
    ['add', 0.7],
    ['sub', -1.3],
    ['rsub', 2.5],
    ['mul', -1.7],
    ['div', 0.3],
    ['rdiv', 1.9],
    ['pow', 2.5],
    ['pow', -0.5],
    ['pow', 3],
  ];
  for (const [op, s] of scalarOps) {
    const x = op === 'rdiv' || op === 'pow' ? rand([3, 5], 0.5, 2) : rand([3, 5]);
    fd('elementwise', `${op} scalar ${s}`, ([t]) => scalar(op, t, s), ([t], gy) => [scalarBackward(op, t, s, gy)], [x]);
  }
  // Guided ReLU backward is not a true gradient; check its definition element by element.
  const x = fromArray([-1, 2, 3, 0, 5, -6], [2, 3]);
  const g = fromArray([1, -2, 3, 4, 0.5, 7], [2, 3]);
  assert.equal(Array.from(guidedReluBackward(x, g).data), [0, 0, 3, 0, 0.5, 0]);
});

test('fd: reductions sum / mean / max', () => {
  const x = rand([3, 5, 7]);
  const cases: Array<[Axes, boolean]> = [
    [undefined, false],
    [1, false],
    [[0, 2], true],
    [-1, true],
    [[0, 1, 2], false],
    [[], true],
  ];
  for (const [axes, keepdim] of cases) {
    const tag = `axes=${JSON.stringify(axes)} keepdim=${keepdim}`;
    fd('reduce', `sum ${tag}`, ([t]) => sum(t, axes, keepdim), ([t], gy) => [sumBackward(t, gy, axes, keepdim)], [x]);
    fd('reduce', `mean ${tag}`, ([t]) => mean(t, axes, keepdim), ([t], gy) => [meanBackward(t, gy, axes, keepdim)], [x]);
    fd('reduce', `max ${tag}`, ([t]) => max(t, axes, keepdim), ([t], gy) => [maxBackward(t, gy, axes, keepdim)], [x]);
  }
  assert.equal(sum(x, [0, 2], true).shape, [1, 5, 1]);
  assert.equal(sum(x, [0, 2]).shape, [5]);
  assert.equal(sum(x).shape, []);
});

test('fd: matmul 2-D and batched, all transpose flags', () => {
  const flagSets: MatmulOpts[] = [{}, { transposeA: true }, { transposeB: true }, { transposeA: true, transposeB: true }];
  // [batchA, batchB, M, K, N]
  const cases: Array<[number[], number[], number, number, number]> = [
    [[], [], 5, 3, 7],
    [[], [], 1, 7, 1],
    [[2, 1], [3], 3, 5, 1],
    [[], [3], 1, 5, 3],
    [[3], [], 5, 1, 3],
  ];
  for (const flags of flagSets) {
    for (const [ba, bb, M, K, N] of cases) {
      const a = rand([...ba, ...(flags.transposeA ? [K, M] : [M, K])]);
      const b = rand([...bb, ...(flags.transposeB ? [N, K] : [K, N])]);
      fd(
        'matmul',
        `${JSON.stringify(flags)} ${a.shape} x ${b.shape}`,
        ([x, y]) => matmul(x, y, flags),
        ([x, y], gy) => {
          const { ga, gb } = matmulBackward(x, y, gy, flags);
          return [ga, gb];
        },
        [a, b],
      );
    }
  }
});

test('fd: shape ops permute / transpose / concat / slice / reshape / flatten', () => {
  const x = rand([3, 5, 7]);
  fd('shape', 'permute', ([t]) => permute(t, [2, 0, 1]), ([t], gy) => [permuteBackward(t, gy, [2, 0, 1])], [x]);
  fd('shape', 'transpose', ([t]) => transpose(t, 0, -1), ([t], gy) => [transposeBackward(t, gy, 0, -1)], [x]);
  const parts = [rand([3, 1, 7]), rand([3, 5, 7]), rand([3, 3, 7])];
  fd('shape', 'concat', (ts) => concat(ts, 1), (ts, gy) => concatBackward(ts, gy, 1), parts);
  fd('shape', 'concat last', (ts) => concat(ts, -1), (ts, gy) => concatBackward(ts, gy, -1), [rand([3, 2]), rand([3, 5])]);
  for (const [axis, s, e, step] of [
    [1, 1, 4, 1],
    [-1, -5, 7, 2],
    [0, 0, 100, 1],
    [2, 3, 3, 1],
  ]) {
    fd('shape', `slice ${axis} ${s}:${e}:${step}`, ([t]) => slice(t, axis, s, e, step), ([t], gy) => [sliceBackward(t, gy, axis, s, e, step)], [x]);
  }
  assert.equal(slice(x, -1, -5, 7, 2).shape, [3, 5, 3]);
  assert.equal(slice(x, 2, 3, 3).shape, [3, 5, 0]);
  fd('shape', 'reshape', ([t]) => reshape(t, [5, -1]), ([t], gy) => [reshapeBackward(t, gy)], [x]);
  fd('shape', 'flatten', ([t]) => flatten(t, 1), ([t], gy) => [flattenBackward(t, gy)], [x]);
  assert.equal(flatten(x, 1).shape, [3, 35]);
  assert.equal(permute(x, [2, 0, 1]).shape, [7, 3, 5]);
});

const convCases: Array<{ x: number[]; w: number[]; bias: boolean; opts: Conv2dOpts }> = [
  { x: [2, 3, 7, 5], w: [4, 3, 3, 3], bias: true, opts: { padding: 1 } },
  { x: [1, 3, 7, 7], w: [5, 3, 1, 7], bias: true, opts: { padding: [0, 3] } },
  { x: [2, 2, 7, 5], w: [3, 2, 7, 1], bias: false, opts: { padding: [3, 0] } },
  { x: [1, 2, 5, 7], w: [3, 2, 3, 3], bias: true, opts: { padding: [2, 1, 0, 3], stride: 2 } },
  { x: [1, 6, 9, 7], w: [6, 2, 3, 3], bias: true, opts: { stride: 2, dilation: 2, padding: 1, groups: 3 } },
  { x: [1, 1, 5, 5], w: [1, 1, 5, 5], bias: false, opts: { stride: 2, padding: 2 } },
  { x: [1, 3, 3, 3], w: [2, 3, 1, 1], bias: true, opts: { padding: 2 } },
  { x: [2, 3, 8, 7], w: [2, 3, 2, 3], bias: true, opts: { stride: [3, 2] } },
  { x: [1, 4, 6, 5], w: [4, 1, 3, 3], bias: false, opts: { padding: 'same', groups: 4, dilation: [1, 2] } },
];

test('fd: conv2d (stride, asymmetric padding, dilation, groups, bias)', () => {
  for (const c of convCases) {
    const x = rand(c.x);
    const w = rand(c.w);
    const inputs = c.bias ? [x, w, rand([c.w[0]])] : [x, w];
    fd(
      'conv2d',
      `${c.x} ${c.w} ${JSON.stringify(c.opts)}`,
      (ts) => conv2d(ts[0], ts[1], ts[2] ?? null, c.opts),
      (ts, gy) => {
        const { gx, gw, gb } = conv2dBackward(ts[0], ts[1], gy, c.opts);
        return c.bias ? [gx, gw, gb] : [gx, gw];
      },
      inputs,
    );
  }
  assert.equal(conv2dOutShape([1, 4, 6, 5], [4, 1, 3, 3], { padding: 'same', groups: 4, dilation: [1, 2] }), [1, 4, 6, 5]);
  assert.equal(conv2dOutShape([1, 2, 5, 7], [3, 2, 3, 3], { padding: [2, 1, 0, 3], stride: 2 }), [1, 3, 3, 4]);
});

test('fd: batch norm, training and eval, affine and not', () => {
  const cases: Array<{ x: number[]; affine: boolean; training: boolean; eps?: number }> = [
    { x: [2, 3, 5, 3], affine: true, training: true },
    { x: [1, 3, 1, 5], affine: true, training: true, eps: 1e-3 },
    { x: [3, 2, 1, 1], affine: false, training: true },
    { x: [5, 3], affine: true, training: true },
    { x: [2, 3, 5, 3], affine: true, training: false },
    { x: [1, 1, 3, 7], affine: false, training: false, eps: 1e-3 },
  ];
  for (const c of cases) {
    const C = c.x[1];
    const rm = rand([C], -0.5, 0.5);
    const rv = rand([C], 0.5, 2);
    const opts: BatchNormOpts = { training: c.training, eps: c.eps ?? 1e-5 };
    const x = randnArr(c.x, nextSeed(), 2);
    const inputs = c.affine ? [x, rand([C], 0.5, 1.5), rand([C])] : [x];
    fd(
      'batchnorm',
      `${c.x} affine=${c.affine} training=${c.training}`,
      (ts) => batchNorm2d(ts[0], rm, rv, ts[1] ?? null, ts[2] ?? null, opts).y,
      (ts, gy) => {
        const { gx, gw, gb } = batchNorm2dBackward(ts[0], rm, rv, ts[1] ?? null, gy, opts);
        return c.affine ? [gx, gw, gb] : [gx];
      },
      inputs,
    );
  }
});

test('fd: max / avg / adaptive pooling', () => {
  const maxCases: Array<{ x: number[]; o: MaxPool2dOpts }> = [
    { x: [2, 3, 7, 5], o: { kernelSize: 3, stride: 2, padding: 1 } },
    { x: [1, 2, 7, 7], o: { kernelSize: 3, stride: 2, ceilMode: true } },
    { x: [1, 1, 6, 7], o: { kernelSize: 2, stride: 3, ceilMode: true } },
    { x: [1, 2, 9, 7], o: { kernelSize: [3, 2], stride: [2, 1], padding: [1, 1], dilation: 2 } },
    { x: [1, 1, 5, 5], o: { kernelSize: 5 } },
    { x: [1, 3, 1, 5], o: { kernelSize: [1, 3], stride: 1, padding: [0, 1] } },
  ];
  for (const c of maxCases) {
    fd('pool', `max ${c.x} ${JSON.stringify(c.o)}`, ([t]) => maxPool2d(t, c.o), ([t], gy) => [maxPool2dBackward(t, gy, c.o)], [rand(c.x)]);
  }
  const avgCases: Array<{ x: number[]; o: AvgPool2dOpts }> = [
    { x: [2, 3, 7, 5], o: { kernelSize: 3, stride: 2, padding: 1 } },
    { x: [2, 3, 7, 5], o: { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false } },
    { x: [1, 2, 6, 7], o: { kernelSize: 3, stride: 3, padding: 1, ceilMode: true } },
    { x: [1, 2, 6, 7], o: { kernelSize: 3, stride: 3, padding: 1, ceilMode: true, countIncludePad: false } },
    { x: [1, 1, 7, 5], o: { kernelSize: [2, 3], stride: [3, 1], ceilMode: true, divisorOverride: 5 } },
    { x: [1, 3, 5, 5], o: { kernelSize: 5 } },
  ];
  for (const c of avgCases) {
    fd('pool', `avg ${c.x} ${JSON.stringify(c.o)}`, ([t]) => avgPool2d(t, c.o), ([t], gy) => [avgPool2dBackward(t, gy, c.o)], [rand(c.x)]);
  }
  const adaptiveCases: Array<[number[], [number, number]]> = [
    [[2, 3, 7, 5], [3, 3]],
    [[1, 2, 5, 5], [3, 3]],
    [[1, 2, 3, 3], [5, 7]],
    [[2, 3, 7, 5], [1, 1]],
    [[1, 1, 4, 5], [2, 3]],
  ];
  for (const [s, o] of adaptiveCases) {
    fd('pool', `adaptive ${s} -> ${o}`, ([t]) => adaptiveAvgPool2d(t, o), ([t], gy) => [adaptiveAvgPool2dBackward(t, gy, o)], [rand(s)]);
  }
});

test('fd: softmax, log_softmax, cross-entropy', () => {
  for (const [shape, axis] of [
    [[3, 7], -1],
    [[1, 5], -1],
    [[5, 3, 2], 0],
    [[2, 5, 3], 1],
  ] as Array<[number[], number]>) {
    const x = rand(shape, -3, 3);
    fd('softmax', `softmax ${shape} axis ${axis}`, ([t]) => softmax(t, axis), ([t], gy) => [softmaxBackward(t, gy, axis)], [x]);
    fd('softmax', `log_softmax ${shape} axis ${axis}`, ([t]) => logSoftmax(t, axis), ([t], gy) => [logSoftmaxBackward(t, gy, axis)], [x]);
  }
  const ceCases: Array<{ N: number; C: number; opts: CrossEntropyOpts; ignoreRow?: number }> = [
    { N: 5, C: 7, opts: {} },
    { N: 1, C: 3, opts: { labelSmoothing: 0.1 } },
    { N: 5, C: 7, opts: { labelSmoothing: 0.2 } },
    { N: 5, C: 7, opts: { labelSmoothing: 0.1, weight: randArr([7], 99, 0.2, 2) } },
    { N: 5, C: 3, opts: { weight: [0.5, 2, 1.5] }, ignoreRow: 2 },
    { N: 5, C: 3, opts: { labelSmoothing: 0.3, ignoreIndex: 1 } },
    { N: 3, C: 7, opts: { labelSmoothing: 0.1, reduction: 'sum' } },
  ];
  for (const c of ceCases) {
    const logits = rand([c.N, c.C], -3, 3);
    const r = rng(nextSeed());
    const target = Array.from({ length: c.N }, () => r.int(c.C));
    if (c.ignoreRow !== undefined) target[c.ignoreRow] = -100;
    const what = `cross_entropy N=${c.N} C=${c.C} ${JSON.stringify(c.opts)}`;
    const g = crossEntropyBackward(logits, target, c.opts, 1.7);
    const err = checkGradient((d) => 1.7 * crossEntropy({ data: d, shape: logits.shape }, target, c.opts), logits.data, g, {
      tol: FD_TOL,
      what,
    });
    note('softmax', err);
  }
});

test('fd: dropout, bilinear upsample, linear', () => {
  const x = rand([3, 5, 7]);
  const mask = bernoulliMask([3, 5, 7], 0.3, 5);
  fd('dropout', 'p=0.3', ([t]) => dropout(t, mask, 0.3), ([, m], gy) => [dropoutBackward(m, gy, 0.3), null], [x, mask]);
  fd('dropout', 'eval', ([t]) => dropout(t, mask, 0.3, false), ([, m], gy) => [dropoutBackward(m, gy, 0.3, false), null], [x, mask]);
  const upCases: Array<[number[], [number, number], UpsampleOpts]> = [
    [[1, 2, 3, 5], [7, 4], {}],
    [[2, 1, 5, 7], [3, 2], {}],
    [[1, 2, 3, 4], [5, 7], { alignCorners: true }],
    [[1, 1, 3, 3], [7, 7], { scaleFactor: 2.5 }],
    [[1, 1, 1, 3], [4, 1], {}],
  ];
  for (const [s, size, o] of upCases) {
    fd(
      'upsample',
      `${s} -> ${size} ${JSON.stringify(o)}`,
      ([t]) => upsampleBilinear2d(t, size, o),
      ([t], gy) => [upsampleBilinear2dBackward(t, gy, size, o)],
      [rand(s)],
    );
  }
  for (const [xs, bias] of [
    [[3, 5], true],
    [[2, 3, 5], true],
    [[1, 5], false],
  ] as Array<[number[], boolean]>) {
    const w = rand([7, 5]);
    const inputs = bias ? [rand(xs), w, rand([7])] : [rand(xs), w];
    fd(
      'linear',
      `${xs} bias=${bias}`,
      (ts) => linear(ts[0], ts[1], ts[2] ?? null),
      (ts, gy) => {
        const { gx, gw, gb } = linearBackward(ts[0], ts[1], gy);
        return bias ? [gx, gw, gb] : [gx, gw];
      },
      inputs,
    );
  }
});

test('gradcheck helpers catch a wrong gradient', () => {
  const x = rand([5]);
  const f = (d: Float64Array): number => d.reduce((s, v) => s + v * v * v, 0);
  const good = x.data.map((v) => 3 * v * v);
  checkGradient(f, x.data, good);
  const bad = good.map((v, i) => (i === 2 ? v * 1.01 : v));
  assert.throws(() => checkGradient(f, x.data, bad, { what: 'deliberately wrong' }), /deliberately wrong/);
  const ng = numericGrad((d) => d[0] * d[1], Float64Array.from([2, 3]));
  assertClose(ng, [3, 2], 1e-9, 'numericGrad of x*y');
  // A wrong backward must fail checkBackward.
  assert.throws(() =>
    checkBackward(
      ([t]) => unary('exp', t),
      ([t], gy) => [unaryBackward('tanh', t, gy)],
      [rand([3])],
    ),
  );
});

// =====================================================================================================================
// (2) Against TF.js CPU (float32)
// =====================================================================================================================

/** Seeded random conv configurations with the kernel shapes of ResNet-50 / Inception v3 and awkward extras. */
function randomConvConfigs(seed: number, count: number, allowDilation: boolean): Array<{ x: number[]; w: number[]; opts: TfConvOpts }> {
  const r = rng(seed);
  const kernels: Array<[number, number]> = [[1, 1], [3, 3], [5, 5], [7, 7], [1, 7], [7, 1], [1, 3], [3, 1], [2, 3]];
  const out: Array<{ x: number[]; w: number[]; opts: TfConvOpts }> = [];
  for (let i = 0; i < count; i++) {
    const [kh, kw] = kernels[i % kernels.length];
    const stride = 1 + r.int(2);
    const dil = allowDilation && stride === 1 && r.next() < 0.4 ? 2 : 1;
    const pad: [number, number, number, number] = [r.int(4), r.int(4), r.int(4), r.int(4)];
    const groups = [1, 1, 1, 2, 3][r.int(5)];
    const cg = 1 + r.int(3);
    const og = 1 + r.int(3);
    const N = 1 + r.int(2);
    const H = Math.max(dil * (kh - 1) + 1 - pad[0] - pad[1], 1) + r.int(6);
    const W = Math.max(dil * (kw - 1) + 1 - pad[2] - pad[3], 1) + r.int(6);
    out.push({ x: [N, cg * groups, H, W], w: [og * groups, cg, kh, kw], opts: { stride, padding: pad, dilation: dil, groups } });
  }
  return out;
}

test('tfjs: conv2d forward (stride, asymmetric padding, dilation, groups, bias)', () => {
  const configs = randomConvConfigs(31, 20, true);
  assert.ok(configs.some((c) => c.opts.dilation === 2) && configs.some((c) => (c.opts.groups ?? 1) > 1));
  for (const c of configs) {
    const x = roundF32(rand(c.x));
    const w = roundF32(rand(c.w));
    const b = roundF32(rand([c.w[0]]));
    const what = `conv2d fwd ${c.x} ${c.w} ${JSON.stringify(c.opts)}`;
    note('tfjs conv2d', assertClose(tfConv2d(x, w, b, c.opts), conv2d(x, w, b, c.opts), TF_TOL, what));
  }
});

test('tfjs: conv2d input and weight gradients', () => {
  const configs = randomConvConfigs(47, 20, false);
  for (const c of configs) {
    const x = roundF32(rand(c.x));
    const w = roundF32(rand(c.w));
    const gy = roundF32(rand(conv2dOutShape(c.x, c.w, c.opts)));
    const ref = conv2dBackward(x, w, gy, c.opts);
    const tag = `${c.x} ${c.w} ${JSON.stringify(c.opts)}`;
    note('tfjs conv2d', assertClose(tfConv2dBackpropInput(gy, w, c.x, c.opts), ref.gx, TF_TOL, `conv2d gx ${tag}`));
    note('tfjs conv2d', assertClose(tfConv2dBackpropFilter(x, gy, c.w, c.opts), ref.gw, TF_TOL, `conv2d gw ${tag}`));
  }
});

function randomPoolConfigs(seed: number, count: number): Array<{ x: number[]; kernelSize: [number, number]; stride: [number, number]; padding: [number, number]; ceilMode: boolean }> {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < count; i++) {
    const k: [number, number] = [1 + r.int(3), 2 + r.int(2)];
    const s: [number, number] = [1 + r.int(3), 1 + r.int(3)];
    const p: [number, number] = [r.int(Math.floor(k[0] / 2) + 1), r.int(Math.floor(k[1] / 2) + 1)];
    const x = [1 + r.int(2), 1 + r.int(3), k[0] + r.int(6), k[1] + r.int(6)];
    out.push({ x, kernelSize: k, stride: s, padding: p, ceilMode: i % 2 === 1 });
  }
  return out;
}

test('tfjs: max_pool2d forward and backward (padding, ceil_mode)', () => {
  for (const c of randomPoolConfigs(5, 20)) {
    const o: MaxPool2dOpts = { kernelSize: c.kernelSize, stride: c.stride, padding: c.padding, ceilMode: c.ceilMode };
    const x = roundF32(rand(c.x));
    const y = maxPool2d(x, o);
    const gy = roundF32(rand(y.shape));
    const tag = `${c.x} ${JSON.stringify(o)}`;
    note('tfjs pool', assertClose(tfMaxPool2d(x, o), y, TF_TOL, `max_pool2d fwd ${tag}`));
    note('tfjs pool', assertClose(tfMaxPool2dBackward(x, gy, o), maxPool2dBackward(x, gy, o), TF_TOL, `max_pool2d bwd ${tag}`));
  }
});

test('tfjs: avg_pool2d forward (count_include_pad both ways, ceil_mode) and backward where TF agrees', () => {
  let backwardCompared = 0;
  for (const c of randomPoolConfigs(11, 20)) {
    for (const countIncludePad of [true, false]) {
      const o: AvgPool2dOpts = { kernelSize: c.kernelSize, stride: c.stride, padding: c.padding, ceilMode: c.ceilMode, countIncludePad };
      const x = roundF32(rand(c.x));
      const y = avgPool2d(x, o);
      const tag = `${c.x} ${JSON.stringify(o)}`;
      note('tfjs pool', assertClose(tfAvgPool2d(x, o), y, TF_TOL, `avg_pool2d fwd ${tag}`));
      // TF.js AvgPoolGrad divides every window by kH*kW: comparable for count_include_pad and no overhang past
      // the padded bound (see test/external/tfjs.ts).
      const overhang = [0, 1].some((d) => (y.shape[2 + d] - 1) * c.stride[d] + c.kernelSize[d] > c.x[2 + d] + 2 * c.padding[d]);
      if (countIncludePad && !overhang) {
        const gy = roundF32(rand(y.shape));
        note('tfjs pool', assertClose(tfAvgPool2dBackward(x, gy, o), avgPool2dBackward(x, gy, o), TF_TOL, `avg_pool2d bwd ${tag}`));
        backwardCompared++;
      }
    }
  }
  assert.ok(backwardCompared >= 8, `only ${backwardCompared} avg_pool2d backward configurations were comparable`);
});

test('tfjs: batch norm eval and training forward, batch statistics', () => {
  const r = rng(77);
  for (let i = 0; i < 12; i++) {
    const shape = [1 + r.int(3), 1 + r.int(4), 1 + r.int(5), 2 + r.int(5)];
    const C = shape[1];
    const x = roundF32(randnArr(shape, nextSeed(), 1.5));
    const w = roundF32(rand([C], 0.5, 1.5));
    const b = roundF32(rand([C]));
    const rm = roundF32(rand([C], -0.5, 0.5));
    const rv = roundF32(rand([C], 0.5, 2));
    const eps = i % 2 === 0 ? 1e-5 : 1e-3;
    const tag = `${shape} eps=${eps}`;
    const ev = batchNorm2d(x, rm, rv, w, b, { training: false, eps });
    note('tfjs batchnorm', assertClose(tfBatchNorm(x, rm, rv, w, b, eps), ev.y, TF_TOL, `batchnorm eval ${tag}`));
    const tr = batchNorm2d(x, rm, rv, w, b, { training: true, eps });
    const m = tfMoments(x);
    note('tfjs batchnorm', assertClose(m.mean, tr.mean, TF_TOL, `batch mean ${tag}`));
    note('tfjs batchnorm', assertClose(m.variance, tr.var, TF_TOL, `batch var ${tag}`));
    note('tfjs batchnorm', assertClose(tfBatchNorm(x, m.mean, m.variance, w, b, eps), tr.y, TF_TOL, `batchnorm train ${tag}`));
  }
});

// =====================================================================================================================
// (3) Hand-computed cases
// =====================================================================================================================

test('hand: adaptive avg pool bin edges 5 -> 3 and values', () => {
  assert.equal(adaptiveBins(5, 3), [
    [0, 2],
    [1, 4],
    [3, 5],
  ]);
  assert.equal(adaptiveBins(7, 3), [
    [0, 3],
    [2, 5],
    [4, 7],
  ]);
  assert.equal(adaptiveBins(3, 5), [
    [0, 1],
    [0, 2],
    [1, 2],
    [1, 3],
    [2, 3],
  ]);
  const x = fromArray([1, 2, 3, 4, 5], [1, 1, 1, 5]);
  assert.equal(Array.from(adaptiveAvgPool2d(x, [1, 3]).data), [1.5, 3, 4.5]);
  // Overlapping bins: element 3 (index 3) sits in bins 1 and 2: gradient 1/3 + 1/2.
  const g = adaptiveAvgPool2dBackward(x, full([1, 1, 1, 3], 1), [1, 3]);
  assertClose(g, [1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2], 1e-15, 'adaptive backward 5->3');
});

test('hand: ceil_mode window counts and avg divisors', () => {
  // H=7, k=2, s=3: floor gives 2 windows; ceil gives 3, the last starting at 6 < 7 covering only x[6].
  assert.is(poolOutSize(7, 2, 3, 0, 1, false), 2);
  assert.is(poolOutSize(7, 2, 3, 0, 1, true), 3);
  // H=6, k=2, s=3: ceil would start a third window at 6 >= H + pad = 6, so PyTorch drops it.
  assert.is(poolOutSize(6, 2, 3, 0, 1, true), 2);
  // H=5, k=2, s=3, p=1: ceil formula gives 3, but (3-1)*3 = 6 >= 5+1: back to 2.
  assert.is(poolOutSize(5, 2, 3, 1, 1, true), 2);
  const x7 = fromArray([1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 7]);
  assert.equal(Array.from(maxPool2d(x7, { kernelSize: [1, 2], stride: [1, 3], ceilMode: true }).data), [2, 5, 7]);
  assert.equal(Array.from(avgPool2d(x7, { kernelSize: [1, 2], stride: [1, 3], ceilMode: true }).data), [1.5, 4.5, 7]);
  // H=6, k=3, s=3, p=1, ceil: windows [-1,2), [2,5), [5,8) clipped at the padded bound 7 -> [5,7): pool size 2.
  const x6 = fromArray([1, 2, 3, 4, 5, 6], [1, 1, 1, 6]);
  const base: AvgPool2dOpts = { kernelSize: [1, 3], stride: [1, 3], padding: [0, 1], ceilMode: true };
  assert.equal(Array.from(avgPool2d(x6, { ...base, countIncludePad: true }).data), [1, 4, 3]);
  assert.equal(Array.from(avgPool2d(x6, { ...base, countIncludePad: false }).data), [1.5, 4, 6]);
  assert.equal(Array.from(avgPool2d(x6, { ...base, divisorOverride: 2 }).data), [1.5, 6, 3]);
  // Backward of the count_include_pad=true case: x[0], x[1] get 1/3; x[2..4] 1/3; x[5] 1/2.
  assertClose(avgPool2dBackward(x6, full([1, 1, 1, 3], 1), { ...base, countIncludePad: true }), [1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 2], 1e-15, 'avg bwd');
  // PyTorch rejects padding above half the kernel.
  assert.throws(() => maxPool2d(x6, { kernelSize: [1, 2], padding: [0, 2] }), /half of kernel/);
});

test('hand: max pool ties go to the first maximum; amax and maximum split ties', () => {
  const x = fromArray([1, 3, 3, 2, 3, 0], [1, 1, 2, 3]);
  // One 2x3 window: maximum 3 first at flat index 1.
  assert.equal(Array.from(maxPool2dIndices(x, { kernelSize: [2, 3] })), [1]);
  assert.equal(Array.from(maxPool2dBackward(x, full([1, 1, 1, 1], 6), { kernelSize: [2, 3] }).data), [0, 6, 0, 0, 0, 0]);
  // amax: the gradient is shared evenly by the three 3s.
  assert.equal(Array.from(maxBackward(x, full([], 6)).data), [0, 2, 2, 0, 2, 0]);
  const { ga, gb } = maximumBackward(fromArray([1, 2, 3]), fromArray([1, 5, 0]), fromArray([4, 4, 4]));
  assert.equal(Array.from(ga.data), [2, 0, 4]);
  assert.equal(Array.from(gb.data), [2, 4, 0]);
  // NaN propagates through max pooling, as in PyTorch's kernel.
  const xn = fromArray([1, NaN, 5, 2], [1, 1, 2, 2]);
  assert.ok(Number.isNaN(maxPool2d(xn, { kernelSize: 2 }).data[0]));
  // Kernel 2, dilation 2, stride 1, pad 1 over 5 values: window o reads positions o-1 and o+1 (padding never wins).
  const xd = fromArray([5, 1, 4, 2, 3], [1, 1, 1, 5]);
  assert.equal(Array.from(maxPool2d(xd, { kernelSize: [1, 2], stride: 1, padding: [0, 1], dilation: [1, 2] }).data), [1, 5, 2, 4, 2]);
});

test('hand: cross-entropy with label smoothing', () => {
  // Row 0: softmax(log 1, log 2, log 5) = [1/8, 2/8, 5/8], target 2. Row 1: logits [0, 0, 0], target 0.
  const logits = fromArray([0, Math.log(2), Math.log(5), 0, 0, 0], [2, 3]);
  const eps = 0.1;
  const row0 = (1 - eps) * Math.log(8 / 5) + (eps / 3) * (Math.log(8) + Math.log(4) + Math.log(8 / 5));
  const row1 = (1 - eps) * Math.log(3) + (eps / 3) * 3 * Math.log(3);
  const loss = crossEntropy(logits, [2, 0], { labelSmoothing: eps });
  assert.ok(Math.abs(loss - (row0 + row1) / 2) < 1e-14, `loss ${loss}`);
  assert.ok(Math.abs(crossEntropy(logits, [2, 0]) - (Math.log(8 / 5) + Math.log(3)) / 2) < 1e-14);
  // Gradient: (softmax - ((1-eps) onehot + eps/C)) / N.
  const g = crossEntropyBackward(logits, [2, 0], { labelSmoothing: eps });
  const a = eps / 3;
  assertClose(g, [(1 / 8 - a) / 2, (2 / 8 - a) / 2, (5 / 8 - 0.9 - a) / 2, (1 / 3 - 0.9 - a) / 2, (1 / 3 - a) / 2, (1 / 3 - a) / 2], 1e-14, 'ce grad');
  // Class weights: the mean divides by the sum of the targets' weights (PyTorch's weighted mean).
  const wl = crossEntropy(logits, [2, 0], { weight: [2, 1, 3] });
  assert.ok(Math.abs(wl - (3 * Math.log(8 / 5) + 2 * Math.log(3)) / 5) < 1e-14);
  // Ignored rows: excluded from the mean.
  assert.ok(Math.abs(crossEntropy(logits, [2, -100]) - Math.log(8 / 5)) < 1e-14);
});

test('hand: softmax and cross-entropy stay exact at logit magnitude 1e4', () => {
  const big = fromArray([1e4, -1e4, 0, 1e4 + 1, 1e4, 1e4 - 1], [2, 3]);
  const p = softmax(big);
  assert.ok(p.data.every(Number.isFinite));
  assertClose(p.data.subarray(0, 3), [1, 0, 0], 1e-15, 'saturated softmax');
  // Row 1 equals softmax([1, 0, -1]) by shift invariance.
  const small = softmax(fromArray([1, 0, -1], [1, 3]));
  assertClose(p.data.subarray(3), small.data, 1e-12, 'shifted softmax');
  const loss = crossEntropy(big, [1, 0]);
  // Row 0 target 1: -log softmax = 2e4 (exactly, to rounding); row 1: -log softmax([1,0,-1])[0].
  const expect = (2e4 + Math.log(1 + Math.exp(-1) + Math.exp(-2))) / 2;
  assert.ok(Math.abs(loss - expect) < 1e-9, `loss ${loss} vs ${expect}`);
  const g = crossEntropyBackward(big, [1, 0], { labelSmoothing: 0.1 });
  assert.ok(g.data.every(Number.isFinite));
  const ls = logSoftmax(big);
  assert.ok(ls.data.every(Number.isFinite));
  assert.ok(Math.abs(ls.data[1] + 2e4) < 1e-9);
  // The same shift invariance for the gradient: logits + 1e4 give the gradient of the unshifted logits.
  const base = rand([3, 5], -2, 2);
  const shifted = fromArray(base.data.map((v) => v + 1e4), [3, 5]);
  assertClose(crossEntropyBackward(shifted, [0, 4, 2], { labelSmoothing: 0.1 }), crossEntropyBackward(base, [0, 4, 2], { labelSmoothing: 0.1 }), 1e-9, 'shifted ce grad');
});

test('hand: bilinear upsample 2x2 -> 4x4 (align_corners=false)', () => {
  // Source rows/cols for output 0..3: max((d+0.5)/2 - 0.5, 0) = 0, 0.25, 0.75, 1.25 (the last clamps to index 1).
  const x = fromArray([1, 3, 5, 7], [1, 1, 2, 2]);
  const y = upsampleBilinear2d(x, [4, 4]);
  assert.equal(Array.from(y.data), [1, 1.5, 2.5, 3, 2, 2.5, 3.5, 4, 4, 4.5, 5.5, 6, 5, 5.5, 6.5, 7]);
  // Each input receives weights (1 + 0.75 + 0.25) per axis = 2, so 4 in total.
  assert.equal(Array.from(upsampleBilinear2dBackward(x, full([1, 1, 4, 4], 1), [4, 4]).data), [4, 4, 4, 4]);
  // align_corners=true, 2 -> 3: the middle is the average.
  const y3 = upsampleBilinear2d(fromArray([1, 3], [1, 1, 1, 2]), [1, 3], { alignCorners: true });
  assert.equal(Array.from(y3.data), [1, 2, 3]);
});

test('hand: conv2d, batch norm running statistics, dropout scaling, linear', () => {
  // 3x3 ones, 3x3 ones kernel, padding 1: corners see 4 inputs, edges 6, centre 9.
  const y = conv2d(full([1, 1, 3, 3], 1), full([1, 1, 3, 3], 1), fromArray([0.5]), { padding: 1 });
  assert.equal(Array.from(y.data), [4.5, 6.5, 4.5, 6.5, 9.5, 6.5, 4.5, 6.5, 4.5]);
  // Asymmetric padding [top 0, bottom 2, left 1, right 0] with a 1x1 kernel just shifts/extends.
  const ya = conv2d(fromArray([1, 2, 3, 4], [1, 1, 2, 2]), full([1, 1, 1, 1], 1), null, { padding: [0, 2, 1, 0] });
  assert.equal(ya.shape, [1, 1, 4, 3]);
  assert.equal(Array.from(ya.data), [0, 1, 2, 0, 3, 4, 0, 0, 0, 0, 0, 0]);
  // Batch norm: channel values 1..4: mean 2.5, biased var 1.25, unbiased 5/3.
  const x = fromArray([1, 2, 3, 4], [2, 1, 1, 2]);
  const bn = batchNorm2d(x, fromArray([0]), fromArray([1]), null, null, { training: true, momentum: 0.1, eps: 0 });
  assertClose(bn.mean, [2.5], 1e-15, 'bn mean');
  assertClose(bn.var, [1.25], 1e-15, 'bn var');
  assertClose(bn.runningMean!, [0.25], 1e-15, 'running mean');
  assertClose(bn.runningVar!, [0.9 + 0.1 * (5 / 3)], 1e-15, 'running var');
  assertClose(bn.y, [-1.5, -0.5, 0.5, 1.5].map((v) => v / Math.sqrt(1.25)), 1e-15, 'bn y');
  // momentum null: cumulative average with numBatchesTracked = 3 -> factor 1/4.
  const cum = batchNorm2d(x, fromArray([1]), fromArray([1]), null, null, { training: true, momentum: null, numBatchesTracked: 3 });
  assertClose(cum.runningMean!, [0.75 * 1 + 0.25 * 2.5], 1e-15, 'cumulative running mean');
  assert.is(cum.numBatchesTracked, 4);
  assert.throws(() => batchNorm2d(fromArray([1, 2], [1, 2, 1, 1]), null, null, null, null, { training: true }), /more than 1 value/);
  // Dropout p = 0.25 scales survivors by 4/3.
  const d = dropout(fromArray([3, 3, 3]), fromArray([1, 0, 1]), 0.25);
  assert.equal(Array.from(d.data), [4, 0, 4]);
  assert.equal(Array.from(dropout(fromArray([3]), fromArray([1]), 1).data), [0]);
  // linear: [1, 2] @ [[1, 0], [1, 1], [0, 2]]^T + [0, 1, 2]
  const l = linear(fromArray([1, 2], [1, 2]), fromArray([1, 0, 1, 1, 0, 2], [3, 2]), fromArray([0, 1, 2]));
  assert.equal(Array.from(l.data), [1, 4, 6]);
  // matmul with transposes against a hand product.
  const a = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.equal(Array.from(matmul(a, a, { transposeB: true }).data), [14, 32, 32, 77]);
  assert.equal(matmul(a, a, { transposeA: true }).shape, [3, 3]);
  // sumToShape reduces broadcast gradients.
  assert.equal(Array.from(sumToShape(full([2, 3], 1), [1, 3]).data), [2, 2, 2]);
});

test('assertClose reports the worst index, both values and the shape', () => {
  const expected = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
  const actual = Float32Array.from([1, 2, 3, 4, 5.5, 6]);
  try {
    assertClose(actual, expected, 1e-3, 'demo');
    assert.unreachable('should have thrown');
  } catch (e) {
    const msg = (e as Error).message;
    assert.match(msg, /demo/);
    assert.match(msg, /flat index 4/);
    assert.match(msg, /\[1,1\]/);
    assert.match(msg, /actual 5\.5, expected 5/);
    assert.match(msg, /shape \[2,3\]/);
  }
  assert.ok(Math.abs(maxRelErr(actual, expected) - 0.5 / 6) < 1e-12);
  assert.throws(() => assertClose([NaN, 1], [0, 1], 1, 'nan'), /nan/);
  assert.is(assertClose([Infinity, NaN], [Infinity, NaN], 0, 'nonfinite'), 0);
  assert.throws(() => assertClose([1, 2], [1, 2, 3], 1, 'length'), /2 values, expected 3/);
  assert.equal(zeros([2, 0]).data.length, 0);
});

test.run();
