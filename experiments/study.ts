// The study: the paper's grid (models x regimes) trained on one shared split, then Table 1, Figure 1,
// filters per epoch, feature maps from forward hooks, Grad-CAM panels, and one offline report.html.
//
// The "pretrained" arm needs weights. With --weights-dir it takes torchvision's ImageNet files (or
// timm's *.tv_in1k safetensors); without, each backbone is first trained on a different synthetic
// task (other identities, never the target ones) and that result is cached and used, and the table
// and report say so.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gpu } from '../engine/gpu.ts';
import { defaultFeatureLayer, modelInfo, type Classifier, type ClassifierOutput } from '../models/index.ts';
import { EASY_DIFFICULTY, generateSynthFaces, loadImage, readSplit, valTransform, type SynthDifficulty } from './data/index.ts';
import { loadRunModel } from './runs.ts';
import { activationOf, camOf, guidedGradCam, inputGradient, saliencyOf } from './explain/explain.ts';
import { explanationFaithfulness, verification } from './study-metrics.ts';
import type { HeadKind } from '../engine/nn/heads.ts';
import type { Sample } from './data/index.ts';
import { formatSeconds } from './progress.ts';
import { train, type Regime, type RunResult } from './train.ts';
import { chwToRgba, encodePng, featureMapGrid, heatmapOverlay, labelledRow, signedImage } from './visualize/images.ts';
import {
  comparisonSentences,
  table1Rows,
  writeCurves,
  writeReport,
  writeTable1,
  type FeatureMapPanel,
  type FilterSeries,
  type GradcamPanel,
  type ReportData,
  type RunSummary,
  type FaithfulnessRow,
  type VerificationRow,
  type RocCurve,
  type ExplanationPanel,
} from './visualize/report.ts';

export type Preset = 'smoke' | 'quick' | 'paper';

export interface PresetConfig {
  /** Synthetic target set (smoke, quick) or the user's data (paper). */
  synth?: { identities: number; perIdentity: number; size: number; seed: number; difficulty?: Partial<SynthDifficulty> };
  /** The synthetic source task used to pretrain backbones when no ImageNet weights are given. */
  source: { identities: number; perIdentity: number; size: number; seed: number; epochs: number; difficulty?: Partial<SynthDifficulty> };
  classes?: number;
  imageSize: Record<string, number>;
  /** RandomResizedCrop's area range, when milder than torchvision's [0.08, 1] (said in the report). */
  cropScale?: [number, number];
  epochs: number;
  batchSize: number;
  lr: number;
  stepSize: number;
  gamma: number;
  gradcamImages: number;
  /** Validation images for the faithfulness metrics (Grad-CAM and Grad-CAM++ per run). */
  faithfulnessImages: number;
  /** Grad-CAM layers where the last conv block is too small at this preset's input size (said in the report). */
  gradcamLayers?: Record<string, string>;
}

const EASY = EASY_DIFFICULTY;

export const PRESETS: Record<Preset, PresetConfig> = {
  // About 10 minutes on 2 cores with the software adapter: small images, few identities, 3 epochs.
  smoke: {
    synth: { identities: 6, perIdentity: 20, size: 64, seed: 1, difficulty: EASY },
    source: { identities: 6, perIdentity: 20, size: 64, seed: 2, epochs: 3, difficulty: EASY },
    imageSize: { resnet50: 48, inception_v3: 75, densenet121: 48, vgg16: 48, vgg16_bn: 48 },
    // With ~100 training images, crops of 8% of a face leave too little to learn from in a few epochs.
    cropScale: [0.5, 1],
    epochs: 4,
    batchSize: 16,
    lr: 1e-3,
    stepSize: 7,
    gamma: 1,
    gradcamImages: 3,
    faithfulnessImages: 8,
    // At 75 px Inception v3's Mixed_7c is 1x1: a map of one cell says nothing about where. Mixed_6e is 3x3 there.
    gradcamLayers: { inception_v3: 'Mixed_6e' },
  },
  // About an hour on 2 cores: more identities and images, larger inputs, more epochs.
  quick: {
    synth: { identities: 20, perIdentity: 40, size: 112, seed: 1 },
    source: { identities: 20, perIdentity: 40, size: 112, seed: 2, epochs: 5 },
    imageSize: { resnet50: 96, inception_v3: 107, densenet121: 96, vgg16: 96, vgg16_bn: 96 },
    epochs: 8,
    batchSize: 16,
    lr: 1e-3,
    stepSize: 7,
    gamma: 1,
    gradcamImages: 4,
    faithfulnessImages: 40,
  },
  // The seed paper's configuration, on iCartoonFace (--data) with ImageNet weights (--weights-dir).
  paper: {
    source: { identities: 100, perIdentity: 60, size: 256, seed: 2, epochs: 10 },
    classes: 1000,
    imageSize: { resnet50: 224, inception_v3: 299, densenet121: 224, vgg16: 224, vgg16_bn: 224 },
    epochs: 10,
    batchSize: 32,
    lr: 1e-3,
    stepSize: 7,
    gamma: 1,
    gradcamImages: 6,
    faithfulnessImages: 500,
  },
};

export interface StudyOptions {
  preset: Preset;
  out: string;
  data?: string;
  weightsDir?: string;
  models?: string[];
  regimes?: Regime[];
  /** Classifier heads to compare (issue: ArcFace and SphereFace as next steps); default the paper's linear fc. */
  heads?: HeadKind[];
  /** Reuse finished runs (and continue an interrupted one from its checkpoint). */
  resume?: boolean;
  /** Feature-map layers by name (default: the paper's: ResNet-50's 10th conv layer, Inception v3's Mixed_5b). */
  layers?: string[];
  /** Grad-CAM target layer per model (default: the last conv block). */
  gradcamLayer?: string;
  epochs?: number;
  seed?: number;
  cacheDir?: string;
  /** Replaces parts of the preset (tests run a tiny study this way). */
  overrides?: Partial<PresetConfig>;
}

/** torchvision's and timm's file names for the ImageNet weights of each model. */
const WEIGHT_FILES: Record<string, RegExp> = {
  resnet50: /^(resnet50-[0-9a-f]+\.pth|resnet50\.tv2?_in1k.*\.safetensors|resnet50.*\.safetensors)$/,
  inception_v3: /^(inception_v3_google-[0-9a-f]+\.pth|inception_v3\.tv_in1k.*\.safetensors|inception_v3.*\.safetensors)$/,
  densenet121: /^(densenet121-[0-9a-f]+\.pth|densenet121.*\.safetensors)$/,
  vgg16: /^(vgg16-[0-9a-f]+\.pth|vgg16\.tv_in1k.*\.safetensors)$/,
  vgg16_bn: /^(vgg16_bn-[0-9a-f]+\.pth|vgg16_bn.*\.safetensors)$/,
};

export async function runStudy(options: StudyOptions): Promise<string> {
  const started = performance.now();
  const preset: PresetConfig = { ...PRESETS[options.preset], ...options.overrides };
  const out = resolve(options.out);
  const models = options.models ?? ['resnet50', 'inception_v3'];
  const regimes = options.regimes ?? ['pretrained', 'scratch'];
  const seed = options.seed ?? 0;
  const epochs = options.epochs ?? preset.epochs;
  const cacheDir = resolve(options.cacheDir ?? '.cache/celgrad');
  mkdirSync(out, { recursive: true });
  const timings: { label: string; seconds: number }[] = [];
  const notes: string[] = [];
  const time = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const r = await fn();
    timings.push({ label, seconds: (performance.now() - t0) / 1000 });
    return r;
  };

  // ---- data ----
  let data = options.data;
  let datasetName = 'user data';
  if (!data) {
    if (!preset.synth) throw new Error(`--preset ${options.preset} needs --data DIR (the iCartoonFace recognition training set)`);
    data = join(out, 'data', 'target');
    const s = preset.synth;
    if (!(options.resume && existsSync(join(data, 'synth.json')))) {
      await time('synthetic data', async () =>
        generateSynthFaces({ out: data!, identities: s.identities, perIdentity: s.perIdentity, size: s.size, seed: s.seed, difficulty: s.difficulty }),
      );
    }
    datasetName = `synthetic cartoon faces (celgrad data synth: ${s.identities} identities x ${s.perIdentity} images, ${s.size} px, seed ${s.seed})`;
  }

  // ---- the grid ----
  const heads = options.heads ?? ['linear'];
  const plan = models.flatMap((m) => regimes.flatMap((r) => heads.map((h) => ({ model: m, regime: r, head: h, name: runName(m, r, h) }))));
  const sourceRuns = regimes.some((r) => r !== 'scratch') ? models.filter((m) => !findImageNetWeights(options.weightsDir, m)) : [];
  const totalRuns = plan.length + sourceRuns.length;
  let runIndex = 0;
  const announce = (what: string) => {
    runIndex++;
    console.log(`\n== run ${runIndex} of ${totalRuns}: ${what} (elapsed ${formatSeconds((performance.now() - started) / 1000)})`);
  };

  const weightsFor = new Map<string, { file: string; source: string }>();
  for (const model of models) {
    const imagenet = findImageNetWeights(options.weightsDir, model);
    if (imagenet) {
      weightsFor.set(model, { file: imagenet, source: `ImageNet (${imagenet.split('/').pop()})` });
    } else if (sourceRuns.includes(model)) {
      announce(`${model} pretraining on the synthetic source task`);
      const file = await time(`${model} source-task pretraining`, () => pretrainOnSourceTask(model, preset, cacheDir, seed));
      weightsFor.set(model, {
        file,
        source: `synthetic source task (${preset.source.identities} other identities, ${preset.source.epochs} epochs; no ImageNet weights given)`,
      });
    }
  }
  if (preset.cropScale) {
    notes.push(`Training augmentation: RandomResizedCrop with area ${preset.cropScale.join('-')} of the image (torchvision's default is 0.08-1), for this small synthetic set.`);
  }
  if (sourceRuns.length) {
    notes.push(
      `No ImageNet weights were given (--weights-dir), so the pretrained arm of ${sourceRuns.join(' and ')} started from weights learned on a ` +
        'different synthetic task (other identities than the target set), cached under .cache/celgrad/pretrain.',
    );
  }

  const splitFile = join(out, 'split.json');
  const results = new Map<string, RunResult & { weightsSource: string }>();
  for (const { model, regime, head, name } of plan) {
    const runDir = join(out, 'runs', name);
    const finished = join(runDir, 'result.json');
    announce(`${name}`);
    if (options.resume && existsSync(finished)) {
      console.log(`reusing the finished run in ${runDir}`);
      results.set(name, JSON.parse(readFileSync(finished, 'utf8')));
      continue;
    }
    const weights = regime === 'scratch' ? undefined : weightsFor.get(model);
    const result = await time(name, () =>
      train({
        model,
        regime,
        data: data!,
        out: runDir,
        weights: weights?.file,
        weightsSource: weights?.source,
        epochs,
        batchSize: preset.batchSize,
        lr: preset.lr,
        stepSize: preset.stepSize,
        gamma: preset.gamma,
        imageSize: preset.imageSize[model],
        cropScale: preset.cropScale,
        classes: preset.classes,
        seed,
        head,
        splitFile,
        checkpointEvery: 50,
        resume: options.resume,
      }),
    );
    results.set(name, { ...result, weightsSource: weights?.source ?? 'random init (torchvision default, seeded)' });
  }
  for (const model of models) {
    const camLayer = options.gradcamLayer ?? preset.gradcamLayers?.[model];
    if (camLayer && camLayer !== modelInfo(model).lastConvLayer) {
      notes.push(`Grad-CAM for ${model} targets ${camLayer} instead of ${modelInfo(model).lastConvLayer}: at ${preset.imageSize[model]} px the last block's map is too small to localise anything.`);
    }
    if (model === 'inception_v3' && preset.imageSize[model] < 299) {
      notes.push(`Inception v3 trained without its auxiliary classifier: at ${preset.imageSize[model]} px input the aux head (which needs at least 299 px) cannot run.`);
    }
  }

  // ---- figures ----
  const runs: RunSummary[] = plan.map(({ model, regime, head, name }) => {
    const r = results.get(name)!;
    return { name, model, regime, ...(heads.length > 1 || head !== 'linear' ? { head } : {}), weightsSource: r.weightsSource, metrics: r.metrics };
  });
  writeTable1(out, table1Rows(runs, options.preset));
  await writeCurves(out, runs);
  const split = readSplit(splitFile);
  const figures = await time('figures (filters, feature maps, Grad-CAM)', () =>
    drawFigures(out, plan, results, split, preset, options),
  );

  const adapter = gpu().facts;
  const config: ReportData['config'] = {
    preset: options.preset,
    models,
    regimes,
    ...(heads.length > 1 || heads[0] !== 'linear' ? { heads } : {}),
    dataset: {
      name: datasetName,
      location: data,
      identities: split.classes.length,
      trainImages: split.train.length,
      valImages: split.val.length,
      split: `stratified ${Math.round(split.fraction * 100)}/${Math.round((1 - split.fraction) * 100)} per identity, seed ${split.seed}`,
    },
    imageSize: Object.fromEntries(models.map((m) => [m, preset.imageSize[m] ?? modelInfo(m).defaultInputSize])),
    epochs,
    batchSize: preset.batchSize,
    optimizer: `Adam, lr ${preset.lr}`,
    schedule: `StepLR, step ${preset.stepSize}, gamma ${preset.gamma}`,
    seed,
  };
  timings.push({ label: 'total', seconds: (performance.now() - started) / 1000 });
  const report: ReportData = {
    title: 'ResNet-50 vs Inception v3 on cartoon faces: pretrained vs from scratch',
    config,
    environment: {
      adapter: `${adapter.description || adapter.device} (${adapter.vendor}, ${adapter.architecture})`,
      versions: { node: process.versions.node, celgrad: '0.1.0' },
      startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
    },
    runs,
    timings,
    ...figures,
    notes,
  };
  writeFileSync(join(out, 'study.json'), JSON.stringify({ config, environment: report.environment, timings, notes }, null, 2));
  const page = await writeReport(out, report);
  for (const line of comparisonSentences(runs, options.preset)) console.log(line);
  console.log(`\nstudy written to ${out} in ${formatSeconds((performance.now() - started) / 1000)}; open ${page}`);
  return page;
}

function findImageNetWeights(dir: string | undefined, model: string): string | undefined {
  if (!dir || !existsSync(dir)) return undefined;
  const file = readdirSync(dir).find((f) => WEIGHT_FILES[model]?.test(f));
  return file ? join(dir, file) : undefined;
}

/** Trains a backbone from scratch on a synthetic source task (other identities) and caches the best weights. */
async function pretrainOnSourceTask(model: string, preset: PresetConfig, cacheDir: string, seed: number): Promise<string> {
  const s = preset.source;
  const size = preset.imageSize[model];
  const key = createHash('sha256').update(JSON.stringify({ model, s, size, seed, v: 2 })).digest('hex').slice(0, 12);
  const dir = join(cacheDir, 'pretrain', `${model}-${key}`);
  const weights = join(dir, 'best.safetensors');
  if (existsSync(join(dir, 'result.json')) && existsSync(weights)) {
    console.log(`using cached source-task weights ${weights}`);
    return weights;
  }
  const data = join(cacheDir, 'source-data', `synth-${key}`);
  if (!existsSync(join(data, 'synth.json'))) {
    generateSynthFaces({ out: data, identities: s.identities, perIdentity: s.perIdentity, size: s.size, seed: s.seed, sourceTask: true, difficulty: s.difficulty });
  }
  await train({
    model,
    regime: 'scratch',
    data,
    out: dir,
    epochs: s.epochs,
    batchSize: preset.batchSize,
    lr: preset.lr,
    stepSize: preset.stepSize,
    gamma: preset.gamma,
    imageSize: size,
    cropScale: preset.cropScale,
    seed: seed + 17,
    filterLayers: [],
    resume: true,
  });
  return weights;
}

async function drawFigures(
  out: string,
  plan: { model: string; regime: Regime; name: string }[],
  results: Map<string, RunResult>,
  split: ReturnType<typeof readSplit>,
  preset: PresetConfig,
  options: StudyOptions,
): Promise<Pick<ReportData, 'filters' | 'featureMaps' | 'gradcam' | 'faithfulness' | 'verification' | 'explanations'>> {
  const filters: FilterSeries[] = [];
  for (const { name } of plan) {
    const r = results.get(name)!;
    for (const layer of r.filterLayers) {
      filters.push({
        run: name,
        layer,
        epochs: r.metrics.map((m) => ({ epoch: m.epoch, image: join('runs', name, 'filters', `epoch-${String(m.epoch).padStart(2, '0')}`, `${layer}.png`) })),
      });
    }
  }

  // The same validation images for every run: one per identity, in order, up to the preset's count.
  const chosen: { path: string; label: number; box?: { x1: number; y1: number; x2: number; y2: number } }[] = [];
  for (const s of split.val) {
    if (chosen.length >= preset.gradcamImages) break;
    if (!chosen.some((c) => c.label === s.label)) chosen.push(s);
  }
  const featureMaps: FeatureMapPanel[] = [];
  const rows = chosen.map(() => [] as { image: Uint8Array; caption: string; run: GradcamPanel['runs'][number] }[]);
  const originals: Uint8Array[] = [];
  mkdirSync(join(out, 'gradcam'), { recursive: true });
  const faithfulnessRows: FaithfulnessRow[] = [];
  const verificationRows: VerificationRow[] = [];
  const rocCurves: RocCurve[] = [];
  const explanations: ExplanationPanel[] = [];
  const faithImages = split.val.slice(0, preset.faithfulnessImages);
  // Verification needs genuine pairs: some identity with two validation images.
  const perIdentity = new Map<number, number>();
  for (const v of split.val) perIdentity.set(v.label, (perIdentity.get(v.label) ?? 0) + 1);
  const canVerify = [...perIdentity.values()].some((n) => n >= 2) && perIdentity.size >= 2;
  for (const { model, name } of plan) {
    const r = results.get(name)!;
    const size = r.inputSize;
    const { model: net } = loadRunModel(join(out, 'runs', name));
    const images = await Promise.all(chosen.map((c) => loadImage(c.path, valTransform(size), { box: c.box })));

    // Feature maps through a forward hook on the chosen layer, for the first chosen image.
    const layers = options.layers ?? [defaultFeatureLayer(net, model)];
    for (const layer of layers) {
      const fm = await activationOf(net, images[0], size, layer);
      if (fm && fm.shape.length === 3) {
        const file = join('featuremaps', name, `${layer}.png`);
        mkdirSync(join(out, 'featuremaps', name), { recursive: true });
        writeFileSync(join(out, file), encodePng(featureMapGrid(fm.data, fm.shape, 32)));
        featureMaps.push({ run: name, layer, image: file, input: chosen[0].path.split('/').slice(-2).join('/') });
      }
    }

    // Grad-CAM at the last conv block for each chosen image.
    const layer = options.gradcamLayer ?? preset.gradcamLayers?.[model] ?? modelInfo(model).lastConvLayer;
    for (let i = 0; i < chosen.length; i++) {
      const original = chwToRgba(images[i], [3, size, size]);
      if (originals.length <= i) originals.push(encodePng(original));
      const result = await camOf(net, images[i], size, { layer });
      const overlay = heatmapOverlay(original, result.cam.map, result.cam.width, result.cam.height);
      const predicted = r.classes[result.predicted];
      const score = result.probabilities[result.predicted];
      rows[i].push({
        image: encodePng(overlay.image),
        caption: `${name}\npred ${predicted} (${(score * 100).toFixed(0)}%)${overlay.signal === 'ok' ? '' : `\n${overlay.signal}`}`,
        run: { run: name, layer, predicted, score, signal: overlay.signal },
      });
    }

    // Every explanation method on the first chosen image.
    const panels = await explanationPanels(net, images[0], size, layer);
    const file = join('explanations', `${name}.png`);
    mkdirSync(join(out, 'explanations'), { recursive: true });
    writeFileSync(join(out, file), encodePng(labelledRow(panels)));
    explanations.push({ image: chosen[0].path.split('/').slice(-2).join('/'), file, caption: name });

    // Faithfulness of Grad-CAM and Grad-CAM++ over validation images; verification on the embeddings.
    const faithInputs = await Promise.all(faithImages.map((c) => loadImage(c.path, valTransform(size), { box: c.box })));
    for (const method of ['gradcam', 'gradcam++'] as const) {
      const f = await explanationFaithfulness(net, faithInputs, size, layer, method);
      faithfulnessRows.push({ run: name, method, averageDrop: f.averageDrop, increaseInConfidence: f.increaseInConfidence, images: f.images, score: 'softmax probability of the predicted class' });
    }
    if (canVerify) {
      const v = await verification(net, split.val as Sample[], size, preset.batchSize, options.seed ?? 0);
      rocCurves.push({ name, fpr: Array.from(v.roc.fpr), tpr: Array.from(v.roc.tpr) });
      verificationRows.push({
        run: name,
        tarAtFar: Object.fromEntries(v.tar.filter((t) => t.tar !== null).map((t) => [t.far.toExponential(0), t.tar!])),
        top1: v.top1,
      });
    }
    net.dispose();
  }
  const gradcam: GradcamPanel[] = chosen.map((c, i) => {
    const trueLabel = split.classes[c.label];
    const row = labelledRow([{ image: originals[i], caption: `input\ntrue ${trueLabel}` }, ...rows[i].map((p) => ({ image: p.image, caption: p.caption }))]);
    const file = join('gradcam', `image-${i}.png`);
    writeFileSync(join(out, file), encodePng(row));
    return { image: c.path.split('/').slice(-2).join('/'), trueLabel, file, runs: rows[i].map((p) => p.run) };
  });
  return {
    filters,
    featureMaps,
    gradcam,
    faithfulness: faithfulnessRows,
    ...(canVerify ? { verification: { curves: rocCurves, rows: verificationRows } } : {}),
    explanations,
  };
}

/** Input | Grad-CAM | Grad-CAM++ | guided Grad-CAM | saliency for one image, as labelled panels. */
async function explanationPanels(net: Classifier<ClassifierOutput>, image: Float32Array, size: number, layer: string) {
  const original = chwToRgba(image, [3, size, size]);
  const cam = await camOf(net, image, size, { layer });
  const camPlus = await camOf(net, image, size, { layer, plusPlus: true, target: cam.target });
  const guided = await inputGradient(net, image, size, cam.target, true);
  const plain = await inputGradient(net, image, size, cam.target);
  return [
    { image: original, caption: 'input' },
    { image: heatmapOverlay(original, cam.cam.map, cam.cam.width, cam.cam.height).image, caption: 'Grad-CAM' },
    { image: heatmapOverlay(original, camPlus.cam.map, camPlus.cam.width, camPlus.cam.height).image, caption: 'Grad-CAM++' },
    { image: signedImage(guidedGradCam(guided, cam.cam, size), size), caption: 'guided Grad-CAM' },
    { image: heatmapOverlay(original, saliencyOf(plain, size), size, size, 0.6).image, caption: 'saliency' },
  ];
}

export function runName(model: string, regime: string, head: HeadKind): string {
  return head === 'linear' ? `${model}-${regime}` : `${model}-${regime}-${head}`;
}
