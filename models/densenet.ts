// DenseNet-121 as torchvision builds it (torchvision/models/densenet.py): growth rate 32, blocks of
// (6, 12, 24, 16) layers, bottleneck width 4 x 32, transitions halving the channels.
import { AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential, type InitRule } from '../engine/nn/index.ts';
import { relu } from '../engine/ops/elementwise.ts';
import { adaptiveAvgPool2d } from '../engine/ops/pool.ts';
import { concat, flatten } from '../engine/ops/shape.ts';
import { Tensor } from '../engine/tensor.ts';
import { checkClasses, checkInput, finish, type Classifier, type ModelInfo, type ModelOptions } from './common.ts';

/** BN-ReLU-conv1x1 (bottleneck) -> BN-ReLU-conv3x3, producing `growthRate` new channels. */
export class DenseLayer extends Module {
  readonly norm1: BatchNorm2d;
  readonly relu1: ReLU;
  readonly conv1: Conv2d;
  readonly norm2: BatchNorm2d;
  readonly relu2: ReLU;
  readonly conv2: Conv2d;

  constructor(numInputFeatures: number, growthRate: number, bnSize: number) {
    super();
    this.norm1 = this.addModule('norm1', new BatchNorm2d(numInputFeatures));
    this.relu1 = this.addModule('relu1', new ReLU());
    this.conv1 = this.addModule('conv1', new Conv2d(numInputFeatures, bnSize * growthRate, 1, { bias: false }));
    this.norm2 = this.addModule('norm2', new BatchNorm2d(bnSize * growthRate));
    this.relu2 = this.addModule('relu2', new ReLU());
    this.conv2 = this.addModule('conv2', new Conv2d(bnSize * growthRate, growthRate, 3, { padding: 1, bias: false }));
  }

  /** `x` is the concatenation of the block input and all earlier layers' outputs. */
  forward(x: Tensor): Tensor {
    const bottleneck = this.conv1.call(this.norm1.callWithRelu(x, this.relu1));
    return this.conv2.call(this.norm2.callWithRelu(bottleneck, this.relu2));
  }
}

/** denselayer1..N, each fed every earlier feature map; the block returns them all concatenated. */
export class DenseBlock extends Module {
  constructor(numLayers: number, numInputFeatures: number, bnSize: number, growthRate: number) {
    super();
    for (let i = 0; i < numLayers; i++) {
      this.addModule(`denselayer${i + 1}`, new DenseLayer(numInputFeatures + i * growthRate, growthRate, bnSize));
    }
  }

  forward(x: Tensor): Tensor {
    const features = [x];
    for (const [, layer] of this.namedChildren()) features.push(layer.call(concat(features, 1)) as Tensor);
    return concat(features, 1);
  }
}

/** BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling. */
export class Transition extends Sequential {
  constructor(numInputFeatures: number, numOutputFeatures: number) {
    super();
    this.addModule('norm', new BatchNorm2d(numInputFeatures));
    this.addModule('relu', new ReLU());
    this.addModule('conv', new Conv2d(numInputFeatures, numOutputFeatures, 1, { bias: false }));
    this.addModule('pool', new AvgPool2d(2, { stride: 2 }));
  }
}

export class DenseNet extends Module implements Classifier {
  readonly features: Sequential;
  classifier: Linear;

  constructor(growthRate: number, blockConfig: number[], numInitFeatures: number, bnSize: number, numClasses: number) {
    super();
    // First convolution, then the dense blocks with transitions between them, named as torchvision's OrderedDict.
    this.features = this.addModule('features', new Sequential());
    this.features.addModule('conv0', new Conv2d(3, numInitFeatures, 7, { stride: 2, padding: 3, bias: false }));
    this.features.addModule('norm0', new BatchNorm2d(numInitFeatures));
    this.features.addModule('relu0', new ReLU());
    this.features.addModule('pool0', new MaxPool2d(3, { stride: 2, padding: 1 }));
    let numFeatures = numInitFeatures;
    blockConfig.forEach((numLayers, i) => {
      this.features.addModule(`denseblock${i + 1}`, new DenseBlock(numLayers, numFeatures, bnSize, growthRate));
      numFeatures += numLayers * growthRate;
      if (i !== blockConfig.length - 1) {
        this.features.addModule(`transition${i + 1}`, new Transition(numFeatures, numFeatures / 2));
        numFeatures /= 2;
      }
    });
    this.features.addModule('norm5', new BatchNorm2d(numFeatures));
    this.classifier = this.addModule('classifier', new Linear(numFeatures, numClasses));
  }

  forward(x: Tensor): Tensor {
    checkInput('DenseNet', x, densenet121Info.minInputSize);
    const features = this.features.call(x);
    return this.classifier.call(flatten(adaptiveAvgPool2d(relu(features), 1), 1));
  }

  replaceHead(numClasses: number, seed = 0): void {
    this.classifier.dispose();
    this.classifier = this.addModule('classifier', new Linear(this.classifier.inFeatures, checkClasses(numClasses)).initialize(seed));
  }
}

/** torchvision's init: convs kaiming_normal_ (fan_in, relu gain); BatchNorm 1 / 0; Linear bias 0, weight nn.Linear's default. */
const densenetInit: InitRule = (m, name, shape, seed) => {
  if (m instanceof Conv2d) return Tensor.kaimingNormal(shape, 'fan_in', seed);
  if (m instanceof Linear && name === 'bias') return Tensor.zeros(shape);
  return undefined;
};

export function densenet121(options: ModelOptions = {}): DenseNet {
  return finish(new DenseNet(32, [6, 12, 24, 16], 64, 4, checkClasses(options.numClasses ?? 1000)), options, densenetInit);
}

export const densenet121Info: ModelInfo = {
  defaultInputSize: 224,
  minInputSize: 29,
  // The features' output (= features.norm5 = features[-1], pytorch-grad-cam's documented DenseNet target).
  lastConvLayer: 'features',
  headParameterPrefixes: ['classifier'],
};
