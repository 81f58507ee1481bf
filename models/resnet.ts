// ResNet-50 as torchvision builds it (torchvision/models/resnet.py). This is ResNet v1.5: a
// downsampling bottleneck strides in its 3x3 conv (conv2), not in its first 1x1 conv.
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential, type InitRule } from '../engine/nn/index.ts';
import { add } from '../engine/ops/elementwise.ts';
import { flatten } from '../engine/ops/shape.ts';
import { Tensor } from '../engine/tensor.ts';
import { checkClasses, checkInput, finish, type Classifier, type ModelInfo, type ModelOptions } from './common.ts';

const conv3x3 = (inPlanes: number, outPlanes: number, stride = 1) => new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false });
const conv1x1 = (inPlanes: number, outPlanes: number, stride = 1) => new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false });

export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly relu: ReLU;
  readonly downsample: Sequential | null;

  constructor(inplanes: number, planes: number, stride = 1, downsample: Sequential | null = null) {
    super();
    this.conv1 = this.addModule('conv1', conv1x1(inplanes, planes));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.addModule('conv2', conv3x3(planes, planes, stride));
    this.bn2 = this.addModule('bn2', new BatchNorm2d(planes));
    this.conv3 = this.addModule('conv3', conv1x1(planes, planes * Bottleneck.expansion));
    this.bn3 = this.addModule('bn3', new BatchNorm2d(planes * Bottleneck.expansion));
    this.relu = this.addModule('relu', new ReLU());
    this.downsample = downsample && this.addModule('downsample', downsample);
  }

  forward(x: Tensor): Tensor {
    let out = this.bn1.callWithRelu(this.conv1.call(x), this.relu);
    out = this.bn2.callWithRelu(this.conv2.call(out), this.relu);
    out = this.bn3.call(this.conv3.call(out));
    const identity = this.downsample ? this.downsample.call(x) : x;
    return this.relu.call(add(out, identity));
  }
}

export class ResNet extends Module implements Classifier {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly maxpool: MaxPool2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  fc: Linear;
  private inplanes = 64;

  constructor(layers: [number, number, number, number], numClasses: number) {
    super();
    this.conv1 = this.addModule('conv1', new Conv2d(3, this.inplanes, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(this.inplanes));
    this.relu = this.addModule('relu', new ReLU());
    this.maxpool = this.addModule('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    this.layer1 = this.addModule('layer1', this.makeLayer(64, layers[0]));
    this.layer2 = this.addModule('layer2', this.makeLayer(128, layers[1], 2));
    this.layer3 = this.addModule('layer3', this.makeLayer(256, layers[2], 2));
    this.layer4 = this.addModule('layer4', this.makeLayer(512, layers[3], 2));
    this.avgpool = this.addModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.addModule('fc', new Linear(512 * Bottleneck.expansion, numClasses));
  }

  private makeLayer(planes: number, blocks: number, stride = 1): Sequential {
    const outPlanes = planes * Bottleneck.expansion;
    const downsample =
      stride !== 1 || this.inplanes !== outPlanes ? new Sequential(conv1x1(this.inplanes, outPlanes, stride), new BatchNorm2d(outPlanes)) : null;
    const layers = [new Bottleneck(this.inplanes, planes, stride, downsample)];
    this.inplanes = outPlanes;
    for (let i = 1; i < blocks; i++) layers.push(new Bottleneck(this.inplanes, planes));
    return new Sequential(...layers);
  }

  forward(x: Tensor): Tensor {
    checkInput('ResNet', x, resnet50Info.minInputSize);
    x = this.maxpool.call(this.bn1.callWithRelu(this.conv1.call(x), this.relu));
    x = this.layer4.call(this.layer3.call(this.layer2.call(this.layer1.call(x))));
    return this.fc.call(flatten(this.avgpool.call(x), 1));
  }

  replaceHead(numClasses: number, seed = 0): void {
    this.fc.dispose();
    this.fc = this.addModule('fc', new Linear(this.fc.inFeatures, checkClasses(numClasses)).initialize(seed));
  }
}

/** torchvision's init: convs kaiming_normal_(mode='fan_out', relu); BatchNorm 1 / 0 and fc's nn.Linear default are the layer defaults. */
const resnetInit: InitRule = (m, name, shape, seed) =>
  m instanceof Conv2d && name === 'weight' ? Tensor.kaimingNormal(shape, 'fan_out', seed) : undefined;

export function resnet50(options: ModelOptions = {}): ResNet {
  return finish(new ResNet([3, 4, 6, 3], checkClasses(options.numClasses ?? 1000)), options, resnetInit);
}

export const resnet50Info: ModelInfo = {
  defaultInputSize: 224,
  minInputSize: 1,
  // The output of the last stage (= layer4[-1]), pytorch-grad-cam's documented target for ResNet.
  lastConvLayer: 'layer4',
  headParameterPrefixes: ['fc'],
};
