// Dataset readers: plain ImageFolder (one folder per identity) and the iCartoonFace recognition training set
// (identity folders plus a tab-separated face-box file). Bad files and folders are skipped and listed in
// `problems`; only a missing folder or an unrecognised layout throws.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { DataError } from '../../engine/errors.ts';
import type { Box, Problem, Sample } from './types.ts';

export type Layout = 'imagefolder' | 'icartoonface';

/** How much of each image to read while listing: nothing, its header (size, format), or all of it (catches truncation). */
export type Check = 'none' | 'header' | 'decode';

export interface Dataset {
  /** The folder that sample paths are relative to in a split manifest (the identity folders' parent). */
  root: string;
  layout: Layout;
  /** Identity names; a sample's label indexes this list. */
  classes: string[];
  /** Absolute paths. */
  samples: Sample[];
  problems: Problem[];
  /** Range of the full image sizes (before any box crop); absent when images were not checked. */
  sizeRange?: { width: [number, number]; height: [number, number] };
}

export interface ReadOptions {
  /** Keep only the first N identities (in the dataset's own order) that have at least one usable image. */
  classes?: number;
  /** Default 'header'. Decode failures not caught here are reported later by the loader. */
  check?: Check;
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);
const ICF_TOP = 'personai_icartoonface_rectrain';
const ICF_IMAGES = 'icartoonface_rectrain';
const ICF_BOXES = 'icartoonface_rectrain_det.txt';

const EXPECTED = [
  'expected one of these layouts:',
  '  ImageFolder: DIR/<identity>/<image>.jpg|.jpeg|.png|.webp, one folder per identity;',
  `  iCartoonFace recognition training set: DIR = ${ICF_TOP}/ holding ${ICF_BOXES} (tab-separated "relpath x1 y1 x2 y2")`,
  `    and ${ICF_IMAGES}/<identity>/<image>.jpg; DIR may also be the inner ${ICF_IMAGES}/ folder or the folder holding ${ICF_TOP}/.`,
].join('\n');

const isImageName = (name: string) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase());

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Sorted names of the sub-folders of `dir` (symlinks followed). */
function subfolders(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => !name.startsWith('.') && isDir(join(dir, name)))
    .sort();
}

/** Sorted image file names directly inside `dir`. */
function imageFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => !e.isDirectory() && !e.name.startsWith('.') && isImageName(e.name))
    .map((e) => e.name)
    .sort();
}

export interface DetectedLayout {
  layout: Layout;
  /** The folder holding the identity folders. */
  root: string;
  /** iCartoonFace only: the face-box file. */
  boxes?: string;
}

/** Works out which layout `dir` holds, or throws one DataError that lists the expected layouts. */
export function detectLayout(dir: string): DetectedLayout {
  const path = resolve(dir);
  if (!existsSync(path)) throw new DataError(path, `no such folder.\n${EXPECTED}`);
  if (!isDir(path)) throw new DataError(path, `not a folder.\n${EXPECTED}`);
  const tops = [join(path, ICF_TOP), path];
  if (basename(path) === ICF_IMAGES) tops.push(dirname(path));
  for (const top of tops) {
    if (!isDir(join(top, ICF_IMAGES))) continue;
    if (!existsSync(join(top, ICF_BOXES))) {
      throw new DataError(join(top, ICF_BOXES), `missing: the iCartoonFace layout needs its face-box file to crop the faces.\n${EXPECTED}`);
    }
    return { layout: 'icartoonface', root: join(top, ICF_IMAGES), boxes: join(top, ICF_BOXES) };
  }
  if (subfolders(path).some((name) => imageFiles(join(path, name)).length > 0)) return { layout: 'imagefolder', root: path };
  throw new DataError(path, `no identity folders with images found.\n${EXPECTED}`);
}

/** Reads `relpath x1 y1 x2 y2` lines; keys are paths relative to the icartoonface_rectrain/ folder. */
function readBoxFile(file: string, problems: Problem[]): Map<string, Box> {
  const boxes = new Map<string, Box>();
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((line, i) => {
      if (line.trim() === '') return;
      const where = `${file}:${i + 1}`;
      const fields = line.trim().split(/\s+/);
      const [x1, y1, x2, y2] = fields.slice(1).map(Number);
      if (fields.length !== 5 || ![x1, y1, x2, y2].every(Number.isFinite)) {
        problems.push({ path: where, reason: `expected "relpath<TAB>x1<TAB>y1<TAB>x2<TAB>y2", got "${line.slice(0, 120)}"` });
        return;
      }
      const rel = fields[0].replace(/\\/g, '/').replace(/^\.\//, '').replace(new RegExp(`^(${ICF_TOP}/)?${ICF_IMAGES}/`), '');
      if (boxes.has(rel)) {
        problems.push({ path: where, reason: `a second box for ${rel}; the first one is used` });
        return;
      }
      boxes.set(rel, { x1, y1, x2, y2 });
    });
  return boxes;
}

/** Reads an image's header (or all of it) and returns its size; throws an Error whose message is the reason. */
async function inspectImage(path: string, check: Exclude<Check, 'none'>): Promise<{ width: number; height: number }> {
  const info = await stat(path);
  if (info.size === 0) throw new Error('empty file (0 bytes)');
  const meta = await sharp(path)
    .metadata()
    .catch((e: Error) => {
      throw new Error(`not a readable image: ${e.message}`);
    });
  if (!meta.width || !meta.height) throw new Error('image header has no size');
  if (check === 'decode') {
    await sharp(path)
      .raw()
      .toBuffer()
      .catch((e: Error) => {
        throw new Error(`cannot decode: ${e.message}`);
      });
  }
  return { width: meta.width, height: meta.height };
}

/**
 * Rounds a face box to whole pixels and clips it to the image. Boxes that stick out a little are clipped;
 * a box that is empty, or empty once clipped (entirely outside), is rejected with the reason.
 */
function clipBox(box: Box, width: number, height: number): Box | string {
  const clipped = {
    x1: Math.max(0, Math.round(box.x1)),
    y1: Math.max(0, Math.round(box.y1)),
    x2: Math.min(width, Math.round(box.x2)),
    y2: Math.min(height, Math.round(box.y2)),
  };
  if (clipped.x2 <= clipped.x1 || clipped.y2 <= clipped.y1) {
    return `face box (${box.x1}, ${box.y1}, ${box.x2}, ${box.y2}) is empty or outside the ${width}x${height} image`;
  }
  return clipped;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/**
 * Lists a dataset. Identity order is the sorted folder names (ImageFolder's rule; for iCartoonFace that is its
 * numbered order), images within an identity are sorted by name. Skipped: zero-byte or unreadable images,
 * iCartoonFace images without a box or with an empty/outside box, identity folders left with no usable image.
 */
export async function readDataset(dir: string, options: ReadOptions = {}): Promise<Dataset> {
  const detected = detectLayout(dir);
  const check = options.check ?? 'header';
  const limit = options.classes ?? Infinity;
  const problems: Problem[] = [];
  const boxes = detected.boxes ? readBoxFile(detected.boxes, problems) : undefined;
  const classes: string[] = [];
  const samples: Sample[] = [];
  const width: [number, number] = [Infinity, 0];
  const height: [number, number] = [Infinity, 0];

  for (const name of subfolders(detected.root)) {
    if (classes.length >= limit) break;
    const folder = join(detected.root, name);
    const files = imageFiles(folder);
    if (files.length === 0) {
      problems.push({ path: folder, reason: 'empty identity folder (no .jpg/.jpeg/.png/.webp files); identity skipped' });
      continue;
    }
    const label = classes.length;
    const found = await mapLimit(files, 16, async (file): Promise<Sample | Problem> => {
      const path = join(folder, file);
      let box = boxes?.get(`${name}/${file}`);
      if (boxes && !box) return { path, reason: `no face box in ${ICF_BOXES}` };
      if (check === 'none') return box && (box.x2 <= box.x1 || box.y2 <= box.y1) ? { path, reason: 'empty face box' } : { path, label, box };
      try {
        const size = await inspectImage(path, check);
        width[0] = Math.min(width[0], size.width);
        width[1] = Math.max(width[1], size.width);
        height[0] = Math.min(height[0], size.height);
        height[1] = Math.max(height[1], size.height);
        if (box) {
          const clipped = clipBox(box, size.width, size.height);
          if (typeof clipped === 'string') return { path, reason: clipped };
          box = clipped;
        }
        return box ? { path, label, box } : { path, label };
      } catch (e) {
        return { path, reason: (e as Error).message };
      }
    });
    const good = found.filter((f): f is Sample => 'label' in f);
    problems.push(...found.filter((f): f is Problem => 'reason' in f));
    if (good.length === 0) {
      problems.push({ path: folder, reason: `no usable image among ${files.length}; identity skipped` });
      continue;
    }
    classes.push(name);
    samples.push(...good);
  }
  if (classes.length === 0) throw new DataError(detected.root, `no identity has a usable image (${problems.length} problems, first: ${problems[0]?.path}: ${problems[0]?.reason})`);
  const dataset: Dataset = { root: detected.root, layout: detected.layout, classes, samples, problems };
  if (check !== 'none' && width[1] > 0) dataset.sizeRange = { width, height };
  return dataset;
}
