// Per-class stratified train/validation split, and its manifest (split.json) so every run of a study uses the
// same images.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { DataError } from '../../engine/errors.ts';
import { Rng, hashSeed } from './rng.ts';
import type { Sample } from './types.ts';

export interface Split {
  seed: number;
  /** Fraction of each class that goes to training (0.8 = an 80/20 split). */
  fraction: number;
  classes: string[];
  train: Sample[];
  val: Sample[];
}

/** FNV-1a of a string, so a class's shuffle depends on its name rather than its position. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Splits each class on its own: shuffles its samples with a seed derived from (seed, class name), sends
 * round(n * (1 - fraction)) of them to validation, but at least 1 when the class has 2 or more images and never
 * all of them. A class with one image goes to training only. Both lists keep the input order.
 */
export function stratifiedSplit(samples: readonly Sample[], classes: readonly string[], options: { seed: number; fraction?: number }): Split {
  const fraction = options.fraction ?? 0.8;
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`split fraction must be in (0, 1], got ${fraction}`);
  const byClass = classes.map(() => [] as number[]);
  samples.forEach((s, i) => byClass[s.label].push(i));
  const isVal = new Uint8Array(samples.length);
  byClass.forEach((indices, label) => {
    const n = indices.length;
    const nVal = n >= 2 ? Math.min(n - 1, Math.max(1, Math.round(n * (1 - fraction)))) : 0;
    const order = new Rng(hashSeed(options.seed, nameHash(classes[label]))).shuffle([...indices]);
    for (const i of order.slice(0, nVal)) isVal[i] = 1;
  });
  return {
    seed: options.seed,
    fraction,
    classes: [...classes],
    train: samples.filter((_, i) => !isVal[i]),
    val: samples.filter((_, i) => isVal[i]),
  };
}

interface Manifest extends Split {
  /** Sample paths are relative to this folder. */
  root: string;
}

/** Writes split.json atomically (temp file + rename), with sample paths relative to the dataset root. */
export function writeSplit(file: string, split: Split, root: string): void {
  const rel = (s: Sample): Sample => ({ ...s, path: relative(root, s.path).split('\\').join('/') });
  const manifest: Manifest = { seed: split.seed, fraction: split.fraction, root: resolve(root), classes: split.classes, train: split.train.map(rel), val: split.val.map(rel) };
  writeFileSync(`${file}.tmp`, JSON.stringify(manifest, null, 1));
  renameSync(`${file}.tmp`, file);
}

/** Reads split.json; paths resolve against `root` if given (the dataset moved), else the manifest's root. */
export function readSplit(file: string, root?: string): Split {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    throw new DataError(file, `cannot read the split manifest: ${(e as Error).message}`);
  }
  if (!Array.isArray(manifest.classes) || !Array.isArray(manifest.train) || !Array.isArray(manifest.val)) {
    throw new DataError(file, 'not a split manifest: expected {seed, fraction, classes, train, val}');
  }
  const base = root ?? manifest.root;
  const abs = (s: Sample): Sample => ({ ...s, path: isAbsolute(s.path) ? s.path : join(base, s.path) });
  return { seed: manifest.seed, fraction: manifest.fraction, classes: manifest.classes, train: manifest.train.map(abs), val: manifest.val.map(abs) };
}
