// Face verification and identification from embeddings, after iCartoonFace's protocol: the penultimate
// features, cosine similarity, pairs drawn from the validation identities.
//
//   - Verification: every genuine pair (two images of one identity) up to a cap, and at least as many
//     impostor pairs (different identities), seeded. ROC over the cosine threshold; TAR at FAR 1e-2,
//     1e-3, 1e-4, interpolated along the ROC, and null where the FAR is below the resolution
//     1 / impostor pairs (no threshold can measure it).
//   - Identification: one image per identity (seeded choice) forms the gallery, every other image is a
//     probe; top-1 is the share of probes whose most similar gallery image has their identity.
//     iCartoonFace's official score is also rank-1 against a gallery, but with distractor images;
//     a validation split has none, so the gallery's other identities are the distractors.
//
// Everything but extractEmbeddings() is a pure function of Float32Array embeddings and labels.
import { noGrad, scopeAsync } from '../engine/autograd.ts';
import { CelgradError } from '../engine/errors.ts';
import { classifierPath } from '../engine/nn/heads.ts';
import type { Module } from '../engine/nn/module.ts';
import { Tensor } from '../engine/tensor.ts';
import { Rng, hashSeed } from './data/rng.ts';

/** N embeddings of `dim` values, row-major, with their identities. */
export interface Embeddings {
  data: Float32Array;
  dim: number;
  labels: Int32Array;
}

/**
 * The input of the model's final layer (classifierPath: its last Linear, or the PassThrough that
 * attachHead put there) for every image, in eval mode without gradients: the penultimate features.
 * Works on plain classifiers and on models with a head attached. Leaves the model in eval mode.
 */
export async function extractEmbeddings(
  model: Module<unknown>,
  batches: AsyncIterable<{ images: Float32Array; labels: Int32Array }>,
  inputSize: number,
): Promise<Embeddings> {
  model.eval();
  const chunks: Float32Array[] = [];
  const labels: number[] = [];
  const captured: Tensor[] = [];
  const hook = model.registerForwardHook(classifierPath(model), (_m, input) => {
    captured.push(input);
  });
  try {
    for await (const batch of batches) {
      const n = batch.labels.length;
      captured.length = 0;
      chunks.push(
        await scopeAsync(() => {
          noGrad(() => model.call(Tensor.fromArray(batch.images, [n, 3, inputSize, inputSize])));
          return captured[0].toArray();
        }),
      );
      labels.push(...batch.labels);
    }
  } finally {
    hook.remove();
  }
  const data = new Float32Array(chunks.reduce((s, c) => s + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    data.set(c, offset);
    offset += c.length;
  }
  return { data, dim: labels.length ? data.length / labels.length : 0, labels: Int32Array.from(labels) };
}

/** Rows scaled to unit length, in float64 (an all-zero row stays zero): dot products are then cosines. */
export function unitRows(data: ArrayLike<number>, dim: number): Float64Array {
  const out = Float64Array.from(data);
  for (let r = 0; r < out.length / dim; r++) {
    const row = out.subarray(r * dim, (r + 1) * dim);
    const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    if (norm > 0) for (let i = 0; i < dim; i++) row[i] /= norm;
  }
  return out;
}

/** Cosine similarity of two vectors (0 if either is all zero). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const [u, v] = [unitRows(a, a.length), unitRows(b, b.length)];
  return dot(u, 0, v, 0, u.length);
}

function dot(a: Float64Array, i: number, b: Float64Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[i + k] * b[j + k];
  return s;
}

// ---- verification ----

export interface Pairs {
  genuine: [number, number][];
  impostor: [number, number][];
}

export interface PairOptions {
  /** Default 0. */
  seed?: number;
  /** At most this many genuine pairs (a seeded sample when there are more). Default 10000. */
  maxGenuine?: number;
  /**
   * Impostor pairs; at least the genuine count. Default max(genuine count, 10000): 10^4 impostors make
   * FAR 1e-4 measurable. Capped at the number of different-identity pairs.
   */
  impostors?: number;
}

/** Unordered image pairs (i < j) for verification, seeded: the same labels and seed give the same pairs. */
export function samplePairs(labels: ArrayLike<number>, options: PairOptions = {}): Pairs {
  const { seed = 0, maxGenuine = 10000 } = options;
  const n = labels.length;
  const rng = new Rng(hashSeed(seed, 1));
  let genuine: [number, number][] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (labels[i] === labels[j]) genuine.push([i, j]);
  const totalImpostors = (n * (n - 1)) / 2 - genuine.length;
  if (genuine.length > maxGenuine) genuine = rng.shuffle(genuine).slice(0, maxGenuine);
  const wanted = options.impostors ?? Math.max(genuine.length, 10000);
  if (wanted < genuine.length) throw new CelgradError(`samplePairs: ${wanted} impostor pairs is fewer than the ${genuine.length} genuine pairs`);
  const impostor: [number, number][] = [];
  if (wanted >= totalImpostors) {
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (labels[i] !== labels[j]) impostor.push([i, j]);
  } else {
    // Uniform over different-identity pairs without replacement: redraw repeats and same-identity pairs.
    const seen = new Set<number>();
    while (impostor.length < wanted) {
      const [a, b] = [rng.int(n), rng.int(n)];
      const [i, j] = a < b ? [a, b] : [b, a];
      if (i === j || labels[i] === labels[j] || seen.has(i * n + j)) continue;
      seen.add(i * n + j);
      impostor.push([i, j]);
    }
  }
  return { genuine, impostor };
}

/** The cosine of each pair, from unitRows() embeddings. */
export function pairScores(unit: Float64Array, dim: number, pairs: readonly [number, number][]): Float64Array {
  return Float64Array.from(pairs, ([i, j]) => dot(unit, i * dim, unit, j * dim, dim));
}

/**
 * The ROC over thresholds t, accepting a pair when its score >= t: one point per distinct score, in
 * decreasing t, from (0, 0) at t = +Infinity to (1, 1) at the lowest score.
 */
export interface Roc {
  thresholds: Float64Array;
  fpr: Float64Array;
  tpr: Float64Array;
  genuine: number;
  impostors: number;
}

export function roc(genuineScores: ArrayLike<number>, impostorScores: ArrayLike<number>): Roc {
  const [g, im] = [genuineScores.length, impostorScores.length];
  if (g === 0 || im === 0) throw new CelgradError(`roc needs genuine and impostor pairs, got ${g} and ${im}`);
  const scored: [number, boolean][] = [...Array.from(genuineScores, (s): [number, boolean] => [s, true]), ...Array.from(impostorScores, (s): [number, boolean] => [s, false])];
  scored.sort((a, b) => b[0] - a[0]);
  const thresholds = [Infinity];
  const fpr = [0];
  const tpr = [0];
  let [tp, fp] = [0, 0];
  scored.forEach(([score, isGenuine], k) => {
    if (isGenuine) tp++;
    else fp++;
    // Equal scores are accepted together: one point after the last of them.
    if (k + 1 === scored.length || scored[k + 1][0] !== score) {
      thresholds.push(score);
      fpr.push(fp / im);
      tpr.push(tp / g);
    }
  });
  return { thresholds: Float64Array.from(thresholds), fpr: Float64Array.from(fpr), tpr: Float64Array.from(tpr), genuine: g, impostors: im };
}

/**
 * TAR at a FAR: the TPR of the last ROC point with FPR <= far (the highest there), interpolated linearly
 * towards the next point. null where far < 1 / impostors: below the ROC's resolution.
 */
export function tarAtFar(curve: Roc, far: number): number | null {
  if (far < 1 / curve.impostors) return null;
  const { fpr, tpr } = curve;
  let k = 0;
  while (k + 1 < fpr.length && fpr[k + 1] <= far) k++;
  if (k + 1 === fpr.length) return tpr[k];
  return tpr[k] + ((tpr[k + 1] - tpr[k]) * (far - fpr[k])) / (fpr[k + 1] - fpr[k]);
}

// ---- identification ----

/** One image per identity (a seeded choice) as the gallery, in index order; every other image is a probe. */
export function splitGallery(labels: ArrayLike<number>, seed = 0): { gallery: number[]; probes: number[] } {
  const rng = new Rng(hashSeed(seed, 2));
  const byIdentity = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const images = byIdentity.get(labels[i]) ?? [];
    images.push(i);
    byIdentity.set(labels[i], images);
  }
  const chosen = new Set<number>();
  for (const images of byIdentity.values()) chosen.add(images[rng.int(images.length)]);
  const gallery: number[] = [];
  const probes: number[] = [];
  for (let i = 0; i < labels.length; i++) (chosen.has(i) ? gallery : probes).push(i);
  return { gallery, probes };
}

/** Share of probes whose most similar gallery image (cosine; ties: the first in gallery order) has their identity. */
export function identificationTop1(unit: Float64Array, dim: number, labels: ArrayLike<number>, gallery: number[], probes: number[]): number {
  if (probes.length === 0) throw new CelgradError('identification needs at least one probe (an identity with two or more images)');
  let correct = 0;
  for (const p of probes) {
    let [best, bestScore] = [-1, -Infinity];
    for (const g of gallery) {
      const s = dot(unit, p * dim, unit, g * dim, dim);
      if (s > bestScore) [best, bestScore] = [g, s];
    }
    if (labels[best] === labels[p]) correct++;
  }
  return correct / probes.length;
}

// ---- both protocols ----

export const FARS = [1e-2, 1e-3, 1e-4] as const;

export interface VerificationReport {
  images: number;
  identities: number;
  genuinePairs: number;
  impostorPairs: number;
  /** 1 / impostorPairs: the smallest FAR the pairs can measure. */
  farResolution: number;
  roc: Roc;
  /** TAR at each of FARS; null below the resolution. */
  tar: { far: number; tar: number | null }[];
  top1: number;
  galleryImages: number;
  probes: number;
}

/** Verification (pairs, ROC, TAR at FAR) and identification (top-1) on one set of embeddings. */
export function evaluateEmbeddings(e: Embeddings, options: PairOptions = {}): VerificationReport {
  const unit = unitRows(e.data, e.dim);
  const pairs = samplePairs(e.labels, options);
  const curve = roc(pairScores(unit, e.dim, pairs.genuine), pairScores(unit, e.dim, pairs.impostor));
  const { gallery, probes } = splitGallery(e.labels, options.seed);
  return {
    images: e.labels.length,
    identities: new Set(e.labels).size,
    genuinePairs: pairs.genuine.length,
    impostorPairs: pairs.impostor.length,
    farResolution: 1 / pairs.impostor.length,
    roc: curve,
    tar: FARS.map((far) => ({ far, tar: tarAtFar(curve, far) })),
    top1: identificationTop1(unit, e.dim, e.labels, gallery, probes),
    galleryImages: gallery.length,
    probes: probes.length,
  };
}
