// Class-activation maps from a layer's activations A [C, h, w] and the gradients G = dS/dA of a class
// score S, computed in float64 on the CPU (the maps are small; the GPU did the forward and backward).
//
// Grad-CAM (Selvaraju et al., ICCV 2017):  alpha_k = mean_ij G_kij,  L = ReLU(sum_k alpha_k A_k).
// Grad-CAM++ (Chattopadhyay et al., WACV 2018), with the exponential-score closed form:
//   a_kij = G^2 / (2 G^2 + sum_ab A_kab * G^3)   (0 where G = 0),   w_k = sum_ij a_kij ReLU(G_kij),
//   L = ReLU(sum_k w_k A_k).

/** Whether a class-activation map can be drawn: 'no-signal' when it is constant (all zero included) after ReLU. */
export type CamSignal = 'ok' | 'no-signal' | 'not-finite';

export function camSignal(cam: ArrayLike<number>): CamSignal {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < cam.length; i++) {
    if (!Number.isFinite(cam[i])) return 'not-finite';
    const v = Math.max(0, cam[i]);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return hi > lo ? 'ok' : 'no-signal';
}

export interface Cam {
  /** The raw map, h*w, before normalisation (ReLU applied). */
  map: Float64Array;
  width: number;
  height: number;
  /** Per-channel weights (alpha_k or w_k). */
  weights: Float64Array;
  signal: CamSignal;
}

function check(a: ArrayLike<number>, g: ArrayLike<number>, shape: readonly number[]): [number, number, number] {
  if (shape.length !== 3) throw new Error(`CAM needs activations of shape [C, h, w], got [${shape}]`);
  const [c, h, w] = shape;
  if (a.length !== c * h * w || g.length !== a.length) {
    throw new Error(`CAM: activations (${a.length}) and gradients (${g.length}) do not match shape [${shape}]`);
  }
  return [c, h, w];
}

function combine(a: ArrayLike<number>, weights: Float64Array, c: number, hw: number): Float64Array {
  const map = new Float64Array(hw);
  for (let k = 0; k < c; k++) for (let i = 0; i < hw; i++) map[i] += weights[k] * a[k * hw + i];
  for (let i = 0; i < hw; i++) map[i] = Math.max(0, map[i]);
  return map;
}

export function gradCam(a: ArrayLike<number>, g: ArrayLike<number>, shape: readonly number[]): Cam {
  const [c, h, w] = check(a, g, shape);
  const hw = h * w;
  const weights = new Float64Array(c);
  for (let k = 0; k < c; k++) {
    let s = 0;
    for (let i = 0; i < hw; i++) s += g[k * hw + i];
    weights[k] = s / hw;
  }
  const map = combine(a, weights, c, hw);
  return { map, width: w, height: h, weights, signal: camSignal(map) };
}

export function gradCamPlusPlus(a: ArrayLike<number>, g: ArrayLike<number>, shape: readonly number[]): Cam {
  const [c, h, w] = check(a, g, shape);
  const hw = h * w;
  const weights = new Float64Array(c);
  for (let k = 0; k < c; k++) {
    let sumA = 0;
    for (let i = 0; i < hw; i++) sumA += a[k * hw + i];
    let wk = 0;
    for (let i = 0; i < hw; i++) {
      const gi = g[k * hw + i];
      if (gi === 0) continue;
      const alpha = (gi * gi) / (2 * gi * gi + sumA * gi * gi * gi);
      if (Number.isFinite(alpha)) wk += alpha * Math.max(0, gi);
    }
    weights[k] = wk;
  }
  const map = combine(a, weights, c, hw);
  return { map, width: w, height: h, weights, signal: camSignal(map) };
}

/** Min-max scales a map to [0, 1] (as pytorch-grad-cam's scale_cam_image); a flat map stays zero. */
export function normalise(map: ArrayLike<number>): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < map.length; i++) {
    min = Math.min(min, map[i]);
    max = Math.max(max, map[i]);
  }
  const out = new Float32Array(map.length);
  if (!(max > min)) return out;
  for (let i = 0; i < map.length; i++) out[i] = (map[i] - min) / (max - min);
  return out;
}
