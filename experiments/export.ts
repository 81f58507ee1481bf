// `celgrad export onnx`: a trained run's best weights, or a seeded model, as an ONNX file traced from one
// eval-mode forward pass (engine/io/onnx.ts). Needs the GPU started (startGPU).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CelgradError } from '../engine/errors.ts';
import { toOnnx } from '../engine/io/onnx.ts';
import { createModel, logitsOf, modelInfo, type ClassifierOutput } from '../models/index.ts';
import { readWeightsFile, writeFileAtomic } from './checkpoint.ts';

export interface ExportOnnxOptions {
  /** A finished run (config.json and best.safetensors): its model, classes, input size and weights. */
  run?: string;
  /** Or a model name, exported with seeded initial weights. */
  model?: string;
  /** The .onnx file to write. */
  out: string;
  /** Input height and width (default: the run's input size, else the model's default). */
  imageSize?: number;
  /** Initial weights of a --model export (default 0). */
  seed?: number;
  /** Classes of a --model export (default 1000). */
  numClasses?: number;
  /** The graph's batch size: the exported shapes are fixed (default 1). */
  batch?: number;
}

export interface ExportOnnxResult {
  out: string;
  model: string;
  inputShape: number[];
  bytes: number;
}

/** Config fields of a run folder (written by celgrad train) that the export reads. */
interface RunConfig {
  model: string;
  inputSize: number;
  classes: string[];
  transformInput?: boolean;
}

/** Writes the ONNX file: graph input 'input' [batch, 3, size, size], output 'logits' [batch, classes]. */
export async function exportOnnx(options: ExportOnnxOptions): Promise<ExportOnnxResult> {
  if (!options.run === !options.model) throw new CelgradError('export onnx needs exactly one of --run RUN or --model NAME');
  let config: RunConfig | undefined;
  if (options.run) {
    const configPath = join(options.run, 'config.json');
    if (!existsSync(configPath) || !existsSync(join(options.run, 'best.safetensors'))) {
      throw new CelgradError(`${options.run} is not a finished run: expected config.json and best.safetensors there (celgrad train writes them)`);
    }
    config = JSON.parse(readFileSync(configPath, 'utf8')) as RunConfig;
  }
  const name = config?.model ?? options.model!;
  const size = options.imageSize ?? config?.inputSize ?? modelInfo(name).defaultInputSize;
  const inputShape = [options.batch ?? 1, 3, size, size];
  // Eval mode never runs Inception's auxiliary classifier: build without it.
  const model = createModel(name, {
    numClasses: config?.classes.length ?? options.numClasses ?? 1000,
    seed: options.seed ?? 0,
    auxLogits: false,
    transformInput: config?.transformInput,
  });
  try {
    const metadata: Record<string, string> = { model: name, input_size: String(size) };
    if (config) {
      const { tensors } = readWeightsFile(join(options.run!, 'best.safetensors'));
      for (const key of [...tensors.keys()]) if (key.startsWith('AuxLogits.')) tensors.delete(key);
      model.loadStateDict(tensors, { strict: true });
      metadata.classes = JSON.stringify(config.classes);
    }
    const bytes = await toOnnx(model, inputShape, {
      output: (out) => logitsOf(out as ClassifierOutput),
      outputName: 'logits',
      metadata,
    });
    writeFileAtomic(options.out, bytes);
    return { out: options.out, model: name, inputShape, bytes: bytes.length };
  } finally {
    model.dispose();
  }
}
