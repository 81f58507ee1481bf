/**
 * test/reference/conv2d.ts — 2-D convolution (cross-correlation, as torch.nn.functional.conv2d), float64,
 * forward and backward. x: [N, C_in, H, W]; w: [C_out, C_in/groups, kH, kW]; bias: [C_out]; y: [N, C_out, Ho, Wo].
 *
 *   y[n,o,i,j] = bias[o] + sum_{c,ki,kj} x[n, g*C_in/groups + c, i*sh - pt + ki*dh, j*sw - pl + kj*dw] * w[o,c,ki,kj]
 *   with g = floor(o / (C_out/groups)); input positions outside [0,H)x[0,W) read as zero.
 *   Ho = floor((H + pt + pb - dh*(kH-1) - 1) / sh) + 1, likewise Wo.
 *
 * padding: a number p (all sides), [ph, pw] (symmetric, PyTorch's padding=(ph, pw)),
 *          [pt, pb, pl, pr] (top, bottom, left, right — NOTE: not F.pad's (left, right, top, bottom) order;
 *          PyTorch itself reaches asymmetric padding through F.pad before the conv, which is what this computes),
 *          or 'valid' (0) / 'same' (stride 1; total d*(k-1), the odd extra on bottom/right as PyTorch does).
 *
 * API
 *   type Padding = number | [number, number] | [number, number, number, number] | 'valid' | 'same'
 *   interface Conv2dOpts { stride?: Pair = 1; padding?: Padding = 0; dilation?: Pair = 1; groups?: number = 1 }
 *   pad4(padding, kernel?: [kH, kW], dilation?: [dh, dw]): [pt, pb, pl, pr]   (kernel/dilation needed for 'same')
 *   conv2dOutShape(xShape, wShape, opts = {}): number[]                         [N, C_out, Ho, Wo]
 *   conv2d(x, w, bias?: Arr | null, opts = {}): Arr
 *   conv2dBackward(x, w, gy, opts = {}): { gx, gw, gb }     gb = sum of gy over N, Ho, Wo (whether or not a bias was used)
 */
import { type Arr, type Pair, pair, zeros, shapeStr } from './tensor.ts';

export type Padding = number | [number, number] | [number, number, number, number] | 'valid' | 'same';

export interface Conv2dOpts {
  stride?: Pair;
  padding?: Padding;
  dilation?: Pair;
  groups?: number;
}

export function pad4(
  padding: Padding,
  kernel: [number, number] = [1, 1],
  dilation: [number, number] = [1, 1],
): [number, number, number, number] {
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding === 'same') {
    const th = dilation[0] * (kernel[0] - 1);
    const tw = dilation[1] * (kernel[1] - 1);
    return [Math.floor(th / 2), th - Math.floor(th / 2), Math.floor(tw / 2), tw - Math.floor(tw / 2)];
  }
  if (typeof padding === 'number') return [padding, padding, padding, padding];
  if (padding.length === 2) return [padding[0], padding[0], padding[1], padding[1]];
  if (padding.length === 4) return [padding[0], padding[1], padding[2], padding[3]];
  throw new Error(`reference: padding must be a number, [ph, pw] or [pt, pb, pl, pr], got ${JSON.stringify(padding)}`);
}

interface Geometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  Cg: number; // input channels per group
  Og: number; // output channels per group
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  pt: number;
  pl: number;
  Ho: number;
  Wo: number;
}

function geometry(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOpts): Geometry {
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new Error(`reference: conv2d wants x [N,C,H,W] and w [O,C/g,kH,kW], got ${shapeStr(xShape)} ${shapeStr(wShape)}`);
  }
  const [N, C, H, W] = xShape;
  const [O, Cg, kh, kw] = wShape;
  const groups = opts.groups ?? 1;
  const [sh, sw] = pair(opts.stride ?? 1);
  const [dh, dw] = pair(opts.dilation ?? 1);
  const padding = opts.padding ?? 0;
  if (padding === 'same' && (sh !== 1 || sw !== 1)) throw new Error("reference: padding 'same' needs stride 1");
  const [pt, pb, pl, pr] = pad4(padding, [kh, kw], [dh, dw]);
  if (C % groups !== 0 || O % groups !== 0 || C / groups !== Cg) {
    throw new Error(`reference: conv2d groups=${groups} does not fit x ${shapeStr(xShape)} and w ${shapeStr(wShape)}`);
  }
  if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || Math.min(pt, pb, pl, pr) < 0) {
    throw new Error(`reference: conv2d bad stride/dilation/padding ${JSON.stringify(opts)}`);
  }
  const Ho = Math.floor((H + pt + pb - dh * (kh - 1) - 1) / sh) + 1;
  const Wo = Math.floor((W + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  if (Ho < 1 || Wo < 1) {
    throw new Error(`reference: conv2d output would be empty for x ${shapeStr(xShape)} w ${shapeStr(wShape)} ${JSON.stringify(opts)}`);
  }
  return { N, C, H, W, O, Cg, Og: O / groups, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo };
}

export function conv2dOutShape(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOpts = {}): number[] {
  const g = geometry(xShape, wShape, opts);
  return [g.N, g.O, g.Ho, g.Wo];
}

export function conv2d(x: Arr, w: Arr, bias?: Arr | null, opts: Conv2dOpts = {}): Arr {
  const { N, C, H, W, O, Cg, Og, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo } = geometry(x.shape, w.shape, opts);
  if (bias && bias.data.length !== O) throw new Error(`reference: conv2d bias ${shapeStr(bias.shape)} for ${O} outputs`);
  const y = zeros([N, O, Ho, Wo]);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          let s = bias ? bias.data[o] : 0;
          for (let c = 0; c < Cg; c++) {
            const ci = g * Cg + c;
            for (let ki = 0; ki < kh; ki++) {
              const hi = i * sh - pt + ki * dh;
              if (hi < 0 || hi >= H) continue;
              for (let kj = 0; kj < kw; kj++) {
                const wi = j * sw - pl + kj * dw;
                if (wi < 0 || wi >= W) continue;
                s += x.data[((n * C + ci) * H + hi) * W + wi] * w.data[((o * Cg + c) * kh + ki) * kw + kj];
              }
            }
          }
          y.data[((n * O + o) * Ho + i) * Wo + j] = s;
        }
      }
    }
  }
  return y;
}

export function conv2dBackward(x: Arr, w: Arr, gy: Arr, opts: Conv2dOpts = {}): { gx: Arr; gw: Arr; gb: Arr } {
  const { N, C, H, W, O, Cg, Og, kh, kw, sh, sw, dh, dw, pt, pl, Ho, Wo } = geometry(x.shape, w.shape, opts);
  if (gy.data.length !== N * O * Ho * Wo) {
    throw new Error(`reference: conv2d backward: gy ${shapeStr(gy.shape)}, expected ${shapeStr([N, O, Ho, Wo])}`);
  }
  const gx = zeros(x.shape);
  const gw = zeros(w.shape);
  const gb = zeros([O]);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          const gv = gy.data[((n * O + o) * Ho + i) * Wo + j];
          gb.data[o] += gv;
          for (let c = 0; c < Cg; c++) {
            const ci = g * Cg + c;
            for (let ki = 0; ki < kh; ki++) {
              const hi = i * sh - pt + ki * dh;
              if (hi < 0 || hi >= H) continue;
              for (let kj = 0; kj < kw; kj++) {
                const wi = j * sw - pl + kj * dw;
                if (wi < 0 || wi >= W) continue;
                const xIdx = ((n * C + ci) * H + hi) * W + wi;
                const wIdx = ((o * Cg + c) * kh + ki) * kw + kj;
                gx.data[xIdx] += gv * w.data[wIdx];
                gw.data[wIdx] += gv * x.data[xIdx];
              }
            }
          }
        }
      }
    }
  }
  return { gx, gw, gb };
}
