/**
 * test/reference/margin.ts — L2 row norms and normalisation, and the ArcFace / SphereFace target-logit margins,
 * float64, forward and backward; and the heads' logits composed from them (forward only).
 *
 * Written from the angle, not from the kernels' algebra, so the two are independent: ArcFace as cos(acos(c) + m),
 * SphereFace's cos(m theta) as Math.cos(m * acos(c)), their derivatives by the chain rule through theta.
 *
 * API
 *   rowNorms(x): Arr                              [..., 1]: ||x|| over the last dim
 *   rowNormsBackward(x, gy): Arr                  gy x / ||x|| (0 on an all-zero row)
 *   normalizeRows(x, eps = 1e-12): Arr            x / max(||x||, eps) per row (F.normalize, p=2, dim=-1)
 *   normalizeRowsBackward(x, gy, eps = 1e-12): Arr
 *   arcFaceMargin(cos, labels, opts?): Arr        target c -> cos(theta + m) if c > cos(pi - m) else c - m sin(pi - m);
 *                                                 easyMargin: cos(theta + m) if c > 0 else c. opts { m = 0.5, easyMargin = false }
 *   arcFaceMarginBackward(cos, labels, gy, opts?): Arr
 *   sphereFaceMargin(cos, labels, { m = 4, lambda }): Arr   target c -> (lambda c + psi) / (1 + lambda),
 *                                                 psi = (-1)^k cos(m theta) - 2k, k = min(floor(m theta / pi), m - 1)
 *   sphereFaceMarginBackward(cos, labels, gy, opts): Arr
 *   arcFaceLogits(emb, w, labels | null, opts?: { s = 64, m, easyMargin }): Arr    s * margin(normalize(emb) normalize(w)^T)
 *   sphereFaceLogits(emb, w, labels | null, { m, lambda }): Arr                    |emb| * margin(normalize(emb) normalize(w)^T)
 *   ARC_LIMIT = fround(1 - 1e-7)                  the ArcFace target clamp; SphereFace clamps to [-1, 1]
 *
 * Labels: one per row; a label outside [0, C) leaves the row unchanged. The target cosine is clamped to
 * [-limit, limit] first, with zero gradient outside (torch.clamp); other cosines pass unchanged.
 */
import { type Arr, zeros, shapeStr } from './tensor.ts';

export const ARC_LIMIT = Math.fround(1 - 1e-7);

function rows(x: Arr): { R: number; F: number } {
  const F = x.shape[x.shape.length - 1];
  return { R: F ? x.data.length / F : 0, F };
}

export function rowNorms(x: Arr): Arr {
  const { R, F } = rows(x);
  const out = zeros([...x.shape.slice(0, -1), 1]);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let i = 0; i < F; i++) s += x.data[r * F + i] ** 2;
    out.data[r] = Math.sqrt(s);
  }
  return out;
}

export function rowNormsBackward(x: Arr, gy: Arr): Arr {
  const { R, F } = rows(x);
  const n = rowNorms(x);
  const gx = zeros(x.shape);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < F; i++) gx.data[r * F + i] = n.data[r] > 0 ? (gy.data[r] * x.data[r * F + i]) / n.data[r] : 0;
  }
  return gx;
}

export function normalizeRows(x: Arr, eps = 1e-12): Arr {
  const { R, F } = rows(x);
  const n = rowNorms(x);
  const y = zeros(x.shape);
  for (let r = 0; r < R; r++) {
    const d = Math.max(n.data[r], eps);
    for (let i = 0; i < F; i++) y.data[r * F + i] = x.data[r * F + i] / d;
  }
  return y;
}

/** d y_i / d x_j = (delta_ij - y_i y_j) / n for n > eps, delta_ij / eps otherwise. */
export function normalizeRowsBackward(x: Arr, gy: Arr, eps = 1e-12): Arr {
  const { R, F } = rows(x);
  const n = rowNorms(x);
  const y = normalizeRows(x, eps);
  const gx = zeros(x.shape);
  for (let r = 0; r < R; r++) {
    const clamped = n.data[r] <= eps;
    let dot = 0;
    for (let i = 0; i < F; i++) dot += gy.data[r * F + i] * y.data[r * F + i];
    for (let i = 0; i < F; i++) {
      const k = r * F + i;
      gx.data[k] = clamped ? gy.data[k] / eps : (gy.data[k] - y.data[k] * dot) / n.data[r];
    }
  }
  return gx;
}

/** Applies f (value) or f' (slope, times gy) to each row's target cosine after the clamp. */
function mapTargets(cos: Arr, labels: ArrayLike<number>, limit: number, f: (c: number) => number, gy?: Arr): Arr {
  if (cos.shape.length !== 2 || labels.length !== cos.shape[0]) {
    throw new Error(`reference: margin wants cos [N, C] and N labels, got ${shapeStr(cos.shape)} and ${labels.length}`);
  }
  const [N, C] = cos.shape;
  const out = zeros(cos.shape);
  for (let r = 0; r < N; r++) {
    for (let k = 0; k < C; k++) {
      const i = r * C + k;
      const c = cos.data[i];
      const target = k === labels[r];
      if (!gy) out.data[i] = target ? f(Math.min(limit, Math.max(-limit, c))) : c;
      else out.data[i] = gy.data[i] * (!target ? 1 : Math.abs(c) <= limit ? f(c) : 0);
    }
  }
  return out;
}

export interface ArcOpts {
  m?: number;
  easyMargin?: boolean;
}

function arcBranch(c: number, m: number, easyMargin: boolean): boolean {
  return c > (easyMargin ? 0 : Math.cos(Math.PI - m));
}

export function arcFaceMargin(cos: Arr, labels: ArrayLike<number>, opts: ArcOpts = {}): Arr {
  const { m = 0.5, easyMargin = false } = opts;
  const shift = easyMargin ? 0 : m * Math.sin(Math.PI - m);
  return mapTargets(cos, labels, ARC_LIMIT, (c) => (arcBranch(c, m, easyMargin) ? Math.cos(Math.acos(c) + m) : c - shift));
}

/** d cos(theta + m) / dc = sin(theta + m) / sin(theta). */
export function arcFaceMarginBackward(cos: Arr, labels: ArrayLike<number>, gy: Arr, opts: ArcOpts = {}): Arr {
  const { m = 0.5, easyMargin = false } = opts;
  const slope = (c: number) => {
    const theta = Math.acos(c);
    return arcBranch(c, m, easyMargin) ? Math.sin(theta + m) / Math.sin(theta) : 1;
  };
  return mapTargets(cos, labels, ARC_LIMIT, slope, gy);
}

export interface SphereOpts {
  m?: number;
  lambda: number;
}

function sphereK(c: number, m: number): number {
  return Math.min(Math.floor((m * Math.acos(c)) / Math.PI), m - 1);
}

export function sphereFaceMargin(cos: Arr, labels: ArrayLike<number>, opts: SphereOpts): Arr {
  const { m = 4, lambda } = opts;
  const psi = (c: number) => {
    const k = sphereK(c, m);
    return (-1) ** k * Math.cos(m * Math.acos(c)) - 2 * k;
  };
  return mapTargets(cos, labels, 1, (c) => (lambda * c + psi(c)) / (1 + lambda));
}

/** d cos(m theta) / dc = m sin(m theta) / sin(theta); k is piecewise constant. */
export function sphereFaceMarginBackward(cos: Arr, labels: ArrayLike<number>, gy: Arr, opts: SphereOpts): Arr {
  const { m = 4, lambda } = opts;
  const slope = (c: number) => {
    const theta = Math.acos(c);
    const dpsi = (-1) ** sphereK(c, m) * ((m * Math.sin(m * theta)) / Math.sin(theta));
    return (lambda + dpsi) / (1 + lambda);
  };
  return mapTargets(cos, labels, 1, slope, gy);
}

/** normalize(emb) @ normalize(w)^T: [N, C]. */
function cosines(emb: Arr, w: Arr): Arr {
  const e = normalizeRows(emb);
  const v = normalizeRows(w);
  const [N, F] = emb.shape;
  const C = w.shape[0];
  const out = zeros([N, C]);
  for (let r = 0; r < N; r++) {
    for (let k = 0; k < C; k++) {
      let s = 0;
      for (let i = 0; i < F; i++) s += e.data[r * F + i] * v.data[k * F + i];
      out.data[r * C + k] = s;
    }
  }
  return out;
}

export function arcFaceLogits(emb: Arr, w: Arr, labels: ArrayLike<number> | null, opts: ArcOpts & { s?: number } = {}): Arr {
  const c = cosines(emb, w);
  const out = labels ? arcFaceMargin(c, labels, opts) : c;
  for (let i = 0; i < out.data.length; i++) out.data[i] *= opts.s ?? 64;
  return out;
}

export function sphereFaceLogits(emb: Arr, w: Arr, labels: ArrayLike<number> | null, opts: SphereOpts): Arr {
  const c = cosines(emb, w);
  const out = labels ? sphereFaceMargin(c, labels, opts) : c;
  const n = rowNorms(emb);
  const C = w.shape[0];
  for (let i = 0; i < out.data.length; i++) out.data[i] *= n.data[Math.floor(i / C)];
  return out;
}
