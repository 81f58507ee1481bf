// The `celgrad` command. Each subcommand parses its own flags (node:util parseArgs) and returns an exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CelgradError } from '../engine/errors.ts';
import { EASY_DIFFICULTY, dataStats, formatStats, generateSynthFaces } from './data/index.ts';
import { doctor } from './doctor.ts';
import { startGPU } from './gpu-node.ts';
import { describeModels, MODELS } from '../models/index.ts';
import { train, type Regime } from './train.ts';
import type { HeadKind } from '../engine/nn/heads.ts';
import { evalRun, type EvalProtocol } from './evaluate.ts';
import { exportOnnx } from './export.ts';
import { benchKernels } from '../bench/kernels.ts';
import { benchModel, formatModelBench } from '../bench/models.ts';
import { serveStudy } from './serve.ts';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { gpu } from '../engine/gpu.ts';
import type { AddressInfo } from 'node:net';
import { runStudy, PRESETS, type Preset } from './study.ts';
import { explainImage } from './explain/command.ts';
import { METHODS, type Method } from './explain/explain.ts';

const USAGE = `celgrad — a transparent deep-learning engine on WebGPU, and a study of cartoon-face recognition

Usage:
  celgrad doctor [--json] [--backend B] [--adapter NAME]   adapter, limits, features; exit 1 with the fix if none
  celgrad data synth --out DIR [--identities N --per-identity M --size S --seed K] [--difficulty easy|default]
                     [--source-task] [--evidence-region]
  celgrad data stats DIR [--decode]                        identities, images, sizes, unreadable files
  celgrad models [--json]                                  models with parameter counts and state_dict sizes
  celgrad train --model M --data DIR --regime pretrained|scratch|finetune --out RUN [--weights FILE]
                [--epochs 10 --batch-size 32 --lr 1e-3 --step-size 7 --gamma 1 --image-size S --classes N --seed 0]
                [--head linear|arcface|sphereface] [--checkpoint-every K] [--crop-scale 0.08,1] [--resume]
                                                           one training run (the paper's defaults)
  celgrad eval --run RUN [--data DIR] [--protocol classification|identification|verification] [--json]
                                                           accuracy and confusions, or iCartoonFace-style
                                                           identification top-1 / verification TAR at FAR
  celgrad study [--preset smoke|quick|paper] [--data DIR] [--weights-dir DIR] --out DIR
                [--models resnet50,inception_v3[,densenet121,vgg16]] [--regimes pretrained,scratch[,finetune]]
                [--heads linear[,arcface,sphereface]] [--epochs N] [--layers L1,L2] [--gradcam-layer L] [--resume]
  celgrad bench kernels [--quick] [--filter TEXT] [--batch N] [--json FILE] [--no-peer]
                                                           each kernel: error vs the float64 reference, median ms,
                                                           GFLOP/s, and TF.js WebGPU on the same device
  celgrad bench models [--model resnet50 --image-size 64 --batch 8 --steps 3] [--profile] [--json FILE]
                                                           training / inference images per second, per-kernel GPU time
  celgrad export onnx (--run RUN | --model M [--image-size S --seed K]) --out FILE
                                                           the network and its weights as an ONNX graph
  celgrad serve STUDY_DIR [--port 8080] [--host 127.0.0.1]  the live explorer of a study, in the browser
  celgrad explain --run RUN --image IMG --out PNG [--method gradcam|gradcam++|guided|guided-gradcam|saliency|smoothgrad]
                [--layer NAME] [--class N]

Adapter selection: --backend/--adapter or CELGRAD_BACKEND / CELGRAD_ADAPTER (Dawn's backend= and adapter= options).`;

type Command = (args: string[]) => Promise<number>;

const adapterOptions = {
  backend: { type: 'string' },
  adapter: { type: 'string' },
} satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}

const num = (v: string | undefined, fallback: number, name: string) => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new CelgradError(`--${name} must be a number, got '${v}'`);
  return n;
};

const int = (v: string | undefined, fallback: number, name: string) => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CelgradError(`--${name} must be a whole number, got '${v}'`);
  return n;
};

const commands: Record<string, Command> = {
  async doctor(args) {
    const { values } = parse(args, { ...adapterOptions, json: { type: 'boolean' } });
    return doctor(values);
  },
  async models(args) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    const rows = describeModels();
    if (values.json) console.log(JSON.stringify(rows, null, 2));
    else {
      console.log(`${'model'.padEnd(14)}${'parameters'.padStart(14)}${'state_dict keys'.padStart(17)}  input`);
      for (const r of rows) {
        console.log(`${r.name.padEnd(14)}${r.params.toLocaleString('en-US').padStart(14)}${String(r.stateDictKeys).padStart(17)}  ${r.defaultInputSize}`);
      }
    }
    return 0;
  },
  async train(args) {
    const { values } = parse(args, {
      ...adapterOptions,
      model: { type: 'string' },
      data: { type: 'string' },
      regime: { type: 'string' },
      out: { type: 'string' },
      weights: { type: 'string' },
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      'step-size': { type: 'string' },
      gamma: { type: 'string' },
      'image-size': { type: 'string' },
      classes: { type: 'string' },
      seed: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      'filter-layers': { type: 'string' },
      'max-steps': { type: 'string' },
      'aux-logits': { type: 'boolean' },
      'crop-scale': { type: 'string' },
      head: { type: 'string' },
      resume: { type: 'boolean' },
    });
    if (values.head && !['linear', 'arcface', 'sphereface'].includes(values.head)) {
      throw new CelgradError(`--head must be linear, arcface or sphereface, got '${values.head}'`);
    }
    for (const required of ['model', 'data', 'regime', 'out'] as const) {
      if (!values[required]) throw new CelgradError(`train needs --${required}`);
    }
    const regime = values.regime as Regime;
    if (!['pretrained', 'scratch', 'finetune'].includes(regime)) {
      throw new CelgradError(`--regime must be pretrained, scratch or finetune, got '${regime}'`);
    }
    if (!(values.model! in MODELS)) throw new CelgradError(`unknown --model '${values.model}'; known: ${Object.keys(MODELS).join(', ')}`);
    await startGPU(values);
    const result = await train({
      model: values.model!,
      data: values.data!,
      regime,
      out: values.out!,
      weights: values.weights,
      epochs: int(values.epochs, 10, 'epochs'),
      batchSize: int(values['batch-size'], 32, 'batch-size'),
      lr: num(values.lr, 1e-3, 'lr'),
      stepSize: int(values['step-size'], 7, 'step-size'),
      gamma: num(values.gamma, 1, 'gamma'),
      imageSize: values['image-size'] ? int(values['image-size'], 0, 'image-size') : undefined,
      classes: values.classes ? int(values.classes, 0, 'classes') : undefined,
      seed: int(values.seed, 0, 'seed'),
      checkpointEvery: int(values['checkpoint-every'], 0, 'checkpoint-every'),
      maxStepsPerEpoch: int(values['max-steps'], 0, 'max-steps'),
      filterLayers: values['filter-layers']?.split(','),
      auxLogits: values['aux-logits'],
      head: values.head as HeadKind | undefined,
      cropScale: values['crop-scale'] ? (values['crop-scale'].split(',').map((v) => num(v, 0, 'crop-scale')) as [number, number]) : undefined,
      resume: values.resume,
    });
    console.log(`best val accuracy ${(result.bestValAcc * 100).toFixed(2)}% at epoch ${result.bestEpoch + 1}; run in ${result.out}`);
    return 0;
  },
  async eval(args) {
    const { values } = parse(args, {
      ...adapterOptions,
      run: { type: 'string' },
      data: { type: 'string' },
      protocol: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (!values.run) throw new CelgradError('eval needs --run RUN');
    const protocol = values.protocol ?? 'classification';
    if (!['classification', 'identification', 'verification'].includes(protocol)) {
      throw new CelgradError(`--protocol must be classification, identification or verification, got '${protocol}'`);
    }
    await startGPU(values);
    const report = await evalRun(values.run, { data: values.data, protocol: protocol as EvalProtocol });
    console.log(values.json ? JSON.stringify(report, null, 2) : report.text);
    return 0;
  },
  async study(args) {
    const { values } = parse(args, {
      ...adapterOptions,
      preset: { type: 'string' },
      out: { type: 'string' },
      data: { type: 'string' },
      'weights-dir': { type: 'string' },
      models: { type: 'string' },
      regimes: { type: 'string' },
      epochs: { type: 'string' },
      layers: { type: 'string' },
      'gradcam-layer': { type: 'string' },
      heads: { type: 'string' },
      seed: { type: 'string' },
      resume: { type: 'boolean' },
    });
    const heads = values.heads?.split(',') as HeadKind[] | undefined;
    for (const h of heads ?? []) {
      if (!['linear', 'arcface', 'sphereface'].includes(h)) throw new CelgradError(`unknown head '${h}' in --heads (linear, arcface, sphereface)`);
    }
    const preset = (values.preset ?? 'smoke') as Preset;
    if (!(preset in PRESETS)) throw new CelgradError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got '${preset}'`);
    const models = values.models?.split(',');
    for (const m of models ?? []) if (!(m in MODELS)) throw new CelgradError(`unknown model '${m}' in --models; known: ${Object.keys(MODELS).join(', ')}`);
    const regimes = values.regimes?.split(',') as Regime[] | undefined;
    for (const r of regimes ?? []) {
      if (!['pretrained', 'scratch', 'finetune'].includes(r)) throw new CelgradError(`unknown regime '${r}' in --regimes (pretrained, scratch, finetune)`);
    }
    await startGPU(values);
    await runStudy({
      preset,
      out: values.out ?? 'out/study',
      data: values.data,
      weightsDir: values['weights-dir'],
      models,
      regimes,
      heads,
      epochs: values.epochs ? int(values.epochs, 0, 'epochs') : undefined,
      layers: values.layers?.split(','),
      gradcamLayer: values['gradcam-layer'],
      seed: int(values.seed, 0, 'seed'),
      resume: values.resume,
    });
    return 0;
  },
  async explain(args) {
    const { values } = parse(args, {
      ...adapterOptions,
      run: { type: 'string' },
      image: { type: 'string' },
      out: { type: 'string' },
      method: { type: 'string' },
      layer: { type: 'string' },
      class: { type: 'string' },
    });
    for (const required of ['run', 'image', 'out'] as const) if (!values[required]) throw new CelgradError(`explain needs --${required}`);
    const method = (values.method ?? 'gradcam') as Method;
    if (!METHODS.includes(method)) throw new CelgradError(`--method must be one of ${METHODS.join(', ')}, got '${method}'`);
    await startGPU(values);
    const summary = await explainImage({
      run: values.run!,
      image: values.image!,
      out: values.out!,
      method,
      layer: values.layer,
      target: values.class === undefined ? undefined : int(values.class, 0, 'class'),
    });
    console.log(summary);
    return 0;
  },
  async bench([what, ...args]) {
    if (what === 'kernels') {
      const { values } = parse(args, { ...adapterOptions, quick: { type: 'boolean' }, filter: { type: 'string' }, batch: { type: 'string' }, json: { type: 'string' }, 'no-peer': { type: 'boolean' } });
      await startGPU(values);
      await benchKernels({
        quick: values.quick,
        filter: values.filter,
        json: values.json,
        batch: values.batch ? int(values.batch, 0, 'batch') : undefined,
        peer: !values['no-peer'],
      });
      return 0;
    }
    if (what === 'models') {
      const { values } = parse(args, {
        ...adapterOptions,
        model: { type: 'string' },
        'image-size': { type: 'string' },
        batch: { type: 'string' },
        steps: { type: 'string' },
        profile: { type: 'boolean' },
        json: { type: 'string' },
      });
      await startGPU(values);
      const names = (values.model ?? 'resnet50,inception_v3').split(',');
      const results = [];
      for (const model of names) {
        if (!(model in MODELS)) throw new CelgradError(`unknown model '${model}'; known: ${Object.keys(MODELS).join(', ')}`);
        const r = await benchModel({
          model,
          imageSize: values['image-size'] ? int(values['image-size'], 0, 'image-size') : model === 'inception_v3' ? 75 : 64,
          batch: int(values.batch, 8, 'batch'),
          steps: int(values.steps, 3, 'steps'),
          profile: values.profile,
        });
        console.log(formatModelBench(r));
        results.push(r);
      }
      if (values.json) writeFileSync(values.json, JSON.stringify({ adapter: gpu().facts, results }, null, 2));
      return 0;
    }
    throw new CelgradError(`unknown bench '${what ?? ''}': use 'bench kernels' or 'bench models'`);
  },
  async export([format, ...args]) {
    if (format !== 'onnx') throw new CelgradError(`unknown export format '${format ?? ''}': use 'export onnx'`);
    const { values } = parse(args, {
      ...adapterOptions,
      run: { type: 'string' },
      model: { type: 'string' },
      out: { type: 'string' },
      'image-size': { type: 'string' },
      seed: { type: 'string' },
    });
    if (!values.out) throw new CelgradError('export onnx needs --out FILE');
    await startGPU(values);
    const r = await exportOnnx({
      run: values.run,
      model: values.model,
      out: values.out,
      imageSize: values['image-size'] ? int(values['image-size'], 0, 'image-size') : undefined,
      seed: int(values.seed, 0, 'seed'),
    });
    console.log(`wrote ${r.model} (input [${r.inputShape}]) to ${r.out}, ${(r.bytes / 2 ** 20).toFixed(1)} MiB`);
    return 0;
  },
  async serve(args) {
    const { values, positionals } = parse(args, { port: { type: 'string' }, host: { type: 'string' } });
    if (!positionals[0]) throw new CelgradError('serve needs a study folder: celgrad serve STUDY_DIR');
    const server = await serveStudy({ dir: positionals[0], port: int(values.port, 8080, 'port'), host: values.host });
    console.log(`explorer at http://localhost:${(server.address() as AddressInfo).port}/ (Ctrl-C stops it)`);
    await once(server, 'close');
    return 0;
  },
  async data([sub, ...args]) {
    if (sub === 'synth') {
      const { values } = parse(args, {
        out: { type: 'string' },
        identities: { type: 'string' },
        'per-identity': { type: 'string' },
        size: { type: 'string' },
        seed: { type: 'string' },
        'source-task': { type: 'boolean' },
        'evidence-region': { type: 'boolean' },
        difficulty: { type: 'string' },
      });
      if (values.difficulty && !['easy', 'default'].includes(values.difficulty)) {
        throw new CelgradError(`--difficulty must be 'easy' or 'default', got '${values.difficulty}'`);
      }
      if (!values.out) throw new CelgradError('data synth needs --out DIR');
      const result = generateSynthFaces({
        out: values.out,
        identities: int(values.identities, 10, 'identities'),
        perIdentity: int(values['per-identity'], 20, 'per-identity'),
        size: int(values.size, 64, 'size'),
        seed: int(values.seed, 0, 'seed'),
        sourceTask: values['source-task'],
        evidenceRegion: values['evidence-region'],
        difficulty: values.difficulty === 'easy' ? EASY_DIFFICULTY : undefined,
      });
      console.log(`wrote ${result.files.length} images of ${result.classes.length} identities to ${result.out}`);
      return 0;
    }
    if (sub === 'stats') {
      const { values, positionals } = parse(args, { decode: { type: 'boolean' } });
      if (!positionals[0]) throw new CelgradError('data stats needs a folder: celgrad data stats DIR');
      console.log(formatStats(await dataStats(positionals[0], { check: values.decode ? 'decode' : 'header' })));
      return 0;
    }
    throw new CelgradError(`unknown 'data' subcommand '${sub ?? ''}': use 'data synth' or 'data stats'`);
  },
};

export async function main(argv: string[]): Promise<never> {
  const [name, ...rest] = argv;
  let code = 0;
  try {
    if (!name || name === 'help' || name === '--help' || name === '-h') console.log(USAGE);
    else if (!(name in commands)) {
      console.error(`celgrad: unknown command '${name}'.\n\n${USAGE}`);
      code = 2;
    } else code = await commands[name](rest);
  } catch (e) {
    if (e instanceof CelgradError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`celgrad ${name}: ${(e as Error).message}`);
      code = 1;
    } else throw e;
  }
  // dawn.node keeps handles open; leave explicitly once the command is done.
  process.exit(code);
}
