// The data pipeline's public surface: readers, split, transforms, loader, stats and the synthetic generator.
export type { Box, Problem, Sample } from './types.ts';
export { readDataset, detectLayout, type Dataset, type DetectedLayout, type Layout, type Check, type ReadOptions } from './folder.ts';
export { stratifiedSplit, writeSplit, readSplit, type Split } from './split.ts';
export {
  IMAGENET_MEAN,
  IMAGENET_STD,
  trainTransform,
  valTransform,
  loadImage,
  planTransform,
  randomResizedCropParams,
  type Transform,
  type TrainTransform,
  type ValTransform,
  type Plan,
  type Rect,
} from './transforms.ts';
export { DataLoader, type Batch, type LoaderOptions } from './loader.ts';
export { dataStats, formatStats, type DataStats } from './stats.ts';
export {
  generateSynthFaces,
  synthIdentities,
  renderFace,
  DEFAULT_DIFFICULTY,
  EASY_DIFFICULTY,
  type SynthOptions,
  type SynthResult,
  type SynthDifficulty,
  type EvidenceRegion,
  type Identity,
} from './synth.ts';
export { hashSeed, mulberry32 } from './rng.ts';
