import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, Tensor, crossEntropy, logSoftmax, scopeAsync, softmax } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// softmax, logSoftmax and the fused crossEntropy, forward and backward, against the float64 reference and
// finite differences, including logits of magnitude 1e4.
//
// Tolerances, relative to the largest reference value:
//   1e-5 for every forward and gradient: a few f32 operations and exp/log (WGSL allows a few ulps) per
//     element, and row sums of up to 1000 terms; measured <= 3e-6, the worst where a gradient is a
//     difference of near-equal terms (softmax's g - sum(g * y), or p - 1/C under full label smoothing),
//     small next to the terms. At |logits| ~ 1e4 the kernels subtract the row max before any exp, so the
//     same tolerance holds (measured <= 3e-7);
//   finite differences 5e-4: the GPU forward is f32; a central difference with step 1e-2 has ~1e-5
//     rounding and ~1e-4 truncation error (eps^2 times the third derivative); measured <= 4e-5.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/softmax.ts';
import { type Arr, assertClose, dot, randArr, rng } from './reference/tensor.ts';

const TOL = 1e-5;
const FD_TOL = 5e-4;

/** GPU forward and backward of op on x with upstream gradient gy; values read back. */
async function run(op: (x: Tensor) => Tensor, x: Arr, gy: Arr) {
  return scopeAsync(async () => {
    const xt = toGpu(x, true);
    const y = op(xt);
    y.backward(toGpu(gy));
    return { y: await y.toArray(), gx: await xt.grad!.toArray() };
  });
}

/** Seeded shapes of rank 1..4 (dims 1, 3, 7, 13, occasionally 1000) with an axis, negative half the time. */
function softmaxCases(count: number, seed: number): [number[], number][] {
  const r = rng(seed);
  const out: [number[], number][] = [[[1], 0], [[4, 1000], -1], [[3, 1000, 2], 1]];
  while (out.length < count) {
    const shape = Array.from({ length: 1 + r.int(4) }, () => [1, 3, 7, 13][r.int(4)]);
    const axis = r.int(shape.length);
    out.push([shape, r.next() < 0.5 ? axis - shape.length : axis]);
  }
  return out;
}

for (const [name, op, fwd, bwd] of [
  ['softmax', softmax, R.softmax, R.softmaxBackward],
  ['logSoftmax', logSoftmax, R.logSoftmax, R.logSoftmaxBackward],
] as const) {
  test(`${name}: forward and backward match the reference on 24 shapes and axes`, async () => {
    for (const [k, [shape, axis]] of softmaxCases(24, 31).entries()) {
      const x = asF32(randArr(shape, k, -4, 4));
      const gy = asF32(randArr(shape, 100 + k));
      const got = await run((t) => op(t, axis), x, gy);
      const tag = `case ${k} [${shape}] axis ${axis}`;
      assertClose(got.y, fwd(x, axis), TOL, `forward, ${tag}`);
      assertClose(got.gx, bwd(x, gy, axis), TOL, `backward, ${tag}`);
    }
  });

  test(`${name}: logits of magnitude 1e4 stay finite and exact`, async () => {
    const x = asF32(randArr([5, 300], 40, -1e4, 1e4));
    const gy = asF32(randArr(x.shape, 41));
    const got = await run((t) => op(t), x, gy);
    assert.ok(got.y.every(Number.isFinite) && got.gx.every(Number.isFinite), 'no inf or NaN');
    assertClose(got.y, fwd(x), TOL, `${name} forward at 1e4`);
    assertClose(got.gx, bwd(x, gy), TOL, `${name} backward at 1e4`);
  });
}

interface CeCase {
  n: number;
  c: number;
  labelSmoothing: number;
  /** Rows labelled ignoreIndex (-100). */
  ignored: number[];
  gLoss: number;
}

function ceCases(count: number, seed: number): CeCase[] {
  const r = rng(seed);
  const out: CeCase[] = [{ n: 1, c: 1, labelSmoothing: 0, ignored: [], gLoss: 1 }];
  while (out.length < count) {
    const n = [1, 2, 3, 8, 33, 300][r.int(6)];
    const ignored = out.length % 3 === 2 ? [r.int(n)].filter(() => n > 1) : [];
    out.push({ n, c: [2, 3, 7, 10, 1000][r.int(5)], labelSmoothing: [0, 0.1, 0.37, 1][r.int(4)], ignored, gLoss: r.uniform(0.5, 2) });
  }
  return out;
}

/** Runs crossEntropy on the GPU: loss and gradient (scaled by gLoss) read back. */
async function runCe(logits: Arr, labels: number[], c: Omit<CeCase, 'n' | 'c' | 'ignored'>) {
  return scopeAsync(async () => {
    const x = toGpu(logits, true);
    const loss = crossEntropy(x, Tensor.fromArray(labels, [labels.length], 'i32'), { labelSmoothing: c.labelSmoothing });
    loss.backward(Tensor.fromArray([c.gLoss], []));
    return { loss: await loss.item(), gx: await x.grad!.toArray() };
  });
}

function labelsFor(n: number, c: number, ignored: number[], seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => (ignored.includes(i) ? -100 : r.int(c)));
}

test('crossEntropy: loss and gradient match the reference on 24 configurations (smoothing, ignored rows)', async () => {
  for (const [k, c] of ceCases(24, 32).entries()) {
    const logits = asF32(randArr([c.n, c.c], 200 + k, -5, 5));
    const labels = labelsFor(c.n, c.c, c.ignored, 300 + k);
    const got = await runCe(logits, labels, c);
    const tag = `case ${k} ${JSON.stringify(c)}`;
    const opts = { labelSmoothing: c.labelSmoothing };
    assertClose([got.loss], [R.crossEntropy(logits, labels, opts)], TOL, `loss, ${tag}`);
    assertClose(got.gx, R.crossEntropyBackward(logits, labels, opts, c.gLoss), TOL, `gradient, ${tag}`);
  }
});

test('crossEntropy: stable for logits of magnitude 1e4', async () => {
  for (const labelSmoothing of [0, 0.1]) {
    const logits = asF32(randArr([8, 1000], 50, -1e4, 1e4));
    const labels = labelsFor(8, 1000, [], 51);
    const got = await runCe(logits, labels, { labelSmoothing, gLoss: 1 });
    assert.ok(Number.isFinite(got.loss) && got.gx.every(Number.isFinite), 'no inf or NaN');
    assertClose([got.loss], [R.crossEntropy(logits, labels, { labelSmoothing })], TOL, `loss at 1e4, smoothing ${labelSmoothing}`);
    assertClose(got.gx, R.crossEntropyBackward(logits, labels, { labelSmoothing }), TOL, `gradient at 1e4, smoothing ${labelSmoothing}`);
  }
});

test('crossEntropy: every row ignored gives NaN (0 / 0), as PyTorch', async () => {
  const got = await runCe(asF32(randArr([2, 3], 60)), [-100, -100], { labelSmoothing: 0, gLoss: 1 });
  assert.ok(Number.isNaN(got.loss));
});

/** Central differences of sum(f(x) * r), f on the GPU (f32), the sum in float64, divided by the actual step. */
async function numericGrad(f: (x: Tensor) => Tensor, x: Arr, r: Arr, eps: number): Promise<Float64Array> {
  const loss = (v: Float64Array) => scopeAsync(async () => dot(await f(toGpu({ data: v, shape: x.shape })).toArray(), r.data));
  const g = new Float64Array(x.data.length);
  for (let i = 0; i < g.length; i++) {
    const [up, down] = [Float64Array.from(x.data), Float64Array.from(x.data)];
    up[i] = Math.fround(up[i] + eps);
    down[i] = Math.fround(down[i] - eps);
    g[i] = ((await loss(up)) - (await loss(down))) / (up[i] - down[i]);
  }
  return g;
}

const labels = [2, -100, 0];
const fdCases: [string, (x: Tensor) => Tensor, number[]][] = [
  ['softmax axis 1', (x) => softmax(x, 1), [2, 4, 3]],
  ['logSoftmax axis -1', (x) => logSoftmax(x), [3, 5]],
  ['crossEntropy, smoothing 0.1, an ignored row', (x) => crossEntropy(x, Tensor.fromArray(labels, [3], 'i32'), { labelSmoothing: 0.1 }), [3, 4]],
];

for (const [name, f, shape] of fdCases) {
  test(`${name}: gradient matches finite differences of the GPU forward`, async () => {
    const x = asF32(randArr(shape, 70, -2, 2));
    const outShape = await scopeAsync(async () => [...f(toGpu(x)).shape]);
    const r = randArr(outShape, 71);
    const numeric = await numericGrad(f, x, r, 1e-2);
    await scopeAsync(async () => {
      const xt = toGpu(x, true);
      f(xt).backward(toGpu(r));
      assertClose(await xt.grad!.toArray(), numeric, FD_TOL, `${name} vs finite differences`);
    });
  });
}

test.run();
