// VGG-16 and VGG-16 with BatchNorm as torchvision builds them (torchvision/models/vgg.py, config "D").
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Module, ReLU, Sequential, type InitRule } from '../engine/nn/index.ts';
import { flatten } from '../engine/ops/shape.ts';
import { Tensor } from '../engine/tensor.ts';
import { checkClasses, checkInput, finish, type Classifier, type ModelInfo, type ModelOptions } from './common.ts';

/** Config "D": output channels of each 3x3 conv, 'M' for a 2x2 max pool. */
const VGG16_CONFIG: (number | 'M')[] = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'];

/** torchvision's make_layers: conv 3x3 (padding 1) [-> BatchNorm] -> ReLU, numbered 0, 1, 2, ... in one Sequential. */
function makeLayers(config: (number | 'M')[], batchNorm: boolean): Sequential {
  const layers: Module[] = [];
  let inChannels = 3;
  for (const v of config) {
    if (v === 'M') {
      layers.push(new MaxPool2d(2, { stride: 2 }));
      continue;
    }
    layers.push(new Conv2d(inChannels, v, 3, { padding: 1 }));
    if (batchNorm) layers.push(new BatchNorm2d(v));
    layers.push(new ReLU());
    inChannels = v;
  }
  return new Sequential(...layers);
}

export class VGG extends Module implements Classifier {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;

  constructor(features: Sequential, numClasses: number) {
    super();
    this.features = this.addModule('features', features);
    this.avgpool = this.addModule('avgpool', new AdaptiveAvgPool2d(7));
    this.classifier = this.addModule(
      'classifier',
      new Sequential(
        new Linear(512 * 7 * 7, 4096),
        new ReLU(),
        new Dropout(0.5),
        new Linear(4096, 4096),
        new ReLU(),
        new Dropout(0.5),
        new Linear(4096, numClasses),
      ),
    );
  }

  forward(x: Tensor): Tensor {
    checkInput('VGG', x, vgg16Info.minInputSize);
    return this.classifier.call(flatten(this.avgpool.call(this.features.call(x)), 1));
  }

  /** Replaces classifier.6, the last Linear, as PyTorch's fine-tuning tutorial does for VGG. */
  replaceHead(numClasses: number, seed = 0): void {
    const head = this.classifier.get('6') as Linear;
    head.dispose();
    this.classifier.addModule('6', new Linear(head.inFeatures, checkClasses(numClasses)).initialize(seed));
  }
}

/** torchvision's init: convs kaiming_normal_(fan_out, relu) with bias 0; BatchNorm 1 / 0; Linear N(0, 0.01) with bias 0. */
const vggInit: InitRule = (m, name, shape, seed) => {
  if (m instanceof Conv2d) return name === 'weight' ? Tensor.kaimingNormal(shape, 'fan_out', seed) : Tensor.zeros(shape);
  if (m instanceof Linear) return name === 'weight' ? Tensor.normal(shape, 0, 0.01, seed) : Tensor.zeros(shape);
  return undefined;
};

export function vgg16(options: ModelOptions = {}): VGG {
  return finish(new VGG(makeLayers(VGG16_CONFIG, false), checkClasses(options.numClasses ?? 1000)), options, vggInit);
}

export function vgg16_bn(options: ModelOptions = {}): VGG {
  return finish(new VGG(makeLayers(VGG16_CONFIG, true), checkClasses(options.numClasses ?? 1000)), options, vggInit);
}

export const vgg16Info: ModelInfo = {
  defaultInputSize: 224,
  // Five 2x2 pools: 32 -> 1.
  minInputSize: 32,
  // The last conv's ReLU (relu5_3, 14x14 at 224): the Grad-CAM paper's "last convolutional layer". features.30 is the pool after it.
  lastConvLayer: 'features.29',
  // Only the replaced last layer trains, as in PyTorch's fine-tuning tutorial.
  headParameterPrefixes: ['classifier.6'],
};

export const vgg16BnInfo: ModelInfo = { ...vgg16Info, lastConvLayer: 'features.42' };
