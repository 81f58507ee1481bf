// Row norms, L2 normalisation and the ArcFace / SphereFace margins (forward and backward) against the
// float64 reference and finite differences; the heads' logits and gradients; heads training on a tiny
// separable problem; attachHead on every model.
//
// Tolerances, relative to the largest reference value:
//   1e-5 for ops and heads against the reference: a few f32 operations per element and row sums of up to
//     65 terms; SphereFace's T_4 by recurrence sums terms up to 8 into a value up to 1, and WGSL's acos may
//     round k differently from float64 at an interval boundary, where psi and psi' are continuous. Measured
//     <= 3e-7, and 3e-6 for ArcFace's slope ~982 just inside the clamp;
//   1e-6 for the float64 reference against its own finite differences (see reference/gradcheck.ts);
//   5e-4 for finite differences of the f32 GPU forward: step 1e-3 gives ~1e-4 rounding (6e-8 |loss| / 2e-3)
//     and ~3e-5 truncation (SphereFace's T_4''' = 192 c at lambda 0); measured 7e-5.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Adam,
  Tensor,
  arcFaceMargin,
  crossEntropy,
  normalizeRows,
  rowNorms,
  scopeAsync,
  sphereFaceLambda,
  sphereFaceMargin,
} from '../engine/index.ts';
import { ArcFaceHead, Linear, Module, PassThrough, SphereFaceHead, attachHead, classifierPath, type Head, type HeadKind } from '../engine/nn/index.ts';
import { createModel } from '../models/index.ts';
import { toGpu, asF32 } from './gpu.ts';
import * as R from './reference/margin.ts';
import { checkBackward, numericGrad } from './reference/gradcheck.ts';
import { type Arr, assertClose, dot, fromArray, randArr, rng } from './reference/tensor.ts';

const TOL = 1e-5;
const FD_TOL = 5e-4;

/** Cosines in [-0.98, 0.98] at least `gap` away from each kink (ArcFace's branch points). */
function cosineArr(shape: number[], seed: number, kinks: number[] = [], gap = 0.02): Arr {
  const a = randArr(shape, seed, -0.98, 0.98);
  for (let i = 0; i < a.data.length; i++) {
    for (const k of kinks) if (Math.abs(a.data[i] - k) < gap) a.data[i] = k + (a.data[i] < k ? -gap : gap);
  }
  return asF32(a);
}

/** Labels for N rows of C classes; every fourth row gets -1 or C (no target: the row passes unchanged). */
function labelsFor(n: number, c: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, (_, i) => (i % 4 === 3 ? (i % 8 === 3 ? -1 : c) : r.int(c)));
}

/** GPU forward and backward of op on x with upstream gradient gy. */
async function run(op: (x: Tensor) => Tensor, x: Arr, gy: Arr) {
  return scopeAsync(async () => {
    const xt = toGpu(x, true);
    const y = op(xt);
    y.backward(toGpu(gy));
    return { y: await y.toArray(), gx: await xt.grad!.toArray() };
  });
}

/** Central differences (step h) of sum(op(x) * r) computed on the GPU in f32. */
async function gpuNumericGrad(op: (x: Tensor) => Tensor, x: Arr, r: Arr, h = 1e-3): Promise<Float64Array> {
  const loss = (data: Float64Array) => scopeAsync(async () => dot(await op(toGpu({ data, shape: x.shape })).toArray(), r.data));
  const g = new Float64Array(x.data.length);
  for (let i = 0; i < g.length; i++) {
    const up = Float64Array.from(x.data);
    const down = Float64Array.from(x.data);
    up[i] = Math.fround(x.data[i] + h);
    down[i] = Math.fround(x.data[i] - h);
    g[i] = ((await loss(up)) - (await loss(down))) / (up[i] - down[i]);
  }
  return g;
}

const ARC_KINKS = (m: number) => [Math.cos(Math.PI - m), 0];

// ---- the float64 references against their own finite differences ----

test('reference: row norms, normalisation and both margins match float64 finite differences', () => {
  const x = randArr([4, 7], 1);
  checkBackward(([a]) => R.rowNorms(a), ([a], gy) => [R.rowNormsBackward(a, gy)], [x], { what: 'rowNorms' });
  checkBackward(([a]) => R.normalizeRows(a), ([a], gy) => [R.normalizeRowsBackward(a, gy)], [x], { what: 'normalizeRows' });
  const labels = labelsFor(6, 5, 2);
  for (const opts of [{ m: 0.5 }, { m: 0.3, easyMargin: true }, { m: 0.5, easyMargin: true }]) {
    const c = cosineArr([6, 5], 3, ARC_KINKS(opts.m));
    checkBackward(([a]) => R.arcFaceMargin(a, labels, opts), ([a], gy) => [R.arcFaceMarginBackward(a, labels, gy, opts)], [c], {
      what: `arcFace ${JSON.stringify(opts)}`,
    });
  }
  for (const opts of [{ m: 4, lambda: 0 }, { m: 4, lambda: 5 }, { m: 2, lambda: 1 }, { m: 3, lambda: 1500 }]) {
    const c = cosineArr([6, 5], 4);
    checkBackward(([a]) => R.sphereFaceMargin(a, labels, opts), ([a], gy) => [R.sphereFaceMarginBackward(a, labels, gy, opts)], [c], {
      what: `sphereFace ${JSON.stringify(opts)}`,
    });
  }
});

test('reference: hand values (ArcFace at theta = 60 deg, past pi - m, easy margin; SphereFace psi on each interval)', () => {
  const m = 0.5;
  const one = (v: number) => ({ data: Float64Array.of(v), shape: [1, 1] });
  // cos 60 deg = 0.5 -> cos(pi/3 + 0.5).
  assertClose(R.arcFaceMargin(one(0.5), [0], { m }).data, [Math.cos(Math.PI / 3 + 0.5)], 1e-12, 'arc 60 deg');
  // c = -0.95 < cos(pi - 0.5) = -0.8776: c - 0.5 sin(pi - 0.5).
  assertClose(R.arcFaceMargin(one(-0.95), [0], { m }).data, [-0.95 - 0.5 * Math.sin(0.5)], 1e-12, 'arc past pi - m');
  assertClose(R.arcFaceMargin(one(-0.2), [0], { m, easyMargin: true }).data, [-0.2], 0, 'easy margin keeps c <= 0');
  // psi at theta = 30, 60, 120, 170 deg (k = 0, 1, 2, 3), lambda 0: (-1)^k cos 4 theta - 2k.
  for (const [deg, k] of [[30, 0], [60, 1], [120, 2], [170, 3]]) {
    const t = (deg * Math.PI) / 180;
    const want = (-1) ** k * Math.cos(4 * t) - 2 * k;
    assertClose(R.sphereFaceMargin(one(Math.cos(t)), [0], { lambda: 0 }).data, [want], 1e-12, `psi at ${deg} deg`);
    // cos 4 theta = 8c^4 - 8c^2 + 1.
    const c = Math.cos(t);
    assert.ok(Math.abs(Math.cos(4 * t) - (8 * c ** 4 - 8 * c ** 2 + 1)) < 1e-12);
  }
  assert.is(sphereFaceLambda(0), 1500);
  assert.ok(Math.abs(sphereFaceLambda(1) - 1500 / 1.1) < 1e-9);
  assert.is(sphereFaceLambda(100000), 5);
});

// ---- GPU ops against the reference ----

test('rowNorms and normalizeRows: forward and gradient match the reference on odd sizes, zero rows included', async () => {
  for (const [k, shape] of [[1, 1], [5, 7], [13, 33], [3, 65], [2, 3, 5]].entries()) {
    const x = asF32(randArr(shape, 10 + k, -2, 2));
    if (k === 2) x.data.fill(0, 33, 66); // one all-zero row
    const gyNorm = asF32(randArr([...shape.slice(0, -1), 1], 20 + k));
    const gy = asF32(randArr(shape, 30 + k));
    const a = await run(rowNorms, x, gyNorm);
    assertClose(a.y, R.rowNorms(x), TOL, `rowNorms [${shape}]`);
    assertClose(a.gx, R.rowNormsBackward(x, gyNorm), TOL, `rowNorms grad [${shape}]`);
    const b = await run((t) => normalizeRows(t), x, gy);
    assertClose(b.y, R.normalizeRows(x), TOL, `normalizeRows [${shape}]`);
    const want = R.normalizeRowsBackward(x, gy).data;
    if (k !== 2) assertClose(b.gx, want, TOL, `normalizeRows grad [${shape}]`);
    else {
      // The zero row's gradient is g / eps (1e12 g), as F.normalize: compare it apart, on its own scale.
      assertClose(b.gx.subarray(33, 66), want.subarray(33, 66), TOL, 'normalizeRows grad, zero row');
      assertClose([...b.gx.subarray(0, 33), ...b.gx.subarray(66)], [...want.subarray(0, 33), ...want.subarray(66)], TOL, 'normalizeRows grad, other rows');
    }
  }
});

test('arcFaceMargin: forward and gradient match the reference (both variants, m 0.5 / 0.3, labels -1 and C skip rows)', async () => {
  for (const [k, [n, c]] of [[1, 1], [5, 7], [13, 33], [64, 3]].entries()) {
    for (const opts of [{ m: 0.5 }, { m: 0.5, easyMargin: true }, { m: 0.3 }]) {
      const x = cosineArr([n, c], 40 + k, ARC_KINKS(opts.m), 1e-3);
      const labels = labelsFor(n, c, 50 + k);
      const gy = asF32(randArr([n, c], 60 + k));
      const out = await run((t) => arcFaceMargin(t, Tensor.fromArray(labels, [n], 'i32'), opts), x, gy);
      const tag = `[${n}, ${c}] ${JSON.stringify(opts)}`;
      assertClose(out.y, R.arcFaceMargin(x, labels, opts), TOL, `forward ${tag}`);
      assertClose(out.gx, R.arcFaceMarginBackward(x, labels, gy, opts), TOL, `grad ${tag}`);
    }
  }
});

test('arcFaceMargin: the clamp at |c| = 1 - 1e-7 (finite slope inside, zero gradient beyond, no NaN at +-1)', async () => {
  const edge = R.ARC_LIMIT;
  const values = [edge, -edge, 1, -1, Math.fround(1 + 1e-6), 0.9999, -0.9999];
  const x = fromArray(values, [values.length, 1]);
  const labels = new Int32Array(values.length);
  const gy = fromArray(new Array(values.length).fill(1), [values.length, 1]);
  const out = await run((t) => arcFaceMargin(t, Tensor.fromArray(labels, [values.length], 'i32')), x, gy);
  assert.ok([...out.y, ...out.gx].every(Number.isFinite), `finite: ${out.y} / ${out.gx}`);
  assertClose(out.y, R.arcFaceMargin(x, labels), TOL, 'forward at the edges');
  assertClose(out.gx, R.arcFaceMarginBackward(x, labels, gy), TOL, 'gradient at the edges');
  assert.equal([out.gx[2], out.gx[3], out.gx[4]], [0, 0, 0], 'no gradient past the clamp');
  assert.ok(out.gx[0] > 900, `slope ~ 982 just inside the clamp, got ${out.gx[0]}`);
});

test('sphereFaceMargin: forward and gradient match the reference (m 4, 3, 1; lambda 0, 5, 1500; every k interval)', async () => {
  for (const [k, [n, c]] of [[1, 1], [5, 7], [13, 33], [64, 3]].entries()) {
    for (const opts of [{ m: 4, lambda: 0 }, { m: 4, lambda: 5 }, { m: 4, lambda: 1500 }, { m: 3, lambda: 1 }, { m: 1, lambda: 2 }]) {
      const x = cosineArr([n, c], 70 + k);
      const labels = labelsFor(n, c, 80 + k);
      const gy = asF32(randArr([n, c], 90 + k));
      const out = await run((t) => sphereFaceMargin(t, Tensor.fromArray(labels, [n], 'i32'), opts), x, gy);
      const tag = `[${n}, ${c}] ${JSON.stringify(opts)}`;
      assertClose(out.y, R.sphereFaceMargin(x, labels, opts), TOL, `forward ${tag}`);
      assertClose(out.gx, R.sphereFaceMarginBackward(x, labels, gy, opts), TOL, `grad ${tag}`);
    }
  }
  // Exactly +-1 and just past: the reference's clamp to [-1, 1], gradient 0 outside.
  const x = fromArray([1, -1, Math.fround(1 + 1e-6), Math.fround(-1 - 1e-6)], [4, 1]);
  const labels = new Int32Array(4);
  const gy = fromArray([1, 1, 1, 1], [4, 1]);
  const out = await run((t) => sphereFaceMargin(t, Tensor.fromArray(labels, [4], 'i32'), { lambda: 0 }), x, gy);
  assertClose(out.y, [1, -7, 1, -7], TOL, 'psi(0) = 1, psi(pi) = 1 - 2m');
  assert.equal([out.gx[2], out.gx[3]], [0, 0]);
});

test('margins and normalisation: gradients match finite differences of the GPU forward', async () => {
  const labels = Int32Array.of(2, 0, -1);
  const cases: [string, (t: Tensor) => Tensor, Arr][] = [
    ['rowNorms', rowNorms, asF32(randArr([3, 5], 100))],
    ['normalizeRows', (t) => normalizeRows(t), asF32(randArr([3, 5], 101))],
    ['arcFace', (t) => arcFaceMargin(t, Tensor.fromArray(labels, [3], 'i32')), cosineArr([3, 4], 102, ARC_KINKS(0.5))],
    ['arcFace easy', (t) => arcFaceMargin(t, Tensor.fromArray(labels, [3], 'i32'), { easyMargin: true }), cosineArr([3, 4], 103, ARC_KINKS(0.5))],
    ['sphereFace', (t) => sphereFaceMargin(t, Tensor.fromArray(labels, [3], 'i32'), { lambda: 0 }), cosineArr([3, 4], 104)],
  ];
  for (const [name, op, x] of cases) {
    const r = asF32(randArr(name.startsWith('rowNorms') ? [3, 1] : x.shape, 105));
    const { gx } = await run(op, x, r);
    assertClose(gx, await gpuNumericGrad(op, x, r), FD_TOL, `${name} vs finite differences`);
  }
});

// ---- heads ----

/** A head's logits and the gradients of sum(logits * r) w.r.t. the embedding and the weight. */
async function headRun(head: ArcFaceHead | SphereFaceHead, emb: Arr, labels: Int32Array | null, r: Arr) {
  return scopeAsync(async () => {
    const e = toGpu(emb, true);
    const y = head.logits(e, labels && Tensor.fromArray(labels, [labels.length], 'i32'));
    y.backward(toGpu(r));
    const out = { y: await y.toArray(), ge: await e.grad!.toArray(), gw: await head.weight.grad!.toArray() };
    head.weight.grad!.dispose();
    head.weight.grad = null;
    return out;
  });
}

test('ArcFaceHead / SphereFaceHead: logits match the composed reference; gradients of embedding and weight match float64 finite differences', async () => {
  const [n, f, c] = [5, 37, 7];
  const emb = asF32(randArr([n, f], 110, -2, 2));
  const labels = labelsFor(n, c, 111);
  const r = asF32(randArr([n, c], 112));
  const arc = new ArcFaceHead(f, c, { m: 0.4 }).initialize(113);
  const sphere = new SphereFaceHead(f, c).initialize(114);
  sphere.iteration = 30; // lambda = 1500 / 4 = 375
  for (const [head, reference] of [
    [arc, (e: Arr, w: Arr, l: Int32Array | null) => R.arcFaceLogits(e, w, l, { m: 0.4 })],
    [sphere, (e: Arr, w: Arr, l: Int32Array | null) => R.sphereFaceLogits(e, w, l, { lambda: 375 })],
  ] as const) {
    const w = { data: Float64Array.from(await head.weight.toArray()), shape: [c, f] };
    for (const l of [labels, null]) {
      const got = await headRun(head, emb, l, r);
      const tag = `${head.kind} labels ${l ? 'given' : 'null'}`;
      assertClose(got.y, reference(emb, w, l), TOL, `logits, ${tag}`);
      const loss = (e: Arr, v: Arr) => dot(reference(e, v, l), r);
      assertClose(got.ge, numericGrad((d) => loss({ data: d, shape: emb.shape }, w), Float64Array.from(emb.data)), TOL, `grad embedding, ${tag}`);
      assertClose(got.gw, numericGrad((d) => loss(emb, { data: d, shape: w.shape }), Float64Array.from(w.data)), TOL, `grad weight, ${tag}`);
    }
  }
  // Reference inits: ArcFace N(0, 0.01); SphereFace class vectors of unit length.
  const aw = await arc.weight.toArray();
  const std = Math.sqrt(aw.reduce((s, v) => s + v * v, 0) / aw.length);
  assert.ok(std > 0.008 && std < 0.012, `ArcFace init std ${std}`);
  assertClose(R.rowNorms({ data: Float64Array.from(await sphere.weight.toArray()), shape: [c, f] }), new Array(c).fill(1), 1e-6, 'SphereFace init norms');
  arc.dispose();
  sphere.dispose();
});

/** A Linear(6 -> 4) backbone and a final Linear(4 -> 3) for attachHead to replace. */
class TinyNet extends Module {
  readonly backbone: Linear;
  fc: Linear;
  constructor() {
    super();
    this.backbone = this.addModule('backbone', new Linear(6, 4));
    this.fc = this.addModule('fc', new Linear(4, 3));
  }
  forward(x: Tensor): Tensor {
    return this.fc.call(this.backbone.call(x));
  }
}

/** Three Gaussian clusters in 6-D; the backbone and the head train together with Adam on the whole set. */
async function trainTiny(kind: HeadKind): Promise<{ before: number; after: number; lossBefore: number; lossAfter: number }> {
  const r = rng(120);
  const [perClass, classes, dim] = [20, 3, 6];
  const centres = Array.from({ length: classes }, () => Array.from({ length: dim }, () => r.normal(0, 2)));
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < perClass * classes; i++) {
    const k = i % classes;
    xs.push(...centres[k].map((v) => v + r.normal(0, 0.5)));
    ys.push(k);
  }
  const n = ys.length;
  const model = new TinyNet().initialize(121);
  const head: Head = attachHead(model, kind, classes, 122);
  const x = Tensor.fromArray(xs, [n, dim]);
  const y = Tensor.fromArray(ys, [n], 'i32');
  const optimizer = new Adam([...model.parameters(), ...head.parameters()], { lr: 0.02 });
  const accuracy = () =>
    scopeAsync(async () => {
      const logits = await head.logits(model.call(x), null).toArray();
      let correct = 0;
      for (let i = 0; i < n; i++) {
        const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
        if (row.indexOf(Math.max(...row)) === ys[i]) correct++;
      }
      return correct / n;
    });
  const trainStep = () =>
    scopeAsync(async () => {
      head.step();
      const loss = crossEntropy(head.logits(model.call(x), y), y);
      loss.backward();
      optimizer.step();
      for (const p of optimizer.params) {
        p.grad?.dispose();
        p.grad = null;
      }
      return loss.item();
    });
  const before = await accuracy();
  const lossBefore = await trainStep();
  let lossAfter = lossBefore;
  for (let i = 0; i < 150; i++) lossAfter = await trainStep();
  const after = await accuracy();
  assert.is(head.iteration, 151);
  for (const t of [x, y]) t.dispose();
  model.dispose();
  head.dispose();
  return { before, after, lossBefore, lossAfter };
}

for (const kind of ['linear', 'arcface', 'sphereface'] as const) {
  test(`${kind} head trains: 3 separable clusters, accuracy rises to >= 95% and the loss falls`, async () => {
    const { before, after, lossBefore, lossAfter } = await trainTiny(kind);
    assert.ok(after >= 0.95 && after > before, `accuracy ${before} -> ${after}`);
    assert.ok(lossAfter < lossBefore, `loss ${lossBefore} -> ${lossAfter}`);
  });
}

test('attachHead: every model outputs its embedding (2048 / 2048 / 1024 / 4096); the final Linear becomes a PassThrough', () => {
  const expected: [string, string, number][] = [
    ['resnet50', 'fc', 2048],
    ['inception_v3', 'fc', 2048],
    ['densenet121', 'classifier', 1024],
    ['vgg16', 'classifier.6', 4096],
  ];
  for (const [name, path, dim] of expected) {
    const model = createModel(name, { numClasses: 5, meta: true });
    assert.is(classifierPath(model), path, name);
    const head = attachHead(model, 'sphereface', 5, 1);
    assert.is(head.inFeatures, dim, `${name} embedding size`);
    assert.ok(model.get(path) instanceof PassThrough, `${name}.${path} replaced`);
    assert.is(classifierPath(model), path, `${name}: the PassThrough marks the embedding`);
    assert.not.ok([...model.stateDictShapes().keys()].some((k) => k.startsWith(`${path}.`)), `${name}: no ${path} keys left`);
    assert.throws(() => attachHead(model, 'arcface', 5), /already has a head/);
    head.dispose();
  }
});

test('attachHead on a real ResNet-50: model.call returns [N, 2048]; the head gives [N, C]; gradients reach the backbone', async () => {
  const model = createModel('resnet50', { numClasses: 3, seed: 1 });
  const head = attachHead(model, 'arcface', 3, 2);
  await scopeAsync(async () => {
    const emb = model.call(Tensor.normal([2, 3, 32, 32], 0, 1, 3)) as Tensor;
    assert.equal([...emb.shape], [2, 2048]);
    const labels = Tensor.fromArray([0, 2], [2], 'i32');
    const logits = head.logits(emb, labels);
    assert.equal([...logits.shape], [2, 3]);
    crossEntropy(logits, labels).backward();
    const [stemName, stem] = [...model.namedParameters()][0];
    assert.is(stemName, 'conv1.weight');
    const g = await stem.grad!.toArray();
    assert.ok(g.some((v) => v !== 0) && g.every(Number.isFinite));
  });
  model.dispose();
  head.dispose();
});

test.run();
