// `celgrad explain`: one image, one trained run, one explanation method, written as a PNG panel
// (the input beside the explanation) with the prediction in the caption.
import { writeFileSync } from 'node:fs';
import { CelgradError } from '../../engine/errors.ts';
import { modelInfo } from '../../models/index.ts';
import { loadRunModel } from '../runs.ts';
import { loadImage, valTransform } from '../data/index.ts';
import { chwToRgba, encodePng, heatmapOverlay, labelledRow, signedImage, type RgbaImage } from '../visualize/images.ts';
import { camOf, guidedGradCam, inputGradient, predict, saliencyOf, smoothGrad, type Method } from './explain.ts';

export async function explainImage(o: { run: string; image: string; out: string; method: Method; layer?: string; target?: number }): Promise<string> {
  const { model, config } = loadRunModel(o.run);
  const size = config.inputSize;
  try {
    const image = await loadImage(o.image, valTransform(size));
    const original = chwToRgba(image, [3, size, size]);
    const prediction = await predict(model, image, size);
    const target = o.target ?? prediction.predicted;
    if (target < 0 || target >= config.classes.length) throw new CelgradError(`--class ${target} is outside 0..${config.classes.length - 1}`);
    const layer = o.layer ?? modelInfo(config.model).lastConvLayer;
    let panel: RgbaImage;
    let note = '';
    if (o.method === 'gradcam' || o.method === 'gradcam++') {
      const { cam } = await camOf(model, image, size, { layer, target, plusPlus: o.method === 'gradcam++' });
      const overlay = heatmapOverlay(original, cam.map, cam.width, cam.height);
      panel = overlay.image;
      if (overlay.signal !== 'ok') note = ` (the map is ${overlay.signal}: nothing to show)`;
    } else if (o.method === 'saliency' || o.method === 'smoothgrad') {
      const map = o.method === 'saliency' ? saliencyOf(await inputGradient(model, image, size, target), size) : await smoothGrad(model, image, size, target);
      panel = heatmapOverlay(original, map, size, size, 0.6).image;
    } else {
      const guided = await inputGradient(model, image, size, target, true);
      if (o.method === 'guided') panel = signedImage(guided, size);
      else {
        const { cam } = await camOf(model, image, size, { layer, target });
        panel = signedImage(guidedGradCam(guided, cam, size), size);
      }
    }
    const caption = `${o.method} for ${config.classes[target]}\npredicted ${config.classes[prediction.predicted]} (${(prediction.probabilities[prediction.predicted] * 100).toFixed(1)}%)`;
    writeFileSync(o.out, encodePng(labelledRow([{ image: original, caption: 'input' }, { image: panel, caption }])));
    return `${o.method} of ${o.image} for class ${config.classes[target]} (layer ${layer}) written to ${o.out}${note}`;
  } finally {
    model.dispose();
  }
}
