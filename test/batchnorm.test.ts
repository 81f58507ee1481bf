import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, ShapeError, Tensor, batchNorm2d, scopeAsync, setBatchNormVariant, type BatchNormOptions } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// batchNorm2d (and its fused ReLU variant) against the float64 reference, TF.js's CPU backend and
// finite differences.
//
// Tolerances, relative to the largest reference value:
//   forward and running stats 1e-5: per-channel sums of up to ~850 f32 terms (tree-summed) then a few
//     f32 operations; measured <= 1e-6, also with |mean| = 100 >> std;
//   gradients 2e-5: grad_weight and grad_bias are such sums of terms of both signs, so relative to their
//     largest value they lose a little more; measured <= 5e-6;
//   TF.js 1e-5: both sides are f32 on identical inputs; measured <= 2e-7;
//   finite differences 5e-4: the GPU forward is f32, so a central difference with step 1e-2 carries
//     ~1e-5 rounding and up to ~1e-4 truncation (eps^2 times the third derivative) error; measured <= 6e-5.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toArr, toGpu, asF32 } from './gpu.ts';
import * as R from './reference/batchnorm.ts';
import { type Arr, assertClose, dot, randArr, rng } from './reference/tensor.ts';
import { initTf, tfBatchNorm, tfMoments } from './external/tfjs.ts';

const FWD_TOL = 1e-5;
const GRAD_TOL = 2e-5;
const TF_TOL = 1e-5;
const FD_TOL = 5e-4;

interface Case {
  shape: number[];
  training: boolean;
  relu: boolean;
  momentum: number;
  eps: number;
  /** Added to x: a mean far from 0 checks the two-pass variance. */
  offset: number;
}

/**
 * Seeded configurations: batch 1, odd channel counts, spatial 1/3/4/7/13 (H * W % 4 == 0 takes the vec4
 * path), both modes, both epsilons.
 */
function cases(count: number, seed: number): Case[] {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[r.int(xs.length)];
  const out: Case[] = [];
  while (out.length < count) {
    const shape = [pick([1, 2, 3, 5]), pick([1, 3, 7, 16]), pick([1, 3, 4, 7, 13]), pick([1, 3, 4, 7, 13])];
    const training = out.length % 2 === 0;
    if (training && shape[0] * shape[2] * shape[3] === 1) continue;
    out.push({
      shape,
      training,
      relu: out.length % 4 >= 2,
      momentum: pick([0.1, 0.01, 0.5]),
      eps: pick([1e-5, 1e-3]),
      offset: out.length % 5 === 4 ? 100 : 0,
    });
  }
  return out;
}

/** The reference forward and backward, ReLU applied on top when asked (the mask from the reference y). */
function reference(x: Arr, w: Arr, b: Arr, rm: Arr, rv: Arr, gy: Arr, c: Case) {
  const opts = { training: c.training, momentum: c.momentum, eps: c.eps };
  const fwd = R.batchNorm2d(x, rm, rv, w, b, opts);
  const mask = (i: number) => !c.relu || fwd.y.data[i] > 0;
  const y = fwd.y.data.map((v, i) => (mask(i) ? v : 0));
  const masked = { data: gy.data.map((g, i) => (mask(i) ? g : 0)), shape: gy.shape };
  return { y, runningMean: fwd.runningMean!, runningVar: fwd.runningVar!, ...R.batchNorm2dBackward(x, rm, rv, w, masked, opts) };
}

function inputs(shape: number[], seed: number, offset = 0) {
  const c = shape[1];
  const x = asF32(randArr(shape, seed, offset - 2, offset + 3));
  return {
    x,
    w: asF32(randArr([c], seed + 1, 0.5, 1.5)),
    b: asF32(randArr([c], seed + 2)),
    rm: asF32(randArr([c], seed + 3, offset - 1, offset + 1)),
    rv: asF32(randArr([c], seed + 4, 0.5, 2)),
    gy: asF32(randArr(shape, seed + 5)),
  };
}

/** One configuration on the GPU, forward and backward, against the reference. */
async function checkCase(k: number, c: Case): Promise<void> {
  const tag = `case ${k} ${JSON.stringify(c)}`;
  const a = inputs(c.shape, 100 + 10 * k, c.offset);
  const want = reference(a.x, a.w, a.b, a.rm, a.rv, a.gy, c);
  await scopeAsync(async () => {
    const [x, w, b] = [toGpu(a.x, true), toGpu(a.w, true), toGpu(a.b, true)];
    const [rm, rv] = [toGpu(a.rm), toGpu(a.rv)];
    const y = batchNorm2d(x, w, b, rm, rv, c);
    y.backward(toGpu(a.gy));
    assertClose(await y.toArray(), want.y, FWD_TOL, `y, ${tag}`);
    assertClose(await rm.toArray(), want.runningMean, FWD_TOL, `runningMean, ${tag}`);
    assertClose(await rv.toArray(), want.runningVar, FWD_TOL, `runningVar, ${tag}`);
    assertClose(await x.grad!.toArray(), want.gx, GRAD_TOL, `grad x, ${tag}`);
    assertClose(await w.grad!.toArray(), want.gw, GRAD_TOL, `grad weight, ${tag}`);
    assertClose(await b.grad!.toArray(), want.gb, GRAD_TOL, `grad bias, ${tag}`);
  });
}

for (const variant of ['subgroup', 'workgroup'] as const) {
  test(`batchNorm2d (${variant} variant): forward, running stats and gradients match the reference on 24 configurations`, async () => {
    setBatchNormVariant(variant);
    try {
      for (const [k, c] of cases(24, 11).entries()) await checkCase(k, c);
    } finally {
      setBatchNormVariant(null);
    }
  });
}

test('batchNorm2d: running stats keep updating across training steps (momentum, unbiased variance)', async () => {
  const a = inputs([2, 3, 5, 5], 7);
  let rmRef = a.rm;
  let rvRef = a.rv;
  await scopeAsync(async () => {
    const [rm, rv] = [toGpu(a.rm), toGpu(a.rv)];
    for (let step = 0; step < 3; step++) {
      const x = asF32(randArr(a.x.shape, 50 + step));
      batchNorm2d(toGpu(x), toGpu(a.w), toGpu(a.b), rm, rv, { training: true, momentum: 0.3 });
      const ref = R.batchNorm2d(x, rmRef, rvRef, a.w, a.b, { training: true, momentum: 0.3 });
      [rmRef, rvRef] = [ref.runningMean!, ref.runningVar!];
    }
    assertClose(await rm.toArray(), rmRef, FWD_TOL, 'runningMean after 3 steps');
    assertClose(await rv.toArray(), rvRef, FWD_TOL, 'runningVar after 3 steps');
  });
});

test('batchNorm2d: agrees with TF.js CPU batchNorm (eval with running stats, training with tf.moments)', async () => {
  await initTf();
  for (const [k, shape] of [[1, 3, 7, 7], [4, 5, 3, 3], [2, 16, 13, 13], [3, 7, 1, 1]].entries()) {
    const a = inputs(shape, 300 + k);
    for (const training of [false, true]) {
      const stats = training ? tfMoments(a.x) : { mean: a.rm, variance: a.rv };
      const want = tfBatchNorm(a.x, stats.mean, stats.variance, a.w, a.b, 1e-3);
      await scopeAsync(async () => {
        const y = batchNorm2d(toGpu(a.x), toGpu(a.w), toGpu(a.b), toGpu(a.rm), toGpu(a.rv), { training, eps: 1e-3 });
        assertClose(await y.toArray(), want, TF_TOL, `TF.js batchNorm [${shape}] training=${training}`);
      });
    }
  }
});

/**
 * Central differences of loss = sum(f(xs) * r) with respect to every input, f run on the GPU in f32 and the
 * sum taken in float64. The step divides by the perturbation the f32 input actually received.
 */
async function numericGrads(f: (xs: Tensor[]) => Tensor, xs: Arr[], r: Arr, eps: number): Promise<Float64Array[]> {
  const loss = (vs: Arr[]) => scopeAsync(async () => dot(await f(vs.map((v) => toGpu(v))).toArray(), r.data));
  const grads: Float64Array[] = [];
  for (const [k, x] of xs.entries()) {
    const g = new Float64Array(x.data.length);
    for (let i = 0; i < g.length; i++) {
      const shifted = (d: number) => {
        const v = Float64Array.from(x.data);
        v[i] = Math.fround(v[i] + d);
        return { value: v[i], arrays: xs.map((y, j) => (j === k ? { data: v, shape: x.shape } : y)) };
      };
      const [up, down] = [shifted(eps), shifted(-eps)];
      g[i] = ((await loss(up.arrays)) - (await loss(down.arrays))) / (up.value - down.value);
    }
    grads.push(g);
  }
  return grads;
}

for (const training of [true, false]) {
  for (const relu of [false, true]) {
    test(`batchNorm2d: gradients match finite differences of the GPU forward (training=${training}, relu=${relu})`, async () => {
      const a = inputs([2, 2, 2, 3], 500);
      const r = randArr(a.x.shape, 501);
      const opts: BatchNormOptions = { training, relu };
      // Fresh running stats per call, so training-mode updates do not leak between evaluations.
      const f = ([x, w, b]: Tensor[]) => batchNorm2d(x, w, b, toGpu(a.rm), toGpu(a.rv), opts);
      const numeric = await numericGrads(f, [a.x, a.w, a.b], r, 1e-2);
      await scopeAsync(async () => {
        const xs = [a.x, a.w, a.b].map((v) => toGpu(v, true));
        f(xs).backward(toGpu(r));
        for (const [k, name] of ['x', 'weight', 'bias'].entries()) {
          assertClose(await xs[k].grad!.toArray(), numeric[k], FD_TOL, `grad ${name} vs finite differences`);
        }
      });
    });
  }
}

test('batchNorm2d: training with one value per channel throws, as PyTorch', () => {
  const a = inputs([1, 3, 1, 1], 600);
  assert.throws(
    () => batchNorm2d(toGpu(a.x), toGpu(a.w), toGpu(a.b), toGpu(a.rm), toGpu(a.rv), { training: true }),
    (e: unknown) => e instanceof ShapeError && /more than 1 value per channel/.test((e as Error).message),
  );
});

test('batchNorm2d: eval mode leaves the running stats untouched', async () => {
  const a = inputs([2, 3, 4, 4], 700);
  await scopeAsync(async () => {
    const [rm, rv] = [toGpu(a.rm), toGpu(a.rv)];
    batchNorm2d(toGpu(a.x), toGpu(a.w), toGpu(a.b), rm, rv, { training: false });
    assert.equal((await toArr(rm)).data, a.rm.data);
    assert.equal((await toArr(rv)).data, a.rv.data);
  });
});

test.run();
