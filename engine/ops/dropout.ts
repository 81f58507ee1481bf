// Dropout with a seeded mask generated on the GPU, and its derivative (the same mask).
// Kernel: kernels/dropout.wgsl (the mask is Philox-2x32-10 of (seed, element index); see there).
// Reference: test/reference/dropout.ts.
import dropoutSource from '../../kernels/dropout.wgsl';
import { ShapeError } from '../errors.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { grid } from './elementwise.ts';

registerKernel('dropout', dropoutSource);

const WG = 256;

export interface DropoutOptions {
  /** Identity when false (PyTorch's F.dropout defaults to training, as here). */
  training?: boolean;
  /** Selects the mask: an integer in [0, 2^32); required in training. Same seed and shape, same mask. */
  seed?: number;
}

/** Zeroes each element with probability p and scales the rest by 1 / (1 - p). */
export function dropout(x: Tensor, p: number, options: DropoutOptions = {}): Tensor {
  const { training = true, seed } = options;
  if (!(p >= 0 && p <= 1)) throw new ShapeError(`dropout: p = ${p} is outside [0, 1]`);
  if (!training || p === 0) return identity(x);
  if (seed === undefined || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new ShapeError(`dropout: training needs an integer seed in [0, 2^32), got ${seed}`);
  }
  const params = { threshold: Math.round(p * 2 ** 24), scale: p < 1 ? 1 / (1 - p) : 0 };
  const y = applyMask(x, seed, params);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = { op: 'dropout', inputs: [x], backward: (g) => [applyMask(g, seed, params)] };
  }
  return y;
}

function applyMask(src: Tensor, seed: number, { threshold, scale }: { threshold: number; scale: number }): Tensor {
  const out = Tensor.empty(src.shape);
  const { workgroups, row } = grid(src.size, WG);
  rt().dispatch({
    kernel: 'dropout',
    spec: { WG },
    params: [src.size, row, seed, threshold, f32(scale)],
    bindings: [{ buffer: src.buffer }, { buffer: out.buffer }],
    workgroups,
  });
  return out;
}

/** The input's values as a new tensor (a view: disposing it leaves x alive), gradient passed through. */
function identity(x: Tensor): Tensor {
  const y = x.view(x.shape);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = { op: 'dropout (identity)', inputs: [x], backward: (g) => [g.detach()], export: { type: 'Identity' } };
  }
  return y;
}
