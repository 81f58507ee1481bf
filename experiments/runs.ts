// A finished run folder -> its model with the best weights, as `celgrad train` wrote it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CelgradError } from '../engine/errors.ts';
import { installHead, type HeadKind } from '../engine/nn/heads.ts';
import { createModel, type Classifier, type ClassifierOutput } from '../models/index.ts';
import { readWeightsFile } from './checkpoint.ts';

/** What config.json of a run records (the fields readers need). */
export interface RunConfig {
  model: string;
  regime: string;
  inputSize: number;
  classes: string[];
  batchSize: number;
  transformInput?: boolean;
  head?: HeadKind;
  weightsSource?: string;
}

export function readRunConfig(run: string): RunConfig {
  const file = join(run, 'config.json');
  if (!existsSync(file)) throw new CelgradError(`${run} is not a run folder (no config.json): pass a folder that celgrad train or study wrote`);
  return JSON.parse(readFileSync(file, 'utf8')) as RunConfig;
}

/** The run's network (eval-ready: no aux classifier) with its best.safetensors loaded. */
export function loadRunModel(run: string): { model: Classifier<ClassifierOutput>; config: RunConfig } {
  const config = readRunConfig(run);
  const weights = join(run, 'best.safetensors');
  if (!existsSync(weights)) throw new CelgradError(`${run} has no best.safetensors yet: the run has not finished an epoch`);
  const model = createModel(config.model, { numClasses: config.classes.length, auxLogits: false, transformInput: config.transformInput });
  if (config.head && config.head !== 'linear') installHead(model, config.head, config.classes.length);
  const { tensors } = readWeightsFile(weights);
  for (const k of [...tensors.keys()]) if (k.startsWith('AuxLogits.')) tensors.delete(k);
  model.loadStateDict(tensors, { strict: true });
  model.eval();
  return { model, config };
}
