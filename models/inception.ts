// Inception v3 as torchvision builds it (torchvision/models/inception.py): conv -> BatchNorm
// (eps 0.001) -> ReLU blocks, the Mixed_5b..Mixed_7c modules, an optional auxiliary classifier on
// Mixed_6e, dropout 0.5 before fc.
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Module, type InitRule } from '../engine/nn/index.ts';
import { ShapeError } from '../engine/errors.ts';
import { addScalar, mulScalar } from '../engine/ops/elementwise.ts';
import { adaptiveAvgPool2d, avgPool2d, maxPool2d } from '../engine/ops/pool.ts';
import { concat, flatten, slice } from '../engine/ops/shape.ts';
import { Rng } from '../engine/random.ts';
import { Tensor } from '../engine/tensor.ts';
import { checkClasses, checkInput, finish, type Classifier, type ModelInfo, type ModelOptions } from './common.ts';

export interface InceptionOptions extends ModelOptions {
  /** Build the auxiliary classifier (AuxLogits). Default true, as torchvision. */
  auxLogits?: boolean;
  /**
   * Re-scale ImageNet-normalised input to the (x - 0.5) / 0.5 that Google's weights were trained on.
   * Default false (Inception3's default; torchvision's builder turns it on with the ImageNet weights).
   */
  transformInput?: boolean;
}

/** What Inception v3 returns in training mode with the auxiliary classifier (torchvision's InceptionOutputs). */
export interface InceptionOutputs {
  logits: Tensor;
  aux: Tensor;
}

type Pair = number | [number, number];

/** conv (no bias) -> BatchNorm(eps 0.001) -> ReLU. */
export class BasicConv2d extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: { stride?: number; padding?: Pair } = {}) {
    super();
    this.conv = this.addModule('conv', new Conv2d(inChannels, outChannels, kernelSize, { ...options, bias: false }));
    this.bn = this.addModule('bn', new BatchNorm2d(outChannels, { eps: 0.001 }));
  }

  forward(x: Tensor): Tensor {
    return this.bn.callWithRelu(this.conv.call(x));
  }
}

const avgPool3x3 = (x: Tensor) => avgPool2d(x, { kernel: 3, stride: 1, padding: 1 });
const maxPool3x3s2 = (x: Tensor) => maxPool2d(x, { kernel: 3, stride: 2 });

export class InceptionA extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch5x5_1: BasicConv2d;
  readonly branch5x5_2: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;
  readonly branch_pool: BasicConv2d;

  constructor(inChannels: number, poolFeatures: number) {
    super();
    this.branch1x1 = this.addModule('branch1x1', new BasicConv2d(inChannels, 64, 1));
    this.branch5x5_1 = this.addModule('branch5x5_1', new BasicConv2d(inChannels, 48, 1));
    this.branch5x5_2 = this.addModule('branch5x5_2', new BasicConv2d(48, 64, 5, { padding: 2 }));
    this.branch3x3dbl_1 = this.addModule('branch3x3dbl_1', new BasicConv2d(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.addModule('branch3x3dbl_2', new BasicConv2d(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.addModule('branch3x3dbl_3', new BasicConv2d(96, 96, 3, { padding: 1 }));
    this.branch_pool = this.addModule('branch_pool', new BasicConv2d(inChannels, poolFeatures, 1));
  }

  forward(x: Tensor): Tensor {
    const branch1x1 = this.branch1x1.call(x);
    const branch5x5 = this.branch5x5_2.call(this.branch5x5_1.call(x));
    const branch3x3dbl = this.branch3x3dbl_3.call(this.branch3x3dbl_2.call(this.branch3x3dbl_1.call(x)));
    const branchPool = this.branch_pool.call(avgPool3x3(x));
    return concat([branch1x1, branch5x5, branch3x3dbl, branchPool], 1);
  }
}

export class InceptionB extends Module {
  readonly branch3x3: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3: BasicConv2d;

  constructor(inChannels: number) {
    super();
    this.branch3x3 = this.addModule('branch3x3', new BasicConv2d(inChannels, 384, 3, { stride: 2 }));
    this.branch3x3dbl_1 = this.addModule('branch3x3dbl_1', new BasicConv2d(inChannels, 64, 1));
    this.branch3x3dbl_2 = this.addModule('branch3x3dbl_2', new BasicConv2d(64, 96, 3, { padding: 1 }));
    this.branch3x3dbl_3 = this.addModule('branch3x3dbl_3', new BasicConv2d(96, 96, 3, { stride: 2 }));
  }

  forward(x: Tensor): Tensor {
    const branch3x3 = this.branch3x3.call(x);
    const branch3x3dbl = this.branch3x3dbl_3.call(this.branch3x3dbl_2.call(this.branch3x3dbl_1.call(x)));
    return concat([branch3x3, branch3x3dbl, maxPool3x3s2(x)], 1);
  }
}

/** Factorised 7x7 convolutions: (1, 7) and (7, 1) pairs. */
export class InceptionC extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch7x7_1: BasicConv2d;
  readonly branch7x7_2: BasicConv2d;
  readonly branch7x7_3: BasicConv2d;
  readonly branch7x7dbl_1: BasicConv2d;
  readonly branch7x7dbl_2: BasicConv2d;
  readonly branch7x7dbl_3: BasicConv2d;
  readonly branch7x7dbl_4: BasicConv2d;
  readonly branch7x7dbl_5: BasicConv2d;
  readonly branch_pool: BasicConv2d;

  constructor(inChannels: number, channels7x7: number) {
    super();
    const c7 = channels7x7;
    this.branch1x1 = this.addModule('branch1x1', new BasicConv2d(inChannels, 192, 1));
    this.branch7x7_1 = this.addModule('branch7x7_1', new BasicConv2d(inChannels, c7, 1));
    this.branch7x7_2 = this.addModule('branch7x7_2', new BasicConv2d(c7, c7, [1, 7], { padding: [0, 3] }));
    this.branch7x7_3 = this.addModule('branch7x7_3', new BasicConv2d(c7, 192, [7, 1], { padding: [3, 0] }));
    this.branch7x7dbl_1 = this.addModule('branch7x7dbl_1', new BasicConv2d(inChannels, c7, 1));
    this.branch7x7dbl_2 = this.addModule('branch7x7dbl_2', new BasicConv2d(c7, c7, [7, 1], { padding: [3, 0] }));
    this.branch7x7dbl_3 = this.addModule('branch7x7dbl_3', new BasicConv2d(c7, c7, [1, 7], { padding: [0, 3] }));
    this.branch7x7dbl_4 = this.addModule('branch7x7dbl_4', new BasicConv2d(c7, c7, [7, 1], { padding: [3, 0] }));
    this.branch7x7dbl_5 = this.addModule('branch7x7dbl_5', new BasicConv2d(c7, 192, [1, 7], { padding: [0, 3] }));
    this.branch_pool = this.addModule('branch_pool', new BasicConv2d(inChannels, 192, 1));
  }

  forward(x: Tensor): Tensor {
    const branch1x1 = this.branch1x1.call(x);
    const branch7x7 = this.branch7x7_3.call(this.branch7x7_2.call(this.branch7x7_1.call(x)));
    let branch7x7dbl = this.branch7x7dbl_1.call(x);
    for (const layer of [this.branch7x7dbl_2, this.branch7x7dbl_3, this.branch7x7dbl_4, this.branch7x7dbl_5]) {
      branch7x7dbl = layer.call(branch7x7dbl);
    }
    const branchPool = this.branch_pool.call(avgPool3x3(x));
    return concat([branch1x1, branch7x7, branch7x7dbl, branchPool], 1);
  }
}

export class InceptionD extends Module {
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2: BasicConv2d;
  readonly branch7x7x3_1: BasicConv2d;
  readonly branch7x7x3_2: BasicConv2d;
  readonly branch7x7x3_3: BasicConv2d;
  readonly branch7x7x3_4: BasicConv2d;

  constructor(inChannels: number) {
    super();
    this.branch3x3_1 = this.addModule('branch3x3_1', new BasicConv2d(inChannels, 192, 1));
    this.branch3x3_2 = this.addModule('branch3x3_2', new BasicConv2d(192, 320, 3, { stride: 2 }));
    this.branch7x7x3_1 = this.addModule('branch7x7x3_1', new BasicConv2d(inChannels, 192, 1));
    this.branch7x7x3_2 = this.addModule('branch7x7x3_2', new BasicConv2d(192, 192, [1, 7], { padding: [0, 3] }));
    this.branch7x7x3_3 = this.addModule('branch7x7x3_3', new BasicConv2d(192, 192, [7, 1], { padding: [3, 0] }));
    this.branch7x7x3_4 = this.addModule('branch7x7x3_4', new BasicConv2d(192, 192, 3, { stride: 2 }));
  }

  forward(x: Tensor): Tensor {
    const branch3x3 = this.branch3x3_2.call(this.branch3x3_1.call(x));
    let branch7x7x3 = this.branch7x7x3_1.call(x);
    for (const layer of [this.branch7x7x3_2, this.branch7x7x3_3, this.branch7x7x3_4]) branch7x7x3 = layer.call(branch7x7x3);
    return concat([branch3x3, branch7x7x3, maxPool3x3s2(x)], 1);
  }
}

/** Expanded filter bank: the 3x3 branches split into parallel (1, 3) and (3, 1) convs. */
export class InceptionE extends Module {
  readonly branch1x1: BasicConv2d;
  readonly branch3x3_1: BasicConv2d;
  readonly branch3x3_2a: BasicConv2d;
  readonly branch3x3_2b: BasicConv2d;
  readonly branch3x3dbl_1: BasicConv2d;
  readonly branch3x3dbl_2: BasicConv2d;
  readonly branch3x3dbl_3a: BasicConv2d;
  readonly branch3x3dbl_3b: BasicConv2d;
  readonly branch_pool: BasicConv2d;

  constructor(inChannels: number) {
    super();
    this.branch1x1 = this.addModule('branch1x1', new BasicConv2d(inChannels, 320, 1));
    this.branch3x3_1 = this.addModule('branch3x3_1', new BasicConv2d(inChannels, 384, 1));
    this.branch3x3_2a = this.addModule('branch3x3_2a', new BasicConv2d(384, 384, [1, 3], { padding: [0, 1] }));
    this.branch3x3_2b = this.addModule('branch3x3_2b', new BasicConv2d(384, 384, [3, 1], { padding: [1, 0] }));
    this.branch3x3dbl_1 = this.addModule('branch3x3dbl_1', new BasicConv2d(inChannels, 448, 1));
    this.branch3x3dbl_2 = this.addModule('branch3x3dbl_2', new BasicConv2d(448, 384, 3, { padding: 1 }));
    this.branch3x3dbl_3a = this.addModule('branch3x3dbl_3a', new BasicConv2d(384, 384, [1, 3], { padding: [0, 1] }));
    this.branch3x3dbl_3b = this.addModule('branch3x3dbl_3b', new BasicConv2d(384, 384, [3, 1], { padding: [1, 0] }));
    this.branch_pool = this.addModule('branch_pool', new BasicConv2d(inChannels, 192, 1));
  }

  forward(x: Tensor): Tensor {
    const branch1x1 = this.branch1x1.call(x);
    const b3 = this.branch3x3_1.call(x);
    const branch3x3 = concat([this.branch3x3_2a.call(b3), this.branch3x3_2b.call(b3)], 1);
    const d3 = this.branch3x3dbl_2.call(this.branch3x3dbl_1.call(x));
    const branch3x3dbl = concat([this.branch3x3dbl_3a.call(d3), this.branch3x3dbl_3b.call(d3)], 1);
    const branchPool = this.branch_pool.call(avgPool3x3(x));
    return concat([branch1x1, branch3x3, branch3x3dbl, branchPool], 1);
  }
}

/** The auxiliary classifier on Mixed_6e (training only): avg pool 5 / 3 -> 1x1 conv -> 5x5 conv -> fc. */
export class InceptionAux extends Module {
  readonly conv0: BasicConv2d;
  readonly conv1: BasicConv2d;
  fc: Linear;

  constructor(inChannels: number, numClasses: number) {
    super();
    this.conv0 = this.addModule('conv0', new BasicConv2d(inChannels, 128, 1));
    this.conv1 = this.addModule('conv1', new BasicConv2d(128, 768, 5));
    this.fc = this.addModule('fc', new Linear(768, numClasses));
  }

  forward(x: Tensor): Tensor {
    const [, , h, w] = x.shape;
    if (h < 17 || w < 17) {
      // avg_pool(5, stride 3) then a 5x5 conv needs 17x17; torchvision fails inside the conv instead.
      throw new ShapeError(
        `Inception v3's auxiliary classifier needs Mixed_6e at 17x17 or more (input >= 299x299), got [${x.shape}]: ` +
          'train smaller images with auxLogits: false',
      );
    }
    x = this.conv1.call(this.conv0.call(avgPool2d(x, { kernel: 5, stride: 3 })));
    return this.fc.call(flatten(adaptiveAvgPool2d(x, 1), 1));
  }
}

export class Inception3 extends Module<Tensor | InceptionOutputs> implements Classifier<Tensor | InceptionOutputs> {
  readonly Conv2d_1a_3x3: BasicConv2d;
  readonly Conv2d_2a_3x3: BasicConv2d;
  readonly Conv2d_2b_3x3: BasicConv2d;
  readonly maxpool1: MaxPool2d;
  readonly Conv2d_3b_1x1: BasicConv2d;
  readonly Conv2d_4a_3x3: BasicConv2d;
  readonly maxpool2: MaxPool2d;
  readonly Mixed_5b: InceptionA;
  readonly Mixed_5c: InceptionA;
  readonly Mixed_5d: InceptionA;
  readonly Mixed_6a: InceptionB;
  readonly Mixed_6b: InceptionC;
  readonly Mixed_6c: InceptionC;
  readonly Mixed_6d: InceptionC;
  readonly Mixed_6e: InceptionC;
  readonly AuxLogits: InceptionAux | null;
  readonly Mixed_7a: InceptionD;
  readonly Mixed_7b: InceptionE;
  readonly Mixed_7c: InceptionE;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly dropout: Dropout;
  fc: Linear;

  constructor(
    numClasses: number,
    auxLogits: boolean,
    readonly transformInput: boolean,
  ) {
    super();
    this.Conv2d_1a_3x3 = this.addModule('Conv2d_1a_3x3', new BasicConv2d(3, 32, 3, { stride: 2 }));
    this.Conv2d_2a_3x3 = this.addModule('Conv2d_2a_3x3', new BasicConv2d(32, 32, 3));
    this.Conv2d_2b_3x3 = this.addModule('Conv2d_2b_3x3', new BasicConv2d(32, 64, 3, { padding: 1 }));
    this.maxpool1 = this.addModule('maxpool1', new MaxPool2d(3, { stride: 2 }));
    this.Conv2d_3b_1x1 = this.addModule('Conv2d_3b_1x1', new BasicConv2d(64, 80, 1));
    this.Conv2d_4a_3x3 = this.addModule('Conv2d_4a_3x3', new BasicConv2d(80, 192, 3));
    this.maxpool2 = this.addModule('maxpool2', new MaxPool2d(3, { stride: 2 }));
    this.Mixed_5b = this.addModule('Mixed_5b', new InceptionA(192, 32));
    this.Mixed_5c = this.addModule('Mixed_5c', new InceptionA(256, 64));
    this.Mixed_5d = this.addModule('Mixed_5d', new InceptionA(288, 64));
    this.Mixed_6a = this.addModule('Mixed_6a', new InceptionB(288));
    this.Mixed_6b = this.addModule('Mixed_6b', new InceptionC(768, 128));
    this.Mixed_6c = this.addModule('Mixed_6c', new InceptionC(768, 160));
    this.Mixed_6d = this.addModule('Mixed_6d', new InceptionC(768, 160));
    this.Mixed_6e = this.addModule('Mixed_6e', new InceptionC(768, 192));
    // Registered here, between Mixed_6e and Mixed_7a, as in torchvision: its keys sit there in the state_dict.
    this.AuxLogits = auxLogits ? this.addModule('AuxLogits', new InceptionAux(768, numClasses)) : null;
    this.Mixed_7a = this.addModule('Mixed_7a', new InceptionD(768));
    this.Mixed_7b = this.addModule('Mixed_7b', new InceptionE(1280));
    this.Mixed_7c = this.addModule('Mixed_7c', new InceptionE(2048));
    this.avgpool = this.addModule('avgpool', new AdaptiveAvgPool2d(1));
    this.dropout = this.addModule('dropout', new Dropout(0.5));
    this.fc = this.addModule('fc', new Linear(2048, numClasses));
  }

  /** torchvision's _transform_input: ImageNet normalisation -> (x - 0.5) / 0.5, per channel. */
  private transform(x: Tensor): Tensor {
    const stats = [
      [0.485, 0.229],
      [0.456, 0.224],
      [0.406, 0.225],
    ];
    return concat(
      stats.map(([mean, std], c) => addScalar(mulScalar(slice(x, 1, c, c + 1), std / 0.5), (mean - 0.5) / 0.5)),
      1,
    );
  }

  /** Logits; in training mode with the auxiliary classifier, { logits, aux }. */
  forward(x: Tensor): Tensor | InceptionOutputs {
    checkInput('Inception3', x, inceptionV3Info.minInputSize);
    if (this.transformInput) x = this.transform(x);
    for (const layer of [this.Conv2d_1a_3x3, this.Conv2d_2a_3x3, this.Conv2d_2b_3x3, this.maxpool1]) x = layer.call(x);
    for (const layer of [this.Conv2d_3b_1x1, this.Conv2d_4a_3x3, this.maxpool2]) x = layer.call(x);
    for (const layer of [this.Mixed_5b, this.Mixed_5c, this.Mixed_5d, this.Mixed_6a]) x = layer.call(x);
    for (const layer of [this.Mixed_6b, this.Mixed_6c, this.Mixed_6d, this.Mixed_6e]) x = layer.call(x);
    const aux = this.AuxLogits && this.training ? this.AuxLogits.call(x) : null;
    for (const layer of [this.Mixed_7a, this.Mixed_7b, this.Mixed_7c]) x = layer.call(x);
    const logits = this.fc.call(flatten(this.dropout.call(this.avgpool.call(x)), 1));
    return aux ? { logits, aux } : logits;
  }

  replaceHead(numClasses: number, seed = 0): void {
    checkClasses(numClasses);
    const rng = new Rng(seed);
    this.fc.dispose();
    this.fc = this.addModule('fc', new Linear(this.fc.inFeatures, numClasses).initialize(rng.nextU32()));
    const aux = this.AuxLogits;
    if (aux) {
      aux.fc.dispose();
      aux.fc = aux.addModule('fc', new Linear(aux.fc.inFeatures, numClasses).initialize(rng.nextU32()));
    }
  }
}

/**
 * torchvision's init: every Conv2d and Linear weight trunc_normal_(0, std, a=-2, b=2) with std 0.1,
 * except AuxLogits.fc (its `stddev` 0.001). InceptionAux's `conv1.stddev = 0.01` sits on the
 * BasicConv2d wrapper, which the init loop never looks at, so that conv gets 0.1 too.
 * Linear biases keep nn.Linear's default; BatchNorm 1 / 0.
 */
const inceptionInit: InitRule = (m, name, shape, seed, path) =>
  (m instanceof Conv2d || m instanceof Linear) && name === 'weight'
    ? Tensor.truncatedNormal(shape, 0, path === 'AuxLogits.fc' ? 0.001 : 0.1, -2, 2, seed)
    : undefined;

export function inception_v3(options: InceptionOptions = {}): Inception3 {
  const model = new Inception3(checkClasses(options.numClasses ?? 1000), options.auxLogits ?? true, options.transformInput ?? false);
  return finish(model, options, inceptionInit);
}

export const inceptionV3Info: ModelInfo = {
  defaultInputSize: 299,
  // 75 -> 37 -> 35 -> 35 -> 17 -> 15 -> 7 -> 3 (Mixed_6a) -> 1 (Mixed_7a).
  minInputSize: 75,
  lastConvLayer: 'Mixed_7c',
  // PyTorch's fine-tuning tutorial replaces and trains both classifiers; absent keys match nothing.
  headParameterPrefixes: ['fc', 'AuxLogits.fc'],
};
