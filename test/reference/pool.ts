/**
 * test/reference/pool.ts — max_pool2d, avg_pool2d, adaptive_avg_pool2d (PyTorch semantics), float64, forward and
 * backward. x: [N, C, H, W] (a 3-D [C, H, W] input is not accepted: add the batch dim).
 *
 * Output size (PyTorch's pooling_output_shape), per spatial dim, symmetric padding p, dilation d:
 *   out = floor((L + 2p - d*(k-1) - 1 + (ceilMode ? s-1 : 0)) / s) + 1
 *   and with ceilMode, if (out-1)*s >= L + p then out -= 1  (the last window must start inside the input or the
 *   left padding). PyTorch's argument check is kept too: p <= floor(k/2), else an error.
 *
 * max_pool2d: padded positions never win (as -inf); window position (ih, iw) for output (oh, ow) runs over
 *   ih = oh*s - p + ki*d, ki = 0..k-1, in row-major order; the FIRST maximal element wins ties (strict >), a NaN
 *   wins and propagates (exactly PyTorch's CPU kernel). Backward adds gy to the argmax only.
 * avg_pool2d (no dilation): hstart = oh*s - p, hend = min(hstart + k, H + p); poolSize = (hend-hstart)*(wend-wstart);
 *   then clip to [0, H) / [0, W). Divisor: divisorOverride if given, else poolSize when countIncludePad (default true),
 *   else the clipped element count. So a ceil-mode window running past the padded bound is divided by its size
 *   within the padded bound even with countIncludePad. A window with no element inside the input gives 0.
 * adaptive_avg_pool2d: bin i of an output of size o over an input of size L covers [floor(i*L/o), ceil((i+1)*L/o)).
 *
 * API
 *   interface MaxPool2dOpts { kernelSize: Pair; stride?: Pair (= kernelSize); padding?: Pair = 0; dilation?: Pair = 1;
 *                             ceilMode?: boolean = false }
 *   interface AvgPool2dOpts { kernelSize: Pair; stride?: Pair (= kernelSize); padding?: Pair = 0; ceilMode?: boolean = false;
 *                             countIncludePad?: boolean = true; divisorOverride?: number }
 *   poolOutSize(L, k, s, p, d, ceilMode): number
 *   maxPool2d(x, opts): Arr
 *   maxPool2dIndices(x, opts): Int32Array        argmax per output as a flat ih*W + iw index (return_indices=True)
 *   maxPool2dBackward(x, gy, opts): Arr
 *   avgPool2d(x, opts): Arr;                     avgPool2dBackward(x, gy, opts): Arr
 *   adaptiveBins(L, o): Array<[start, end]>
 *   adaptiveAvgPool2d(x, outSize: Pair): Arr;    adaptiveAvgPool2dBackward(x, gy, outSize): Arr
 */
import { type Arr, type Pair, pair, zeros, shapeStr } from './tensor.ts';

export interface MaxPool2dOpts {
  kernelSize: Pair;
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  ceilMode?: boolean;
}

export interface AvgPool2dOpts {
  kernelSize: Pair;
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
  countIncludePad?: boolean;
  divisorOverride?: number;
}

export function poolOutSize(L: number, k: number, s: number, p: number, d: number, ceilMode: boolean): number {
  const num = L + 2 * p - d * (k - 1) - 1 + (ceilMode ? s - 1 : 0);
  let out = Math.floor(num / s) + 1;
  if (ceilMode && (out - 1) * s >= L + p) out -= 1;
  return out;
}

interface PoolGeom {
  N: number;
  C: number;
  H: number;
  W: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  Ho: number;
  Wo: number;
}

function poolGeom(xShape: readonly number[], kernelSize: Pair, stride: Pair | undefined, padding: Pair | undefined, dilation: Pair | undefined, ceilMode: boolean, what: string): PoolGeom {
  if (xShape.length !== 4) throw new Error(`reference: ${what} wants x [N,C,H,W], got ${shapeStr(xShape)}`);
  const [N, C, H, W] = xShape;
  const [kh, kw] = pair(kernelSize);
  const [sh, sw] = pair(stride ?? kernelSize);
  const [ph, pw] = pair(padding ?? 0);
  const [dh, dw] = pair(dilation ?? 1);
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) {
    throw new Error(`reference: ${what}: bad kernel/stride/padding/dilation`);
  }
  if (ph > Math.floor(kh / 2) || pw > Math.floor(kw / 2)) {
    throw new Error(`reference: ${what}: pad should be at most half of kernel size (PyTorch rejects it), got pad ${ph},${pw} kernel ${kh},${kw}`);
  }
  const Ho = poolOutSize(H, kh, sh, ph, dh, ceilMode);
  const Wo = poolOutSize(W, kw, sw, pw, dw, ceilMode);
  if (Ho < 1 || Wo < 1) throw new Error(`reference: ${what}: output would be empty for ${shapeStr(xShape)}`);
  return { N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo };
}

// ---------------------------------------------------------------------------------------------------------------
// max_pool2d

function maxPoolCore(x: Arr, opts: MaxPool2dOpts): { y: Arr; idx: Int32Array; g: PoolGeom } {
  const g = poolGeom(x.shape, opts.kernelSize, opts.stride, opts.padding, opts.dilation, opts.ceilMode ?? false, 'max_pool2d');
  const { N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo } = g;
  const y = zeros([N, C, Ho, Wo]);
  const idx = new Int32Array(N * C * Ho * Wo).fill(-1);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * H * W;
      for (let oh = 0; oh < Ho; oh++) {
        for (let ow = 0; ow < Wo; ow++) {
          let best = -Infinity;
          let bestIdx = -1;
          for (let ki = 0; ki < kh; ki++) {
            const ih = oh * sh - ph + ki * dh;
            if (ih < 0 || ih >= H) continue;
            for (let kj = 0; kj < kw; kj++) {
              const iw = ow * sw - pw + kj * dw;
              if (iw < 0 || iw >= W) continue;
              const v = x.data[plane + ih * W + iw];
              if (bestIdx < 0) bestIdx = ih * W + iw; // PyTorch starts from the first valid position
              if (v > best || Number.isNaN(v)) {
                best = v;
                bestIdx = ih * W + iw;
              }
            }
          }
          const o = ((n * C + c) * Ho + oh) * Wo + ow;
          y.data[o] = best;
          idx[o] = bestIdx;
        }
      }
    }
  }
  return { y, idx, g };
}

export function maxPool2d(x: Arr, opts: MaxPool2dOpts): Arr {
  return maxPoolCore(x, opts).y;
}

export function maxPool2dIndices(x: Arr, opts: MaxPool2dOpts): Int32Array {
  return maxPoolCore(x, opts).idx;
}

export function maxPool2dBackward(x: Arr, gy: Arr, opts: MaxPool2dOpts): Arr {
  const { idx, g } = maxPoolCore(x, opts);
  const { N, C, H, W, Ho, Wo } = g;
  if (gy.data.length !== N * C * Ho * Wo) {
    throw new Error(`reference: max_pool2d backward: gy ${shapeStr(gy.shape)}, expected ${shapeStr([N, C, Ho, Wo])}`);
  }
  const gx = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let o = 0; o < Ho * Wo; o++) {
        const oi = (n * C + c) * Ho * Wo + o;
        if (idx[oi] >= 0) gx.data[(n * C + c) * H * W + idx[oi]] += gy.data[oi];
      }
    }
  }
  return gx;
}

// ---------------------------------------------------------------------------------------------------------------
// avg_pool2d

interface AvgWindow {
  h0: number;
  h1: number;
  w0: number;
  w1: number;
  divisor: number;
}

/** The clipped window [h0,h1) x [w0,w1) and the divisor of output (oh, ow), exactly as PyTorch's CPU kernel. */
function avgWindow(g: PoolGeom, opts: AvgPool2dOpts, oh: number, ow: number): AvgWindow {
  let h0 = oh * g.sh - g.ph;
  let w0 = ow * g.sw - g.pw;
  let h1 = Math.min(h0 + g.kh, g.H + g.ph);
  let w1 = Math.min(w0 + g.kw, g.W + g.pw);
  const poolSize = (h1 - h0) * (w1 - w0);
  h0 = Math.max(h0, 0);
  w0 = Math.max(w0, 0);
  h1 = Math.min(h1, g.H);
  w1 = Math.min(w1, g.W);
  let divisor: number;
  if (opts.divisorOverride !== undefined) divisor = opts.divisorOverride;
  else if (opts.countIncludePad ?? true) divisor = poolSize;
  else divisor = (h1 - h0) * (w1 - w0);
  return { h0, h1, w0, w1, divisor };
}

function avgGeom(x: Arr, opts: AvgPool2dOpts): PoolGeom {
  return poolGeom(x.shape, opts.kernelSize, opts.stride, opts.padding, 1, opts.ceilMode ?? false, 'avg_pool2d');
}

export function avgPool2d(x: Arr, opts: AvgPool2dOpts): Arr {
  const g = avgGeom(x, opts);
  const { N, C, H, W, Ho, Wo } = g;
  const y = zeros([N, C, Ho, Wo]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * H * W;
      for (let oh = 0; oh < Ho; oh++) {
        for (let ow = 0; ow < Wo; ow++) {
          const win = avgWindow(g, opts, oh, ow);
          if (win.h0 >= win.h1 || win.w0 >= win.w1) continue; // no input element: 0
          let s = 0;
          for (let ih = win.h0; ih < win.h1; ih++) for (let iw = win.w0; iw < win.w1; iw++) s += x.data[plane + ih * W + iw];
          y.data[((n * C + c) * Ho + oh) * Wo + ow] = s / win.divisor;
        }
      }
    }
  }
  return y;
}

export function avgPool2dBackward(x: Arr, gy: Arr, opts: AvgPool2dOpts): Arr {
  const g = avgGeom(x, opts);
  const { N, C, H, W, Ho, Wo } = g;
  if (gy.data.length !== N * C * Ho * Wo) {
    throw new Error(`reference: avg_pool2d backward: gy ${shapeStr(gy.shape)}, expected ${shapeStr([N, C, Ho, Wo])}`);
  }
  const gx = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * H * W;
      for (let oh = 0; oh < Ho; oh++) {
        for (let ow = 0; ow < Wo; ow++) {
          const win = avgWindow(g, opts, oh, ow);
          if (win.h0 >= win.h1 || win.w0 >= win.w1) continue;
          const gv = gy.data[((n * C + c) * Ho + oh) * Wo + ow] / win.divisor;
          for (let ih = win.h0; ih < win.h1; ih++) for (let iw = win.w0; iw < win.w1; iw++) gx.data[plane + ih * W + iw] += gv;
        }
      }
    }
  }
  return gx;
}

// ---------------------------------------------------------------------------------------------------------------
// adaptive_avg_pool2d

export function adaptiveBins(L: number, o: number): Array<[number, number]> {
  if (o < 1 || L < 1) throw new Error(`reference: adaptive pool sizes must be positive, got ${L} -> ${o}`);
  const bins: Array<[number, number]> = [];
  for (let i = 0; i < o; i++) bins.push([Math.floor((i * L) / o), Math.ceil(((i + 1) * L) / o)]);
  return bins;
}

function adaptiveGeom(x: Arr, outSize: Pair): { N: number; C: number; H: number; W: number; bh: Array<[number, number]>; bw: Array<[number, number]> } {
  if (x.shape.length !== 4) throw new Error(`reference: adaptive_avg_pool2d wants x [N,C,H,W], got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const [oh, ow] = pair(outSize);
  return { N, C, H, W, bh: adaptiveBins(H, oh), bw: adaptiveBins(W, ow) };
}

export function adaptiveAvgPool2d(x: Arr, outSize: Pair): Arr {
  const { N, C, H, W, bh, bw } = adaptiveGeom(x, outSize);
  const Ho = bh.length;
  const Wo = bw.length;
  const y = zeros([N, C, Ho, Wo]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * H * W;
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          const [h0, h1] = bh[i];
          const [w0, w1] = bw[j];
          let s = 0;
          for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) s += x.data[plane + ih * W + iw];
          y.data[((n * C + c) * Ho + i) * Wo + j] = s / ((h1 - h0) * (w1 - w0));
        }
      }
    }
  }
  return y;
}

export function adaptiveAvgPool2dBackward(x: Arr, gy: Arr, outSize: Pair): Arr {
  const { N, C, H, W, bh, bw } = adaptiveGeom(x, outSize);
  const Ho = bh.length;
  const Wo = bw.length;
  if (gy.data.length !== N * C * Ho * Wo) {
    throw new Error(`reference: adaptive_avg_pool2d backward: gy ${shapeStr(gy.shape)}, expected ${shapeStr([N, C, Ho, Wo])}`);
  }
  const gx = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const plane = (n * C + c) * H * W;
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          const [h0, h1] = bh[i];
          const [w0, w1] = bw[j];
          const gv = gy.data[((n * C + c) * Ho + i) * Wo + j] / ((h1 - h0) * (w1 - w0));
          for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) gx.data[plane + ih * W + iw] += gv;
        }
      }
    }
  }
  return gx;
}
