// celgrad for browsers: the engine, the models and the explanation code, bundled by `npm run build:web` into
// dist/web/celgrad.js. The same sources run in Node; only the platform (navigator.gpu) differs.
import { initGPU, setPlatform, type Gpu } from '../engine/index.ts';
import { browserPlatform } from '../engine/platform/browser.ts';

export * from '../engine/index.ts';
export * as nn from '../engine/nn/index.ts';
export { readWeights, type NamedArray } from '../engine/io/index.ts';
export { browserPlatform } from '../engine/platform/browser.ts';
export { MODELS, createModel, defaultFeatureLayer, logitsOf, modelInfo, type Classifier, type ClassifierOutput } from '../models/index.ts';
export { activationOf, camOf, inputGradient, predict, resizeMap, saliencyOf, type CamResult, type Prediction } from '../experiments/explain/explain.ts';
export { camSignal, gradCam, gradCamPlusPlus, normalise, type Cam, type CamSignal } from '../experiments/explain/cam.ts';
export { IMAGENET_MEAN, IMAGENET_STD, planTransform, valTransform } from '../experiments/data/geometry.ts';
export { chwToRgba, featureMapGrid, jetOverlay, type RgbaImage } from '../experiments/visualize/pixels.ts';

/** Installs the browser platform and starts the GPU (throws DeviceError, with what to do, when there is no WebGPU). */
export function startGPU(): Promise<Gpu> {
  setPlatform(browserPlatform());
  return initGPU();
}
