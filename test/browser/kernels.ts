// The kernel reference suite as it runs inside a browser page (bundled by scripts/build-web.mjs with tests on;
// driven by test/browser-kernels.test.ts): a representative subset of every op family's comparisons against the
// same float64 references (test/reference/), on the browser's WebGPU implementation (Chromium's Dawn over
// SwiftShader in CI) instead of dawn.node over lavapipe. Every kernel variant the adapter offers is run, so a
// kernel that leans on one driver's behaviour (subgroup size, uninitialised memory, evaluation order) fails here.
//
// Tolerances are the Node suites' (each file there derives its own): elementwise 1e-6 (transcendentals 1e-5),
// reductions, softmax, cross-entropy, upsampling and batch-norm forward 1e-5, batch-norm gradients 2e-5, pooling
// 1e-6 (max forward exact), matmul and conv2d 1e-4, shape ops and the dropout mask exact.
import {
  Tensor,
  adaptiveAvgPool2d,
  add,
  avgPool2d,
  batchNorm2d,
  concat,
  crossEntropy,
  div,
  dropout,
  exp,
  gpu,
  initGPU,
  log,
  logSoftmax,
  matmul,
  max,
  maxPool2d,
  maximum,
  mean,
  mul,
  permute,
  relu,
  scopeAsync,
  setBatchNormVariant,
  setPlatform,
  sigmoid,
  slice,
  softmax,
  sqrt,
  sub,
  sum,
  tanh,
  transpose,
  upsampleBilinear,
} from '../../engine/index.ts';
import { CONV2D_VARIANTS, conv2d, setConv2dVariant, type Conv2dOptions } from '../../engine/ops/conv2d.ts';
import { MATMUL_VARIANTS, setMatmulVariant } from '../../engine/ops/matmul.ts';
import { browserPlatform } from '../../engine/platform/browser.ts';
import * as BN from '../reference/batchnorm.ts';
import * as CV from '../reference/conv2d.ts';
import * as DO from '../reference/dropout.ts';
import * as E from '../reference/elementwise.ts';
import * as MM from '../reference/matmul.ts';
import * as PL from '../reference/pool.ts';
import * as RD from '../reference/reduce.ts';
import * as SH from '../reference/shape.ts';
import * as SM from '../reference/softmax.ts';
import * as UP from '../reference/upsample.ts';
import { assertClose, randArr, type Arr } from '../reference/tensor.ts';

export interface CaseResult {
  family: string;
  name: string;
  ok: boolean;
  /** Why the case did not run on this adapter (a variant it does not offer). */
  skipped?: string;
  error?: string;
  ms: number;
}

/** A case returns a reason when it does not apply to this adapter. */
const cases: { family: string; name: string; run: () => Promise<string | void> }[] = [];
const check = (family: string, name: string, run: () => Promise<string | void>) => cases.push({ family, name, run });
const NO_SUBGROUPS = 'the adapter has no subgroups feature';

/** The reference input rounded to f32, as the GPU sees it. */
const f32 = (a: Arr): Arr => ({ data: Float64Array.from(Float32Array.from(a.data)), shape: [...a.shape] });
const toGpu = (a: Arr, requiresGrad = false) => Tensor.fromArray(Float32Array.from(a.data), a.shape).setRequiresGrad(requiresGrad);

/** op forward and backward on the GPU with upstream gradient gy (made from the output shape): output and input grads. */
async function forwardBackward(op: (...xs: Tensor[]) => Tensor, inputs: Arr[], gy: (shape: number[]) => Arr) {
  return scopeAsync(async () => {
    const xs = inputs.map((a) => toGpu(a, true));
    const y = op(...xs);
    const g = gy([...y.shape]);
    y.backward(toGpu(g));
    return { y: await y.toArray(), shape: [...y.shape], g, grads: await Promise.all(xs.map((x) => x.grad!.toArray())) };
  });
}

const upstream = (seed: number) => (shape: number[]) => f32(randArr(shape, seed));

// ---- elementwise ----
for (const [name, op, ref, tol, lo, hi] of [
  ['relu', relu, 'relu', 1e-6, -2, 2],
  ['exp', exp, 'exp', 1e-5, -3, 3],
  ['log', log, 'log', 1e-5, 0.1, 4],
  ['sqrt', sqrt, 'sqrt', 1e-5, 0.1, 4],
  ['sigmoid', sigmoid, 'sigmoid', 1e-5, -6, 6],
  ['tanh', tanh, 'tanh', 1e-5, -3, 3],
] as const) {
  check('elementwise', `${name} forward and backward, sizes 1, 7, 257, 1000`, async () => {
    for (const n of [1, 7, 257, 1000]) {
      const x = f32(randArr([n], n + 1, lo, hi));
      const r = await forwardBackward(op, [x], upstream(n + 2));
      assertClose(r.y, E.unary(ref, x), tol, `${name} forward n=${n}`);
      assertClose(r.grads[0], E.unaryBackward(ref, x, r.g), tol, `${name} backward n=${n}`);
    }
  });
}
for (const [name, op, ref] of [
  ['add', add, 'add'],
  ['sub', sub, 'sub'],
  ['mul', mul, 'mul'],
  ['div', div, 'div'],
  ['maximum', maximum, 'maximum'],
] as const) {
  check('elementwise', `${name} with broadcasting, forward and backward`, async () => {
    for (const [sa, sb] of [[[3, 5], [5]], [[3, 1], [1, 7]], [[2, 3, 4, 5], [3, 1, 1]], [[257], [1]]]) {
      const a = f32(randArr(sa, 3, -2, 2));
      const b = f32(ref === 'div' ? randArr(sb, 4, 0.5, 2) : randArr(sb, 4, -2, 2));
      const r = await forwardBackward(op, [a, b], upstream(5));
      const want = E.binaryBackward(ref, a, b, r.g);
      assertClose(r.y, E.binary(ref, a, b), 1e-6, `${name} [${sa}] [${sb}] forward`);
      assertClose(r.grads[0], want.ga, 1e-5, `${name} [${sa}] [${sb}] grad a`);
      assertClose(r.grads[1], want.gb, 1e-5, `${name} [${sa}] [${sb}] grad b`);
    }
  });
}

// ---- reductions ----
check('reduce', 'sum, mean and max over axes (keepdim and not), forward and backward; a 5000-long sum', async () => {
  const axesCases: [number[], number | number[] | undefined][] = [[[7], undefined], [[3, 5], 1], [[2, 3, 4, 5], [0, 2, 3]], [[4, 65, 3], [0, 2]], [[3, 5000], 1]];
  for (const [shape, axes] of axesCases) {
    for (const keepdim of [false, true]) {
      for (const [name, op, fwd, bwd] of [
        ['sum', sum, RD.sum, RD.sumBackward],
        ['mean', mean, RD.mean, RD.meanBackward],
        ['max', max, RD.max, RD.maxBackward],
      ] as const) {
        const x = f32(randArr(shape, shape.length * 7 + 1));
        const r = await forwardBackward((t) => op(t, axes, keepdim), [x], upstream(9));
        const what = `${name} of [${shape}] over ${JSON.stringify(axes)} keepdim=${keepdim}`;
        assertClose(r.y, fwd(x, axes, keepdim), 1e-5, `${what} forward`);
        assertClose(r.grads[0], bwd(x, r.g, axes, keepdim), 1e-5, `${what} backward`);
      }
    }
  }
});

// ---- shape ----
check('shape', 'permute, transpose, concat and slice forward and backward (exact)', async () => {
  const x = f32(randArr([2, 3, 5, 7], 31));
  let r = await forwardBackward((t) => permute(t, [2, 0, 3, 1]), [x], upstream(32));
  assertClose(r.y, SH.permute(x, [2, 0, 3, 1]), 0, 'permute');
  assertClose(r.grads[0], SH.permuteBackward(x, r.g, [2, 0, 3, 1]), 0, 'permute backward');
  r = await forwardBackward((t) => transpose(t, 1, 3), [x], upstream(33));
  assertClose(r.y, SH.transpose(x, 1, 3), 0, 'transpose');
  assertClose(r.grads[0], SH.transposeBackward(x, r.g, 1, 3), 0, 'transpose backward');
  for (const axis of [0, 1, 3]) {
    const parts = [x, f32(randArr([2, 3, 5, 7], 40 + axis))];
    r = await forwardBackward((a, b) => concat([a, b], axis), parts, upstream(50 + axis));
    assertClose(r.y, SH.concat(parts, axis), 0, `concat axis ${axis}`);
    const want = SH.concatBackward(parts, r.g, axis);
    assertClose(r.grads[0], want[0], 0, `concat axis ${axis} grad 0`);
    assertClose(r.grads[1], want[1], 0, `concat axis ${axis} grad 1`);
    r = await forwardBackward((t) => slice(t, axis, 1, 2), [x], upstream(60 + axis));
    assertClose(r.y, SH.slice(x, axis, 1, 2), 0, `slice axis ${axis}`);
    assertClose(r.grads[0], SH.sliceBackward(x, r.g, axis, 1, 2), 0, `slice axis ${axis} backward`);
  }
});

// ---- matmul: every variant the adapter offers ----
for (const variant of MATMUL_VARIANTS) {
  check('matmul', `${variant}: odd and aligned sizes, every transpose, batched, gradients`, async () => {
    if (variant === 'subgroup' && !gpu().hasSubgroups) return NO_SUBGROUPS;
    setMatmulVariant(variant);
    try {
      let seed = 1;
      const stored = (batch: number[], rows: number, cols: number, trans: boolean) => [...batch, ...(trans ? [cols, rows] : [rows, cols])];
      for (const [batch, [m, n, k]] of [[[], [3, 7, 5]], [[], [257, 65, 7]], [[], [65, 3, 257]], [[], [64, 96, 128]], [[3], [33, 17, 9]]] as [number[], number[]][]) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = randArr(stored(batch, m, k, transA), seed++);
            const b = randArr(stored(batch, k, n, transB), seed++);
            const opts = { transposeA: transA, transposeB: transB };
            const r = await forwardBackward((x, y) => matmul(x, y, { transA, transB }), [a, b], upstream(seed++));
            const what = `[${batch}] ${m}x${n}x${k} transA=${transA} transB=${transB}`;
            assertClose(r.y, MM.matmul(a, b, opts), 1e-4, what);
            const want = MM.matmulBackward(a, b, r.g, opts);
            assertClose(r.grads[0], want.ga, 1e-4, `${what} dA`);
            assertClose(r.grads[1], want.gb, 1e-4, `${what} dB`);
          }
        }
      }
    } finally {
      setMatmulVariant(null);
    }
  });
}

// ---- conv2d: every variant, ResNet-50 / Inception v3 shapes and awkward ones, forward and all gradients ----
const CONV_CASES: { name: string; x: number[]; w: number[]; opts: Conv2dOptions; bias?: boolean }[] = [
  { name: 'stem 7x7 s2 p3, 3 channels', x: [2, 3, 15, 13], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 } },
  { name: '1x1 (GEMM path)', x: [2, 16, 5, 6], w: [12, 16, 1, 1], opts: {} },
  { name: '3x3 s1 p1 with bias', x: [1, 8, 7, 9], w: [40, 8, 3, 3], opts: { padding: 1 }, bias: true },
  { name: '3x3 s2 p1', x: [2, 12, 9, 8], w: [16, 12, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: '1x7 p(0,3)', x: [2, 16, 7, 7], w: [20, 16, 1, 7], opts: { padding: [0, 3] } },
  { name: 'many input channels', x: [1, 37, 5, 4], w: [6, 37, 3, 3], opts: { padding: 1 } },
  { name: 'asymmetric padding', x: [2, 6, 8, 7], w: [9, 6, 3, 3], opts: { padding: [1, 2, 0, 3] } },
  { name: 'dilation (2, 3) stride 2', x: [2, 4, 11, 12], w: [5, 4, 3, 3], opts: { dilation: [2, 3], stride: 2, padding: 1 } },
  { name: 'groups 2 with bias', x: [2, 8, 6, 6], w: [6, 4, 3, 3], opts: { groups: 2, padding: 1 }, bias: true },
  { name: 'depthwise', x: [1, 6, 7, 7], w: [6, 1, 3, 3], opts: { groups: 6, padding: 1 } },
];
for (const variant of CONV2D_VARIANTS) {
  check('conv2d', `${variant}: ${CONV_CASES.length} configurations, forward and gradients w.r.t. input, weight and bias`, async () => {
    if (variant === 'subgroup' && !gpu().hasSubgroups) return NO_SUBGROUPS;
    setConv2dVariant(variant);
    try {
      let seed = 1;
      for (const c of CONV_CASES) {
        const inputs = [randArr(c.x, seed++), randArr(c.w, seed++), ...(c.bias ? [randArr([c.w[0]], seed++)] : [])];
        const ropts = c.opts as CV.Conv2dOpts;
        const r = await forwardBackward((x, w, b) => conv2d(x, w, b ?? null, c.opts), inputs, upstream(seed++));
        assertClose(r.y, CV.conv2d(inputs[0], inputs[1], inputs[2] ?? null, ropts), 1e-4, `${c.name}: forward`);
        const want = CV.conv2dBackward(inputs[0], inputs[1], r.g, ropts);
        assertClose(r.grads[0], want.gx, 1e-4, `${c.name}: d/dx`);
        assertClose(r.grads[1], want.gw, 1e-4, `${c.name}: d/dweight`);
        if (c.bias) assertClose(r.grads[2], want.gb, 1e-4, `${c.name}: d/dbias`);
      }
    } finally {
      setConv2dVariant(null);
    }
  });
}

// ---- batch norm: both variants, training and eval, with and without the fused ReLU ----
for (const variant of ['subgroup', 'workgroup'] as const) {
  check('batchnorm', `${variant}: forward, running statistics and gradients (training / eval, fused ReLU, vec4 and odd planes)`, async () => {
    if (variant === 'subgroup' && !gpu().hasSubgroups) return NO_SUBGROUPS;
    setBatchNormVariant(variant);
    try {
      let seed = 100;
      for (const [shape, training, reluOn] of [
        [[2, 3, 4, 4], true, false],
        [[3, 7, 13, 7], true, true],
        [[1, 16, 3, 3], false, false],
        [[5, 1, 7, 13], false, true],
      ] as [number[], boolean, boolean][]) {
        const ch = shape[1];
        const [x, w, b, rm, rv] = [randArr(shape, seed++, -2, 3), randArr([ch], seed++, 0.5, 1.5), randArr([ch], seed++), randArr([ch], seed++), randArr([ch], seed++, 0.5, 2)].map(f32);
        const gy = f32(randArr(shape, seed++));
        const opts = { training, momentum: 0.1, eps: 1e-5 };
        const ref = BN.batchNorm2d(x, rm, rv, w, b, opts);
        const keep = (i: number) => !reluOn || ref.y.data[i] > 0;
        const masked = { data: gy.data.map((g, i) => (keep(i) ? g : 0)), shape };
        const want = BN.batchNorm2dBackward(x, rm, rv, w, masked, opts);
        const tag = `[${shape}] training=${training} relu=${reluOn}`;
        await scopeAsync(async () => {
          const [xt, wt, bt] = [toGpu(x, true), toGpu(w, true), toGpu(b, true)];
          const [rmt, rvt] = [toGpu(rm), toGpu(rv)];
          const y = batchNorm2d(xt, wt, bt, rmt, rvt, { ...opts, relu: reluOn });
          y.backward(toGpu(gy));
          assertClose(await y.toArray(), ref.y.data.map((v, i) => (keep(i) ? v : 0)), 1e-5, `y ${tag}`);
          assertClose(await rmt.toArray(), ref.runningMean!, 1e-5, `running mean ${tag}`);
          assertClose(await rvt.toArray(), ref.runningVar!, 1e-5, `running var ${tag}`);
          assertClose(await xt.grad!.toArray(), want.gx, 2e-5, `grad x ${tag}`);
          assertClose(await wt.grad!.toArray(), want.gw, 2e-5, `grad weight ${tag}`);
          assertClose(await bt.grad!.toArray(), want.gb, 2e-5, `grad bias ${tag}`);
        });
      }
    } finally {
      setBatchNormVariant(null);
    }
  });
}

// ---- pooling ----
check('pool', 'max, average and adaptive average pooling, forward and backward (ceil mode, padding, ties)', async () => {
  const configs: { shape: number[]; kernel: [number, number]; stride: [number, number]; padding: [number, number]; ceilMode: boolean }[] = [
    { shape: [1, 3, 5, 5], kernel: [2, 2], stride: [2, 2], padding: [1, 1], ceilMode: true },
    { shape: [1, 2, 7, 7], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true },
    { shape: [2, 3, 13, 7], kernel: [3, 2], stride: [1, 2], padding: [1, 0], ceilMode: false },
    { shape: [1, 5, 13, 13], kernel: [5, 3], stride: [3, 3], padding: [2, 1], ceilMode: false },
  ];
  let seed = 1;
  for (const c of configs) {
    const ropts = { kernelSize: c.kernel, stride: c.stride, padding: c.padding, ceilMode: c.ceilMode };
    const tag = JSON.stringify(c);
    // Values from {0, 1, 2}: many ties, where the first maximum must take the gradient.
    const tied = { data: randArr(c.shape, seed++).data.map((v) => Math.floor((v + 1) * 1.5)), shape: c.shape };
    let r = await forwardBackward((t) => maxPool2d(t, c), [tied], upstream(seed++));
    assertClose(r.y, PL.maxPool2d(tied, ropts), 0, `max forward ${tag}`);
    assertClose(r.grads[0], PL.maxPool2dBackward(tied, r.g, ropts), 1e-6, `max backward ${tag}`);
    for (const countIncludePad of [true, false]) {
      const x = f32(randArr(c.shape, seed++));
      r = await forwardBackward((t) => avgPool2d(t, { ...c, countIncludePad }), [x], upstream(seed++));
      assertClose(r.y, PL.avgPool2d(x, { ...ropts, countIncludePad }), 1e-6, `avg forward ${tag} countIncludePad=${countIncludePad}`);
      assertClose(r.grads[0], PL.avgPool2dBackward(x, r.g, { ...ropts, countIncludePad }), 1e-6, `avg backward ${tag}`);
    }
  }
  for (const [shape, size] of [[[2, 3, 7, 7], [1, 1]], [[2, 1, 13, 7], [5, 3]], [[1, 1, 3, 3], [7, 5]]] as [number[], [number, number]][]) {
    const x = f32(randArr(shape, seed++));
    const r = await forwardBackward((t) => adaptiveAvgPool2d(t, size), [x], upstream(seed++));
    assertClose(r.y, PL.adaptiveAvgPool2d(x, size), 1e-6, `adaptive [${shape}] -> ${size}`);
    assertClose(r.grads[0], PL.adaptiveAvgPool2dBackward(x, r.g, size), 1e-6, `adaptive backward [${shape}] -> ${size}`);
  }
});

// ---- softmax and cross-entropy ----
check('softmax', 'softmax and logSoftmax over each axis (also |logits| ~ 1e4), forward and backward', async () => {
  for (const [name, op, fwd, bwd] of [
    ['softmax', softmax, SM.softmax, SM.softmaxBackward],
    ['logSoftmax', logSoftmax, SM.logSoftmax, SM.logSoftmaxBackward],
  ] as const) {
    for (const [shape, axis, scale] of [[[4, 1000], -1, 4], [[3, 7, 13], 1, 4], [[2, 3, 7, 3], 0, 4], [[5, 300], -1, 1e4]] as [number[], number, number][]) {
      const x = f32(randArr(shape, shape[0] + axis, -scale, scale));
      const r = await forwardBackward((t) => op(t, axis), [x], upstream(7));
      assertClose(r.y, fwd(x, axis), 1e-5, `${name} [${shape}] axis ${axis} forward`);
      assertClose(r.grads[0], bwd(x, r.g, axis), 1e-5, `${name} [${shape}] axis ${axis} backward`);
    }
  }
});
check('softmax', 'crossEntropy loss and gradient (label smoothing, ignored rows, 1000 classes)', async () => {
  for (const [n, c, labelSmoothing, labels] of [
    [3, 7, 0, [2, -100, 0]],
    [8, 10, 0.1, [1, 2, 3, 4, 5, 6, 7, 8]],
    [2, 1000, 0.37, [999, 3]],
  ] as [number, number, number, number[]][]) {
    const logits = f32(randArr([n, c], n * c, -5, 5));
    const got = await scopeAsync(async () => {
      const x = toGpu(logits, true);
      const loss = crossEntropy(x, Tensor.fromArray(labels, [n], 'i32'), { labelSmoothing });
      loss.backward(Tensor.fromArray([1.5], []));
      return { loss: await loss.item(), gx: await x.grad!.toArray() };
    });
    const tag = `[${n}, ${c}] smoothing ${labelSmoothing}`;
    assertClose([got.loss], [SM.crossEntropy(logits, labels, { labelSmoothing })], 1e-5, `loss ${tag}`);
    assertClose(got.gx, SM.crossEntropyBackward(logits, labels, { labelSmoothing }, 1.5), 1e-5, `gradient ${tag}`);
  }
});

// ---- upsampling ----
check('upsample', 'bilinear upsampling (align_corners false) up and down, forward and backward; 7x7 -> 224x224', async () => {
  for (const [shape, size] of [[[1, 1, 7, 7], [224, 224]], [[2, 3, 1, 1], [3, 5]], [[1, 2, 13, 13], [1, 1]], [[3, 1, 13, 7], [5, 16]]] as [number[], [number, number]][]) {
    const x = f32(randArr(shape, shape[2] * 10 + size[0]));
    const r = await forwardBackward((t) => upsampleBilinear(t, size), [x], upstream(3));
    assertClose(r.y, UP.upsampleBilinear2d(x, size), 1e-5, `[${shape}] -> ${size} forward`);
    assertClose(r.grads[0], UP.upsampleBilinear2dBackward(x, r.g, size), 1e-5, `[${shape}] -> ${size} backward`);
  }
});

// ---- dropout: the mask is the documented Philox one, so identical on every implementation ----
check('dropout', 'the mask is the documented Philox-2x32-10 mask (exact), values and gradients match, same seed same mask', async () => {
  for (const [shape, p, seed] of [[[7, 13], 0.1, 0xffffffff], [[3, 64, 13], 0.5, 12345], [[1000], 0.9, 7]] as [number[], number, number][]) {
    const x = f32(randArr(shape, seed % 1000, 0.5, 2));
    const mask = DO.philoxMask(shape, p, seed);
    const first = await forwardBackward((t) => dropout(t, p, { seed }), [x], upstream(11));
    const again = await forwardBackward((t) => dropout(t, p, { seed }), [x], upstream(11));
    const tag = `[${shape}] p ${p} seed ${seed}`;
    assertClose(first.y.map((v) => (v !== 0 ? 1 : 0)), mask, 0, `mask ${tag}`);
    assertClose(first.y, DO.dropout(x, mask, p), 1e-6, `forward ${tag}`);
    assertClose(first.grads[0], DO.dropoutBackward(mask, first.g, p), 1e-6, `backward ${tag}`);
    assertClose(again.y, first.y, 0, `same seed, same values ${tag}`);
  }
});

/** Starts the GPU on the page's WebGPU and runs every case; one failing case does not stop the others. */
async function runKernelSuite(): Promise<{ adapter: string; subgroupSize: number; results: CaseResult[] }> {
  setPlatform(browserPlatform());
  const g = await initGPU();
  const results: CaseResult[] = [];
  for (const c of cases) {
    const started = performance.now();
    try {
      const skipped = (await c.run()) ?? undefined;
      results.push({ family: c.family, name: c.name, ok: true, skipped, ms: performance.now() - started });
    } catch (e) {
      results.push({ family: c.family, name: c.name, ok: false, error: (e as Error).message, ms: performance.now() - started });
    }
  }
  return { adapter: `${g.facts.vendor} ${g.facts.architecture} ${g.facts.description}`.trim(), subgroupSize: g.facts.subgroupSize, results };
}

(globalThis as { runKernelSuite?: typeof runKernelSuite }).runKernelSuite = runKernelSuite;
