// 2-D batch normalisation (torch.nn.BatchNorm2d), optionally fused with ReLU, with its derivative.
// Kernel: kernels/batchnorm.wgsl. Reference: test/reference/batchnorm.ts.
import batchnormSource from '../../kernels/batchnorm.wgsl';
import { getBackwardMode, type OpExport } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { mapUnary } from './elementwise.ts';
import { gpu } from '../gpu.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';

registerKernel('batchnorm', batchnormSource);

/**
 * How a workgroup sums over its channel: 'subgroup' (the workgroup is one subgroup, summing with
 * subgroupAdd: no barriers, best on lavapipe) or 'workgroup' (256 lanes and a tree in workgroup memory).
 */
export type BatchNormVariant = 'subgroup' | 'workgroup';
let forcedVariant: BatchNormVariant | null = null;

/** Forces a variant (tests run both); null restores the choice by adapter. */
export function setBatchNormVariant(variant: BatchNormVariant | null): void {
  forcedVariant = variant;
}

function variant(): BatchNormVariant {
  const g = gpu();
  return forcedVariant ?? (g.hasSubgroups && g.facts.isSoftware ? 'subgroup' : 'workgroup');
}

export interface BatchNormOptions {
  /** Batch statistics (and running-stat updates) when true; the running statistics when false. */
  training: boolean;
  /** Weight of the new batch statistic in the running averages (PyTorch's default 0.1). */
  momentum?: number;
  eps?: number;
  /** Fuses a ReLU on the output (forward and backward in the same kernels). */
  relu?: boolean;
}

/**
 * y = (x - mean) / sqrt(var + eps) * weight + bias per channel of x [N, C, H, W]. weight, bias and the
 * running statistics are [C] (affine and tracked, as in torchvision's models). In training the batch
 * mean and biased variance normalise, and runningMean / runningVar are updated in place on the GPU
 * (running_var with the unbiased variance). Gradients flow to x, weight and bias in both modes.
 */
export function batchNorm2d(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  options: BatchNormOptions,
): Tensor {
  const { training, momentum = 0.1, eps = 1e-5, relu = false } = options;
  if (x.shape.length !== 4) throw new ShapeError(`batchNorm2d expects x [N, C, H, W], got [${x.shape}]`);
  const [n, c, h, w] = x.shape;
  for (const [t, name] of [[weight, 'weight'], [bias, 'bias'], [runningMean, 'runningMean'], [runningVar, 'runningVar']] as const) {
    if (t.size !== c) throw new ShapeError(`batchNorm2d: ${name} has shape [${t.shape}], expected [${c}] for x [${x.shape}]`);
  }
  if (training && n * h * w <= 1) {
    // As PyTorch: one value per channel has no variance to normalise by.
    throw new ShapeError(`batchNorm2d: expected more than 1 value per channel when training, got x [${x.shape}]`);
  }
  const y = Tensor.empty(x.shape);
  // The mean and invstd the forward used: [mean, invstd] per channel, kept for the backward pass.
  const saved = Tensor.empty([2, c]);
  const subgroup = variant() === 'subgroup';
  const vec4 = (h * w) % 4 === 0;
  const kernel = {
    WG: subgroup ? gpu().facts.subgroupSize : 256,
    SUBGROUP: subgroup,
    VEC4: vec4,
    TRAINING: training,
    RELU: relu,
  };
  const params = [n, c, vec4 ? (h * w) / 4 : h * w, f32(eps), f32(momentum)];
  rt().dispatch({
    kernel: 'batchnorm',
    spec: { ...kernel, BACKWARD: false },
    params,
    bindings: [x, weight, bias, runningMean, runningVar, y, saved].map((t) => ({ buffer: t.buffer })),
    workgroups: [c],
  });
  if (!Tensor.needsGrad(x, weight, bias)) {
    saved.dispose();
    return y;
  }
  y.requiresGrad = true;
  // ONNX (eval mode only: training updates the running statistics): inputs x, scale, bias, mean, var.
  const bn: OpExport = { type: 'BatchNormalization', attrs: { epsilon: { float: eps } }, inputs: [0, 1, 2, runningMean, runningVar] };
  y.gradFn = {
    op: relu ? 'batchNorm2d+relu' : 'batchNorm2d',
    inputs: [x, weight, bias],
    backward: (g) => {
      const gx = Tensor.empty(x.shape);
      const gw = Tensor.empty([c]);
      const gb = Tensor.empty([c]);
      // Guided backpropagation through the fused ReLU: only positive gradients pass (the kernel
      // already masks by the ReLU's input sign).
      const upstream = relu && getBackwardMode() === 'guided' ? mapUnary(g, 'max(x, 0.0)') : g;
      rt().dispatch({
        kernel: 'batchnorm',
        spec: { ...kernel, BACKWARD: true },
        params,
        bindings: [x, weight, bias, saved, upstream, gx, gw, gb].map((t) => ({ buffer: t.buffer })),
        workgroups: [c],
      });
      if (upstream !== g) upstream.dispose();
      return [gx, gw, gb];
    },
    export: training ? undefined : relu ? { type: 'Relu', inputs: [bn] } : bn,
  };
  return y;
}
