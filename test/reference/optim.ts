/**
 * test/reference/optim.ts — Adam and StepLR in float64, written from torch/optim/adam.py's
 * `_single_tensor_adam` (amsgrad=False) and StepLR's closed form.
 *
 * API
 *   adamReference(p0, grads[], { lr, betas, eps, weightDecay }): Float64Array[]   parameters after each step
 *   stepLrReference(baseLr, stepSize, gamma, epoch): number                      lr used during `epoch`
 */
export function adamReference(
  p0: ArrayLike<number>,
  grads: ArrayLike<number>[],
  { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0 }: { lr?: number; betas?: number[]; eps?: number; weightDecay?: number },
): Float64Array[] {
  const p = Float64Array.from(p0);
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  const out: Float64Array[] = [];
  grads.forEach((g, t0) => {
    const t = t0 + 1;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + weightDecay * p[i];
      m[i] = betas[0] * m[i] + (1 - betas[0]) * gi;
      v[i] = betas[1] * v[i] + (1 - betas[1]) * gi * gi;
      const stepSize = lr / (1 - betas[0] ** t);
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - betas[1] ** t) + eps;
      p[i] -= (stepSize * m[i]) / denom;
    }
    out.push(Float64Array.from(p));
  });
  return out;
}

export function stepLrReference(baseLr: number, stepSize: number, gamma: number, epoch: number): number {
  return baseLr * gamma ** Math.floor(epoch / stepSize);
}
