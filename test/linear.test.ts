import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, ShapeError, Tensor, linear, scopeAsync } from '../engine/index.ts';
setPlatform(nodePlatform());
await initGPU();

// linear (x @ W^T + b, on matmul and a broadcasting add), forward and the gradients of x, W and b, against
// the float64 reference and finite differences.
//
// Tolerances, relative to the largest reference value: 1e-5. Outputs and grad_x are dot products of up to
// 257 f32 terms, grad_W and grad_b sums over up to 40 rows: rounding grows like sqrt(terms) * 6e-8 but
// the sums of terms of both signs end small next to their terms; measured <= 1e-6. Finite differences
// 1e-4: linear in each input, so only the forward's f32 rounding over the step 1e-2 remains.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/linear.ts';
import { type Arr, assertClose, dot, randArr, rng } from './reference/tensor.ts';

const TOL = 1e-5;
const FD_TOL = 1e-4;

test('linear: forward and gradients of x, weight and bias match the reference on 24 configurations', async () => {
  const r = rng(61);
  const dims = [1, 3, 7, 13, 64, 257];
  for (let k = 0; k < 24; k++) {
    const [inF, outF] = [dims[r.int(dims.length)], dims[r.int(dims.length)]];
    const lead = k % 3 === 2 ? [1 + r.int(4), [1, 3, 10][r.int(3)]] : [[1, 2, 7, 40][r.int(4)]];
    const withBias = k % 4 !== 3;
    const x = asF32(randArr([...lead, inF], 100 + k));
    const w = asF32(randArr([outF, inF], 200 + k));
    const b = asF32(randArr([outF], 300 + k));
    const gy = asF32(randArr([...lead, outF], 400 + k));
    await scopeAsync(async () => {
      const [xt, wt, bt] = [toGpu(x, true), toGpu(w, true), toGpu(b, true)];
      const y = linear(xt, wt, withBias ? bt : null);
      y.backward(toGpu(gy));
      const tag = `case ${k} x [${x.shape}] W [${w.shape}] bias ${withBias}`;
      const want = R.linearBackward(x, w, gy);
      assert.equal([...y.shape], [...lead, outF], `shape, ${tag}`);
      assertClose(await y.toArray(), R.linear(x, w, withBias ? b : null), TOL, `forward, ${tag}`);
      assertClose(await xt.grad!.toArray(), want.gx, TOL, `grad x, ${tag}`);
      assertClose(await wt.grad!.toArray(), want.gw, TOL, `grad weight, ${tag}`);
      if (withBias) assertClose(await bt.grad!.toArray(), want.gb, TOL, `grad bias, ${tag}`);
      else assert.is(bt.grad, null);
    });
  }
});

test('linear: gradients match finite differences of the GPU forward', async () => {
  const inputs: Arr[] = [asF32(randArr([3, 4], 500)), asF32(randArr([5, 4], 501)), asF32(randArr([5], 502))];
  const r = randArr([3, 5], 503);
  const f = ([x, w, b]: Tensor[]) => linear(x, w, b);
  const loss = (xs: Arr[]) => scopeAsync(async () => dot(await f(xs.map((a) => toGpu(a))).toArray(), r.data));
  await scopeAsync(async () => {
    const ts = inputs.map((a) => toGpu(a, true));
    f(ts).backward(toGpu(r));
    for (const [k, input] of inputs.entries()) {
      const numeric = new Float64Array(input.data.length);
      for (let i = 0; i < numeric.length; i++) {
        const shifted = (d: number) => {
          const v = Float64Array.from(input.data);
          v[i] = Math.fround(v[i] + d);
          return { at: v[i], xs: inputs.map((a, j) => (j === k ? { data: v, shape: a.shape } : a)) };
        };
        const [up, down] = [shifted(1e-2), shifted(-1e-2)];
        numeric[i] = ((await loss(up.xs)) - (await loss(down.xs))) / (up.at - down.at);
      }
      assertClose(await ts[k].grad!.toArray(), numeric, FD_TOL, `input ${k} vs finite differences`);
    }
  });
});

test('linear: mismatched shapes throw', () => {
  const [x, w, w2, b] = [Tensor.zeros([2, 3]), Tensor.zeros([4, 5]), Tensor.zeros([4, 3]), Tensor.zeros([3])];
  assert.throws(() => linear(x, w), (e: unknown) => e instanceof ShapeError);
  assert.throws(() => linear(x, w2, b), (e: unknown) => e instanceof ShapeError);
  for (const t of [x, w, w2, b]) t.dispose();
});

test.run();
