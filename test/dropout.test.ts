import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, ShapeError, Tensor, dropout, scopeAsync } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// dropout: the GPU mask is exactly the documented Philox-2x32-10 of (seed, index); the values and gradients
// match the float64 reference given that mask; mask statistics, determinism, eval identity, finite differences.
//
// Tolerances: y = x * (1 / (1 - p)) is one f32 multiply by a rounded scale, so 1e-6 relative; finite
// differences 1e-4 (dropout is linear in x, so only the forward's f32 rounding over the step 1e-2 remains).
// Mask statistics: the dropped fraction of n = 2^20 elements must lie within 5 standard deviations
// (sqrt(p (1 - p) / n) ~ 5e-4) of p; a generator that ignored p or repeated would miss by far more.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/dropout.ts';
import { assertClose, dot, randArr, rng } from './reference/tensor.ts';

const TOL = 1e-6;
const FD_TOL = 1e-4;

test('the JS model of the mask generator reproduces Random123 known-answer vectors for Philox-2x32-10', () => {
  const hex = (v: [number, number]) => v.map((w) => w.toString(16).padStart(8, '0'));
  assert.equal(hex(R.philox2x32([0, 0], 0)), ['ff1dae59', '6cd10df2']);
  assert.equal(hex(R.philox2x32([0xffffffff, 0xffffffff], 0xffffffff)), ['2c3f628b', 'ab4fd7ad']);
  assert.equal(hex(R.philox2x32([0x243f6a88, 0x85a308d3], 0x13198a2e)), ['dd7ce038', 'f62a4c12']);
});

test('dropout: the GPU mask is the documented one and values and gradients match the reference (24 configurations)', async () => {
  const r = rng(41);
  for (let k = 0; k < 24; k++) {
    const shape = Array.from({ length: 1 + r.int(4) }, () => [1, 3, 7, 13, 64][r.int(5)]);
    const p = [0.1, 0.5, 0.9, r.next()][k % 4];
    const seed = k === 0 ? 0xffffffff : r.int(2 ** 32);
    const x = asF32(randArr(shape, 100 + k, 0.5, 2));
    const gy = asF32(randArr(shape, 200 + k));
    const m = R.philoxMask(shape, p, seed);
    await scopeAsync(async () => {
      const xt = toGpu(x, true);
      const y = dropout(xt, p, { seed });
      y.backward(toGpu(gy));
      const tag = `case ${k} [${shape}] p ${p} seed ${seed}`;
      assertClose(await y.toArray(), R.dropout(x, m, p), TOL, `forward, ${tag}`);
      assertClose(await xt.grad!.toArray(), R.dropoutBackward(m, gy, p), TOL, `backward, ${tag}`);
    });
  }
});

/** The kept mask (1 / 0) the GPU draws for n elements, read through dropout of ones. */
async function gpuMask(n: number, p: number, seed: number): Promise<Float32Array> {
  return scopeAsync(async () => (await dropout(Tensor.ones([n]), p, { seed }).toArray()).map((v) => (v > 0 ? 1 : 0)));
}

test('dropout: the dropped fraction is p for large n, and neighbouring elements are independent', async () => {
  const n = 2 ** 20;
  for (const p of [0.1, 0.5, 0.9]) {
    const kept = await gpuMask(n, p, 1234);
    let dropped = 0;
    let bothDropped = 0;
    for (let i = 0; i < n; i++) {
      dropped += 1 - kept[i];
      if (i > 0) bothDropped += (1 - kept[i]) * (1 - kept[i - 1]);
    }
    const sigma = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(dropped / n - p) < 5 * sigma, `p ${p}: dropped fraction ${dropped / n}`);
    // Pairs (i - 1, i) are both dropped with probability p^2 when independent.
    const pairSigma = Math.sqrt((p * p * (1 - p * p)) / n);
    assert.ok(Math.abs(bothDropped / (n - 1) - p * p) < 5 * pairSigma, `p ${p}: neighbours both dropped ${bothDropped / (n - 1)}`);
  }
});

test('dropout: the same seed gives the same mask; another seed an independent one', async () => {
  const n = 2 ** 16;
  const p = 0.5;
  const [a, b, c] = [await gpuMask(n, p, 7), await gpuMask(n, p, 7), await gpuMask(n, p, 8)];
  assert.equal(a, b);
  const agree = a.reduce((s, v, i) => s + (v === c[i] ? 1 : 0), 0) / n;
  // Independent masks agree with probability p^2 + (1 - p)^2 = 0.5; 5 standard deviations is 0.01.
  assert.ok(Math.abs(agree - 0.5) < 0.01, `seeds 7 and 8 agree on ${agree} of the elements`);
});

test('dropout: p = 0 and eval mode are the identity (gradient passed through); p = 1 drops everything', async () => {
  const x = asF32(randArr([3, 5], 300));
  const gy = asF32(randArr([3, 5], 301));
  for (const [p, training] of [[0.5, false], [0, true]] as const) {
    await scopeAsync(async () => {
      const xt = toGpu(x, true);
      const y = dropout(xt, p, { training, seed: 1 });
      y.backward(toGpu(gy));
      assertClose(await y.toArray(), x, 0, `values, p ${p} training ${training}`);
      assertClose(await xt.grad!.toArray(), gy, 0, `gradient, p ${p} training ${training}`);
      y.dispose();
      assertClose(await xt.toArray(), x, 0, 'the input survives disposing the identity output');
    });
  }
  const all = await scopeAsync(async () => dropout(toGpu(x), 1, { seed: 3 }).toArray());
  assert.ok(all.every((v) => v === 0), 'p = 1 gives zeros');
});

test('dropout: the backward applies the forward mask (zeros in the same places, same scale)', async () => {
  const n = 4096;
  const x = asF32(randArr([n], 400, 0.5, 2));
  await scopeAsync(async () => {
    const xt = toGpu(x, true);
    const y = dropout(xt, 0.3, { seed: 99 });
    y.backward(Tensor.ones([n]));
    const [yv, gv] = [await y.toArray(), await xt.grad!.toArray()];
    for (let i = 0; i < n; i++) {
      if (gv[i] !== (yv[i] === 0 ? 0 : Math.fround(1 / 0.7))) assert.unreachable(`element ${i}: y ${yv[i]}, grad ${gv[i]}`);
    }
  });
});

test('dropout: gradient matches finite differences of the GPU forward', async () => {
  const x = asF32(randArr([2, 7], 500));
  const r = randArr([2, 7], 501);
  const f = (t: Tensor) => dropout(t, 0.4, { seed: 5 });
  const loss = (v: Float64Array) => scopeAsync(async () => dot(await f(toGpu({ data: v, shape: x.shape })).toArray(), r.data));
  const numeric = new Float64Array(x.data.length);
  for (let i = 0; i < numeric.length; i++) {
    const [up, down] = [Float64Array.from(x.data), Float64Array.from(x.data)];
    up[i] = Math.fround(up[i] + 1e-2);
    down[i] = Math.fround(down[i] - 1e-2);
    numeric[i] = ((await loss(up)) - (await loss(down))) / (up[i] - down[i]);
  }
  await scopeAsync(async () => {
    const xt = toGpu(x, true);
    f(xt).backward(toGpu(r));
    assertClose(await xt.grad!.toArray(), numeric, FD_TOL, 'dropout vs finite differences');
  });
});

test('dropout: training without a seed, or p outside [0, 1], throws', () => {
  const x = Tensor.ones([4]);
  assert.throws(() => dropout(x, 0.5), (e: unknown) => e instanceof ShapeError && /seed/.test((e as Error).message));
  assert.throws(() => dropout(x, 1.5, { seed: 1 }), (e: unknown) => e instanceof ShapeError);
  x.dispose();
});

test.run();
