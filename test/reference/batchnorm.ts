/**
 * test/reference/batchnorm.ts — batch normalisation (torch.nn.functional.batch_norm / BatchNorm2d), float64,
 * training and eval mode, forward and backward. x: [N, C, ...spatial] (BatchNorm2d: [N, C, H, W]; [N, C] works
 * as BatchNorm1d); weight, bias, runningMean, runningVar: [C]. M = N * prod(spatial) values per channel.
 *
 * Training (opts.training = true):
 *   mean = sum(x)/M;  var = sum((x-mean)^2)/M  (biased, used to normalise);  invstd = 1/sqrt(var + eps)
 *   y = (x - mean) * invstd * weight + bias
 *   runningMean <- (1-f)*runningMean + f*mean;  runningVar <- (1-f)*runningVar + f*var*M/(M-1)  (unbiased)
 *   f = momentum (default 0.1), or 1/(numBatchesTracked+1) when momentum is null (cumulative average);
 *   M = 1 throws, as PyTorch does ("Expected more than 1 value per channel when training").
 *   runningMean/runningVar may be null (track_running_stats=False): they are then returned as null.
 * Eval (opts.training = false): y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias.
 * weight / bias null means affine=False (weight 1, bias 0).
 *
 * Backward (gradients w.r.t. x, weight and bias; the running stats are buffers and get none):
 *   training: gx = weight*invstd*(gy - sum(gy)/M - xhat*sum(gy*xhat)/M), xhat = (x-mean)*invstd
 *   eval:     gx = gy*weight/sqrt(runningVar+eps)
 *   both:     gw = sum(gy*xhat), gb = sum(gy)   (returned even when weight/bias are null)
 *
 * API
 *   interface BatchNormOpts { training: boolean; momentum?: number | null = 0.1; eps?: number = 1e-5;
 *                             numBatchesTracked?: number = 0 }
 *   interface BatchNormResult { y: Arr; mean: Arr; var: Arr; invstd: Arr;          // the statistics used
 *                               runningMean: Arr | null; runningVar: Arr | null;    // updated copies (inputs untouched)
 *                               numBatchesTracked: number }
 *   batchNorm2d(x, runningMean, runningVar, weight, bias, opts): BatchNormResult   (F.batch_norm's argument order)
 *   batchNorm2dBackward(x, runningMean, runningVar, weight, gy, opts): { gx, gw, gb }
 */
import { type Arr, zeros, clone, shapeStr } from './tensor.ts';

export interface BatchNormOpts {
  training: boolean;
  momentum?: number | null;
  eps?: number;
  numBatchesTracked?: number;
}

export interface BatchNormResult {
  y: Arr;
  mean: Arr;
  var: Arr;
  invstd: Arr;
  runningMean: Arr | null;
  runningVar: Arr | null;
  numBatchesTracked: number;
}

function dims(x: Arr): { N: number; C: number; S: number; M: number } {
  if (x.shape.length < 2) throw new Error(`reference: batch_norm wants [N, C, ...], got ${shapeStr(x.shape)}`);
  const N = x.shape[0];
  const C = x.shape[1];
  const S = x.shape.slice(2).reduce((a, b) => a * b, 1);
  return { N, C, S, M: N * S };
}

function checkVec(v: Arr | null, C: number, what: string): void {
  if (v && v.data.length !== C) throw new Error(`reference: batch_norm ${what} ${shapeStr(v.shape)} for ${C} channels`);
}

/** Per-channel statistics actually used to normalise: batch ones in training, running ones in eval. */
function stats(x: Arr, runningMean: Arr | null, runningVar: Arr | null, opts: BatchNormOpts): { mean: Arr; var: Arr; invstd: Arr } {
  const { N, C, S, M } = dims(x);
  const eps = opts.eps ?? 1e-5;
  const mean = zeros([C]);
  const vr = zeros([C]);
  if (opts.training) {
    if (M <= 1) throw new Error(`reference: batch_norm training needs more than 1 value per channel, got ${shapeStr(x.shape)}`);
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let n = 0; n < N; n++) for (let k = 0; k < S; k++) s += x.data[(n * C + c) * S + k];
      const m = s / M;
      let q = 0;
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < S; k++) {
          const d = x.data[(n * C + c) * S + k] - m;
          q += d * d;
        }
      }
      mean.data[c] = m;
      vr.data[c] = q / M;
    }
  } else {
    if (!runningMean || !runningVar) throw new Error('reference: batch_norm eval mode needs runningMean and runningVar');
    mean.data.set(runningMean.data);
    vr.data.set(runningVar.data);
  }
  const invstd = zeros([C]);
  for (let c = 0; c < C; c++) invstd.data[c] = 1 / Math.sqrt(vr.data[c] + eps);
  return { mean, var: vr, invstd };
}

export function batchNorm2d(
  x: Arr,
  runningMean: Arr | null,
  runningVar: Arr | null,
  weight: Arr | null,
  bias: Arr | null,
  opts: BatchNormOpts,
): BatchNormResult {
  const { N, C, S, M } = dims(x);
  for (const [v, name] of [[runningMean, 'runningMean'], [runningVar, 'runningVar'], [weight, 'weight'], [bias, 'bias']] as const) {
    checkVec(v, C, name);
  }
  const st = stats(x, runningMean, runningVar, opts);
  const y = zeros(x.shape);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const wv = weight ? weight.data[c] : 1;
      const bv = bias ? bias.data[c] : 0;
      for (let k = 0; k < S; k++) {
        const i = (n * C + c) * S + k;
        y.data[i] = (x.data[i] - st.mean.data[c]) * st.invstd.data[c] * wv + bv;
      }
    }
  }
  const rm = runningMean ? clone(runningMean) : null;
  const rv = runningVar ? clone(runningVar) : null;
  let tracked = opts.numBatchesTracked ?? 0;
  if (opts.training) {
    tracked += 1;
    const momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    const f = momentum === null ? 1 / tracked : momentum;
    if (rm) for (let c = 0; c < C; c++) rm.data[c] = (1 - f) * rm.data[c] + f * st.mean.data[c];
    if (rv) for (let c = 0; c < C; c++) rv.data[c] = (1 - f) * rv.data[c] + f * st.var.data[c] * (M / (M - 1));
  }
  return { y, mean: st.mean, var: st.var, invstd: st.invstd, runningMean: rm, runningVar: rv, numBatchesTracked: tracked };
}

export function batchNorm2dBackward(
  x: Arr,
  runningMean: Arr | null,
  runningVar: Arr | null,
  weight: Arr | null,
  gy: Arr,
  opts: BatchNormOpts,
): { gx: Arr; gw: Arr; gb: Arr } {
  const { N, C, S, M } = dims(x);
  if (gy.data.length !== x.data.length) throw new Error(`reference: batch_norm backward: gy ${shapeStr(gy.shape)} vs x ${shapeStr(x.shape)}`);
  checkVec(weight, C, 'weight');
  const st = stats(x, runningMean, runningVar, opts);
  const gx = zeros(x.shape);
  const gw = zeros([C]);
  const gb = zeros([C]);
  for (let c = 0; c < C; c++) {
    const m = st.mean.data[c];
    const is = st.invstd.data[c];
    const wv = weight ? weight.data[c] : 1;
    let sumG = 0;
    let sumGX = 0;
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < S; k++) {
        const i = (n * C + c) * S + k;
        sumG += gy.data[i];
        sumGX += gy.data[i] * (x.data[i] - m) * is;
      }
    }
    gb.data[c] = sumG;
    gw.data[c] = sumGX;
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < S; k++) {
        const i = (n * C + c) * S + k;
        if (opts.training) {
          const xhat = (x.data[i] - m) * is;
          gx.data[i] = wv * is * (gy.data[i] - sumG / M - (xhat * sumGX) / M);
        } else {
          gx.data[i] = gy.data[i] * wv * is;
        }
      }
    }
  }
  return { gx, gw, gb };
}
