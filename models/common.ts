// What the model builders share: their options, the classifier interface and input-size checks.
import { CelgradError, ShapeError } from '../engine/errors.ts';
import type { InitRule, Module } from '../engine/nn/index.ts';
import type { Tensor } from '../engine/tensor.ts';

export interface ModelOptions {
  /** Output classes (torchvision's num_classes). Default 1000. */
  numClasses?: number;
  /** Seeds every initial weight and every dropout mask: the same seed gives the same model. Default 0. */
  seed?: number;
  /**
   * Declare names and shapes only and allocate nothing (PyTorch's meta device): parameter counts,
   * state_dict keys and shapes, without a GPU. Call initialize(seed) to make such a model runnable.
   */
  meta?: boolean;
}

/** A classification network: image batch [N, 3, H, W] in, logits [N, numClasses] out. */
export interface Classifier<Out = Tensor> extends Module<Out> {
  /**
   * Swaps the final classifier (and Inception's auxiliary one) for a new Linear layer with PyTorch's
   * default init, as `model.fc = nn.Linear(...)` does in PyTorch's fine-tuning tutorial; the
   * backbone is kept. The old head is disposed.
   */
  replaceHead(numClasses: number, seed?: number): void;
}

/** Where each model's documentation and tools find its facts. */
export interface ModelInfo {
  /** The training / evaluation crop of torchvision's ImageNet weights. */
  defaultInputSize: number;
  /** The smallest height and width the network accepts (torchvision's min_size). */
  minInputSize: number;
  /** The layer Grad-CAM explains by default (its output is the feature map). */
  lastConvLayer: string;
  /** Parameter-name prefixes that stay trainable in the frozen-backbone regime (the new head). */
  headParameterPrefixes: string[];
}

/** Resolves the shared options and initialises the model unless it is shape-only. */
export function finish<M extends Module<unknown>>(model: M, options: ModelOptions, rule: InitRule): M {
  return options.meta ? model : model.initialize(options.seed ?? 0, rule);
}

export function checkClasses(numClasses: number): number {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new CelgradError(`numClasses must be a positive integer, got ${numClasses}`);
  return numClasses;
}

export function checkInput(model: string, x: Tensor, minSize: number): void {
  const [, c, h, w] = x.shape;
  if (x.shape.length !== 4 || c !== 3 || h < minSize || w < minSize) {
    throw new ShapeError(`${model} expects images [N, 3, H, W] with H, W >= ${minSize}, got [${x.shape}]`);
  }
}
