/**
 * test/reference/upsample.ts — bilinear resize of NCHW images (F.interpolate(mode='bilinear')), float64,
 * forward and backward, any output size (up or down).
 *
 * Per spatial dim, for output index d of size out from an input of size L (PyTorch's area_pixel_* helpers):
 *   alignCorners = false (default): scale = scaleFactor ? 1/scaleFactor : L/out;  src = max(scale*(d+0.5) - 0.5, 0)
 *   alignCorners = true:            scale = out > 1 ? (L-1)/(out-1) : 0;          src = scale*d
 *   i0 = min(floor(src), L-1);  i1 = i0 + (i0 < L-1 ? 1 : 0);  l1 = clamp(src - i0, 0, 1);  l0 = 1 - l1
 *   y[n,c,h,w] = lh0*(lw0*x[h0,w0] + lw1*x[h0,w1]) + lh1*(lw0*x[h1,w0] + lw1*x[h1,w1])
 * scaleFactor only changes the index mapping (F.interpolate(scale_factor=s) with recompute_scale_factor unset
 * uses 1/s there while the size is floor(L*s)); the output size is always given explicitly.
 * Backward scatters gy with the same four weights (adds where i0 == i1).
 *
 * API
 *   interface UpsampleOpts { alignCorners?: boolean = false; scaleFactor?: Pair }
 *   bilinearTaps(L, out, alignCorners = false, scaleFactor?: number): Array<{ i0, i1, l0, l1 }>
 *   upsampleBilinear2d(x, size: Pair, opts = {}): Arr           size = [outH, outW]
 *   upsampleBilinear2dBackward(x, gy, size, opts = {}): Arr     (x is used for its shape only)
 */
import { type Arr, type Pair, pair, zeros, shapeStr } from './tensor.ts';

export interface UpsampleOpts {
  alignCorners?: boolean;
  scaleFactor?: Pair;
}

export interface Tap {
  i0: number;
  i1: number;
  l0: number;
  l1: number;
}

export function bilinearTaps(L: number, out: number, alignCorners = false, scaleFactor?: number): Tap[] {
  if (L < 1 || out < 1) throw new Error(`reference: bilinear sizes must be positive, got ${L} -> ${out}`);
  let scale: number;
  if (alignCorners) scale = out > 1 ? (L - 1) / (out - 1) : 0;
  else scale = scaleFactor !== undefined && scaleFactor > 0 ? 1 / scaleFactor : L / out;
  const taps: Tap[] = [];
  for (let d = 0; d < out; d++) {
    let src = alignCorners ? scale * d : scale * (d + 0.5) - 0.5;
    if (!alignCorners && src < 0) src = 0;
    const i0 = Math.min(Math.floor(src), L - 1);
    const i1 = i0 + (i0 < L - 1 ? 1 : 0);
    const l1 = Math.min(Math.max(src - i0, 0), 1);
    taps.push({ i0, i1, l0: 1 - l1, l1 });
  }
  return taps;
}

function plan(x: Arr, size: Pair, opts: UpsampleOpts): { N: number; C: number; H: number; W: number; th: Tap[]; tw: Tap[] } {
  if (x.shape.length !== 4) throw new Error(`reference: upsample_bilinear2d wants x [N,C,H,W], got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const [oh, ow] = pair(size);
  const sf = opts.scaleFactor === undefined ? undefined : pair(opts.scaleFactor);
  const ac = opts.alignCorners ?? false;
  return { N, C, H, W, th: bilinearTaps(H, oh, ac, sf?.[0]), tw: bilinearTaps(W, ow, ac, sf?.[1]) };
}

export function upsampleBilinear2d(x: Arr, size: Pair, opts: UpsampleOpts = {}): Arr {
  const { N, C, H, W, th, tw } = plan(x, size, opts);
  const Ho = th.length;
  const Wo = tw.length;
  const y = zeros([N, C, Ho, Wo]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const p = (n * C + c) * H * W;
      for (let i = 0; i < Ho; i++) {
        const a = th[i];
        for (let j = 0; j < Wo; j++) {
          const b = tw[j];
          y.data[((n * C + c) * Ho + i) * Wo + j] =
            a.l0 * (b.l0 * x.data[p + a.i0 * W + b.i0] + b.l1 * x.data[p + a.i0 * W + b.i1]) +
            a.l1 * (b.l0 * x.data[p + a.i1 * W + b.i0] + b.l1 * x.data[p + a.i1 * W + b.i1]);
        }
      }
    }
  }
  return y;
}

export function upsampleBilinear2dBackward(x: Arr, gy: Arr, size: Pair, opts: UpsampleOpts = {}): Arr {
  const { N, C, H, W, th, tw } = plan(x, size, opts);
  const Ho = th.length;
  const Wo = tw.length;
  if (gy.data.length !== N * C * Ho * Wo) {
    throw new Error(`reference: upsample_bilinear2d backward: gy ${shapeStr(gy.shape)}, expected ${shapeStr([N, C, Ho, Wo])}`);
  }
  const gx = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const p = (n * C + c) * H * W;
      for (let i = 0; i < Ho; i++) {
        const a = th[i];
        for (let j = 0; j < Wo; j++) {
          const b = tw[j];
          const g = gy.data[((n * C + c) * Ho + i) * Wo + j];
          gx.data[p + a.i0 * W + b.i0] += g * a.l0 * b.l0;
          gx.data[p + a.i0 * W + b.i1] += g * a.l0 * b.l1;
          gx.data[p + a.i1 * W + b.i0] += g * a.l1 * b.l0;
          gx.data[p + a.i1 * W + b.i1] += g * a.l1 * b.l1;
        }
      }
    }
  }
  return gx;
}
