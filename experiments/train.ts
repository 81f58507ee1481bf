// One training run: data -> model -> epochs of Adam + StepLR -> metrics.jsonl, best.safetensors, filter
// snapshots per epoch (the paper's Algorithm 1) and crash-safe checkpoints that --resume continues from.
//
// Determinism: the data order and augmentation depend only on (seed, epoch, sample), dropout masks on
// (seed, epoch, step), and every kernel is deterministic (no atomics), so a run resumed from a
// checkpoint ends with the same metrics as one that was never interrupted.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Adam, CelgradError, StepLR, Tensor, add, crossEntropy, mulScalar, noGrad, rt, scope, scopeAsync } from '../engine/index.ts';
import { remapTorchvisionDenseNetKeys, writeSafetensors } from '../engine/io/index.ts';
import type { Module } from '../engine/nn/index.ts';
import { Conv2d } from '../engine/nn/index.ts';
import { installHead, type HeadKind } from '../engine/nn/heads.ts';
import { createModel, freezeBackbone, logitsOf as mainLogits, modelInfo, type Classifier, type ClassifierOutput } from '../models/index.ts';
import {
  DataLoader,
  readDataset,
  readSplit,
  stratifiedSplit,
  trainTransform,
  valTransform,
  writeSplit,
  type Sample,
} from './data/index.ts';
import { readWeightsFile, saveWeights, writeFileAtomic } from './checkpoint.ts';
import { Progress } from './progress.ts';
import { encodePng, filterGrid } from './visualize/images.ts';

export type Regime = 'pretrained' | 'finetune' | 'scratch';

export interface TrainConfig {
  model: string;
  data: string;
  regime: Regime;
  out: string;
  weights?: string;
  /** Describes where `weights` came from, for logs and reports. */
  weightsSource?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  stepSize?: number;
  gamma?: number;
  imageSize?: number;
  classes?: number;
  seed?: number;
  /** The classifier: the model's own Linear ('linear', torchvision), or an ArcFace / SphereFace margin head. */
  head?: HeadKind;
  /** RandomResizedCrop's area range; torchvision's default is [0.08, 1]. */
  cropScale?: [number, number];
  /** Fraction of each class that trains (the rest validates). */
  trainFraction?: number;
  /** Reuse this split manifest (a study shares one between runs). */
  splitFile?: string;
  /** Inception v3's auxiliary classifier; default: on when the input is at least 299 px. */
  auxLogits?: boolean;
  /** Inception v3's transform_input; default: on for torchvision's Google weights (inception_v3_google-*.pth), as torchvision does. */
  transformInput?: boolean;
  /** Conv layers whose filters are saved each epoch; default: the first, a middle and the last conv layer. */
  filterLayers?: string[];
  /** Also write a checkpoint every this many steps (0: only at epoch ends). */
  checkpointEvery?: number;
  /** Cap on training steps per epoch (quick runs); 0 = the whole epoch. */
  maxStepsPerEpoch?: number;
  workers?: number;
  resume?: boolean;
  quiet?: boolean;
  /** Called after every step (for a study-wide progress display). */
  onStep?: (info: { epoch: number; step: number; steps: number; loss: number }) => void;
  /** Called at each epoch end with that epoch's metrics. */
  onEpoch?: (metrics: EpochMetrics) => void;
  /** Test hook: stop the process abruptly after this many steps (simulates a crash). */
  crashAfterSteps?: number;
}

export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  trainAcc: number;
  valLoss: number;
  valAcc: number;
  lr: number;
  imagesPerSec: number;
  seconds: number;
}

export interface RunResult {
  out: string;
  metrics: EpochMetrics[];
  bestValAcc: number;
  bestEpoch: number;
  classes: string[];
  inputSize: number;
  auxLogits: boolean;
  filterLayers: string[];
  seconds: number;
}

export class TrainingError extends CelgradError {}

interface CheckpointMeta {
  epoch: number;
  /** The next batch of `epoch` to train. */
  batch: number;
  step: number;
  lr: number;
  scheduler: { lastEpoch: number };
  adamSteps: number[];
  /** Training iterations of a margin head (SphereFace anneals on it). */
  headIteration?: number;
  running: { lossSum: number; correct: number; seen: number; seconds: number };
  metrics: EpochMetrics[];
  best: { acc: number; epoch: number };
}

const DEFAULTS = { epochs: 10, batchSize: 32, lr: 1e-3, stepSize: 7, gamma: 1, seed: 0, trainFraction: 0.8 };

/** Builds the model for a regime: fresh (scratch) or from weights with a new head (pretrained / finetune). */
export function buildModel(config: TrainConfig, numClasses: number, auxLogits: boolean): { model: Classifier<ClassifierOutput>; source: string } {
  const seed = config.seed ?? DEFAULTS.seed;
  const transformInput = config.transformInput ?? /inception_v3_google/.test(config.weights ?? '');
  if (config.regime === 'scratch') {
    return {
      model: createModel(config.model, { numClasses, seed, auxLogits, transformInput }),
      source: 'random init (torchvision default, seeded)',
    };
  }
  if (!config.weights) {
    throw new CelgradError(
      `the '${config.regime}' regime starts from pretrained weights: pass --weights FILE (torchvision .pth or timm safetensors), ` +
        `or use 'celgrad study', which pretrains on a synthetic source task when no ImageNet weights are given`,
    );
  }
  const file = readWeightsFile(config.weights);
  // torchvision's densenet121-a639ec97.pth predates the current layer names; torchvision remaps them on load.
  const tensors = config.model.startsWith('densenet') ? remapTorchvisionDenseNetKeys(file.tensors) : file.tensors;
  const info = modelInfo(config.model);
  const headKey = `${info.headParameterPrefixes[0]}.weight`;
  const head = tensors.get(headKey);
  if (!head) throw new CelgradError(`${config.weights} has no '${headKey}': is it a ${config.model} state_dict?`);
  // Build with the file's head so every key loads strictly by name, then swap the head.
  const fileHasAux = [...tensors.keys()].some((k) => k.startsWith('AuxLogits.'));
  const model = createModel(config.model, { numClasses: head.shape[0], seed, auxLogits: auxLogits && fileHasAux, transformInput });
  if (!(auxLogits && fileHasAux)) for (const k of [...tensors.keys()]) if (k.startsWith('AuxLogits.')) tensors.delete(k);
  model.loadStateDict(tensors, { strict: true });
  model.replaceHead(numClasses, seed + 1);
  if (config.regime === 'pretrained') freezeBackbone(model, info.headParameterPrefixes);
  return { model, source: config.weightsSource ?? config.weights };
}

/** The logits, and Inception's auxiliary logits in training mode. */
function logitsOf(out: ClassifierOutput): { logits: Tensor; aux?: Tensor } {
  return { logits: mainLogits(out), aux: out instanceof Tensor ? undefined : out.aux };
}

/** Default conv layers to snapshot: the first, one in the middle, and the last. */
function defaultFilterLayers(model: Module<unknown>): string[] {
  const convs = [...model.namedModules()].filter(([, m]) => m instanceof Conv2d).map(([name]) => name);
  if (convs.length <= 3) return convs;
  return [convs[0], convs[Math.floor(convs.length / 2)], convs[convs.length - 1]];
}

function topK(logits: Float32Array, classes: number, labels: Int32Array, k: number): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    const target = row[labels[i]];
    let above = 0;
    for (let c = 0; c < classes; c++) if (row[c] > target || (row[c] === target && c < labels[i])) above++;
    if (above < k) correct++;
  }
  return correct;
}

export async function train(config: TrainConfig): Promise<RunResult> {
  const started = performance.now();
  const cfg = { ...DEFAULTS, ...config };
  const out = resolve(cfg.out);
  mkdirSync(join(out, 'filters'), { recursive: true });
  const log = (line: string) => {
    appendFileSync(join(out, 'run.log'), `${new Date().toISOString()} ${line}\n`);
    if (!cfg.quiet) console.log(line);
  };

  // ---- data ----
  const info = modelInfo(cfg.model);
  const inputSize = cfg.imageSize ?? info.defaultInputSize;
  if (inputSize < info.minInputSize) {
    throw new CelgradError(`${cfg.model} needs inputs of at least ${info.minInputSize} px, --image-size is ${inputSize}`);
  }
  const splitFile = cfg.splitFile ?? join(out, 'split.json');
  let dataset;
  let split;
  if (existsSync(splitFile)) {
    split = readSplit(splitFile);
    log(`split: reusing ${splitFile} (${split.train.length} train / ${split.val.length} val images, ${split.classes.length} identities)`);
  } else {
    dataset = await readDataset(cfg.data, { classes: cfg.classes });
    split = stratifiedSplit(dataset.samples, dataset.classes, { seed: cfg.seed, fraction: cfg.trainFraction });
    writeSplit(splitFile, split, dataset.root);
    log(`data: ${dataset.layout} at ${dataset.root}: ${dataset.classes.length} identities in the dataset's own order` +
      `${cfg.classes ? ` (first ${cfg.classes})` : ''}, ${dataset.samples.length} images`);
    for (const p of dataset.problems) log(`data: skipped ${p.path}: ${p.reason}`);
    log(`data: ${dataset.problems.length} problem(s); split ${split.train.length} train / ${split.val.length} val (seed ${cfg.seed})`);
  }
  const numClasses = split.classes.length;
  const problems: string[] = [];
  const onProblem = (p: { path: string; reason: string }) => {
    problems.push(`${p.path}: ${p.reason}`);
    log(`data: skipped ${p.path}: ${p.reason}`);
  };
  const trainLoader = new DataLoader({
    samples: split.train as Sample[],
    batchSize: cfg.batchSize,
    transform: { ...trainTransform(inputSize), ...(cfg.cropScale ? { scale: cfg.cropScale } : {}) },
    seed: cfg.seed,
    shuffle: true,
    dropLast: split.train.length >= cfg.batchSize,
    workers: cfg.workers,
    onProblem,
  });
  const valLoader = new DataLoader({
    samples: split.val as Sample[],
    batchSize: cfg.batchSize,
    transform: valTransform(inputSize),
    seed: cfg.seed,
    workers: cfg.workers,
    onProblem,
  });

  // ---- model and optimiser ----
  const auxLogits = cfg.model === 'inception_v3' && (cfg.auxLogits ?? inputSize >= 299);
  const { model, source } = buildModel(cfg, numClasses, auxLogits);
  const head = cfg.head && cfg.head !== 'linear' ? installHead(model, cfg.head, numClasses, cfg.seed + 2) : null;
  const params = model.parameters().filter((p) => p.requiresGrad);
  const adam = new Adam(params, { lr: cfg.lr });
  const scheduler = new StepLR(adam, cfg.stepSize, cfg.gamma);
  const filterLayers = cfg.filterLayers ?? defaultFilterLayers(model);
  log(
    `model: ${cfg.model}, regime ${cfg.regime}, weights: ${source}; ${model.numParameters()} parameters, ` +
      `${params.reduce((a, p) => a + p.size, 0)} trainable; input ${inputSize} px` +
      (cfg.model === 'inception_v3' ? `; aux classifier ${auxLogits ? 'on (loss weight 0.4)' : 'off'}` : '') +
      (head ? `; ${head.kind} head` : ''),
  );

  let state: CheckpointMeta = {
    epoch: 0,
    batch: 0,
    step: 0,
    lr: cfg.lr,
    scheduler: { lastEpoch: 0 },
    adamSteps: [],
    running: { lossSum: 0, correct: 0, seen: 0, seconds: 0 },
    metrics: [],
    best: { acc: -1, epoch: -1 },
  };
  const checkpointPath = join(out, 'checkpoint.safetensors');
  if (cfg.resume && existsSync(checkpointPath)) {
    state = await loadCheckpoint(checkpointPath, model, adam, scheduler);
    if (head) head.iteration = state.headIteration ?? 0;
    log(`resume: from ${checkpointPath} at epoch ${state.epoch}, batch ${state.batch}`);
  } else writeFileSync(join(out, 'metrics.jsonl'), '');
  writeFileSync(join(out, 'metrics.jsonl'), state.metrics.map((m) => JSON.stringify(m)).join('\n') + (state.metrics.length ? '\n' : ''));
  writeFileSync(
    join(out, 'config.json'),
    JSON.stringify(
      { ...cfg, onStep: undefined, onEpoch: undefined, inputSize, auxLogits, transformInput: 'transformInput' in model ? model.transformInput : undefined, weightsSource: source, filterLayers, classes: split.classes },
      null,
      2,
    ),
  );

  const saveCheckpoint = async () => {
    await rt().sync();
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, v] of await model.readStateDict()) tensors.set(`model.${name}`, v);
    const adamState = await adam.stateDict();
    adamState.expAvg.forEach((m, i) => {
      if (m.length) tensors.set(`adam.exp_avg.${i}`, { shape: [m.length], data: m });
    });
    adamState.expAvgSq.forEach((v, i) => {
      if (v.length) tensors.set(`adam.exp_avg_sq.${i}`, { shape: [v.length], data: v });
    });
    const meta: CheckpointMeta = {
      ...state,
      lr: adam.lr,
      scheduler: scheduler.stateDict(),
      adamSteps: adamState.steps,
      headIteration: head?.iteration,
    };
    writeFileAtomic(checkpointPath, writeSafetensors(tensors, { celgrad: JSON.stringify(meta) }));
  };

  const progress = new Progress(cfg.quiet ?? false);
  const batchesPerEpoch = cfg.maxStepsPerEpoch ? Math.min(cfg.maxStepsPerEpoch, trainLoader.batchesPerEpoch) : trainLoader.batchesPerEpoch;
  try {
    for (let epoch = state.epoch; epoch < cfg.epochs; epoch++) {
      model.train();
      const epochStart = performance.now() - state.running.seconds * 1000;
      let pending: Promise<void> | null = null;
      let batchIndex = state.batch;
      for await (const batch of trainLoader.epoch(epoch, { startBatch: state.batch })) {
        if (batchIndex >= batchesPerEpoch) break;
        const stepSeed = (cfg.seed * 1000003 + epoch * 10007 + batchIndex) >>> 0;
        model.reseedRandomness(stepSeed);
        const reads = scope(() => {
          const n = batch.labels.length;
          const x = Tensor.fromArray(batch.images, [n, 3, inputSize, inputSize]);
          const y = Tensor.fromArray(batch.labels, [n], 'i32');
          if (head) {
            head.targets = y;
            head.step();
          }
          const { logits, aux } = logitsOf(model.call(x));
          let loss = crossEntropy(logits, y);
          // torchvision's recipe: the auxiliary classifier's loss joins with weight 0.4.
          if (aux) loss = add(loss, mulScalar(crossEntropy(aux, y), 0.4));
          loss.backward();
          adam.step();
          adam.zeroGrad();
          if (head) head.targets = null;
          return { loss: loss.item(), logits: logits.toArray() };
        });
        // Read the previous step's loss while this one runs: the GPU never waits on the CPU.
        if (pending) await pending;
        const labels = batch.labels;
        const thisEpoch = epoch;
        const thisBatch = batchIndex;
        pending = Promise.all([reads.loss, reads.logits]).then(([lossValue, logits]) => {
          if (!Number.isFinite(lossValue)) {
            throw new TrainingError(
              `the loss is ${lossValue} at epoch ${thisEpoch}, step ${thisBatch}; stopped. ` +
                `The last good checkpoint is ${checkpointPath}; try a lower --lr`,
            );
          }
          state.running.lossSum += lossValue * labels.length;
          state.running.correct += topK(logits, numClasses, labels, 1);
          state.running.seen += labels.length;
          state.step++;
          cfg.onStep?.({ epoch: thisEpoch, step: thisBatch + 1, steps: batchesPerEpoch, loss: lossValue });
          progress.update(`epoch ${thisEpoch + 1}/${cfg.epochs}`, thisBatch + 1, batchesPerEpoch, {
            loss: lossValue,
            imagesPerSec: state.running.seen / ((performance.now() - epochStart) / 1000),
          });
        });
        batchIndex++;
        state.batch = batchIndex;
        if (cfg.crashAfterSteps !== undefined && state.step + 1 >= cfg.crashAfterSteps) {
          await pending;
          process.kill(process.pid, 'SIGKILL');
        }
        if (cfg.checkpointEvery && batchIndex % cfg.checkpointEvery === 0 && batchIndex < batchesPerEpoch) {
          await pending;
          pending = null;
          state.running.seconds = (performance.now() - epochStart) / 1000;
          await saveCheckpoint();
        }
      }
      if (pending) await pending;
      const trainSeconds = (performance.now() - epochStart) / 1000;
      progress.done();

      const val = await evaluate(model, valLoader, inputSize, numClasses);
      const metrics: EpochMetrics = {
        epoch,
        trainLoss: state.running.lossSum / Math.max(1, state.running.seen),
        trainAcc: state.running.correct / Math.max(1, state.running.seen),
        valLoss: val.loss,
        valAcc: val.top1,
        lr: adam.lr,
        imagesPerSec: state.running.seen / trainSeconds,
        seconds: (performance.now() - epochStart) / 1000,
      };
      state.metrics.push(metrics);
      appendFileSync(join(out, 'metrics.jsonl'), JSON.stringify(metrics) + '\n');
      log(
        `epoch ${epoch + 1}/${cfg.epochs}: train loss ${metrics.trainLoss.toFixed(4)} acc ${(metrics.trainAcc * 100).toFixed(1)}%, ` +
          `val loss ${metrics.valLoss.toFixed(4)} acc ${(metrics.valAcc * 100).toFixed(1)}%, ${metrics.imagesPerSec.toFixed(1)} img/s`,
      );
      cfg.onEpoch?.(metrics);
      if (metrics.valAcc > state.best.acc) {
        state.best = { acc: metrics.valAcc, epoch };
        await saveWeights(join(out, 'best.safetensors'), model, { epoch: String(epoch), valAcc: String(metrics.valAcc) });
      }
      await saveFilters(model, filterLayers, join(out, 'filters', `epoch-${String(epoch).padStart(2, '0')}`));
      scheduler.step();
      state.epoch = epoch + 1;
      state.batch = 0;
      state.running = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
      await saveCheckpoint();
    }
  } finally {
    trainLoader.close();
    valLoader.close();
  }
  const result: RunResult = {
    out,
    metrics: state.metrics,
    bestValAcc: state.best.acc,
    bestEpoch: state.best.epoch,
    classes: split.classes,
    inputSize,
    auxLogits,
    filterLayers,
    seconds: (performance.now() - started) / 1000,
  };
  writeFileSync(join(out, 'result.json'), JSON.stringify({ ...result, weightsSource: source, problems }, null, 2));
  adam.dispose();
  model.dispose();
  return result;
}

/** Algorithm 1 of the paper: each chosen conv layer's weights at the end of the epoch, as data and as a picture. */
async function saveFilters(model: Module<unknown>, layers: string[], dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const layer of layers) {
    const weight = (await model.get(layer).readStateDict()).get('weight');
    if (!weight || weight.shape.length !== 4) throw new CelgradError(`--filter-layers: '${layer}' is not a conv layer (no 4-D weight)`);
    tensors.set(layer, weight);
    writeFileSync(join(dir, `${layer}.png`), encodePng(filterGrid(weight.data, weight.shape, { colour: weight.shape[1] === 3 })));
  }
  writeFileAtomic(join(dir, 'filters.safetensors'), writeSafetensors(tensors));
}

async function loadCheckpoint(path: string, model: Module<unknown>, adam: Adam, scheduler: StepLR): Promise<CheckpointMeta> {
  const { tensors, metadata } = readWeightsFile(path);
  const meta = JSON.parse(metadata.celgrad ?? 'null') as CheckpointMeta | null;
  if (!meta) throw new CelgradError(`${path} is not a celgrad checkpoint (no 'celgrad' metadata)`);
  const modelState = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, v] of tensors) if (k.startsWith('model.')) modelState.set(k.slice(6), v);
  model.loadStateDict(modelState, { strict: true });
  const empty = new Float32Array(0);
  adam.loadStateDict({
    lr: meta.lr,
    steps: meta.adamSteps,
    expAvg: meta.adamSteps.map((_, i) => tensors.get(`adam.exp_avg.${i}`)?.data ?? empty),
    expAvgSq: meta.adamSteps.map((_, i) => tensors.get(`adam.exp_avg_sq.${i}`)?.data ?? empty),
  });
  scheduler.loadStateDict(meta.scheduler);
  return meta;
}

export interface EvalResult {
  loss: number;
  top1: number;
  top5: number;
  images: number;
  perClass: { correct: number; total: number }[];
  predictions: Int32Array;
  labels: Int32Array;
}

/** Loss and top-1/top-5 accuracy over a loader, in eval mode, without the tape. */
export async function evaluate(model: Classifier<ClassifierOutput>, loader: DataLoader, inputSize: number, numClasses: number): Promise<EvalResult> {
  model.eval();
  let lossSum = 0;
  let top1 = 0;
  let top5 = 0;
  let seen = 0;
  const perClass = Array.from({ length: numClasses }, () => ({ correct: 0, total: 0 }));
  const predictions: number[] = [];
  const labelsSeen: number[] = [];
  for await (const batch of loader.epoch(0)) {
    const n = batch.labels.length;
    const [loss, logits] = await scopeAsync(() =>
      noGrad(() => {
        const x = Tensor.fromArray(batch.images, [n, 3, inputSize, inputSize]);
        const y = Tensor.fromArray(batch.labels, [n], 'i32');
        const { logits } = logitsOf(model.call(x));
        return Promise.all([crossEntropy(logits, y).item(), logits.toArray()]);
      }),
    );
    lossSum += loss * n;
    top1 += topK(logits, numClasses, batch.labels, 1);
    top5 += topK(logits, numClasses, batch.labels, Math.min(5, numClasses));
    for (let i = 0; i < n; i++) {
      const row = logits.subarray(i * numClasses, (i + 1) * numClasses);
      let best = 0;
      for (let c = 1; c < numClasses; c++) if (row[c] > row[best]) best = c;
      const label = batch.labels[i];
      perClass[label].total++;
      if (best === label) perClass[label].correct++;
      predictions.push(best);
      labelsSeen.push(label);
    }
    seen += n;
  }
  return {
    loss: lossSum / Math.max(1, seen),
    top1: top1 / Math.max(1, seen),
    top5: top5 / Math.max(1, seen),
    images: seen,
    perClass,
    predictions: Int32Array.from(predictions),
    labels: Int32Array.from(labelsSeen),
  };
}

export function readMetrics(runDir: string): EpochMetrics[] {
  const file = join(runDir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EpochMetrics);
}
