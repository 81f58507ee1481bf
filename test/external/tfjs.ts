/**
 * test/external/tfjs.ts — TF.js (CPU backend, float32) wrappers that take and return celgrad's NCHW / OIHW
 * float64 `Arr`s, used as an independent external check of the reference implementations.
 *
 * Call `await initTf()` once before anything else (selects the 'cpu' backend; sets PROD to silence TF.js's
 * "install tfjs-node" banner). Inputs are rounded to float32 on the way in; outputs come back as float64 copies
 * of TF's float32 results. Layouts are converted with tf.transpose (NCHW <-> NHWC, OIHW <-> HWIO).
 *
 * What TF.js can and cannot check (each wrapper throws on a configuration outside its range):
 *   conv2d forward: stride, explicit asymmetric padding [pt, pb, pl, pr], dilation (TF needs stride 1 when dilation
 *     > 1), groups (emulated: one TF conv per group, concatenated), optional bias.
 *   conv2d backprop input / filter ('Conv2DBackpropInput' / 'Conv2DBackpropFilter' through tf.engine().runKernel):
 *     stride, explicit asymmetric padding, groups (per group); no dilation (TF.js has no dilated conv gradients).
 *   max_pool2d forward and MaxPoolGrad: kernel, stride, symmetric padding, ceilMode; no dilation.
 *     TF ignores padded positions in a max (same as PyTorch's -inf padding); PyTorch's ceil-mode output count is
 *     reproduced by enlarging the bottom/right explicit padding to exactly the extra rows/cols PyTorch uses.
 *   avg_pool2d forward: countIncludePad false -> TF explicit padding (TF divides by the number of real input
 *     elements in the window, which is PyTorch's count_include_pad=False divisor, ceil mode included);
 *     countIncludePad true -> tf.pad with zeros first, then TF pooling whose only padding is the ceil-mode overhang
 *     (so TF's divisor = the window clipped at the padded bound = PyTorch's divisor). No divisorOverride.
 *   avg_pool2d backward (AvgPoolGrad): TF.js's CPU kernel always divides by kH*kW, even where its own forward
 *     excludes padding, so it agrees with PyTorch only for countIncludePad true (zero-padded input) and no
 *     ceil-mode overhang past the padded bound; other configurations throw.
 *   batch norm: tf.batchNorm with given per-channel mean/variance (eval mode, or training mode fed the batch
 *     statistics), and tf.moments for the biased batch statistics. TF.js's Node bundle registers no gradient
 *     functions (tf.grad fails), so batch-norm backward has no TF.js check: finite differences cover it.
 *
 * API
 *   initTf(): Promise<void>
 *   interface TfConvOpts { stride?: Pair; padding?: number | [ph, pw] | [pt, pb, pl, pr]; dilation?: Pair; groups?: number }
 *   tfConv2d(x, w, bias: Arr | null, opts): Arr
 *   tfConv2dBackpropInput(gy, w, xShape, opts): Arr         gx [N, C, H, W]
 *   tfConv2dBackpropFilter(x, gy, wShape, opts): Arr        gw [O, C/groups, kH, kW]
 *   interface TfPoolOpts { kernelSize: Pair; stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean }
 *   tfMaxPool2d(x, opts): Arr;      tfMaxPool2dBackward(x, gy, opts): Arr
 *   tfAvgPool2d(x, opts): Arr;      tfAvgPool2dBackward(x, gy, opts): Arr
 *   tfBatchNorm(x, mean, variance, weight, bias, eps): Arr
 *   tfMoments(x): { mean: Arr; variance: Arr }               per channel over N, H, W (biased variance)
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { type Arr, type Pair, pair, shapeStr } from '../reference/tensor.ts';

export async function initTf(): Promise<void> {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu') throw new Error(`TF.js backend is ${tf.getBackend()}, expected cpu`);
}

type Explicit = [[number, number], [number, number], [number, number], [number, number]];

function toTf(a: Arr): tf.Tensor {
  return tf.tensor(Float32Array.from(a.data), a.shape, 'float32');
}

/** Runs `build` inside tf.tidy and copies the result out as a float64 Arr. */
function run(build: () => tf.Tensor): Arr {
  const t = tf.tidy(build);
  const out: Arr = { data: Float64Array.from(t.dataSync()), shape: [...t.shape] };
  t.dispose();
  return out;
}

const toNHWC = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t as tf.Tensor4D, [0, 2, 3, 1]);
const toNCHW = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t as tf.Tensor4D, [0, 3, 1, 2]);
const toHWIO = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t as tf.Tensor4D, [2, 3, 1, 0]);
const toOIHW = (t: tf.Tensor): tf.Tensor4D => tf.transpose(t as tf.Tensor4D, [3, 2, 0, 1]);

export interface TfConvOpts {
  stride?: Pair;
  padding?: number | [number, number] | [number, number, number, number];
  dilation?: Pair;
  groups?: number;
}

function convPad(opts: TfConvOpts): Explicit {
  const p = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p.length === 2 ? [p[0], p[0], p[1], p[1]] : p;
  return [[0, 0], [pt, pb], [pl, pr], [0, 0]];
}

function attrs(a: Record<string, unknown>): tf.NamedAttrMap {
  return a as unknown as tf.NamedAttrMap;
}

export function tfConv2d(x: Arr, w: Arr, bias: Arr | null, opts: TfConvOpts = {}): Arr {
  const groups = opts.groups ?? 1;
  const [O, Cg] = w.shape;
  const Og = O / groups;
  const stride = pair(opts.stride ?? 1);
  const dilation = pair(opts.dilation ?? 1);
  if ((dilation[0] > 1 || dilation[1] > 1) && (stride[0] > 1 || stride[1] > 1)) {
    throw new Error('tfConv2d: TF.js needs stride 1 when dilation > 1');
  }
  return run(() => {
    const xt = toNHWC(toTf(x));
    const wt = toTf(w) as tf.Tensor4D;
    const ys: tf.Tensor4D[] = [];
    for (let g = 0; g < groups; g++) {
      const xg = tf.slice(xt, [0, 0, 0, g * Cg], [-1, -1, -1, Cg]);
      const wg = toHWIO(tf.slice(wt, [g * Og, 0, 0, 0], [Og, -1, -1, -1]));
      ys.push(tf.conv2d(xg, wg, stride, convPad(opts), 'NHWC', dilation));
    }
    let y: tf.Tensor4D = groups === 1 ? ys[0] : tf.concat(ys, 3);
    if (bias) y = tf.add(y, toTf(bias));
    return toNCHW(y);
  });
}

export function tfConv2dBackpropInput(gy: Arr, w: Arr, xShape: readonly number[], opts: TfConvOpts = {}): Arr {
  const groups = opts.groups ?? 1;
  const [O, Cg] = w.shape;
  const Og = O / groups;
  const dilation = pair(opts.dilation ?? 1);
  if (dilation[0] !== 1 || dilation[1] !== 1) throw new Error('tfConv2dBackpropInput: TF.js has no dilated conv gradient');
  const [N, , H, W] = xShape;
  return run(() => {
    const dy = toNHWC(toTf(gy));
    const wt = toTf(w) as tf.Tensor4D;
    const gxs: tf.Tensor4D[] = [];
    for (let g = 0; g < groups; g++) {
      const dyg = tf.slice(dy, [0, 0, 0, g * Og], [-1, -1, -1, Og]);
      const wg = toHWIO(tf.slice(wt, [g * Og, 0, 0, 0], [Og, -1, -1, -1]));
      gxs.push(
        tf.engine().runKernel<tf.Tensor4D>(
          'Conv2DBackpropInput',
          { dy: dyg, filter: wg },
          attrs({ strides: pair(opts.stride ?? 1), pad: convPad(opts), dataFormat: 'NHWC', inputShape: [N, H, W, Cg] }),
        ),
      );
    }
    return toNCHW(groups === 1 ? gxs[0] : tf.concat(gxs, 3));
  });
}

export function tfConv2dBackpropFilter(x: Arr, gy: Arr, wShape: readonly number[], opts: TfConvOpts = {}): Arr {
  const groups = opts.groups ?? 1;
  const [O, Cg, kh, kw] = wShape;
  const Og = O / groups;
  const dilation = pair(opts.dilation ?? 1);
  if (dilation[0] !== 1 || dilation[1] !== 1) throw new Error('tfConv2dBackpropFilter: TF.js has no dilated conv gradient');
  return run(() => {
    const xt = toNHWC(toTf(x));
    const dy = toNHWC(toTf(gy));
    const gws: tf.Tensor4D[] = [];
    for (let g = 0; g < groups; g++) {
      const xg = tf.slice(xt, [0, 0, 0, g * Cg], [-1, -1, -1, Cg]);
      const dyg = tf.slice(dy, [0, 0, 0, g * Og], [-1, -1, -1, Og]);
      const hwio = tf.engine().runKernel<tf.Tensor4D>(
        'Conv2DBackpropFilter',
        { x: xg, dy: dyg },
        attrs({ strides: pair(opts.stride ?? 1), pad: convPad(opts), dataFormat: 'NHWC', filterShape: [kh, kw, Cg, Og] }),
      );
      gws.push(toOIHW(hwio));
    }
    return groups === 1 ? gws[0] : tf.concat(gws, 0);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Pooling

export interface TfPoolOpts {
  kernelSize: Pair;
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
  countIncludePad?: boolean;
}

/** PyTorch's output size (pooling_output_shape, dilation 1), computed here independently of the reference. */
function torchOut(L: number, k: number, s: number, p: number, ceil: boolean): number {
  let out = Math.floor((L + 2 * p - k + (ceil ? s - 1 : 0)) / s) + 1;
  if (ceil && (out - 1) * s >= L + p) out -= 1;
  return out;
}

interface PoolPlan {
  k: [number, number];
  s: [number, number];
  p: [number, number];
  out: [number, number];
  /** Bottom / right padding that makes TF produce exactly PyTorch's output count on an input padded by p. */
  far: [number, number];
}

function poolPlan(xShape: readonly number[], opts: TfPoolOpts): PoolPlan {
  if (xShape.length !== 4) throw new Error(`tf pool wants [N,C,H,W], got ${shapeStr(xShape)}`);
  const k = pair(opts.kernelSize);
  const s = pair(opts.stride ?? opts.kernelSize);
  const p = pair(opts.padding ?? 0);
  const ceil = opts.ceilMode ?? false;
  const L = [xShape[2], xShape[3]];
  const out: [number, number] = [torchOut(L[0], k[0], s[0], p[0], ceil), torchOut(L[1], k[1], s[1], p[1], ceil)];
  const far: [number, number] = [0, 1].map((d) => Math.max(p[d], (out[d] - 1) * s[d] + k[d] - L[d] - p[d])) as [number, number];
  return { k, s, p, out, far };
}

function checkOut(y: Arr, plan: PoolPlan, what: string): Arr {
  if (y.shape[2] !== plan.out[0] || y.shape[3] !== plan.out[1]) {
    throw new Error(`${what}: TF gave ${shapeStr(y.shape)}, PyTorch's size is ${plan.out.join('x')}`);
  }
  return y;
}

export function tfMaxPool2d(x: Arr, opts: TfPoolOpts): Arr {
  const plan = poolPlan(x.shape, opts);
  const pad: Explicit = [[0, 0], [plan.p[0], plan.far[0]], [plan.p[1], plan.far[1]], [0, 0]];
  return checkOut(run(() => toNCHW(tf.maxPool(toNHWC(toTf(x)) as tf.Tensor4D, plan.k, plan.s, pad))), plan, 'tfMaxPool2d');
}

export function tfMaxPool2dBackward(x: Arr, gy: Arr, opts: TfPoolOpts): Arr {
  const plan = poolPlan(x.shape, opts);
  const pad: Explicit = [[0, 0], [plan.p[0], plan.far[0]], [plan.p[1], plan.far[1]], [0, 0]];
  return run(() => {
    const xt = toNHWC(toTf(x));
    const yt = tf.maxPool(xt, plan.k, plan.s, pad);
    const dy = toNHWC(toTf(gy));
    const dx = tf.engine().runKernel<tf.Tensor4D>(
      'MaxPoolGrad',
      { dy, input: xt, output: yt },
      attrs({ filterSize: plan.k, strides: plan.s, pad }),
    );
    return toNCHW(dx);
  });
}

/** countIncludePad: zero-pad by p first; the TF padding left is the ceil-mode overhang past the padded input. */
function avgIncludePlan(x: Arr, plan: PoolPlan): { zeroPad: Explicit; pad: Explicit } {
  const Hp = x.shape[2] + 2 * plan.p[0];
  const Wp = x.shape[3] + 2 * plan.p[1];
  const overH = Math.max(0, (plan.out[0] - 1) * plan.s[0] + plan.k[0] - Hp);
  const overW = Math.max(0, (plan.out[1] - 1) * plan.s[1] + plan.k[1] - Wp);
  return {
    zeroPad: [[0, 0], [plan.p[0], plan.p[0]], [plan.p[1], plan.p[1]], [0, 0]],
    pad: [[0, 0], [0, overH], [0, overW], [0, 0]],
  };
}

export function tfAvgPool2d(x: Arr, opts: TfPoolOpts): Arr {
  const plan = poolPlan(x.shape, opts);
  if (opts.countIncludePad ?? true) {
    const { zeroPad, pad } = avgIncludePlan(x, plan);
    return checkOut(
      run(() => toNCHW(tf.avgPool(tf.pad(toNHWC(toTf(x)), zeroPad) as tf.Tensor4D, plan.k, plan.s, pad))),
      plan,
      'tfAvgPool2d',
    );
  }
  const pad: Explicit = [[0, 0], [plan.p[0], plan.far[0]], [plan.p[1], plan.far[1]], [0, 0]];
  return checkOut(run(() => toNCHW(tf.avgPool(toNHWC(toTf(x)) as tf.Tensor4D, plan.k, plan.s, pad))), plan, 'tfAvgPool2d');
}

export function tfAvgPool2dBackward(x: Arr, gy: Arr, opts: TfPoolOpts): Arr {
  const plan = poolPlan(x.shape, opts);
  if (!(opts.countIncludePad ?? true)) {
    throw new Error('tfAvgPool2dBackward: TF.js AvgPoolGrad divides by kH*kW, so only countIncludePad=true agrees');
  }
  const { zeroPad, pad } = avgIncludePlan(x, plan);
  if (pad[1][1] > 0 || pad[2][1] > 0) {
    throw new Error('tfAvgPool2dBackward: a ceil-mode window overhangs the padded input; TF.js AvgPoolGrad would divide it by kH*kW');
  }
  const [, , H, W] = x.shape;
  return run(() => {
    const xp = tf.pad(toNHWC(toTf(x)), zeroPad) as tf.Tensor4D;
    const dy = toNHWC(toTf(gy));
    const dxp = tf.engine().runKernel<tf.Tensor4D>('AvgPoolGrad', { dy, input: xp }, attrs({ filterSize: plan.k, strides: plan.s, pad: 'valid' }));
    return toNCHW(tf.slice(dxp, [0, plan.p[0], plan.p[1], 0], [-1, H, W, -1]));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Batch norm

export function tfBatchNorm(x: Arr, mean: Arr, variance: Arr, weight: Arr | null, bias: Arr | null, eps: number): Arr {
  if (x.shape.length !== 4) throw new Error(`tfBatchNorm wants [N,C,H,W], got ${shapeStr(x.shape)}`);
  return run(() => {
    const xt = toNHWC(toTf(x));
    const y = tf.batchNorm(
      xt,
      toTf(mean) as tf.Tensor1D,
      toTf(variance) as tf.Tensor1D,
      bias ? (toTf(bias) as tf.Tensor1D) : undefined,
      weight ? (toTf(weight) as tf.Tensor1D) : undefined,
      eps,
    );
    return toNCHW(y);
  });
}

export function tfMoments(x: Arr): { mean: Arr; variance: Arr } {
  if (x.shape.length !== 4) throw new Error(`tfMoments wants [N,C,H,W], got ${shapeStr(x.shape)}`);
  const mean = run(() => tf.moments(toNHWC(toTf(x)), [0, 1, 2]).mean);
  const variance = run(() => tf.moments(toNHWC(toTf(x)), [0, 1, 2]).variance);
  return { mean, variance };
}
