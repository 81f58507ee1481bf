// The layers torchvision's ResNet, Inception v3, DenseNet and VGG are built from, with PyTorch's
// parameter names, buffer names and default initialisation (reset_parameters).
import { addScalar, add, relu } from '../ops/elementwise.ts';
import { concat, flatten } from '../ops/shape.ts';
import { conv2d } from '../ops/conv2d.ts';
import { batchNorm2d } from '../ops/batchnorm.ts';
import { maxPool2d, avgPool2d, adaptiveAvgPool2d } from '../ops/pool.ts';
import { dropout } from '../ops/dropout.ts';
import { linear } from '../ops/linear.ts';
import { Rng } from '../random.ts';
import { Tensor } from '../tensor.ts';
import { Module } from './module.ts';

type Pair = number | [number, number];

const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** PyTorch's default for conv and linear layers, kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)) for weight and bias. */
function defaultUniform(shape: number[], fanIn: number, seed: number): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return Tensor.uniform(shape, -bound, bound, seed);
}

export interface Conv2dOptions {
  stride?: Pair;
  /** Both sides of each dim: a number or [h, w]. */
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/** torch.nn.Conv2d: weight [out, in / groups, kh, kw], bias [out]. */
export class Conv2d extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;
  readonly hasBias: boolean;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    options: Conv2dOptions = {},
  ) {
    super();
    this.kernelSize = pair(kernelSize);
    this.stride = pair(options.stride ?? 1);
    this.padding = pair(options.padding ?? 0);
    this.dilation = pair(options.dilation ?? 1);
    this.groups = options.groups ?? 1;
    this.hasBias = options.bias ?? true;
    this.declareParameter('weight', [outChannels, inChannels / this.groups, ...this.kernelSize]);
    if (this.hasBias) this.declareParameter('bias', [outChannels]);
  }

  get weight(): Tensor {
    return this.tensor('weight');
  }

  get bias(): Tensor | null {
    return this.hasBias ? this.tensor('bias') : null;
  }

  protected override initialValue(_name: string, shape: number[], seed: number): Tensor {
    return defaultUniform(shape, (this.inChannels / this.groups) * this.kernelSize[0] * this.kernelSize[1], seed);
  }

  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this;
    return conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
}

/** torch.nn.BatchNorm2d (affine, tracking running statistics). */
export class BatchNorm2d extends Module {
  readonly eps: number;
  readonly momentum: number;

  constructor(
    readonly numFeatures: number,
    options: { eps?: number; momentum?: number } = {},
  ) {
    super();
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum ?? 0.1;
    this.declareParameter('weight', [numFeatures]);
    this.declareParameter('bias', [numFeatures]);
    this.declareBuffer('running_mean', [numFeatures]);
    this.declareBuffer('running_var', [numFeatures]);
    this.declareBuffer('num_batches_tracked', [], { optional: true });
  }

  get weight(): Tensor {
    return this.tensor('weight');
  }
  get bias(): Tensor {
    return this.tensor('bias');
  }
  get runningMean(): Tensor {
    return this.tensor('running_mean');
  }
  get runningVar(): Tensor {
    return this.tensor('running_var');
  }
  /** Training batches seen, on the GPU (an f32 scalar; PyTorch keeps an int64). */
  get numBatchesTracked(): Tensor {
    return this.tensor('num_batches_tracked');
  }

  protected override initialValue(name: string, shape: number[]): Tensor {
    return name === 'weight' || name === 'running_var' ? Tensor.ones(shape) : Tensor.zeros(shape);
  }

  forward(x: Tensor): Tensor {
    return this.normalize(x, false);
  }

  /**
   * BatchNorm then ReLU, fused into one kernel. A forward hook on this layer must see the value
   * before the ReLU, so with hooks the two run apart. `reluLayer` is the model's ReLU module, if
   * it has one (ResNet's `relu`), whose hooks must fire too.
   */
  callWithRelu(x: Tensor, reluLayer?: ReLU): Tensor {
    if (this.hasForwardHooks || reluLayer?.hasForwardHooks) {
      const y = this.call(x);
      return reluLayer ? reluLayer.call(y) : relu(y);
    }
    return this.normalize(x, true);
  }

  private normalize(x: Tensor, fuseRelu: boolean): Tensor {
    const y = batchNorm2d(x, this.weight, this.bias, this.runningMean, this.runningVar, {
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
      relu: fuseRelu,
    });
    if (this.training) {
      // Counted on the GPU (the running statistics are updated there too): no read-back, no upload.
      this.replaceBuffer('num_batches_tracked', addScalar(this.numBatchesTracked, 1));
    }
    return y;
  }
}

/**
 * torch.nn.Linear: weight [out, in], bias [out]. A weight larger than the adapter's storage binding
 * limit (VGG-16's classifier.0, 4096 x 25088 = 392 MiB, against lavapipe's 128 MiB) is stored as
 * row blocks that each fit; each block computes a slice of the output features. The state_dict
 * still holds one `weight` of the full shape.
 */
export class Linear extends Module {
  readonly hasBias: boolean;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias?: boolean; maxBlockBytes?: number } = {},
  ) {
    super();
    this.hasBias = options.bias ?? true;
    this.declareParameter('weight', [outFeatures, inFeatures], { maxBlockBytes: options.maxBlockBytes ?? 0 });
    if (this.hasBias) this.declareParameter('bias', [outFeatures]);
  }

  /** The weight's row blocks: one tensor unless the weight exceeds a storage binding. */
  get weightBlocks(): Tensor[] {
    return this.blocks('weight');
  }

  get bias(): Tensor | null {
    return this.hasBias ? this.tensor('bias') : null;
  }

  protected override initialValue(_name: string, shape: number[], seed: number): Tensor {
    return defaultUniform(shape, this.inFeatures, seed);
  }

  forward(x: Tensor): Tensor {
    const blocks = this.weightBlocks;
    if (blocks.length === 1) return linear(x, blocks[0], this.bias);
    const y = concat(
      blocks.map((w) => linear(x, w, null)),
      -1,
    );
    return this.bias ? add(y, this.bias) : y;
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

/** torch.nn.Flatten: dims startDim.. into one. */
export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return flatten(x, this.startDim);
  }
}

export interface PoolOptions {
  /** Defaults to the kernel size, as in PyTorch. */
  stride?: number;
  padding?: number;
  ceilMode?: boolean;
}

export class MaxPool2d extends Module {
  readonly stride: number;
  readonly padding: number;
  readonly ceilMode: boolean;

  constructor(
    readonly kernel: number,
    options: PoolOptions = {},
  ) {
    super();
    this.stride = options.stride ?? kernel;
    this.padding = options.padding ?? 0;
    this.ceilMode = options.ceilMode ?? false;
  }

  forward(x: Tensor): Tensor {
    const { kernel, stride, padding, ceilMode } = this;
    return maxPool2d(x, { kernel, stride, padding, ceilMode });
  }
}

export class AvgPool2d extends Module {
  readonly stride: number;
  readonly padding: number;
  readonly ceilMode: boolean;
  readonly countIncludePad: boolean;

  constructor(
    readonly kernel: number,
    options: PoolOptions & { countIncludePad?: boolean } = {},
  ) {
    super();
    this.stride = options.stride ?? kernel;
    this.padding = options.padding ?? 0;
    this.ceilMode = options.ceilMode ?? false;
    this.countIncludePad = options.countIncludePad ?? true;
  }

  forward(x: Tensor): Tensor {
    const { kernel, stride, padding, ceilMode, countIncludePad } = this;
    return avgPool2d(x, { kernel, stride, padding, ceilMode, countIncludePad });
  }
}

export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number, number];

  constructor(outputSize: Pair) {
    super();
    this.outputSize = pair(outputSize);
  }

  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** torch.nn.Dropout. Each training call draws a new mask from the module's seeded stream. */
export class Dropout extends Module {
  private rng = new Rng(0);

  constructor(readonly p = 0.5) {
    super();
  }

  protected override reseed(seed: number): void {
    this.rng = new Rng(seed);
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, { training: this.training, seed: this.training ? this.rng.nextU32() : 0 });
  }
}
