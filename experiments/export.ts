// `celgrad export onnx`: a trained run's best weights, or a seeded model, as an ONNX file traced from one
// eval-mode forward pass (engine/io/onnx.ts). Needs the GPU started (startGPU).
import { CelgradError } from '../engine/errors.ts';
import { toOnnx } from '../engine/io/onnx.ts';
import { createModel, logitsOf, modelInfo, type ClassifierOutput } from '../models/index.ts';
import { writeFileAtomic } from './checkpoint.ts';
import { loadRunModel } from './runs.ts';

export interface ExportOnnxOptions {
  /** A finished run folder: its model (and head), classes, input size and best weights. */
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

/**
 * Writes the ONNX file: graph input 'input' [batch, 3, size, size], output 'logits' [batch, classes];
 * metadata_props model, input_size and (for a run) classes as JSON.
 */
export async function exportOnnx(options: ExportOnnxOptions): Promise<ExportOnnxResult> {
  if (!options.run === !options.model) throw new CelgradError('export onnx needs exactly one of --run RUN or --model NAME');
  // Eval mode never runs Inception's auxiliary classifier: models are built without it.
  const { model, config } = options.run
    ? loadRunModel(options.run)
    : {
        model: createModel(options.model!, { numClasses: options.numClasses ?? 1000, seed: options.seed ?? 0, auxLogits: false }),
        config: undefined,
      };
  try {
    const name = config?.model ?? options.model!;
    const size = options.imageSize ?? config?.inputSize ?? modelInfo(name).defaultInputSize;
    const inputShape = [options.batch ?? 1, 3, size, size];
    const metadata: Record<string, string> = { model: name, input_size: String(size) };
    if (config) metadata.classes = JSON.stringify(config.classes);
    const bytes = await toOnnx(model, inputShape, { output: (out) => logitsOf(out as ClassifierOutput), outputName: 'logits', metadata });
    writeFileAtomic(options.out, bytes);
    return { out: options.out, model: name, inputShape, bytes: bytes.length };
  } finally {
    model.dispose();
  }
}
