/**
 * test/reference/dropout.ts — dropout with a given keep mask (torch.nn.functional.dropout), float64.
 *
 * The mask is supplied (0 = dropped, 1 = kept), so a GPU kernel's own seeded mask can be read back and checked:
 *   training: y = x * mask / (1 - p)   (p = 1: y = 0, as PyTorch);   eval: y = x (mask ignored)
 *   backward: gx = gy * mask / (1 - p) in training, gy in eval.
 *
 * API
 *   dropout(x, mask, p, training = true): Arr
 *   dropoutBackward(mask, gy, p, training = true): Arr
 *   bernoulliMask(shape, p, seed): Arr        each entry 1 with probability 1-p, else 0 (seeded; a test helper,
 *                                             not the GPU's generator)
 *   philox2x32(counter, key): [number, number]  Philox-2x32-10, both output words
 *   philoxMask(shape, p, seed): Arr            the GPU's documented mask (kernels/dropout.wgsl)
 */
import { type Arr, zeros, rng, shapeStr } from './tensor.ts';

function scaleOf(p: number): number {
  if (p < 0 || p > 1) throw new Error(`reference: dropout probability must be in [0, 1], got ${p}`);
  return p === 1 ? 0 : 1 / (1 - p);
}

export function dropout(x: Arr, mask: Arr, p: number, training = true): Arr {
  if (!training) return { data: new Float64Array(x.data), shape: [...x.shape] };
  if (mask.data.length !== x.data.length) throw new Error(`reference: dropout mask ${shapeStr(mask.shape)} vs x ${shapeStr(x.shape)}`);
  const scale = scaleOf(p);
  const y = zeros(x.shape);
  for (let i = 0; i < x.data.length; i++) y.data[i] = x.data[i] * mask.data[i] * scale;
  return y;
}

export function dropoutBackward(mask: Arr, gy: Arr, p: number, training = true): Arr {
  if (!training) return { data: new Float64Array(gy.data), shape: [...gy.shape] };
  if (mask.data.length !== gy.data.length) throw new Error(`reference: dropout mask ${shapeStr(mask.shape)} vs gy ${shapeStr(gy.shape)}`);
  const scale = scaleOf(p);
  const gx = zeros(gy.shape);
  for (let i = 0; i < gy.data.length; i++) gx.data[i] = gy.data[i] * mask.data[i] * scale;
  return gx;
}

export function bernoulliMask(shape: readonly number[], p: number, seed: number): Arr {
  const m = zeros(shape);
  const r = rng(seed);
  for (let i = 0; i < m.data.length; i++) m.data[i] = r.next() < p ? 0 : 1;
  return m;
}

/** Philox-2x32-10 (Salmon et al. 2011) in plain JS, as kernels/dropout.wgsl documents it: both output words. */
export function philox2x32(counter: [number, number], key: number): [number, number] {
  let [x0, x1] = counter;
  let k = key;
  for (let round = 0; round < 10; round++) {
    const product = 0xd256d193n * BigInt(x0);
    [x0, x1] = [(Number(product >> 32n) ^ k ^ x1) >>> 0, Number(product & 0xffffffffn)];
    k = (k + 0x9e3779b9) >>> 0;
  }
  return [x0, x1];
}

/** The documented mask: element i is kept when the top 24 bits of the first word reach round(p * 2^24). */
export function philoxMask(shape: readonly number[], p: number, seed: number): Arr {
  const n = shape.reduce((a, b) => a * b, 1);
  const threshold = Math.round(p * 2 ** 24);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = philox2x32([i, 0], seed)[0] >>> 8 >= threshold ? 1 : 0;
  return { data, shape: [...shape] };
}
