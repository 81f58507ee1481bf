// The model registry: torchvision's names -> builders and facts, for the CLI, the study and the tests.
import { CelgradError } from '../engine/errors.ts';
import { Conv2d } from '../engine/nn/index.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { Classifier, ModelInfo } from './common.ts';
import { densenet121, densenet121Info } from './densenet.ts';
import { inception_v3, inceptionV3Info, type InceptionOptions, type InceptionOutputs } from './inception.ts';
import { resnet50, resnet50Info } from './resnet.ts';
import { vgg16, vgg16_bn, vgg16BnInfo, vgg16Info } from './vgg.ts';

export type { Classifier, ModelInfo, ModelOptions } from './common.ts';
export type { InceptionOptions, InceptionOutputs } from './inception.ts';
export { resnet50, ResNet, Bottleneck } from './resnet.ts';
export { inception_v3, Inception3 } from './inception.ts';
export { densenet121, DenseNet } from './densenet.ts';
export { vgg16, vgg16_bn, VGG } from './vgg.ts';

/** What a classifier returns: logits, or Inception's { logits, aux } in training mode. */
export type ClassifierOutput = Tensor | InceptionOutputs;

export interface ModelEntry extends ModelInfo {
  /** Inception also takes auxLogits and transformInput (InceptionOptions). */
  build(options?: InceptionOptions): Classifier<ClassifierOutput>;
}

export const MODELS: Record<string, ModelEntry> = {
  resnet50: { build: resnet50, ...resnet50Info },
  inception_v3: { build: inception_v3, ...inceptionV3Info },
  densenet121: { build: densenet121, ...densenet121Info },
  vgg16: { build: vgg16, ...vgg16Info },
  vgg16_bn: { build: vgg16_bn, ...vgg16BnInfo },
};

export function modelInfo(name: string): ModelEntry {
  const entry = Object.hasOwn(MODELS, name) ? MODELS[name] : undefined;
  if (!entry) throw new CelgradError(`unknown model '${name}'; known models: ${Object.keys(MODELS).join(', ')}`);
  return entry;
}

export function createModel(name: string, options: InceptionOptions = {}): Classifier<ClassifierOutput> {
  return modelInfo(name).build(options);
}

/** The logits of a classifier's output (Inception's main head in training mode). */
export function logitsOf(output: ClassifierOutput): Tensor {
  return 'logits' in output ? output.logits : output;
}

/**
 * Parameter count and state_dict size of a model, from a shape-only build (no GPU, no allocation).
 * stateDictBytes counts every entry as f32, num_batches_tracked included.
 */
export function stateDictSize(name: string, options: InceptionOptions = {}): { params: number; stateDictKeys: number; stateDictBytes: number } {
  const model = createModel(name, { ...options, meta: true });
  let elements = 0;
  const shapes = model.stateDictShapes();
  for (const shape of shapes.values()) elements += shape.reduce((a, b) => a * b, 1);
  return { params: model.numParameters(), stateDictKeys: shapes.size, stateDictBytes: elements * 4 };
}

/** `celgrad models --json`: each model at 1000 classes (Inception with its auxiliary classifier). */
export function describeModels(): { name: string; params: number; stateDictKeys: number; defaultInputSize: number }[] {
  return Object.entries(MODELS).map(([name, entry]) => {
    const { params, stateDictKeys } = stateDictSize(name);
    return { name, params, stateDictKeys, defaultInputSize: entry.defaultInputSize };
  });
}

/**
 * The frozen-backbone regime: every parameter frozen except those under the model's head prefixes
 * (see ModelInfo.headParameterPrefixes).
 */
export function freezeBackbone(model: Classifier<ClassifierOutput>, headParameterPrefixes: string[]): void {
  for (const [name, t] of model.namedParameters()) {
    t.setRequiresGrad(headParameterPrefixes.some((p) => name.startsWith(`${p}.`)));
  }
}

/** The layer whose feature maps the paper shows (the study's and the explorer's default): the n-th Conv2d in module order, or a named block. */
export function defaultFeatureLayer(model: Classifier<ClassifierOutput>, name: string): string {
  if (name === 'inception_v3') return 'Mixed_5b';
  const convs = [...model.namedModules()].filter(([, m]) => m instanceof Conv2d).map(([n]) => n);
  return convs[Math.min(9, convs.length - 1)];
}
