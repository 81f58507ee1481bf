// Per-run measurements beyond accuracy, for the extended study and `celgrad eval --protocol`:
// faithfulness of explanation maps (Average Drop %, % Increase in Confidence) and face verification /
// identification on the penultimate embeddings.
import { Tensor, noGrad, scopeAsync, softmax } from '../engine/index.ts';
import { logitsOf, type Classifier, type ClassifierOutput } from '../models/index.ts';
import { DataLoader, valTransform, type Sample } from './data/index.ts';
import { normalise } from './explain/cam.ts';
import { camOf, resizeMap } from './explain/explain.ts';
import { faithfulness, type Faithfulness } from './explain/faithfulness.ts';
import { evaluateEmbeddings, extractEmbeddings, type VerificationReport } from './verify.ts';

/** Softmax probability of `target` for one image [3, S, S]. */
async function probabilityOf(model: Classifier<ClassifierOutput>, image: Float32Array, size: number, target: number): Promise<number> {
  const probs = await scopeAsync(() =>
    noGrad(() => softmax(logitsOf(model.call(Tensor.fromArray(image, [1, 3, size, size])))).toArray()),
  );
  return probs[target];
}

/**
 * Y = softmax probability of the predicted class on the image, O = the same class's probability on the
 * image multiplied by its explanation map (min-max normalised, upsampled), as in the Grad-CAM++ paper and
 * pytorch-grad-cam's perturbation (the normalised tensor times the map).
 */
export async function explanationFaithfulness(
  model: Classifier<ClassifierOutput>,
  images: Float32Array[],
  size: number,
  layer: string,
  method: 'gradcam' | 'gradcam++',
): Promise<Faithfulness> {
  model.eval();
  const full: number[] = [];
  const masked: number[] = [];
  for (const image of images) {
    const r = await camOf(model, image, size, { layer, plusPlus: method === 'gradcam++' });
    const map = resizeMap(normalise(r.cam.map), r.cam.width, r.cam.height, size);
    const hw = size * size;
    const maskedImage = image.map((v, i) => v * map[i % hw]);
    full.push(r.probabilities[r.target]);
    masked.push(await probabilityOf(model, maskedImage, size, r.target));
  }
  return faithfulness(full, masked);
}

/** Embeddings of the validation images, then verification pairs, ROC, TAR at FAR and identification top-1. */
export async function verification(
  model: Classifier<ClassifierOutput>,
  samples: Sample[],
  size: number,
  batchSize: number,
  seed = 0,
): Promise<VerificationReport> {
  const loader = new DataLoader({ samples, batchSize, transform: valTransform(size) });
  try {
    const embeddings = await extractEmbeddings(model, loader.epoch(0), size);
    return evaluateEmbeddings(embeddings, { seed });
  } finally {
    loader.close();
  }
}
