// Deterministic procedural cartoon faces, written as an ImageFolder (out/<identity>/<nnnn>.png).
//
// An identity is a combination of discrete attributes (face shape, skin, hair colour and style, ears, eye shape
// and colour, brows, nose, mouth, marks/accessories) plus small continuous proportions. Palettes are short, so
// many identities share a skin or hair colour: only the combination tells them apart. Every image then varies
// pose, scale, position, lighting, background clutter, clothing, occlusion and noise, none of which carry
// identity. All randomness comes from hashSeed(seed, space, identity, image), so an image does not depend on
// how many identities or images are generated alongside it.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { DataError } from '../../engine/errors.ts';
import { Canvas, compose, curve, ellipse, outline, placement, polygon, stroke, type Affine, type Rgb, type Shape } from './raster.ts';
import { Rng, hashSeed } from './rng.ts';
import type { Box } from './types.ts';

/** Knobs that make the task harder or easier. Every one is per-image nuisance, never identity. */
export interface SynthDifficulty {
  /** Largest in-plane rotation of the head, degrees. */
  rotation: number;
  /** Largest yaw, as the fraction of a quarter turn: squashes the head and shifts the features sideways. */
  yaw: number;
  /** Range of head size relative to the nominal size. */
  scale: readonly [number, number];
  /** Largest offset of the head centre, as a fraction of the image size. */
  shift: number;
  /** Random shapes drawn on the background of each image. */
  clutter: number;
  /** Probability that a random blob covers part of the face. */
  occlusion: number;
  /** Largest brightness change across the image from a linear lighting gradient (0.3 = +-30%). */
  lighting: number;
  /** Per-image relative jitter of the identity's colours. */
  colourJitter: number;
  /** Standard deviation of per-pixel noise, in [0, 1] intensity units. */
  noise: number;
  /** Skin colours identities draw from (1..SKIN.length): fewer means more sharing, a harder task. */
  skinColours: number;
  /** Hair colours identities draw from (1..HAIR.length). */
  hairColours: number;
  /** Discrete attributes in which every identity differs from every other (when the attribute space allows). */
  minDifferences: number;
}

export const DEFAULT_DIFFICULTY: SynthDifficulty = {
  rotation: 15,
  yaw: 0.35,
  scale: [0.8, 1.1],
  shift: 0.07,
  clutter: 6,
  occlusion: 0.25,
  lighting: 0.3,
  colourJitter: 0.06,
  noise: 0.03,
  skinColours: 5,
  hairColours: 7,
  minDifferences: 3,
};

/** Fewer nuisances than the default, so a few epochs on a 2-core machine show learning; identities still differ in 3+ face attributes. */
export const EASY_DIFFICULTY: Partial<SynthDifficulty> = { rotation: 8, yaw: 0.2, clutter: 2, occlusion: 0.1, lighting: 0.15, noise: 0.02, shift: 0.05 };

export interface SynthOptions {
  out: string;
  identities: number;
  perIdentity: number;
  /** Image side in pixels (square images). */
  size: number;
  seed: number;
  /** Draw identities from the source-task seed space: different faces and names (src000...), for pretraining. */
  sourceTask?: boolean;
  /** Draw each face small in one random quadrant of a cluttered image and record where in `regions.json`. */
  evidenceRegion?: boolean;
  difficulty?: Partial<SynthDifficulty>;
}

/** Where the class evidence is in an evidence-region image. Boxes are pixels, x2/y2 exclusive. */
export interface EvidenceRegion {
  /** 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. */
  quadrant: number;
  /** The quadrant. */
  box: Box;
  /** Approximate bounds of the head (hair included), clipped to the image. */
  face: Box;
}

export interface SynthResult {
  out: string;
  classes: string[];
  /** Image paths relative to `out`. */
  files: string[];
  /** Per relative path, present with `evidenceRegion`. */
  regions?: Record<string, EvidenceRegion>;
}

const SKIN: Rgb[] = [
  [1.0, 0.87, 0.77],
  [0.96, 0.77, 0.6],
  [0.86, 0.62, 0.45],
  [0.64, 0.43, 0.3],
  [0.42, 0.28, 0.2],
  [0.88, 0.9, 0.94],
  [0.72, 0.86, 0.66],
];
const HAIR: Rgb[] = [
  [0.1, 0.09, 0.1],
  [0.32, 0.19, 0.1],
  [0.58, 0.37, 0.18],
  [0.94, 0.8, 0.44],
  [0.82, 0.3, 0.12],
  [0.88, 0.88, 0.9],
  [0.25, 0.4, 0.86],
  [0.95, 0.5, 0.72],
  [0.3, 0.7, 0.42],
  [0.55, 0.3, 0.76],
];
const IRIS: Rgb[] = [
  [0.42, 0.23, 0.1],
  [0.2, 0.46, 0.86],
  [0.2, 0.62, 0.3],
  [0.5, 0.55, 0.62],
  [0.8, 0.15, 0.15],
  [0.58, 0.3, 0.82],
  [0.86, 0.66, 0.14],
];
const ACCENT: Rgb[] = [
  [0.1, 0.1, 0.12],
  [0.85, 0.15, 0.2],
  [0.95, 0.78, 0.2],
  [0.15, 0.35, 0.8],
  [0.2, 0.65, 0.35],
  [0.96, 0.96, 0.96],
];
const WHITE: Rgb = [1, 1, 1];
const INK: Rgb = [0.08, 0.06, 0.07];

// Head outlines as [half-width, jaw narrowing, chin length, squareness].
const FACE_SHAPES = [
  [0.74, 0.15, 1.08, 0],
  [0.92, 0.05, 0.95, 0],
  [0.86, 0.1, 1.0, 0.9],
  [0.88, 0.5, 1.12, 0.2],
  [0.7, 0.25, 1.22, 0.4],
  [0.82, -0.08, 1.0, 0.5],
] as const;
const HAIR_STYLES = ['bald', 'crop', 'bangs', 'sidePart', 'spiky', 'long', 'bob', 'bun', 'afro', 'twintails', 'mohawk'] as const;
const EARS = ['round', 'big', 'pointy'] as const;
const EYES = ['round', 'anime', 'almond', 'dot', 'sleepy', 'happy'] as const;
const BROWS = ['none', 'thin', 'thick', 'angry', 'worried'] as const;
const NOSES = ['none', 'dot', 'hook', 'triangle', 'button'] as const;
const MOUTHS = ['smile', 'grin', 'flat', 'frown', 'cat', 'o', 'teeth', 'smirk'] as const;
const MARKS = ['glasses', 'freckles', 'scar', 'earrings', 'hat', 'blush', 'mole', 'beard', 'eyepatch', 'headband', 'whiskers', 'paint'] as const;

export interface Mark {
  kind: (typeof MARKS)[number];
  colour: number;
  side: 1 | -1;
  variant: number;
}

/** The fixed appearance of one synthetic character. */
export interface Identity {
  name: string;
  faceShape: number;
  /** [half-width, jaw narrowing, chin length, squareness] after per-identity jitter. */
  face: readonly [number, number, number, number];
  skin: number;
  hair: number;
  hairStyle: (typeof HAIR_STYLES)[number];
  ears: (typeof EARS)[number];
  eyes: { kind: (typeof EYES)[number]; colour: number; spacing: number; height: number; size: number; tilt: number };
  brows: (typeof BROWS)[number];
  nose: (typeof NOSES)[number];
  mouth: { kind: (typeof MOUTHS)[number]; width: number; y: number };
  marks: Mark[];
  /** Seed for fixed details such as freckle positions. */
  detail: number;
}

function signature(id: Identity): string[] {
  const marks = id.marks.map((m) => m.kind).sort().join('+');
  return [id.faceShape, id.skin, id.hair, id.hairStyle, id.ears, id.eyes.kind, id.eyes.colour, id.brows, id.nose, id.mouth.kind, marks].map(String);
}

function drawIdentity(rng: Rng, name: string, d: SynthDifficulty): Identity {
  const faceShape = rng.int(FACE_SHAPES.length);
  const face = FACE_SHAPES[faceShape].map((v, i) => v + rng.signed() * (i === 3 ? 0.1 : 0.03)) as unknown as Identity['face'];
  const markCount = rng.pick([0, 1, 1, 2, 2]);
  const kinds = rng.shuffle([...MARKS]).slice(0, markCount);
  return {
    name,
    faceShape,
    face,
    skin: rng.int(Math.min(Math.max(1, d.skinColours), SKIN.length)),
    hair: rng.int(Math.min(Math.max(1, d.hairColours), HAIR.length)),
    hairStyle: rng.pick(HAIR_STYLES),
    ears: rng.pick(EARS),
    eyes: {
      kind: rng.pick(EYES),
      colour: rng.int(IRIS.length),
      spacing: rng.range(0.28, 0.4),
      height: rng.range(-0.04, 0.1),
      size: rng.range(0.11, 0.16),
      tilt: rng.range(-0.2, 0.2),
    },
    brows: rng.pick(BROWS),
    nose: rng.pick(NOSES),
    mouth: { kind: rng.pick(MOUTHS), width: rng.range(0.18, 0.36), y: rng.range(0.46, 0.6) },
    marks: kinds.map((kind) => ({ kind, colour: rng.int(ACCENT.length), side: rng.chance(0.5) ? 1 : -1, variant: rng.int(2) })),
    detail: rng.int(2 ** 31),
  };
}

/**
 * The identities of a task: deterministic per (seed, task). Identity i is redrawn (up to 200 times) until it
 * differs from every earlier one in at least `minDifferences` discrete attributes, so no two look alike.
 */
export function synthIdentities(count: number, seed: number, options: { sourceTask?: boolean; difficulty?: Partial<SynthDifficulty> } = {}): Identity[] {
  const d = { ...DEFAULT_DIFFICULTY, ...options.difficulty };
  const space = options.sourceTask ? 2 : 1;
  const width = Math.max(3, String(count - 1).length);
  const out: Identity[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${options.sourceTask ? 'src' : 'id'}${String(i).padStart(width, '0')}`;
    let chosen: Identity | undefined;
    for (let attempt = 0; attempt < 200 && !chosen; attempt++) {
      const candidate = drawIdentity(new Rng(hashSeed(seed, space, i, attempt)), name, d);
      const sig = signature(candidate);
      const distinct = out.every((other) => signature(other).filter((v, k) => v !== sig[k]).length >= d.minDifferences);
      if (distinct || attempt === 199) chosen = candidate;
    }
    out.push(chosen!);
  }
  return out;
}

function jitterColour(c: Rgb, amount: number, rng: Rng): Rgb {
  const brightness = 1 + amount * rng.normal();
  return c.map((v) => Math.min(1, Math.max(0, v * brightness * (1 + amount * 0.3 * rng.normal())))) as unknown as Rgb;
}

function shade(c: Rgb, k: number): Rgb {
  return [c[0] * k, c[1] * k, c[2] * k];
}

function randomColour(rng: Rng): Rgb {
  return [rng.next(), rng.next(), rng.next()];
}

const shift = (dx: number, dy = 0): Affine => ({ a: 1, b: 0, c: 0, d: 1, e: dx, f: dy });

/** Everything needed to paint one image of one identity. Coordinates are head units: the face spans y in [-1, chin]. */
interface Scene {
  canvas: Canvas;
  id: Identity;
  /** Head placement (rotation, yaw squash, scale, position). */
  head: Affine;
  /** Yaw in [-1, 1]: features shift sideways in proportion to their depth. */
  yaw: number;
  skin: Rgb;
  hair: Rgb;
  iris: Rgb;
}

/** Placement for features at a given depth (positive = towards the viewer, they move more under yaw). */
function at(s: Scene, depth: number): Affine {
  return compose(s.head, shift(s.yaw * 0.28 * depth));
}

function headOutline(face: Identity['face'], grow = 0): number[] {
  const [w, jaw, chin, square] = face;
  const e = 2 / (2 + 2 * square);
  return outline(0, 0, 48, (t) => {
    const c = Math.cos(t);
    const s = Math.sin(t);
    let x = (w + grow) * Math.sign(c) * Math.abs(c) ** e;
    const y = Math.sign(s) * Math.abs(s) ** e * ((s > 0 ? chin : 1) + grow);
    if (s > 0) x *= 1 - jaw * Math.abs(s) ** 1.5;
    return [x, y];
  });
}

/** Hair covering the top of the head down to a hairline given as points from the right side to the left side. */
/** The upper half of an ellipse centred at (0, cy), from the left end over the top to the right end. */
function topArc(rx: number, cy: number, ry: number): number[] {
  const pts: number[] = [];
  for (let k = 0; k <= 16; k++) {
    const t = Math.PI + (Math.PI * k) / 16;
    pts.push(rx * Math.cos(t), cy + ry * Math.sin(t));
  }
  return pts;
}

/** Hair covering the top of the head down to a hairline given as points from the right side to the left side. */
function hairCap(w: number, hairline: number[], sideY: number): Shape {
  const rx = w + 0.1;
  return polygon([...topArc(rx, -0.05, 1.12), rx, sideY, ...hairline, -rx, sideY]);
}

function zigzag(x0: number, x1: number, yHigh: number, yLow: number, teeth: number): number[] {
  const pts: number[] = [];
  for (let k = 0; k <= 2 * teeth; k++) pts.push(x0 + ((x1 - x0) * k) / (2 * teeth), k % 2 ? yLow : yHigh);
  return pts;
}

function drawBackHair(s: Scene): void {
  const w = s.id.face[0];
  const m = at(s, -0.3);
  const { canvas, hair } = s;
  switch (s.id.hairStyle) {
    case 'long':
      canvas.fill(polygon([...topArc(w + 0.22, 0, 1.2), w + 0.3, 1.5, ...zigzag(w + 0.3, -w - 0.3, 1.6, 1.45, 4), -w - 0.3, 1.5]), hair, m);
      break;
    case 'bob':
      canvas.fill(polygon([w + 0.22, -0.5, w + 0.26, 0.68, -w - 0.26, 0.68, -w - 0.22, -0.5]), hair, m);
      break;
    case 'bangs':
      canvas.fill(polygon([w + 0.14, -0.4, w + 0.16, 0.3, -w - 0.16, 0.3, -w - 0.14, -0.4]), hair, m);
      break;
    case 'afro': {
      const r = w + 0.55;
      canvas.fill(polygon(outline(0, -0.35, 54, (t) => [r * (1 + 0.05 * Math.sin(9 * t)) * Math.cos(t), r * (1 + 0.05 * Math.sin(9 * t)) * Math.sin(t)])), hair, m);
      break;
    }
    case 'bun':
      canvas.fill(ellipse(0, -1.22, 0.36, 0.32), hair, m);
      break;
    case 'twintails':
      for (const side of [-1, 1]) {
        canvas.fill(ellipse(side * (w + 0.3), 0.35, 0.24, 0.62, side * 0.35), hair, m);
        canvas.fill(ellipse(side * (w + 0.12), -0.25, 0.09, 0.09), ACCENT[s.id.detail % ACCENT.length], m);
      }
      break;
    default:
      break;
  }
}

function drawFrontHair(s: Scene): void {
  const w = s.id.face[0];
  const m = at(s, 0.2);
  const { canvas, hair } = s;
  switch (s.id.hairStyle) {
    case 'bald':
      canvas.fill(ellipse(-0.25, -0.72, 0.22, 0.1, -0.4), WHITE, m, 0.35);
      break;
    case 'crop':
    case 'bun':
      canvas.fill(hairCap(w, curve(w * 0.95, -0.3, 0, -0.8, -w * 0.95, -0.3), -0.1), hair, m);
      break;
    case 'bangs':
      canvas.fill(hairCap(w, zigzag(w, -w, -0.22, -0.44, 5), -0.05), hair, m);
      break;
    case 'sidePart':
      canvas.fill(hairCap(w, curve(w, -0.25, -0.25, -0.2, -w, -0.78), -0.1), hair, m);
      canvas.fill(stroke(curve(-0.35, -1.1, -0.3, -0.9, -0.2, -0.75), 0.04), shade(hair, 0.6), m);
      break;
    case 'spiky': {
      canvas.fill(hairCap(w, curve(w * 0.95, -0.35, 0, -0.75, -w * 0.95, -0.35), -0.1), hair, m);
      const spikes: number[] = [];
      for (let k = 0; k <= 12; k++) {
        const t = Math.PI * 1.08 + (Math.PI * 0.84 * k) / 12;
        const r = k % 2 ? 1.5 : 1.05;
        spikes.push((w + 0.1) * r * Math.cos(t), -0.1 + 1.1 * r * Math.sin(t));
      }
      canvas.fill(polygon(spikes), hair, m);
      break;
    }
    case 'long':
    case 'twintails':
      canvas.fill(hairCap(w, [...curve(w, 0.1, 0.15, -0.5, 0, -0.85, 6), ...curve(0, -0.85, -0.15, -0.5, -w, 0.1, 6).slice(2)], 0.1), hair, m);
      break;
    case 'bob':
      canvas.fill(hairCap(w, [w, -0.36, -w, -0.36], -0.1), hair, m);
      break;
    case 'afro': {
      const pts = zigzag(w, -w, -0.42, -0.52, 7);
      canvas.fill(hairCap(w + 0.05, pts, -0.15), hair, m);
      break;
    }
    case 'mohawk':
      canvas.fill(ellipse(0, -1.0, 0.18, 0.5), hair, m);
      canvas.fill(ellipse(0, -0.75, 0.62, 0.3), shade(s.skin, 0.85), m, 0.5);
      break;
  }
}

function drawEars(s: Scene): void {
  const [w] = s.id.face;
  const m = at(s, -0.4);
  for (const side of [-1, 1]) {
    const x = side * w * 0.97;
    switch (s.id.ears) {
      case 'round':
        s.canvas.fill(ellipse(x, 0.05, 0.14, 0.2), s.skin, m);
        break;
      case 'big':
        s.canvas.fill(ellipse(x + side * 0.05, 0.02, 0.22, 0.28), s.skin, m);
        break;
      case 'pointy':
        s.canvas.fill(polygon([x - side * 0.05, -0.08, x + side * 0.38, -0.45, x + side * 0.02, 0.28]), s.skin, m);
        break;
    }
    s.canvas.fill(ellipse(x + side * 0.04, 0.06, 0.05, 0.1), shade(s.skin, 0.78), m);
  }
}

/** One eye in eye-local units, centred at the origin; `side` mirrors it for the left eye. */
function drawEye(s: Scene, m: Affine): void {
  const { kind, size: r } = s.id.eyes;
  const c = s.canvas;
  const pupil = INK;
  switch (kind) {
    case 'round':
      c.fill(ellipse(0, 0, r, r * 0.9), WHITE, m);
      c.fill(stroke(outline(0, 0, 20, (t) => [r * Math.cos(t), r * 0.9 * Math.sin(t)]), 0.025, true), INK, m);
      c.fill(ellipse(0, 0.01, r * 0.6, r * 0.6), s.iris, m);
      c.fill(ellipse(0, 0.01, r * 0.3, r * 0.3), pupil, m);
      c.fill(ellipse(r * 0.25, -r * 0.25, r * 0.15, r * 0.15), WHITE, m);
      break;
    case 'anime':
      c.fill(ellipse(0, 0, r * 0.95, r * 1.35), WHITE, m);
      c.fill(ellipse(0, r * 0.15, r * 0.72, r * 1.12), s.iris, m);
      c.fill(ellipse(0, r * 0.55, r * 0.5, r * 0.45), shade(s.iris, 1.35), m);
      c.fill(ellipse(0, r * 0.1, r * 0.34, r * 0.55), pupil, m);
      c.fill(ellipse(r * 0.3, -r * 0.35, r * 0.22, r * 0.26), WHITE, m);
      c.fill(stroke(curve(-r * 1.1, -r * 0.6, 0, -r * 1.9, r * 1.15, -r * 0.9), 0.05), INK, m);
      break;
    case 'almond': {
      const shape = [...curve(-r * 1.3, 0, 0, -r * 1.2, r * 1.3, 0, 8), ...curve(r * 1.3, 0, 0, r * 0.9, -r * 1.3, 0, 8).slice(2, -2)];
      c.fill(polygon(shape), WHITE, m);
      c.fill(ellipse(0, 0, r * 0.5, r * 0.5), s.iris, m);
      c.fill(ellipse(0, 0, r * 0.24, r * 0.24), pupil, m);
      c.fill(stroke(curve(-r * 1.3, 0, 0, -r * 1.2, r * 1.4, -r * 0.1, 8), 0.04), INK, m);
      break;
    }
    case 'dot':
      c.fill(ellipse(0, 0, r * 0.38, r * 0.55), INK, m);
      c.fill(ellipse(r * 0.1, -r * 0.2, r * 0.12, r * 0.12), WHITE, m);
      break;
    case 'sleepy':
      c.fill(ellipse(0, 0, r, r * 0.8), WHITE, m);
      c.fill(ellipse(0, r * 0.15, r * 0.55, r * 0.55), s.iris, m);
      c.fill(ellipse(0, r * 0.15, r * 0.25, r * 0.25), pupil, m);
      c.fill(polygon([-r * 1.2, -r, r * 1.2, -r, r * 1.2, -r * 0.05, -r * 1.2, -r * 0.05]), shade(s.skin, 0.92), m);
      c.fill(stroke([-r * 1.05, -r * 0.05, r * 1.05, -r * 0.05], 0.035), INK, m);
      break;
    case 'happy':
      c.fill(stroke(curve(-r, r * 0.3, 0, -r * 1.2, r, r * 0.3), 0.05), INK, m);
      break;
  }
}

function drawBrow(s: Scene, m: Affine): void {
  const r = s.id.eyes.size;
  const y = -r * (s.id.eyes.kind === 'anime' ? 2.3 : 1.9);
  const brow = shade(s.hair, 0.7);
  const inner = -r * 1.1; // towards the nose (eye-local x is mirrored for the left eye)
  const outer = r * 1.2;
  switch (s.id.brows) {
    case 'none':
      break;
    case 'thin':
      s.canvas.fill(stroke(curve(inner, y, 0, y - r * 0.5, outer, y + r * 0.1), 0.03), brow, m);
      break;
    case 'thick':
      s.canvas.fill(stroke(curve(inner, y, 0, y - r * 0.4, outer, y), 0.08), brow, m);
      break;
    case 'angry':
      s.canvas.fill(stroke([inner, y + r * 0.5, outer, y - r * 0.4], 0.06), brow, m);
      break;
    case 'worried':
      s.canvas.fill(stroke([inner, y - r * 0.5, outer, y + r * 0.3], 0.05), brow, m);
      break;
  }
}

function drawNose(s: Scene): void {
  const m = at(s, 1.3);
  const c = s.canvas;
  const dark = shade(s.skin, 0.72);
  const y = 0.25 + s.id.eyes.height * 0.5;
  switch (s.id.nose) {
    case 'none':
      break;
    case 'dot':
      c.fill(ellipse(0, y, 0.035, 0.03), dark, m);
      break;
    case 'hook':
      c.fill(stroke([0.02, y - 0.2, 0.08, y, -0.03, y + 0.04], 0.03), dark, m);
      break;
    case 'triangle':
      c.fill(polygon([0, y - 0.12, 0.08, y + 0.05, -0.08, y + 0.05]), dark, m, 0.6);
      break;
    case 'button':
      c.fill(ellipse(0, y, 0.09, 0.07), shade(s.skin, 0.88), m);
      c.fill(ellipse(0.03, y - 0.02, 0.025, 0.02), WHITE, m, 0.6);
      break;
  }
}

function drawMouth(s: Scene): void {
  const m = at(s, 1);
  const c = s.canvas;
  const { kind, width: mw, y } = s.id.mouth;
  const lips: Rgb = [0.55, 0.12, 0.15];
  switch (kind) {
    case 'smile':
      c.fill(stroke(curve(-mw, y - 0.04, 0, y + 0.12, mw, y - 0.04), 0.035), INK, m);
      break;
    case 'grin': {
      const pts = [...curve(-mw, y - 0.03, 0, y + 0.3, mw, y - 0.03, 10)];
      c.fill(polygon(pts), lips, m);
      c.fill(ellipse(0, y + 0.09, mw * 0.45, 0.05), [0.95, 0.5, 0.55], m);
      break;
    }
    case 'flat':
      c.fill(stroke([-mw * 0.8, y, mw * 0.8, y], 0.035), INK, m);
      break;
    case 'frown':
      c.fill(stroke(curve(-mw * 0.8, y + 0.06, 0, y - 0.08, mw * 0.8, y + 0.06), 0.035), INK, m);
      break;
    case 'cat':
      c.fill(stroke([-mw, y - 0.03, -mw / 2, y + 0.05, 0, y - 0.01, mw / 2, y + 0.05, mw, y - 0.03], 0.03), INK, m);
      break;
    case 'o':
      c.fill(ellipse(0, y + 0.02, mw * 0.35, mw * 0.42), lips, m);
      break;
    case 'teeth':
      c.fill(polygon([-mw, y - 0.05, mw, y - 0.05, mw * 0.8, y + 0.08, -mw * 0.8, y + 0.08]), WHITE, m);
      c.fill(stroke([-mw, y - 0.05, mw, y - 0.05, mw * 0.8, y + 0.08, -mw * 0.8, y + 0.08], 0.025, true), INK, m);
      c.fill(stroke([-mw * 0.9, y + 0.015, mw * 0.9, y + 0.015], 0.015), INK, m);
      break;
    case 'smirk':
      c.fill(stroke(curve(-mw * 0.8, y + 0.02, mw * 0.2, y + 0.06, mw, y - 0.08), 0.035), INK, m);
      break;
  }
}

/** Marks that sit on the skin, drawn before eyes and mouth. */
function drawSkinMarks(s: Scene): void {
  const c = s.canvas;
  const m = at(s, 0.9);
  const detail = new Rng(s.id.detail);
  for (const mark of s.id.marks) {
    const colour = ACCENT[mark.colour];
    const cheekX = s.id.eyes.spacing + 0.05;
    const cheekY = s.id.eyes.height + 0.28;
    switch (mark.kind) {
      case 'freckles':
        for (let k = 0; k < 7; k++) {
          const fx = detail.range(0.12, 0.3);
          const fy = detail.range(-0.07, 0.07);
          for (const side of [-1, 1]) c.fill(ellipse(side * (cheekX - 0.2 + fx), cheekY + fy, 0.022, 0.022), shade(s.skin, 0.6), m);
        }
        break;
      case 'blush':
        for (const side of [-1, 1]) c.fill(ellipse(side * cheekX, cheekY, 0.14, 0.08), [1, 0.45, 0.55], m, 0.45);
        break;
      case 'scar':
        c.fill(stroke([mark.side * 0.15, -0.2, mark.side * 0.42, 0.05, mark.side * 0.5, 0.35], 0.035), [0.6, 0.25, 0.25], m);
        break;
      case 'mole':
        c.fill(ellipse(mark.side * (0.25 + 0.1 * mark.variant), 0.45 + 0.1 * mark.variant, 0.03, 0.03), INK, m);
        break;
      case 'whiskers':
        for (const side of [-1, 1]) for (const dy of [-0.05, 0.03, 0.11]) c.fill(stroke([side * 0.3, cheekY + dy * 0.5, side * 0.62, cheekY + dy], 0.02), INK, m);
        break;
      case 'paint':
        for (const side of [-1, 1]) for (const dx of [0, 0.09]) c.fill(stroke([side * (cheekX - 0.05 + dx), cheekY - 0.08, side * (cheekX - 0.08 + dx), cheekY + 0.08], 0.045), colour, m);
        break;
      case 'beard': {
        const [w, , chin] = s.id.face;
        const low = curve(-w * 0.9, 0.3, 0, chin * 1.55, w * 0.9, 0.3, 12);
        const high = curve(w * 0.75, 0.35, 0, s.id.mouth.y + 0.1, -w * 0.75, 0.35, 8);
        c.fill(polygon([...low, ...high]), s.hair, m);
        break;
      }
      default:
        break;
    }
  }
}

/** Accessories worn over the face and hair. */
function drawAccessories(s: Scene): void {
  const c = s.canvas;
  const [w] = s.id.face;
  const { spacing, height, size: r } = s.id.eyes;
  for (const mark of s.id.marks) {
    const colour = ACCENT[mark.colour];
    switch (mark.kind) {
      case 'glasses': {
        const m = at(s, 1.1);
        const rr = r * 1.7;
        const frameColour = ACCENT[mark.colour % 5]; // not the white accent, which would vanish on pale skin
        for (const side of [-1, 1]) {
          const frame =
            mark.variant === 0
              ? outline(side * spacing, height, 20, (t) => [rr * Math.cos(t), rr * Math.sin(t)])
              : [side * spacing - rr, height - rr * 0.8, side * spacing + rr, height - rr * 0.8, side * spacing + rr, height + rr * 0.8, side * spacing - rr, height + rr * 0.8];
          c.fill(stroke(frame, 0.04, true), frameColour, m);
        }
        c.fill(stroke([-spacing + rr, height, spacing - rr, height], 0.035), frameColour, m);
        break;
      }
      case 'earrings': {
        const m = at(s, -0.4);
        for (const side of [-1, 1]) c.fill(ellipse(side * w * 0.97, 0.3, 0.05, 0.05), mark.variant ? [0.95, 0.8, 0.25] : [0.8, 0.82, 0.86], m);
        break;
      }
      case 'hat': {
        const m = at(s, 0.1);
        if (mark.variant === 0) {
          c.fill(polygon(outline(0, -0.62, 24, (t) => [(w + 0.14) * Math.cos(t), t > Math.PI ? 0.62 * Math.sin(t) : 0.08 * Math.sin(t)])), colour, m);
          c.fill(polygon([-(w + 0.16), -0.66, w + 0.16, -0.66, w + 0.16, -0.5, -(w + 0.16), -0.5]), shade(colour, 0.7), m);
        } else {
          c.fill(polygon(outline(0, -0.6, 24, (t) => [(w + 0.08) * Math.cos(t), t > Math.PI ? 0.6 * Math.sin(t) : 0])), colour, m);
          c.fill(ellipse(mark.side * 0.45, -0.6, 0.55, 0.08), shade(colour, 0.75), m);
        }
        break;
      }
      case 'eyepatch': {
        const m = at(s, 1);
        const side = mark.side;
        c.fill(stroke([-side * w, -0.4, side * spacing, height, side * w, height + 0.05], 0.03), INK, m);
        c.fill(ellipse(mark.side * spacing, height, r * 1.5, r * 1.3), INK, m);
        break;
      }
      case 'headband': {
        const m = at(s, 0.2);
        c.fill(stroke(curve(-w - 0.05, -0.5, 0, -0.75, w + 0.05, -0.5), 0.11), colour, m);
        break;
      }
      default:
        break;
    }
  }
}

function drawHead(s: Scene): void {
  const { canvas, id } = s;
  drawBackHair(s);
  drawEars(s);
  canvas.fill(polygon(headOutline(id.face)), s.skin, s.head);
  drawSkinMarks(s);
  const { spacing, height, tilt } = id.eyes;
  for (const side of [-1, 1] as const) {
    const m = compose(at(s, 1), placement(side * spacing, height, 1, side * tilt, side));
    drawEye(s, m);
    drawBrow(s, m);
  }
  drawNose(s);
  drawMouth(s);
  drawFrontHair(s);
  drawAccessories(s);
}

function drawBackground(canvas: Canvas, rng: Rng, clutter: number): void {
  canvas.gradient(randomColour(rng), randomColour(rng), rng.range(0, 2 * Math.PI));
  const size = canvas.size;
  const px = placement(0, 0, size);
  for (let k = 0; k < clutter; k++) {
    const x = rng.next();
    const y = rng.next();
    const r = rng.range(0.04, 0.2);
    const colour = randomColour(rng);
    const opacity = rng.range(0.5, 1);
    switch (rng.int(4)) {
      case 0:
        canvas.fill(ellipse(x, y, r, r * rng.range(0.5, 1.5)), colour, px, opacity);
        break;
      case 1:
        canvas.fill(polygon([x - r, y - r, x + r, y - r * 0.5, x + r * 0.6, y + r, x - r * 0.8, y + r * 0.7]), colour, px, opacity);
        break;
      case 2:
        canvas.fill(stroke([x - r * 2, y, x, y + rng.signed() * r, x + r * 2, y + rng.signed() * r], r * 0.3), colour, px, opacity);
        break;
      default:
        canvas.fill(polygon([x, y - r, x + r, y + r, x - r, y + r]), colour, px, opacity);
        break;
    }
  }
}

function applyLightingAndNoise(canvas: Canvas, rng: Rng, d: SynthDifficulty): void {
  const strength = rng.signed() * d.lighting;
  const angle = rng.range(0, 2 * Math.PI);
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  const half = canvas.size / 2;
  const rgb = canvas.rgb;
  for (let y = 0; y < canvas.size; y++) {
    for (let x = 0; x < canvas.size; x++) {
      const light = 1 + strength * (((x + 0.5 - half) * dx + (y + 0.5 - half) * dy) / half);
      const o = (y * canvas.size + x) * 3;
      for (let ch = 0; ch < 3; ch++) rgb[o + ch] = rgb[o + ch] * light + (d.noise > 0 ? d.noise * rng.normal() : 0);
    }
  }
}

/**
 * Paints one image of `identity`. With `evidence`, the head is drawn small in a random quadrant over heavier
 * clutter and the returned region says where.
 */
export function renderFace(
  identity: Identity,
  imageSeed: number,
  size: number,
  difficulty: Partial<SynthDifficulty> = {},
  evidence = false,
): { rgb: Buffer; region?: EvidenceRegion } {
  const d = { ...DEFAULT_DIFFICULTY, ...difficulty };
  const rng = new Rng(imageSeed);
  const canvas = new Canvas(size);
  drawBackground(canvas, rng, evidence ? d.clutter * 3 : d.clutter);

  const yaw = rng.signed() * d.yaw;
  const rotation = (rng.signed() * d.rotation * Math.PI) / 180;
  const scale = rng.range(d.scale[0], d.scale[1]);
  let cx: number;
  let cy: number;
  let unit: number;
  let quadrant = 0;
  if (evidence) {
    quadrant = rng.int(4);
    unit = size * 0.1 * scale;
    cx = size * (quadrant % 2 ? 0.75 : 0.25) + rng.signed() * size * 0.03;
    cy = size * (quadrant < 2 ? 0.25 : 0.75) + rng.signed() * size * 0.03;
  } else {
    unit = size * 0.26 * scale;
    cx = size * (0.5 + rng.signed() * d.shift);
    cy = size * (0.46 + rng.signed() * d.shift);
  }
  const head = placement(cx, cy, unit, rotation, 1 - 0.25 * Math.abs(yaw));
  const scene: Scene = {
    canvas,
    id: identity,
    head,
    yaw,
    skin: jitterColour(SKIN[identity.skin], d.colourJitter, rng),
    hair: jitterColour(HAIR[identity.hair], d.colourJitter, rng),
    iris: jitterColour(IRIS[identity.eyes.colour], d.colourJitter, rng),
  };
  if (!evidence) {
    // Shoulders in a random shirt colour: present in every image, never identity.
    canvas.fill(polygon([-0.6, 1.05, 0.6, 1.05, 1.7, 2.4, -1.7, 2.4]), randomColour(rng), head);
    canvas.fill(polygon([-0.26, 0.5, 0.26, 0.5, 0.26, 1.15, -0.26, 1.15]), shade(scene.skin, 0.85), head);
  }
  drawHead(scene);
  if (rng.chance(d.occlusion)) {
    const ox = rng.range(-0.7, 0.7);
    const oy = rng.range(-0.6, 0.9);
    const r = rng.range(0.2, 0.4);
    const shape = rng.chance(0.5) ? ellipse(ox, oy, r, r * rng.range(0.6, 1.2)) : polygon([ox - r, oy - r, ox + r, oy - r * 0.7, ox + r * 0.8, oy + r, ox - r, oy + r * 0.6]);
    canvas.fill(shape, randomColour(rng), head);
  }
  applyLightingAndNoise(canvas, rng, d);

  const rgb = canvas.toRgb8();
  if (!evidence) return { rgb };
  const half = size / 2;
  const clip = (v: number) => Math.min(size, Math.max(0, Math.round(v)));
  const reach = unit * 1.55;
  return {
    rgb,
    region: {
      quadrant,
      box: { x1: quadrant % 2 ? half : 0, y1: quadrant < 2 ? 0 : half, x2: quadrant % 2 ? size : half, y2: quadrant < 2 ? half : size },
      face: { x1: clip(cx - reach), y1: clip(cy - reach), x2: clip(cx + reach), y2: clip(cy + reach) },
    },
  };
}

function encodePng(rgb: Buffer, size: number): Buffer {
  return PNG.sync.write({ width: size, height: size, data: rgb } as PNG, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

const MARKER = 'synth.json';

/** Refuses to write into a folder with foreign content; clears what an earlier run of the generator wrote. */
function prepareOut(out: string): void {
  if (!existsSync(out)) {
    mkdirSync(out, { recursive: true });
    return;
  }
  const entries = readdirSync(out);
  if (entries.length === 0) return;
  if (!entries.includes(MARKER)) {
    throw new DataError(out, 'the output folder is not empty and was not written by the generator; choose an empty or new folder');
  }
  const previous = JSON.parse(readFileSync(join(out, MARKER), 'utf8')) as { classes?: string[] };
  for (const name of previous.classes ?? []) rmSync(join(out, name), { recursive: true, force: true });
  rmSync(join(out, 'regions.json'), { force: true });
}

/** Writes `identities` x `perIdentity` PNGs to out/<identity>/<nnnn>.png, plus synth.json (and regions.json). */
export function generateSynthFaces(options: SynthOptions): SynthResult {
  const { out, identities, perIdentity, size, seed } = options;
  if (!(identities >= 1 && perIdentity >= 1 && size >= 16)) {
    throw new DataError(out, `need identities >= 1, perIdentity >= 1 and size >= 16 (got ${identities}, ${perIdentity}, ${size})`);
  }
  const difficulty = { ...DEFAULT_DIFFICULTY, ...options.difficulty };
  const people = synthIdentities(identities, seed, { sourceTask: options.sourceTask, difficulty });
  prepareOut(out);
  const space = options.sourceTask ? 2 : 1;
  const digits = Math.max(4, String(perIdentity - 1).length);
  const files: string[] = [];
  const regions: Record<string, EvidenceRegion> = {};
  people.forEach((person, i) => {
    mkdirSync(join(out, person.name), { recursive: true });
    for (let k = 0; k < perIdentity; k++) {
      const rel = `${person.name}/${String(k).padStart(digits, '0')}.png`;
      const image = renderFace(person, hashSeed(seed, space, i, k, 0x1ace), size, difficulty, options.evidenceRegion);
      writeFileSync(join(out, rel), encodePng(image.rgb, size));
      files.push(rel);
      if (image.region) regions[rel] = image.region;
    }
  });
  const classes = people.map((p) => p.name);
  writeFileSync(
    join(out, MARKER),
    JSON.stringify({ generator: 'celgrad synth', seed, identities, perIdentity, size, sourceTask: !!options.sourceTask, evidenceRegion: !!options.evidenceRegion, difficulty, classes }, null, 1),
  );
  if (options.evidenceRegion) {
    writeFileSync(join(out, 'regions.json'), JSON.stringify(regions, null, 1));
    return { out, classes, files, regions };
  }
  return { out, classes, files };
}
