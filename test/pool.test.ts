import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, ShapeError, Tensor, adaptiveAvgPool2d, avgPool2d, maxPool2d, scopeAsync, type AvgPoolOptions } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// maxPool2d, avgPool2d and adaptiveAvgPool2d, forward and backward, against the float64 reference,
// TF.js's CPU backend and finite differences.
//
// Tolerances, relative to the largest reference value:
//   max pooling 0 forward (it copies values) and 1e-6 backward (sums of at most ceil(k/s)^2 gradients);
//   average pooling 1e-6: sums of at most 49 f32 terms and a division; measured <= 2e-7;
//   TF.js 1e-6: the same f32 operations in another order;
//   finite differences 1e-4: the pools are linear in x (max pooling piecewise, and the test inputs are
//     spaced far wider than the step), so only the f32 rounding of the forward remains: ~1e-7 relative
//     to |loss| ~ 1, divided by the step 1e-2 (measured <= 1e-5).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/pool.ts';
import { type Arr, assertClose, dot, randArr, rng } from './reference/tensor.ts';
import { initTf, tfAvgPool2d, tfAvgPool2dBackward, tfMaxPool2d, tfMaxPool2dBackward } from './external/tfjs.ts';

const MAX_BWD_TOL = 1e-6;
const AVG_TOL = 1e-6;
const TF_TOL = 1e-6;
const FD_TOL = 1e-4;

interface Config {
  shape: number[];
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
  ceilMode: boolean;
}

/**
 * Seeded configurations (spatial 1/3/7/13, batch 1, odd channels, kernels 1..7, strides 1..3, padding up to
 * half the kernel, both ceil modes), after hand-picked ceil_mode edge cases: a last window that reaches past
 * the padding, and ones the output-size correction removes (H = 1, k = 2, s = 2, p = 1 gives 1 output, not 2).
 */
function configs(count: number, seed: number): Config[] {
  const out: Config[] = [
    { shape: [1, 1, 1, 1], kernel: [2, 2], stride: [2, 2], padding: [1, 1], ceilMode: true },
    { shape: [1, 3, 5, 5], kernel: [2, 2], stride: [2, 2], padding: [1, 1], ceilMode: true },
    { shape: [2, 1, 3, 4], kernel: [3, 2], stride: [3, 3], padding: [1, 1], ceilMode: true },
    { shape: [1, 2, 7, 7], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true },
    { shape: [1, 1, 6, 13], kernel: [4, 5], stride: [3, 2], padding: [2, 2], ceilMode: true },
  ];
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[r.int(xs.length)];
  while (out.length < count) {
    const kernel: [number, number] = [pick([1, 2, 3, 5, 7]), pick([1, 2, 3, 5])];
    const stride: [number, number] = [pick([1, 2, 3]), pick([1, 2, 3])];
    const padding: [number, number] = [r.int(Math.floor(kernel[0] / 2) + 1), r.int(Math.floor(kernel[1] / 2) + 1)];
    const shape = [pick([1, 2, 3]), pick([1, 3, 5]), pick([1, 3, 7, 13]), pick([1, 3, 7, 13])];
    if (shape[2] + 2 * padding[0] < kernel[0] || shape[3] + 2 * padding[1] < kernel[1]) continue;
    out.push({ shape, kernel, stride, padding, ceilMode: r.next() < 0.5 });
  }
  return out;
}

const refOpts = (c: Config) => ({ kernelSize: c.kernel, stride: c.stride, padding: c.padding, ceilMode: c.ceilMode });

/** GPU forward and backward (upstream gradient gy) of op on x. */
async function run(op: (x: Tensor) => Tensor, x: Arr, gy: (shape: number[]) => Arr) {
  return scopeAsync(async () => {
    const xt = toGpu(x, true);
    const y = op(xt);
    const g = gy([...y.shape]);
    y.backward(toGpu(g));
    return { y: await y.toArray(), shape: [...y.shape], gx: await xt.grad!.toArray(), g };
  });
}

const gradient = (seed: number) => (shape: number[]) => asF32(randArr(shape, seed));

test('maxPool2d: forward and backward match the reference on 24 configurations (random and tied values)', async () => {
  for (const [k, c] of configs(24, 21).entries()) {
    // Every third case draws from {0, 1, 2}: many ties, where the first maximum must take the gradient.
    const x = k % 3 === 2 ? { data: randArr(c.shape, k).data.map((v) => Math.floor((v + 1) * 1.5)), shape: c.shape } : asF32(randArr(c.shape, k));
    const got = await run((t) => maxPool2d(t, c), x, gradient(1000 + k));
    const tag = `case ${k} ${JSON.stringify(c)}`;
    const y = R.maxPool2d(x, refOpts(c));
    assert.equal(got.shape, y.shape, `shape, ${tag}`);
    assertClose(got.y, y, 0, `forward, ${tag}`);
    assertClose(got.gx, R.maxPool2dBackward(x, got.g, refOpts(c)), MAX_BWD_TOL, `backward, ${tag}`);
  }
});

test('avgPool2d: forward and backward match the reference on 24 configurations, both countIncludePad', async () => {
  for (const [k, c] of configs(24, 22).entries()) {
    const o: AvgPoolOptions = { ...c, countIncludePad: k % 2 === 0 };
    const x = asF32(randArr(c.shape, 200 + k));
    const got = await run((t) => avgPool2d(t, o), x, gradient(2000 + k));
    const tag = `case ${k} ${JSON.stringify(o)}`;
    const ro = { ...refOpts(c), countIncludePad: o.countIncludePad };
    const y = R.avgPool2d(x, ro);
    assert.equal(got.shape, y.shape, `shape, ${tag}`);
    assertClose(got.y, y, AVG_TOL, `forward, ${tag}`);
    assertClose(got.gx, R.avgPool2dBackward(x, got.g, ro), AVG_TOL, `backward, ${tag}`);
  }
});

test('adaptiveAvgPool2d: forward and backward match the reference on 24 sizes (global, uneven bins, upsizing)', async () => {
  const r = rng(23);
  const sizes: [number[], [number, number]][] = [
    [[2, 3, 7, 7], [1, 1]],
    [[1, 5, 13, 13], [1, 1]],
    [[1, 2, 7, 7], [3, 3]],
    [[2, 1, 13, 7], [5, 3]],
    [[1, 1, 3, 3], [7, 5]],
    [[1, 3, 1, 1], [2, 3]],
  ];
  while (sizes.length < 24) {
    const pick = () => [1, 3, 7, 13][r.int(4)];
    sizes.push([[1 + r.int(3), 1 + 2 * r.int(3), pick(), pick()], [1 + r.int(8), 1 + r.int(8)]]);
  }
  for (const [k, [shape, size]] of sizes.entries()) {
    const x = asF32(randArr(shape, 300 + k));
    const got = await run((t) => adaptiveAvgPool2d(t, size), x, gradient(3000 + k));
    const tag = `case ${k} [${shape}] -> ${size}`;
    assertClose(got.y, R.adaptiveAvgPool2d(x, size), AVG_TOL, `forward, ${tag}`);
    assertClose(got.gx, R.adaptiveAvgPool2dBackward(x, got.g, size), AVG_TOL, `backward, ${tag}`);
  }
});

test('max and average pooling agree with TF.js CPU (forward, MaxPoolGrad, AvgPoolGrad)', async () => {
  await initTf();
  for (const [k, c] of configs(12, 24).entries()) {
    const x = asF32(randArr(c.shape, 400 + k));
    const tag = `case ${k} ${JSON.stringify(c)}`;
    const max = await run((t) => maxPool2d(t, c), x, gradient(4000 + k));
    assertClose(max.y, tfMaxPool2d(x, refOpts(c)), 0, `TF.js maxPool, ${tag}`);
    assertClose(max.gx, tfMaxPool2dBackward(x, max.g, refOpts(c)), TF_TOL, `TF.js MaxPoolGrad, ${tag}`);
    for (const countIncludePad of [true, false]) {
      const avg = await run((t) => avgPool2d(t, { ...c, countIncludePad }), x, gradient(5000 + k));
      const o = { ...refOpts(c), countIncludePad };
      assertClose(avg.y, tfAvgPool2d(x, o), TF_TOL, `TF.js avgPool countIncludePad=${countIncludePad}, ${tag}`);
      // TF.js's AvgPoolGrad divides every window by kH * kW: comparable where that is PyTorch's divisor too.
      const overhangs = c.ceilMode && c.shape.some((d, i) => i >= 2 && (max.shape[i] - 1) * c.stride[i - 2] + c.kernel[i - 2] > d + 2 * c.padding[i - 2]);
      if (countIncludePad && !overhangs) {
        assertClose(avg.gx, tfAvgPool2dBackward(x, avg.g, o), TF_TOL, `TF.js AvgPoolGrad, ${tag}`);
      }
    }
  }
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

const fdCases: [string, (x: Tensor) => Tensor, number[]][] = [
  ['maxPool2d 3x3 s2 p1 ceil', (x) => maxPool2d(x, { kernel: 3, stride: 2, padding: 1, ceilMode: true }), [1, 2, 6, 6]],
  ['avgPool2d 3x2 s2 p1 ceil, countIncludePad', (x) => avgPool2d(x, { kernel: [3, 2], stride: 2, padding: 1, ceilMode: true }), [1, 2, 5, 4]],
  ['avgPool2d 3x3 s2 p1, excluding pad', (x) => avgPool2d(x, { kernel: 3, stride: 2, padding: 1, countIncludePad: false }), [1, 2, 5, 5]],
  ['adaptiveAvgPool2d 5x5 -> 3x2', (x) => adaptiveAvgPool2d(x, [3, 2]), [1, 2, 5, 5]],
];

for (const [name, f, shape] of fdCases) {
  test(`${name}: gradient matches finite differences of the GPU forward`, async () => {
    // Distinct values 0.05 apart, shuffled: no max changes hands within a step of 1e-2.
    const n = shape.reduce((a, b) => a * b, 1);
    const order = Array.from(randArr([n], 600).data.entries()).sort((a, b) => a[1] - b[1]);
    const x = { data: new Float64Array(n), shape };
    order.forEach(([i], rank) => (x.data[i] = Math.fround(rank * 0.05 - 1)));
    const y = await scopeAsync(async () => [...f(toGpu(x)).shape]);
    const r = randArr(y, 601);
    const numeric = await numericGrad(f, x, r, 1e-2);
    await scopeAsync(async () => {
      const xt = toGpu(x, true);
      f(xt).backward(toGpu(r));
      assertClose(await xt.grad!.toArray(), numeric, FD_TOL, `${name} vs finite differences`);
    });
  });
}

test('maxPool2d: a NaN in a window is the maximum (PyTorch propagates NaN)', async () => {
  const x = { data: Float64Array.from([1, NaN, 3, 4, 5, 6, 7, 8, 9]), shape: [1, 1, 3, 3] };
  const y = await scopeAsync(() => maxPool2d(toGpu(x), { kernel: 2, stride: 1 }).toArray());
  assert.ok(Number.isNaN(y[0]) && Number.isNaN(y[1]), `windows holding the NaN give NaN: ${y}`);
  assert.equal([y[2], y[3]], [8, 9]);
});

test('pooling rejects padding beyond half the kernel and inputs smaller than the window', () => {
  const x = toGpu({ data: new Float64Array(16), shape: [1, 1, 4, 4] });
  const isShapeError = (e: unknown) => e instanceof ShapeError;
  assert.throws(() => maxPool2d(x, { kernel: 3, padding: 2 }), isShapeError);
  assert.throws(() => avgPool2d(x, { kernel: 6 }), isShapeError);
  x.dispose();
});

test.run();
