// Modules and layers: torchvision's building blocks (see module.ts for the Module API).
export { Module, Sequential, type ForwardHook, type InitRule, type StateDictData } from './module.ts';
export {
  Conv2d,
  BatchNorm2d,
  Linear,
  ReLU,
  Identity,
  Flatten,
  MaxPool2d,
  AvgPool2d,
  AdaptiveAvgPool2d,
  Dropout,
  type Conv2dOptions,
  type PoolOptions,
} from './layers.ts';
export {
  attachHead,
  classifierPath,
  ArcFaceHead,
  SphereFaceHead,
  LinearHead,
  PassThrough,
  type Head,
  type HeadKind,
  type ArcFaceOptions,
} from './heads.ts';
