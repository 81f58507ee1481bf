// Engine core: elementwise, reduce and shape ops against the float64 reference (forward and backward),
// autograd mechanics, scopes and the pool, and the runtime's error reporting.
//
// Tolerances: elementwise ops are one f32 operation per element, so 1e-6 relative to the largest
// reference value (a few f32 ulps; transcendental functions in WGSL are allowed a few ulps more, so
// 1e-5 for exp/log/sqrt/sigmoid/tanh). Reductions accumulate up to ~1000 terms in f32: 1e-5.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  KernelError,
  ShapeError,
  Tensor,
  abs,
  add,
  addScalar,
  concat,
  div,
  exp,
  expand,
  keep,
  log,
  max,
  maximum,
  mean,
  mul,
  mulScalar,
  neg,
  noGrad,
  permute,
  powScalar,
  relu,
  reshape,
  rt,
  scope,
  scopeAsync,
  sigmoid,
  slice,
  sqrt,
  sub,
  sum,
  tanh,
  transpose,
  withBackwardMode,
} from '../engine/index.ts';
import { registerKernel } from '../engine/runtime.ts';
import { asF32, toArr, toGpu } from './gpu.ts';
import * as E from './reference/elementwise.ts';
import * as R from './reference/reduce.ts';
import * as S from './reference/shape.ts';
import { assertClose, randArr, type Arr } from './reference/tensor.ts';

const SIZES = [1, 3, 7, 65, 257, 1000];

/** Runs op forward and backward on the GPU with upstream gradient gy; returns output and input grads. */
async function gpuForwardBackward(op: (...xs: Tensor[]) => Tensor, inputs: Arr[], gy: Arr) {
  return scope(() => {
    const xs = inputs.map((a) => toGpu(a, true));
    const y = op(...xs);
    y.backward(toGpu(gy));
    return { y, grads: xs.map((x) => x.grad!) };
  });
}

const unaryCases: [string, (x: Tensor) => Tensor, E.UnaryOp, number, [number, number]][] = [
  ['neg', neg, 'neg', 1e-6, [-2, 2]],
  ['relu', relu, 'relu', 1e-6, [-2, 2]],
  ['exp', exp, 'exp', 1e-5, [-3, 3]],
  ['log', log, 'log', 1e-5, [0.1, 4]],
  ['sqrt', sqrt, 'sqrt', 1e-5, [0.1, 4]],
  ['abs', abs, 'abs', 1e-6, [-2, 2]],
  ['sigmoid', sigmoid, 'sigmoid', 1e-5, [-6, 6]],
  ['tanh', tanh, 'tanh', 1e-5, [-3, 3]],
];

for (const [name, op, refOp, tol, [lo, hi]] of unaryCases) {
  test(`${name}: forward and backward match the reference on sizes ${SIZES.join(', ')}`, async () => {
    for (const n of SIZES) {
      const x = asF32(randArr([n], n + 1, lo, hi));
      const gy = asF32(randArr([n], n + 2));
      const { y, grads } = await gpuForwardBackward(op, [x], gy);
      assertClose((await toArr(y)).data, E.unary(refOp, x), tol, `${name} forward n=${n}`);
      assertClose((await toArr(grads[0])).data, E.unaryBackward(refOp, x, gy), tol, `${name} backward n=${n}`);
      y.dispose();
      grads[0].dispose();
    }
  });
}

test('scalar ops (add, mul, pow with integer and fractional exponents) forward and backward', async () => {
  const cases: [(x: Tensor) => Tensor, E.ScalarOp, number, [number, number]][] = [
    [(x) => addScalar(x, 2.5), 'add', 2.5, [-2, 2]],
    [(x) => mulScalar(x, -1.5), 'mul', -1.5, [-2, 2]],
    [(x) => powScalar(x, 2), 'pow', 2, [-2, 2]],
    [(x) => powScalar(x, 3), 'pow', 3, [-2, 2]],
    [(x) => powScalar(x, 0.5), 'pow', 0.5, [0.1, 3]],
  ];
  for (const [op, refOp, s, [lo, hi]] of cases) {
    const x = asF32(randArr([67], 11, lo, hi));
    const gy = asF32(randArr([67], 12));
    const { y, grads } = await gpuForwardBackward(op, [x], gy);
    assertClose((await toArr(y)).data, E.scalar(refOp, x, s), 1e-5, `${refOp} ${s} forward`);
    assertClose((await toArr(grads[0])).data, E.scalarBackward(refOp, x, s, gy), 1e-5, `${refOp} ${s} backward`);
  }
});

const binaryShapes: [number[], number[]][] = [
  [[7], [7]],
  [[3, 5], [3, 5]],
  [[3, 5], [5]],
  [[3, 1], [1, 7]],
  [[2, 3, 4, 5], [3, 1, 1]],
  [[1], [65]],
  [[2, 1, 4], [3, 1]],
  [[257], [1]],
];

for (const [name, op, refOp] of [
  ['add', add, 'add'],
  ['sub', sub, 'sub'],
  ['mul', mul, 'mul'],
  ['div', div, 'div'],
  ['maximum', maximum, 'maximum'],
] as const) {
  test(`${name}: broadcasting forward and backward (gradients summed to each input's shape)`, async () => {
    for (const [sa, sb] of binaryShapes) {
      const a = asF32(randArr(sa, 3, -2, 2));
      const b = asF32(refOp === 'div' ? randArr(sb, 4, 0.5, 2) : randArr(sb, 4, -2, 2));
      const gy = asF32(randArr(E.broadcastShape(sa, sb), 5));
      const { y, grads } = await gpuForwardBackward(op, [a, b], gy);
      const ref = E.binaryBackward(refOp, a, b, gy);
      const what = `${name} [${sa}] with [${sb}]`;
      assertClose((await toArr(y)).data, E.binary(refOp, a, b), 1e-6, `${what} forward`);
      assertClose((await toArr(grads[0])).data, ref.ga, 1e-5, `${what} grad a`);
      assertClose((await toArr(grads[1])).data, ref.gb, 1e-5, `${what} grad b`);
    }
  });
}

test('sum, mean and max over axes (keepdim and not) forward and backward', async () => {
  const cases: [number[], R.Axes][] = [
    [[7], undefined],
    [[3, 5], 0],
    [[3, 5], 1],
    [[2, 3, 4, 5], [0, 2, 3]],
    [[2, 3, 4, 5], [1]],
    [[4, 65, 3], [0, 2]],
    [[1000], 0],
    [[3, 1, 257], [1, 2]],
    [[2, 7, 3, 3], [0, 2]],
  ];
  for (const [shape, axes] of cases) {
    for (const keepdim of [false, true]) {
      for (const [name, op, fwd, bwd] of [
        ['sum', sum, R.sum, R.sumBackward],
        ['mean', mean, R.mean, R.meanBackward],
        ['max', max, R.max, R.maxBackward],
      ] as const) {
        const x = asF32(randArr(shape, shape.length * 7 + 1));
        const yRef = fwd(x, axes, keepdim);
        const gy = asF32(randArr(yRef.shape, 9));
        const { y, grads } = await gpuForwardBackward((t) => op(t, axes, keepdim), [x], gy);
        const what = `${name} of [${shape}] over ${JSON.stringify(axes)} keepdim=${keepdim}`;
        assert.equal([...y.shape], yRef.shape, `${what}: shape`);
        assertClose((await toArr(y)).data, yRef, 1e-5, `${what} forward`);
        assertClose((await toArr(grads[0])).data, bwd(x, gy, axes, keepdim), 1e-5, `${what} backward`);
      }
    }
  }
});

test('long reductions (one workgroup per output) match the reference', async () => {
  const x = asF32(randArr([3, 5000], 21));
  const gy = asF32(randArr([3], 22));
  const { y, grads } = await gpuForwardBackward((t) => sum(t, 1), [x], gy);
  assertClose((await toArr(y)).data, R.sum(x, 1), 1e-5, 'sum of 5000');
  assertClose((await toArr(grads[0])).data, R.sumBackward(x, gy, 1), 1e-6, 'sum of 5000 backward');
});

// Copies run along the innermost dim 16 elements per invocation: the second shape's rows of 37 take
// two whole runs and a partial one.
test('permute, transpose, reshape, concat and slice forward and backward', async () => {
  for (const shape of [[2, 3, 5, 7], [3, 2, 4, 37]]) {
    const x = asF32(randArr(shape, 31));
    const perm = [2, 0, 3, 1];
    let gy = asF32(randArr(S.permute(x, perm).shape, 32));
    let r = await gpuForwardBackward((t) => permute(t, perm), [x], gy);
    assertClose((await toArr(r.y)).data, S.permute(x, perm), 0, 'permute');
    assertClose((await toArr(r.grads[0])).data, S.permuteBackward(x, gy, perm), 0, 'permute backward');

    gy = asF32(randArr(S.transpose(x, 1, 3).shape, 33));
    r = await gpuForwardBackward((t) => transpose(t, 1, 3), [x], gy);
    assertClose((await toArr(r.y)).data, S.transpose(x, 1, 3), 0, 'transpose');
    assertClose((await toArr(r.grads[0])).data, S.transposeBackward(x, gy, 1, 3), 0, 'transpose backward');

    gy = asF32(randArr([6, x.data.length / 6], 34));
    r = await gpuForwardBackward((t) => mulScalar(reshape(t, [6, -1]), 1), [x], gy);
    assertClose((await toArr(r.y)).data, S.reshape(x, [6, x.data.length / 6]), 0, 'reshape');
    assertClose((await toArr(r.grads[0])).data, gy, 0, 'reshape backward');

    for (const axis of [0, 1, 3]) {
      const parts = [x, asF32(randArr(shape, 40 + axis)), asF32(randArr(shape, 50 + axis))];
      const parts2 = parts.map((p, i) => (i === 1 ? S.slice(p, axis, 0, 1) : p));
      const ref = S.concat(parts2, axis);
      gy = asF32(randArr(ref.shape, 35));
      r = await gpuForwardBackward((...ts) => concat(ts, axis), parts2, gy);
      assertClose((await toArr(r.y)).data, ref, 0, `concat axis ${axis}`);
      const refGrads = S.concatBackward(parts2, gy, axis);
      for (let i = 0; i < 3; i++) assertClose((await toArr(r.grads[i])).data, refGrads[i], 0, `concat grad ${i}`);
    }

    gy = asF32(randArr(S.slice(x, 2, 1, 4).shape, 36));
    r = await gpuForwardBackward((t) => slice(t, 2, 1, 4), [x], gy);
    assertClose((await toArr(r.y)).data, S.slice(x, 2, 1, 4), 0, 'slice');
    assertClose((await toArr(r.grads[0])).data, S.sliceBackward(x, gy, 2, 1, 4), 0, 'slice backward');
  }
});

test('expand broadcasts by copying and sums its gradient back', async () => {
  const x = asF32(randArr([3, 1, 5], 41));
  const gy = asF32(randArr([2, 3, 4, 5], 42));
  const r = await gpuForwardBackward((t) => expand(t, [2, 3, 4, 5]), [x], gy);
  assertClose((await toArr(r.y)).data, E.binary('add', x, { data: new Float64Array(120), shape: [2, 3, 4, 5] }), 0, 'expand');
  assertClose((await toArr(r.grads[0])).data, E.sumToShape(gy, [3, 1, 5]), 1e-6, 'expand backward');
});

test("concat keeps its own list of inputs: growing the caller's array afterwards (DenseNet) changes no gradient", async () => {
  const a = Tensor.ones([1, 2]).setRequiresGrad(true);
  const b = Tensor.ones([1, 3]).setRequiresGrad(true);
  const features = [a];
  const y = concat(features, 1);
  features.push(b);
  sum(mulScalar(y, 2)).backward();
  assert.equal([...(await a.grad!.toArray())], [2, 2]);
  assert.is(b.grad, null);
  for (const t of [a.grad!, a, b, y]) t.dispose();
});

test('gradients by central finite differences through a composite graph (f32, loose tolerance)', async () => {
  // loss = sum(relu(a*b + a) / (1 + exp(-b)) ) — a is used three times, b twice, so accumulation is exercised.
  const a0 = asF32(randArr([4, 5], 61, -1, 1));
  const b0 = asF32(randArr([5], 62, -1, 1));
  const loss = (a: Tensor, b: Tensor) => sum(div(relu(add(mul(a, b), a)), addScalar(exp(neg(b)), 1)));
  const analytic = await scopeAsync(async () => {
    const a = toGpu(a0, true);
    const b = toGpu(b0, true);
    loss(a, b).backward();
    return [await a.grad!.toArray(), await b.grad!.toArray()];
  });
  const f = (a: Arr, b: Arr) => noGrad(() => scopeAsync(() => loss(toGpu(a), toGpu(b)).item()));
  // f32 forward: eps 1e-2 keeps the rounding error (~1e-7 / 1e-2) far below the tolerance.
  const eps = 1e-2;
  for (const [which, base, grad] of [
    ['a', a0, analytic[0]],
    ['b', b0, analytic[1]],
  ] as const) {
    for (let i = 0; i < base.data.length; i += 3) {
      const plus = { data: Float64Array.from(base.data), shape: base.shape };
      const minus = { data: Float64Array.from(base.data), shape: base.shape };
      plus.data[i] += eps;
      minus.data[i] -= eps;
      const args = (v: Arr) => (which === 'a' ? [v, b0] : [a0, v]) as [Arr, Arr];
      const numeric = ((await f(...args(plus))) - (await f(...args(minus)))) / (2 * eps);
      assert.ok(Math.abs(numeric - grad[i]) < 2e-2 * Math.max(1, Math.abs(numeric)), `d loss / d ${which}[${i}]: ${grad[i]} vs finite difference ${numeric}`);
    }
  }
});

test('backward sums gradients over every consumer and runs each rule once (diamond graph)', async () => {
  await scopeAsync(async () => {
    const x = Tensor.fromArray([1, 2, 3], [3]).setRequiresGrad();
    // y = x*x + x*x + x: dy/dx = 4x + 1.
    const sq = mul(x, x);
    let calls = 0;
    const inner = sq.gradFn!.backward;
    sq.gradFn!.backward = (g) => {
      calls++;
      return inner(g);
    };
    sum(add(add(sq, sq), x)).backward();
    assert.equal(Array.from(await x.grad!.toArray()), [5, 9, 13]);
    assert.is(calls, 1, 'the shared node ran its rule once');
  });
});

test('gradient accumulation across backward calls, hooks, retainGrad, detach and noGrad', async () => {
  await scopeAsync(async () => {
    const x = Tensor.fromArray([1, -2, 3], [3]).setRequiresGrad();
    const seen: number[][] = [];
    const h = mulScalar(x, 2).retainGrad();
    const handle = h.registerHook((g) => {
      seen.push([...g.shape]);
      return mulScalar(g, 10);
    });
    sum(relu(h)).backward();
    assert.equal(seen, [[3]], 'hook saw the gradient');
    assert.equal(Array.from(await h.grad!.toArray()), [10, 0, 10], 'retained gradient is the hooked one');
    assert.equal(Array.from(await x.grad!.toArray()), [20, 0, 20]);
    handle.remove();
    sum(mulScalar(x, 3)).backward();
    assert.equal(Array.from(await x.grad!.toArray()), [23, 3, 23], 'accumulated');
    assert.not.ok(mulScalar(x.detach(), 2).requiresGrad, 'detached');
    assert.not.ok(noGrad(() => mulScalar(x, 2)).requiresGrad, 'noGrad');
  });
});

test('guided backward mode passes only positive gradients through positive inputs', async () => {
  await scopeAsync(async () => {
    const x = Tensor.fromArray([1, -1, 2, 3], [4]).setRequiresGrad();
    const y = relu(x);
    withBackwardMode('guided', () => y.backward(Tensor.fromArray([1, 1, -1, 2], [4])));
    assert.equal(Array.from(await x.grad!.toArray()), [1, 0, 0, 2]);
  });
});

test('scopes free intermediates: pool memory in use is flat across training-like steps', async () => {
  const w = keep(Tensor.uniform([64, 64], -1, 1, 5).setRequiresGrad());
  const stepOnce = () =>
    scopeAsync(() => {
      const x = Tensor.uniform([64, 64], -1, 1, 6);
      const loss = mean(mul(relu(add(x, w)), x));
      loss.backward();
      return loss.item();
    });
  await stepOnce();
  const before = rt().pool.getStats().inUse;
  for (let i = 0; i < 5; i++) await stepOnce();
  assert.is(rt().pool.getStats().inUse, before, 'bytes in use after 5 more steps');
  w.grad?.dispose();
  w.dispose();
});

test('one submission per flush: many ops record into one command buffer', async () => {
  await rt().sync();
  const before = rt().submitCount;
  scope(() => {
    let t = Tensor.zeros([100]);
    for (let i = 0; i < 50; i++) t = addScalar(t, 1);
    return null;
  });
  rt().flush();
  assert.is(rt().submitCount - before, 1);
});

test('errors: shape errors show both shapes; a broken kernel names itself and its WGSL line', async () => {
  assert.throws(() => scope(() => add(Tensor.zeros([2, 3]), Tensor.zeros([4]))), (e: Error) => e instanceof ShapeError && /\[2,3\].*\[4\]/.test(e.message));
  registerKernel('broken_for_test', `struct Params { n: u32 }\n@group(0) @binding(0) var<uniform> params: Params;\n@group(0) @binding(1) var<storage, read_write> dst: array<f32>;\n@compute @workgroup_size(1) fn main() { dst[0] = undefined_name; }`);
  const t = Tensor.zeros([4]);
  rt().dispatch({ kernel: 'broken_for_test', params: [0], bindings: [{ buffer: t.buffer }], workgroups: [1] });
  let error: unknown;
  try {
    await rt().sync();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof KernelError, `expected a KernelError, got ${error}`);
  assert.match((error as Error).message, /broken_for_test/);
  assert.match((error as Error).message, /line 4/);
  t.dispose();
});

test('uploads from a SharedArrayBuffer view are copied (dawn.node rejects them)', async () => {
  const shared = new Float32Array(new SharedArrayBuffer(16));
  shared.set([1, 2, 3, 4]);
  const t = Tensor.fromArray(shared, [4]);
  assert.equal(Array.from(await t.toArray()), [1, 2, 3, 4]);
  t.dispose();
});

test.run();
