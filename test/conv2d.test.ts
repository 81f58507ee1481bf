import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { gpu, initGPU } from '../engine/gpu.ts';
setPlatform(nodePlatform());
await initGPU();

// conv2d forward and its gradients w.r.t. input, weight and bias, for each kernel variant, against the
// float64 reference (test/reference/conv2d.ts), TF.js's CPU backend and finite differences.
//
// Tolerances, as max |gpu - expected| / max |expected|:
//   reference 1e-4: every output is an f32 sum of K products of values in [-1, 1] (K = Cg kH kW for the
//     forward, Og kH kW / stride^2 for the input gradient, N Ho Wo for the weight gradient, at most ~2000
//     here); the rounding error is at most ~K u sum |terms| (u = 2^-24), ~1e-4 of max |ref| in the worst
//     case, ~sqrt(K) u (~1e-6, what is measured) for random signs. A wrong index or term costs ~1e-1.
//   batch chunks 1e-3 of sqrt(K), the typical size of a sum of K products (sampled points; the weight
//     gradient sums K = 2 x 520 x 520 products there).
//   TF.js 1e-4: the same f32 sums in another order.
//   finite differences 1e-4: central differences of the float64 loss are exact to ~1e-9; what is left
//     is the GPU's f32 rounding, ~1e-6.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ShapeError } from '../engine/errors.ts';
import { CONV2D_VARIANTS, conv2d, conv2dVariant, convGeometry, setConv2dVariant, type Conv2dOptions, type Conv2dVariant } from '../engine/ops/conv2d.ts';
import { setMatmulVariant } from '../engine/ops/matmul.ts';
import { rt } from '../engine/runtime.ts';
import { Tensor } from '../engine/tensor.ts';
import { initTf, tfConv2d, tfConv2dBackpropFilter, tfConv2dBackpropInput } from './external/tfjs.ts';
import * as R from './reference/conv2d.ts';
import { numericGrad } from './reference/gradcheck.ts';
import { type Arr, assertClose, dot, randArr } from './reference/tensor.ts';

const TOL = 1e-4;
const CHUNK_TOL = 1e-3;
const TF_TOL = 1e-4;
const FD_TOL = 1e-4;

const toGpu = (a: Arr, requiresGrad = false) =>
  Tensor.fromArray(Float32Array.from(a.data), a.shape).setRequiresGrad(requiresGrad);

interface Case {
  name: string;
  x: number[];
  w: number[];
  opts: Conv2dOptions;
  bias?: boolean;
}

// Every convolution configuration of ResNet-50 and Inception v3 at small spatial sizes (with channel
// counts that are odd, below and above a 4 x 8-lane column tile), then the awkward ones.
const CASES: Case[] = [
  { name: 'resnet stem 7x7 s2 p3, 3 channels', x: [2, 3, 15, 13], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 } },
  { name: 'few channels in row runs: 2 channels, 5x5, stride (1, 2), dilation (2, 1), [t, b, l, r] padding', x: [2, 2, 11, 10], w: [5, 2, 5, 5], opts: { stride: [1, 2], dilation: [2, 1], padding: [2, 1, 3, 0] } },
  { name: 'few channels, stride (3, 2), 3x4 kernel (GEMM + col2im input gradient)', x: [2, 5, 13, 11], w: [6, 5, 3, 4], opts: { stride: [3, 2], padding: [1, 2] } },
  { name: 'resnet 1x1 (GEMM path)', x: [2, 16, 5, 6], w: [12, 16, 1, 1], opts: {} },
  { name: 'resnet 1x1, planes of 4k pixels (vec4 grad-weight loads)', x: [3, 40, 4, 6], w: [36, 40, 1, 1], opts: {} },
  { name: 'resnet 3x3 s1 p1', x: [1, 8, 7, 9], w: [40, 8, 3, 3], opts: { padding: 1 }, bias: true },
  { name: 'resnet 3x3 s2 p1', x: [2, 12, 9, 8], w: [16, 12, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: 'resnet 1x1 s2 downsample', x: [2, 16, 7, 7], w: [33, 16, 1, 1], opts: { stride: 2 } },
  { name: 'inception 3x3 s2 p0, 3 channels', x: [1, 3, 17, 16], w: [8, 3, 3, 3], opts: { stride: 2 } },
  { name: 'inception 3x3 s1 p0', x: [2, 8, 9, 9], w: [12, 8, 3, 3], opts: {} },
  { name: 'inception 5x5 p2', x: [1, 12, 9, 9], w: [16, 12, 5, 5], opts: { padding: 2 }, bias: true },
  { name: 'inception 1x7 p(0,3)', x: [2, 16, 7, 7], w: [20, 16, 1, 7], opts: { padding: [0, 3] } },
  { name: 'inception 7x1 p(3,0)', x: [2, 16, 7, 7], w: [20, 16, 7, 1], opts: { padding: [3, 0] } },
  { name: 'inception 1x3 p(0,1)', x: [1, 24, 5, 5], w: [12, 24, 1, 3], opts: { padding: [0, 1] } },
  { name: 'inception 3x1 p(1,0)', x: [1, 24, 5, 5], w: [12, 24, 3, 1], opts: { padding: [1, 0] } },
  { name: 'inception 3x3 s2 p0 (Mixed_6a)', x: [1, 16, 9, 9], w: [24, 16, 3, 3], opts: { stride: 2 } },
  { name: 'inception aux 5x5 on 5x5 (dense GEMM path)', x: [2, 16, 5, 5], w: [24, 16, 5, 5], opts: {} },
  { name: 'batch 1, odd channels', x: [1, 5, 6, 7], w: [7, 5, 3, 3], opts: { padding: 1 }, bias: true },
  { name: 'many input channels (grad-input column tiles)', x: [1, 37, 5, 4], w: [6, 37, 3, 3], opts: { padding: 1 } },
  { name: 'padding larger than half the kernel', x: [1, 4, 5, 5], w: [6, 4, 3, 3], opts: { padding: 2 } },
  { name: '1x1 with padding', x: [2, 4, 3, 3], w: [5, 4, 1, 1], opts: { padding: 1 } },
  { name: 'asymmetric [top, bottom, left, right]', x: [2, 6, 8, 7], w: [9, 6, 3, 3], opts: { padding: [1, 2, 0, 3] } },
  { name: 'stride (2, 3)', x: [2, 8, 10, 11], w: [8, 8, 3, 3], opts: { stride: [2, 3], padding: [1, 2] } },
  { name: 'dilation 2', x: [1, 8, 9, 8], w: [8, 8, 3, 3], opts: { dilation: 2, padding: 2 } },
  { name: 'dilation (2, 3) with stride 2', x: [2, 4, 11, 12], w: [5, 4, 3, 3], opts: { dilation: [2, 3], stride: 2, padding: 1 } },
  { name: 'groups 2', x: [2, 8, 6, 6], w: [6, 4, 3, 3], opts: { groups: 2, padding: 1 }, bias: true },
  { name: 'groups 4, 1x1', x: [1, 16, 5, 5], w: [8, 4, 1, 1], opts: { groups: 4 } },
  { name: 'depthwise', x: [1, 6, 7, 7], w: [6, 1, 3, 3], opts: { groups: 6, padding: 1 } },
  // Few row and column tiles over a long reduction: the weight gradient runs in k slices (17 and 9
  // here, of uneven length, crossing output rows and images) that are added up afterwards.
  { name: 'weight gradient in k slices', x: [2, 5, 31, 35], w: [6, 5, 3, 3], opts: { padding: 1 } },
  { name: 'weight gradient in k slices, 1x1', x: [3, 7, 20, 21], w: [5, 7, 1, 1], opts: {} },
  { name: 'kernel as large as the padded 1x1 input', x: [3, 4, 1, 1], w: [5, 4, 3, 3], opts: { padding: 1 } },
];

/** Forward (with bias where the case has one) and all three gradients through autograd, checked against the reference. */
async function checkCase(c: Case, seed: number, what: string): Promise<void> {
  const geo = convGeometry(c.x, c.w, c.opts);
  const xa = randArr(c.x, seed);
  const wa = randArr(c.w, seed + 1);
  const ba = c.bias ? randArr([c.w[0]], seed + 2) : null;
  const gya = randArr([geo.n, geo.o, geo.ho, geo.wo], seed + 3);
  const x = toGpu(xa, true);
  const w = toGpu(wa, true);
  const b = ba ? toGpu(ba, true) : null;
  const y = conv2d(x, w, b, c.opts);
  const ropts = c.opts as R.Conv2dOpts;
  assert.equal([...y.shape], R.conv2dOutShape(c.x, c.w, ropts), `${what}: output shape`);
  assertClose(await y.toArray(), R.conv2d(xa, wa, ba, ropts), TOL, `${what}: forward`);
  y.backward(toGpu(gya));
  const ref = R.conv2dBackward(xa, wa, gya, ropts);
  assertClose(await x.grad!.toArray(), ref.gx, TOL, `${what}: d/dx`);
  assertClose(await w.grad!.toArray(), ref.gw, TOL, `${what}: d/dweight`);
  if (b) assertClose(await b.grad!.toArray(), ref.gb, TOL, `${what}: d/dbias`);
}

const variants = CONV2D_VARIANTS.filter((v) => v !== 'subgroup' || gpu().hasSubgroups);

for (const variant of variants) {
  test(`${variant}: ResNet-50 / Inception v3 configurations and awkward ones, forward and gradients`, async () => {
    setConv2dVariant(variant);
    let seed = 1;
    for (const c of CASES) await checkCase(c, (seed += 4), `${variant}: ${c.name}`);
    setConv2dVariant(null);
  });
}

test('the GEMM-based paths (1x1, dense, few input channels) with the portable GEMM', async () => {
  setMatmulVariant('tiled');
  let seed = 500;
  for (const c of CASES.filter((c) => /GEMM|3 channels/.test(c.name))) await checkCase(c, (seed += 4), `tiled GEMM: ${c.name}`);
  setMatmulVariant(null);
});

test('batch chunks when an image batch exceeds one storage binding', async () => {
  // 2 images of 66 MiB: more than the 128 MiB lavapipe binds at once, so each kernel runs per image.
  const [c, h, w] = [64, 520, 520];
  if (2 * c * h * w * 4 <= gpu().limits.maxStorageBufferBindingSize) return; // larger bindings: nothing to chunk
  const opts: Conv2dOptions = { padding: 1 };
  const xa = randArr([2, c, h, w], 900);
  const wa = randArr([4, c, 3, 3], 901);
  const gya = randArr([2, 4, h, w], 902);
  const x = toGpu(xa, true);
  const wt = toGpu(wa, true);
  const before = rt().dispatchCount;
  const y = conv2d(x, wt, null, opts);
  assert.is(rt().dispatchCount - before, 5, 'weight packing, then per image: packing x in channel quads and one forward dispatch');
  y.backward(toGpu(gya));
  const [yv, gx, gw] = [await y.toArray(), await x.grad!.toArray(), await wt.grad!.toArray()];
  // The reference at sampled points, both images, edges included. Each value is a sum of K products of
  // values in [-1, 1], typically of size sqrt(K): the error is measured against that.
  const near = (got: number, want: number, k: number, what: string) =>
    assert.ok(Math.abs(got - want) <= CHUNK_TOL * Math.sqrt(k), `chunked ${what}: ${got} vs ${want}`);
  const at = (a: Arr, n: number, ch: number, i: number, j: number) =>
    i < 0 || j < 0 || i >= h || j >= w ? 0 : a.data[((n * a.shape[1] + ch) * h + i) * w + j];
  for (const [n, i, j] of [[0, 0, 0], [0, 519, 519], [1, 0, 3], [1, 300, 519], [1, 519, 0], [0, 257, 100]]) {
    for (let o = 0; o < 4; o++) {
      let s = 0;
      for (let ch = 0; ch < c; ch++) {
        for (let di = 0; di < 3; di++) for (let dj = 0; dj < 3; dj++) s += at(xa, n, ch, i + di - 1, j + dj - 1) * wa.data[((o * c + ch) * 3 + di) * 3 + dj];
      }
      near(yv[((n * 4 + o) * h + i) * w + j], s, c * 9, `forward at n=${n} o=${o} (${i}, ${j})`);
    }
    let g = 0;
    for (let o = 0; o < 4; o++) {
      for (let di = 0; di < 3; di++) for (let dj = 0; dj < 3; dj++) g += at(gya, n, o, i - di + 1, j - dj + 1) * wa.data[((o * c + 5) * 3 + di) * 3 + dj];
    }
    near(gx[((n * c + 5) * h + i) * w + j], g, 4 * 9, `d/dx at n=${n} c=5 (${i}, ${j})`);
  }
  // The weight gradient sums over both chunks.
  for (const [o, ch, di, dj] of [[0, 0, 0, 0], [3, 63, 2, 2], [1, 17, 1, 0]]) {
    let s = 0;
    for (let n = 0; n < 2; n++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) s += at(gya, n, o, i, j) * at(xa, n, ch, i + di - 1, j + dj - 1);
    near(gw[((o * c + ch) * 3 + di) * 3 + dj], s, 2 * h * w, `d/dweight [${o}, ${ch}, ${di}, ${dj}]`);
  }
});

test('TF.js CPU: forward and both gradients', async () => {
  await initTf();
  let seed = 700;
  for (const c of CASES.filter((c) => !c.opts.dilation)) {
    const geo = convGeometry(c.x, c.w, c.opts);
    const xa = randArr(c.x, (seed += 4));
    const wa = randArr(c.w, seed + 1);
    const ba = c.bias ? randArr([c.w[0]], seed + 2) : null;
    const gya = randArr([geo.n, geo.o, geo.ho, geo.wo], seed + 3);
    const x = toGpu(xa, true);
    const w = toGpu(wa, true);
    const y = conv2d(x, w, ba && toGpu(ba), c.opts);
    assertClose(await y.toArray(), tfConv2d(xa, wa, ba, c.opts), TF_TOL, `TF.js ${c.name}: forward`);
    y.backward(toGpu(gya));
    assertClose(await x.grad!.toArray(), tfConv2dBackpropInput(gya, wa, c.x, c.opts), TF_TOL, `TF.js ${c.name}: d/dx`);
    assertClose(await w.grad!.toArray(), tfConv2dBackpropFilter(xa, gya, c.w, c.opts), TF_TOL, `TF.js ${c.name}: d/dweight`);
  }
});

test('finite differences of the float64 loss agree with the GPU gradients', async () => {
  const opts: Conv2dOptions = { stride: 2, padding: [1, 0, 2, 1], dilation: [1, 2] };
  const xa = randArr([1, 2, 5, 6], 800);
  const wa = randArr([3, 2, 3, 2], 801);
  const ba = randArr([3], 802);
  const proj = randArr(R.conv2dOutShape(xa.shape, wa.shape, opts as R.Conv2dOpts), 803);
  const [x, w, b] = [toGpu(xa, true), toGpu(wa, true), toGpu(ba, true)];
  conv2d(x, w, b, opts).backward(toGpu(proj));
  // loss = sum(conv2d(x, w, b) * proj) in float64; inputs rounded to f32 as the GPU saw them.
  const f32 = (a: Arr): Arr => ({ data: Float64Array.from(Float32Array.from(a.data)), shape: a.shape });
  const [x64, w64, b64] = [f32(xa), f32(wa), f32(ba)];
  const loss = () => dot(R.conv2d(x64, w64, b64, opts as R.Conv2dOpts), proj);
  for (const [name, arr, t] of [['x', x64, x], ['weight', w64, w], ['bias', b64, b]] as const) {
    assertClose(await t.grad!.toArray(), numericGrad(loss, arr.data), FD_TOL, `d loss / d ${name} vs finite differences`);
  }
});

test('fused bias + ReLU for inference', async () => {
  const c = CASES[2];
  const xa = randArr(c.x, 600);
  const wa = randArr(c.w, 601);
  const ba = randArr([c.w[0]], 602);
  const y = conv2d(toGpu(xa), toGpu(wa), toGpu(ba), { ...c.opts, relu: true });
  const ref = R.conv2d(xa, wa, ba, c.opts as R.Conv2dOpts);
  ref.data.forEach((v, i) => (ref.data[i] = Math.max(v, 0)));
  assertClose(await y.toArray(), ref, TOL, 'conv + bias + relu');
  assert.throws(() => conv2d(toGpu(xa, true), toGpu(wa), null, { relu: true }), (e: unknown) => e instanceof ShapeError && /inference/.test(e.message));
});

test('variant selection and shape errors', () => {
  assert.is(conv2dVariant(), gpu().hasSubgroups ? 'subgroup' : 'workgroup');
  process.env.CELGRAD_CONV = 'workgroup';
  try {
    assert.is(conv2dVariant(), 'workgroup');
  } finally {
    delete process.env.CELGRAD_CONV;
  }
  assert.throws(() => setConv2dVariant('fast' as Conv2dVariant), /subgroup, workgroup/);
  const x = Tensor.zeros([1, 6, 5, 5]);
  assert.throws(() => conv2d(x, Tensor.zeros([4, 4, 3, 3]), null, { groups: 2 }), /groups=2/);
  assert.throws(() => conv2d(x, Tensor.zeros([4, 6, 3, 3]), Tensor.zeros([3]), {}), /bias \[3\] should be \[4\]/);
  assert.throws(() => conv2d(x, Tensor.zeros([4, 6, 7, 7]), null, { padding: [0, 1] }), /does not fit/);
  assert.throws(() => conv2d(Tensor.zeros([6, 5, 5]), Tensor.zeros([4, 6, 3, 3]), null), /\[N, C, H, W\]/);
});

test.run();
