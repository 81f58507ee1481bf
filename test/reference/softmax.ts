/**
 * test/reference/softmax.ts — softmax, log_softmax (over one axis, default the last) and cross-entropy with
 * class-index targets (torch.nn.functional.cross_entropy), float64, forward and backward. Every exp is taken
 * after subtracting the row maximum, so logits of magnitude 1e4 (or more) give finite, exact-to-rounding results.
 *
 * cross_entropy, logits [N, C], target: N class indices (ArrayLike<number>), PyTorch's definition:
 *   logp = log_softmax(logits);  rows with target == ignoreIndex (default -100) contribute nothing;
 *   nll_n = -w[y_n] * logp[n, y_n];   smooth_n = -sum_c w[c] * logp[n, c]   (w = weight, or all ones)
 *   'mean' (default): D = sum over kept rows of w[y_n];   'sum': D = 1
 *   loss = (1 - eps) * sum_n nll_n / D + (eps / C) * sum_n smooth_n / D,   eps = labelSmoothing (default 0)
 *   gradient w.r.t. logits: with a[n,c] = (1-eps)*w[y_n]*[c == y_n] + (eps/C)*w[c] on kept rows (0 on ignored),
 *   g[n,c] = (softmax[n,c] * sum_c' a[n,c'] - a[n,c]) / D, times the upstream gradient.
 *   (With mean reduction and every row ignored, PyTorch returns NaN (0/0); so does this.)
 *
 * API
 *   softmax(x, axis = -1): Arr;        softmaxBackward(x, gy, axis = -1): Arr      gx = y*(gy - sum(gy*y))
 *   logSoftmax(x, axis = -1): Arr;     logSoftmaxBackward(x, gy, axis = -1): Arr   gx = gy - softmax(x)*sum(gy)
 *   interface CrossEntropyOpts { labelSmoothing?: number = 0; weight?: Arr | ArrayLike<number> | null;
 *                                ignoreIndex?: number = -100; reduction?: 'mean' | 'sum' = 'mean' }
 *   crossEntropy(logits, target, opts = {}): number
 *   crossEntropyBackward(logits, target, opts = {}, gLoss = 1): Arr             gradient w.r.t. logits, [N, C]
 */
import { type Arr, zeros, normAxis, shapeStr } from './tensor.ts';

/** Split a shape around `axis` into (outer, len, inner) so element (o, k, i) is at (o*len + k)*inner + i. */
function around(shape: readonly number[], axis: number): { outer: number; len: number; inner: number } {
  const ax = normAxis(axis, shape.length);
  const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const inner = shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  return { outer, len: shape[ax], inner };
}

export function softmax(x: Arr, axis = -1): Arr {
  const { outer, len, inner } = around(x.shape, axis);
  const y = zeros(x.shape);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let m = -Infinity;
      for (let k = 0; k < len; k++) m = Math.max(m, x.data[(o * len + k) * inner + i]);
      let s = 0;
      for (let k = 0; k < len; k++) s += Math.exp(x.data[(o * len + k) * inner + i] - m);
      for (let k = 0; k < len; k++) {
        const at = (o * len + k) * inner + i;
        y.data[at] = Math.exp(x.data[at] - m) / s;
      }
    }
  }
  return y;
}

export function logSoftmax(x: Arr, axis = -1): Arr {
  const { outer, len, inner } = around(x.shape, axis);
  const y = zeros(x.shape);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let m = -Infinity;
      for (let k = 0; k < len; k++) m = Math.max(m, x.data[(o * len + k) * inner + i]);
      let s = 0;
      for (let k = 0; k < len; k++) s += Math.exp(x.data[(o * len + k) * inner + i] - m);
      const lse = m + Math.log(s);
      for (let k = 0; k < len; k++) {
        const at = (o * len + k) * inner + i;
        y.data[at] = x.data[at] - lse;
      }
    }
  }
  return y;
}

function checkGy(x: Arr, gy: Arr, what: string): void {
  if (gy.data.length !== x.data.length) throw new Error(`reference: ${what} backward: gy ${shapeStr(gy.shape)} vs x ${shapeStr(x.shape)}`);
}

export function softmaxBackward(x: Arr, gy: Arr, axis = -1): Arr {
  checkGy(x, gy, 'softmax');
  const { outer, len, inner } = around(x.shape, axis);
  const y = softmax(x, axis);
  const gx = zeros(x.shape);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let dotp = 0;
      for (let k = 0; k < len; k++) {
        const at = (o * len + k) * inner + i;
        dotp += gy.data[at] * y.data[at];
      }
      for (let k = 0; k < len; k++) {
        const at = (o * len + k) * inner + i;
        gx.data[at] = y.data[at] * (gy.data[at] - dotp);
      }
    }
  }
  return gx;
}

export function logSoftmaxBackward(x: Arr, gy: Arr, axis = -1): Arr {
  checkGy(x, gy, 'log_softmax');
  const { outer, len, inner } = around(x.shape, axis);
  const p = softmax(x, axis);
  const gx = zeros(x.shape);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let s = 0;
      for (let k = 0; k < len; k++) s += gy.data[(o * len + k) * inner + i];
      for (let k = 0; k < len; k++) {
        const at = (o * len + k) * inner + i;
        gx.data[at] = gy.data[at] - p.data[at] * s;
      }
    }
  }
  return gx;
}

// ---------------------------------------------------------------------------------------------------------------
// cross_entropy

export interface CrossEntropyOpts {
  labelSmoothing?: number;
  weight?: Arr | ArrayLike<number> | null;
  ignoreIndex?: number;
  reduction?: 'mean' | 'sum';
}

interface CePlan {
  N: number;
  C: number;
  eps: number;
  w: Float64Array;
  keep: boolean[];
  denom: number;
}

function cePlan(logits: Arr, target: ArrayLike<number>, opts: CrossEntropyOpts): CePlan {
  if (logits.shape.length !== 2) throw new Error(`reference: cross_entropy wants logits [N, C], got ${shapeStr(logits.shape)}`);
  const [N, C] = logits.shape;
  if (target.length !== N) throw new Error(`reference: cross_entropy: ${target.length} targets for ${N} rows`);
  const eps = opts.labelSmoothing ?? 0;
  if (eps < 0 || eps > 1) throw new Error(`reference: label_smoothing must be in [0, 1], got ${eps}`);
  const ignore = opts.ignoreIndex ?? -100;
  const wsrc = opts.weight ? ('data' in opts.weight ? opts.weight.data : opts.weight) : null;
  const w = new Float64Array(C).fill(1);
  if (wsrc) {
    if (wsrc.length !== C) throw new Error(`reference: cross_entropy weight has ${wsrc.length} entries for ${C} classes`);
    for (let c = 0; c < C; c++) w[c] = wsrc[c];
  }
  const keep: boolean[] = [];
  let wsum = 0;
  for (let n = 0; n < N; n++) {
    const t = target[n];
    const kept = t !== ignore;
    if (kept && (!Number.isInteger(t) || t < 0 || t >= C)) throw new Error(`reference: cross_entropy target ${t} out of range [0, ${C})`);
    keep.push(kept);
    if (kept) wsum += w[t];
  }
  const denom = (opts.reduction ?? 'mean') === 'mean' ? wsum : 1;
  return { N, C, eps, w, keep, denom };
}

export function crossEntropy(logits: Arr, target: ArrayLike<number>, opts: CrossEntropyOpts = {}): number {
  const { N, C, eps, w, keep, denom } = cePlan(logits, target, opts);
  const logp = logSoftmax(logits, -1);
  let nll = 0;
  let smooth = 0;
  for (let n = 0; n < N; n++) {
    if (!keep[n]) continue;
    const t = target[n];
    nll += -w[t] * logp.data[n * C + t];
    for (let c = 0; c < C; c++) smooth += -w[c] * logp.data[n * C + c];
  }
  return ((1 - eps) * nll) / denom + ((eps / C) * smooth) / denom;
}

export function crossEntropyBackward(logits: Arr, target: ArrayLike<number>, opts: CrossEntropyOpts = {}, gLoss = 1): Arr {
  const { N, C, eps, w, keep, denom } = cePlan(logits, target, opts);
  const p = softmax(logits, -1);
  const g = zeros(logits.shape);
  for (let n = 0; n < N; n++) {
    if (!keep[n]) continue;
    const t = target[n];
    const a = new Float64Array(C);
    let asum = 0;
    for (let c = 0; c < C; c++) {
      a[c] = (c === t ? (1 - eps) * w[t] : 0) + (eps / C) * w[c];
      asum += a[c];
    }
    for (let c = 0; c < C; c++) g.data[n * C + c] = (gLoss * (p.data[n * C + c] * asum - a[c])) / denom;
  }
  return g;
}
