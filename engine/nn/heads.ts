// Face-recognition heads: a classifier's final Linear swapped for a head that sees the penultimate
// embedding and, in training, the labels: ArcFace (additive angular margin), SphereFace (multiplicative
// angular margin with lambda annealing) and a plain Linear for comparison.
//
// Use:
//   const head = attachHead(model, 'arcface', numClasses, seed);   // model.call(x) now returns embeddings
//   const optimizer = new Adam([...model.parameters(), ...head.parameters()]);
//   // per training batch (Inception v3 in training mode: the embedding is its output's `logits`):
//   head.step();                                         // before logits(): SphereFace anneals lambda
//   const loss = crossEntropy(head.logits(model.call(x), labels), labels);
//   // evaluation: head.logits(model.call(x), null) -> argmax; verification uses the embeddings
// Checkpoints: the head's stateDict() (key `weight`, plus `bias` for linear) and its `iteration`.
import { matmul } from '../ops/matmul.ts';
import { mul, mulScalar } from '../ops/elementwise.ts';
import { normalizeRows, rowNorms } from '../ops/normalize.ts';
import { arcFaceMargin, sphereFaceLambda, sphereFaceMargin } from '../ops/margin.ts';
import { CelgradError } from '../errors.ts';
import { Rng } from '../random.ts';
import { Tensor } from '../tensor.ts';
import { Identity, Linear } from './layers.ts';
import { Module } from './module.ts';

export type HeadKind = 'linear' | 'arcface' | 'sphereface';

/** What attachHead() returns: logits from embeddings, with training labels for the margin heads. */
export interface Head extends Module {
  readonly kind: HeadKind;
  /** The embedding size. */
  readonly inFeatures: number;
  /** Training iterations counted by step(); save it with the checkpoint (SphereFace's lambda depends on it). */
  iteration: number;
  /**
   * embedding [N, inFeatures] -> logits [N, numClasses]. With labels (i32 [N], training) the margin heads
   * put their margin on each row's target logit; with null (evaluation) they give the plain logits.
   */
  logits(embedding: Tensor, labels: Tensor | null): Tensor;
  /** Counts one training iteration; call once per batch, before logits(). */
  step(): void;
  /**
   * Labels for the next training forward when the head is installed in the model (installHead):
   * forward() then applies the margin; in eval mode it is ignored.
   */
  targets: Tensor | null;
}

/** torch.nn.Linear as a head (PyTorch's default init, as replaceHead): labels are ignored. */
export class LinearHead extends Linear implements Head {
  readonly kind = 'linear';
  iteration = 0;
  targets: Tensor | null = null;

  logits(embedding: Tensor): Tensor {
    return this.call(embedding);
  }

  step(): void {
    this.iteration++;
  }
}

/** Cosines between embeddings and class vectors: weight [numClasses, inFeatures], both sides L2-normalised. */
abstract class CosineHead extends Module implements Head {
  abstract readonly kind: HeadKind;
  iteration = 0;
  targets: Tensor | null = null;

  constructor(
    readonly inFeatures: number,
    readonly numClasses: number,
  ) {
    super();
    this.declareParameter('weight', [numClasses, inFeatures]);
  }

  get weight(): Tensor {
    return this.tensor('weight');
  }

  abstract logits(embedding: Tensor, labels: Tensor | null): Tensor;

  step(): void {
    this.iteration++;
  }

  /** Margin logits for `targets` in training mode (installHead), plain logits otherwise. */
  forward(x: Tensor): Tensor {
    return this.logits(x, this.training ? this.targets : null);
  }

  protected cosines(embedding: Tensor): Tensor {
    return matmul(normalizeRows(embedding), normalizeRows(this.weight), { transB: true });
  }
}

export interface ArcFaceOptions {
  /** Logit scale. Default 64. */
  s?: number;
  /** Additive angular margin (radians). Default 0.5. */
  m?: number;
  /** insightface's easy_margin. Default false. */
  easyMargin?: boolean;
}

/**
 * ArcFace (Deng et al. 2019, insightface arcface_torch): s * cos theta, with cos(theta + m) on the target
 * in training (see arcFaceMargin). Weight init N(0, 0.01), as insightface's PartialFC_V2.
 */
export class ArcFaceHead extends CosineHead {
  readonly kind = 'arcface';
  readonly s: number;
  readonly m: number;
  readonly easyMargin: boolean;

  constructor(inFeatures: number, numClasses: number, options: ArcFaceOptions = {}) {
    super(inFeatures, numClasses);
    this.s = options.s ?? 64;
    this.m = options.m ?? 0.5;
    this.easyMargin = options.easyMargin ?? false;
  }

  protected override initialValue(_name: string, shape: number[], seed: number): Tensor {
    return Tensor.normal(shape, 0, 0.01, seed);
  }

  logits(embedding: Tensor, labels: Tensor | null): Tensor {
    const cos = this.cosines(embedding);
    const target = labels ? arcFaceMargin(cos, labels, { m: this.m, easyMargin: this.easyMargin }) : cos;
    return mulScalar(target, this.s);
  }
}

/**
 * SphereFace (Liu et al. 2017, clcarwin/sphereface_pytorch): |x| cos theta, with |x| (lambda cos theta +
 * psi(theta)) / (1 + lambda) on the target in training, lambda = max(5, 1500 / (1 + 0.1 iteration))
 * (see sphereFaceMargin). The embedding is not normalised; the class vectors are (the reference's
 * renorm). Weight init U(-1, 1) with each class vector then scaled to unit length, as the reference
 * (which stores it transposed, [in, out]).
 */
export class SphereFaceHead extends CosineHead {
  readonly kind = 'sphereface';
  readonly m: number;

  constructor(inFeatures: number, numClasses: number, options: { m?: number } = {}) {
    super(inFeatures, numClasses);
    this.m = options.m ?? 4;
  }

  /** The annealing weight of the current iteration. */
  get lambda(): number {
    return sphereFaceLambda(this.iteration);
  }

  protected override initialValue(_name: string, shape: number[], seed: number): Tensor {
    const [rows, cols] = shape;
    const rng = new Rng(seed);
    const data = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const row = data.subarray(r * cols, (r + 1) * cols);
      let squares = 0;
      for (let i = 0; i < cols; i++) {
        row[i] = 2 * rng.next() - 1;
        squares += row[i] * row[i];
      }
      const norm = Math.sqrt(squares);
      for (let i = 0; i < cols; i++) row[i] /= norm;
    }
    return Tensor.fromArray(data, shape);
  }

  logits(embedding: Tensor, labels: Tensor | null): Tensor {
    const cos = this.cosines(embedding);
    const target = labels ? sphereFaceMargin(cos, labels, { m: this.m, lambda: this.lambda }) : cos;
    return mul(target, rowNorms(embedding));
  }
}

/** Stands where attachHead() removed a classifier's final Linear: the model then outputs its embedding. */
export class PassThrough extends Identity {}

/**
 * The dotted name of a classifier's final layer: the last Linear (or PassThrough) registered, which is
 * where torchvision's models put it (ResNet and Inception v3 `fc`, DenseNet `classifier`, VGG
 * `classifier.6`; Inception's AuxLogits.fc is registered before fc). Its input is the embedding.
 */
export function classifierPath(model: Module<unknown>): string {
  let found: string | null = null;
  for (const [path, m] of model.namedModules()) {
    if (m instanceof Linear || m instanceof PassThrough || m instanceof CosineHead) found = path;
  }
  if (!found) throw new CelgradError(`${model.constructor.name} has no Linear layer to take the embedding from`);
  return found;
}

/**
 * Replaces the model's final Linear with a PassThrough, so model.call(x) returns the penultimate
 * features, and returns a new head on them (seeded init). Embeddings: ResNet-50 2048 (after avgpool and
 * flatten), Inception v3 2048 (after avgpool and dropout), DenseNet-121 1024 (after the final ReLU and
 * pooling), VGG-16 4096 (classifier.4's ReLU, then classifier.5's dropout: in eval mode the ReLU
 * output). Inception's auxiliary classifier stays a Linear on the labels. The old Linear is disposed.
 * The head's parameters are not the model's: give both to the optimizer (and both to a checkpoint).
 */
export function attachHead(model: Module<unknown>, kind: HeadKind, numClasses: number, seed = 0): Head {
  const path = classifierPath(model);
  const old = model.get(path);
  if (!(old instanceof Linear)) throw new CelgradError(`${model.constructor.name} already has a head attached at '${path}'`);
  const cut = path.lastIndexOf('.');
  const parent = cut < 0 ? model : model.get(path.slice(0, cut));
  const name = path.slice(cut + 1);
  const passThrough = parent.addModule(name, new PassThrough());
  // The models also call their classifier through a field of the same name (ResNet's `fc`); VGG's sits in a Sequential.
  const fields = parent as unknown as Record<string, unknown>;
  if (fields[name] === old) fields[name] = passThrough;
  old.dispose();
  return createHead(kind, old.inFeatures, numClasses).initialize(seed);
}

/**
 * Puts a head in place of the model's final Linear, so the model keeps returning logits and the head's
 * weight is saved with the model under the classifier's name (`fc.weight`, `classifier.weight`). Set
 * `head.targets` to the batch's labels before each training forward, and call head.step() per batch.
 */
export function installHead(model: Module<unknown>, kind: HeadKind, numClasses: number, seed = 0): Head {
  const path = classifierPath(model);
  const old = model.get(path);
  if (!(old instanceof Linear) || old instanceof LinearHead) throw new CelgradError(`${model.constructor.name} already has a head at '${path}'`);
  const head = createHead(kind, old.inFeatures, numClasses).initialize(seed);
  const cut = path.lastIndexOf('.');
  const parent = cut < 0 ? model : model.get(path.slice(0, cut));
  const name = path.slice(cut + 1);
  parent.addModule(name, head);
  const fields = parent as unknown as Record<string, unknown>;
  if (fields[name] === old) fields[name] = head;
  old.dispose();
  return head;
}

function createHead(kind: HeadKind, inFeatures: number, numClasses: number): Head {
  switch (kind) {
    case 'linear':
      return new LinearHead(inFeatures, numClasses);
    case 'arcface':
      return new ArcFaceHead(inFeatures, numClasses);
    case 'sphereface':
      return new SphereFaceHead(inFeatures, numClasses);
  }
}
