import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, ShapeError, Tensor, scopeAsync, upsampleBilinear } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// upsampleBilinear (align_corners = false), forward and backward, against the float64 reference and finite
// differences, up and down, including Grad-CAM's 7x7 -> 224x224.
//
// Tolerances, relative to the largest reference value: 1e-5 forward and backward. The kernels compute the
// source coordinate scale * (o + 0.5) - 0.5 in f32, as PyTorch does for f32 tensors, so the weights differ
// from the float64 reference's by up to an ulp of the coordinate (~1e-6 at coordinate 16); the backward
// adds a gather of up to (2 * scale + 3)^2 weighted terms. Measured <= 1.1e-6 forward, 1e-6 backward.
// Finite differences 1e-4: the resize is linear in x, so only the forward's f32 rounding divided by the
// step 1e-2 remains (measured <= 2e-6).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/upsample.ts';
import { assertClose, dot, randArr, rng } from './reference/tensor.ts';

const TOL = 1e-5;
const FD_TOL = 1e-4;

test('upsampleBilinear: forward and backward match the reference on 24 sizes (up, down, 1 -> n, n -> 1)', async () => {
  const r = rng(51);
  const cases: [number[], [number, number]][] = [
    [[1, 1, 7, 7], [224, 224]],
    [[2, 3, 1, 1], [3, 5]],
    [[1, 2, 13, 13], [1, 1]],
    [[1, 1, 7, 3], [7, 3]],
    [[3, 1, 13, 7], [5, 16]],
  ];
  while (cases.length < 24) {
    const pick = () => [1, 3, 7, 13, 17][r.int(5)];
    cases.push([[1 + r.int(3), [1, 3, 5][r.int(3)], pick(), pick()], [pick(), pick()]]);
  }
  for (const [k, [shape, size]] of cases.entries()) {
    const x = asF32(randArr(shape, 100 + k));
    const gy = asF32(randArr([shape[0], shape[1], ...size], 200 + k));
    await scopeAsync(async () => {
      const xt = toGpu(x, true);
      const y = upsampleBilinear(xt, size);
      y.backward(toGpu(gy));
      const tag = `case ${k} [${shape}] -> ${size}`;
      assertClose(await y.toArray(), R.upsampleBilinear2d(x, size), TOL, `forward, ${tag}`);
      assertClose(await xt.grad!.toArray(), R.upsampleBilinear2dBackward(x, gy, size), TOL, `backward, ${tag}`);
    });
  }
});

test('upsampleBilinear: gradient matches finite differences of the GPU forward (up and down)', async () => {
  for (const [shape, size] of [[[1, 2, 3, 4], [7, 5]], [[1, 1, 7, 6], [3, 4]]] as [number[], [number, number]][]) {
    const x = asF32(randArr(shape, 300));
    const r = randArr([shape[0], shape[1], ...size], 301);
    const f = (t: Tensor) => upsampleBilinear(t, size);
    const loss = (v: Float64Array) => scopeAsync(async () => dot(await f(toGpu({ data: v, shape })).toArray(), r.data));
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
      assertClose(await xt.grad!.toArray(), numeric, FD_TOL, `[${shape}] -> ${size} vs finite differences`);
    });
  }
});

test('upsampleBilinear: rejects empty or fractional sizes', () => {
  const x = Tensor.zeros([1, 1, 2, 2]);
  assert.throws(() => upsampleBilinear(x, [0, 4]), (e: unknown) => e instanceof ShapeError);
  assert.throws(() => upsampleBilinear(x, [2.5, 4]), (e: unknown) => e instanceof ShapeError);
  x.dispose();
});

test.run();
