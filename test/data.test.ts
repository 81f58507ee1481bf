// experiments/data: synthetic faces, dataset readers (ImageFolder, iCartoonFace), split, transforms, loader, stats.
// Everything is built in a temp folder; no fixture images are needed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DataError } from '../engine/errors.ts';
import {
  DataLoader,
  dataStats,
  detectLayout,
  formatStats,
  generateSynthFaces,
  hashSeed,
  loadImage,
  planTransform,
  randomResizedCropParams,
  readDataset,
  readSplit,
  stratifiedSplit,
  synthIdentities,
  trainTransform,
  valTransform,
  writeSplit,
  type Batch,
  type EvidenceRegion,
  type Sample,
} from '../experiments/data/index.ts';
import { roundHalfEven } from '../experiments/data/transforms.ts';

const tmp = mkdtempSync(join(tmpdir(), 'celgrad-data-'));
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const synthDir = join(tmp, 'synth');
generateSynthFaces({ out: synthDir, identities: 4, perIdentity: 5, size: 48, seed: 1 });

const files = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)).sort();
function mad(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}
async function rawPixels(path: string) {
  return new Uint8Array((await sharp(path).raw().toBuffer({ resolveWithObject: true })).data);
}
async function throwsData(fn: () => unknown, pattern: RegExp) {
  try {
    await fn();
  } catch (e) {
    assert.instance(e, DataError);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable('expected a DataError');
}
async function collect(loader: DataLoader, epoch: number, startBatch = 0): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch, { startBatch })) out.push(b);
  return out;
}

test('synth: same seed gives the same bytes, another seed different ones', () => {
  const a = generateSynthFaces({ out: join(tmp, 'sa'), identities: 3, perIdentity: 2, size: 40, seed: 5 });
  const b = generateSynthFaces({ out: join(tmp, 'sb'), identities: 3, perIdentity: 2, size: 40, seed: 5 });
  generateSynthFaces({ out: join(tmp, 'sc'), identities: 3, perIdentity: 2, size: 40, seed: 6 });
  assert.equal(a.files, b.files);
  assert.equal(a.files.length, 6);
  for (const rel of a.files) {
    assert.ok(readFileSync(join(tmp, 'sa', rel)).equals(readFileSync(join(tmp, 'sb', rel))), rel);
    assert.not.ok(readFileSync(join(tmp, 'sa', rel)).equals(readFileSync(join(tmp, 'sc', rel))), rel);
  }
  // Regenerating into a folder the generator wrote replaces it; a foreign non-empty folder is refused.
  generateSynthFaces({ out: join(tmp, 'sa'), identities: 2, perIdentity: 1, size: 40, seed: 5 });
  assert.equal(readdirSync(join(tmp, 'sa')).filter((n) => !n.endsWith('.json')).sort(), ['id000', 'id001']);
  assert.throws(() => generateSynthFaces({ out: join(tmp, 'sa', 'id000'), identities: 1, perIdentity: 1, size: 40, seed: 5 }), /not empty/);
});

test('synth: identities differ in several attributes but share colours; the source task is another set', async () => {
  const people = synthIdentities(20, 1);
  const attrs = (p: (typeof people)[number]) => [p.faceShape, p.skin, p.hair, p.hairStyle, p.ears, p.eyes.kind, p.eyes.colour, p.brows, p.nose, p.mouth.kind, p.marks.map((m) => m.kind).sort().join()];
  for (let i = 0; i < people.length; i++) {
    for (let j = 0; j < i; j++) {
      const diff = attrs(people[i]).filter((v, k) => v !== attrs(people[j])[k]).length;
      assert.ok(diff >= 3, `${people[i].name} vs ${people[j].name}: ${diff} differences`);
    }
  }
  // Colour alone cannot identify: skin and hair colours repeat across identities.
  assert.ok(new Set(people.map((p) => p.skin)).size < people.length);
  assert.ok(new Set(people.map((p) => p.hair)).size < people.length);
  const source = synthIdentities(20, 1, { sourceTask: true });
  assert.ok(source.every((p) => p.name.startsWith('src')));
  assert.ok(source.filter((p, i) => JSON.stringify(attrs(p)) !== JSON.stringify(attrs(people[i]))).length === 20);
  // Different people are not drawn the same.
  const a = await rawPixels(join(synthDir, 'id000', '0000.png'));
  const b = await rawPixels(join(synthDir, 'id001', '0000.png'));
  assert.ok(mad(a, b) > 10, `mean abs difference ${mad(a, b)}`);
});

test('synth: evidence-region images record the quadrant that holds the face', () => {
  const r = generateSynthFaces({ out: join(tmp, 'ev'), identities: 2, perIdentity: 4, size: 64, seed: 2, evidenceRegion: true });
  const regions = JSON.parse(readFileSync(join(tmp, 'ev', 'regions.json'), 'utf8')) as Record<string, EvidenceRegion>;
  assert.equal(Object.keys(regions).sort(), [...r.files].sort());
  for (const reg of Object.values(regions)) {
    const { box, face } = reg;
    assert.equal(box.x2 - box.x1, 32);
    assert.equal(box.x1, reg.quadrant % 2 ? 32 : 0);
    assert.equal(box.y1, reg.quadrant < 2 ? 0 : 32);
    const cx = (face.x1 + face.x2) / 2;
    const cy = (face.y1 + face.y2) / 2;
    assert.ok(cx >= box.x1 && cx < box.x2 && cy >= box.y1 && cy < box.y2, JSON.stringify(reg));
  }
});

test('ImageFolder: the generated set reads back through the reader, first N classes in order', async () => {
  const data = await readDataset(synthDir);
  assert.is(data.layout, 'imagefolder');
  assert.equal(data.classes, ['id000', 'id001', 'id002', 'id003']);
  assert.is(data.samples.length, 20);
  assert.equal(data.problems, []);
  assert.equal(data.sizeRange, { width: [48, 48], height: [48, 48] });
  for (const s of data.samples) assert.ok(s.path.includes(`/${data.classes[s.label]}/`));
  const two = await readDataset(synthDir, { classes: 2 });
  assert.equal(two.classes, ['id000', 'id001']);
  assert.is(two.samples.length, 10);
});

test('split: stratified, at least one validation image per class, deterministic, manifest round trip', () => {
  const counts = [1, 2, 5, 10, 7];
  const classes = counts.map((_, i) => `c${i}`);
  const samples: Sample[] = counts.flatMap((n, label) => Array.from({ length: n }, (_, k) => ({ path: join(tmp, 'root', `c${label}`, `${k}.png`), label })));
  const split = stratifiedSplit(samples, classes, { seed: 3 });
  const perClass = (list: Sample[]) => classes.map((_, c) => list.filter((s) => s.label === c).length);
  assert.equal(perClass(split.val), [0, 1, 1, 2, 1]);
  assert.equal(perClass(split.train), [1, 1, 4, 8, 6]);
  assert.is(new Set([...split.train, ...split.val].map((s) => s.path)).size, samples.length);
  assert.equal(stratifiedSplit(samples, classes, { seed: 3 }), split);
  const other = stratifiedSplit(samples, classes, { seed: 4 });
  assert.not.equal(other.val.map((s) => s.path), split.val.map((s) => s.path));
  assert.equal(perClass(stratifiedSplit(samples, classes, { seed: 3, fraction: 0.5 }).val), [0, 1, 3, 5, 4]);
  const file = join(tmp, 'split.json');
  writeSplit(file, split, join(tmp, 'root'));
  const manifest = JSON.parse(readFileSync(file, 'utf8'));
  assert.is(manifest.train[0].path, 'c0/0.png');
  assert.equal(readSplit(file), split);
  assert.is(readSplit(file, '/moved').val[0].path.startsWith('/moved/'), true);
});

test('bad data: zero-byte, truncated and garbage files and empty folders are skipped and reported', async () => {
  const dir = join(tmp, 'corrupt');
  for (const f of files(synthDir)) {
    const rel = f.slice(synthDir.length + 1);
    if (!rel.includes('/')) continue;
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    copyFileSync(f, join(dir, rel));
  }
  const good = readFileSync(join(synthDir, 'id001', '0001.png'));
  writeFileSync(join(dir, 'id000', 'zero.png'), Buffer.alloc(0));
  writeFileSync(join(dir, 'id001', 'truncated.png'), good.subarray(0, Math.floor(good.length / 2)));
  writeFileSync(join(dir, 'id002', 'garbage.jpg'), Buffer.from('this is not a jpeg at all, just text'.repeat(20)));
  writeFileSync(join(dir, 'id002', 'notes.txt'), 'ignored: not an image extension');
  mkdirSync(join(dir, 'id004-empty'));
  const data = await readDataset(dir);
  const reasons = Object.fromEntries(data.problems.map((p) => [p.path.slice(dir.length + 1), p.reason]));
  assert.match(reasons['id000/zero.png'], /0 bytes/);
  assert.match(reasons['id002/garbage.jpg'], /not a readable image/);
  assert.match(reasons['id004-empty'], /empty identity folder/);
  assert.equal(data.classes, ['id000', 'id001', 'id002', 'id003']);
  // The header of the truncated file is fine; a full decode catches it.
  assert.ok(data.samples.some((s) => s.path.endsWith('truncated.png')));
  const decoded = await readDataset(dir, { check: 'decode' });
  assert.match(decoded.problems.find((p) => p.path.endsWith('truncated.png'))!.reason, /cannot decode/);
  assert.is(decoded.samples.length, 20);

  // Decode failures found later, in the workers, are reported and the batch keeps its size.
  const seen: string[] = [];
  const loader = new DataLoader({ samples: data.samples, batchSize: 7, transform: valTransform(32), workers: 2, onProblem: (p) => seen.push(p.path) });
  const batches = await collect(loader, 0);
  const again = await collect(loader, 1);
  await loader.close();
  assert.equal(seen, [join(dir, 'id001', 'truncated.png')]);
  assert.equal(loader.problems.map((p) => p.path), seen);
  assert.equal(batches.map((b) => b.labels.length), [7, 7, 7]);
  const paths = batches.flatMap((b) => b.paths);
  assert.not.ok(paths.some((p) => p.endsWith('truncated.png')));
  // Without shuffling, the replacement is the next sample in order: id001's files sort as 0000..0004, truncated.png.
  const slot = data.samples.findIndex((s) => s.path.endsWith('truncated.png'));
  assert.is(paths[slot], data.samples[slot + 1].path);
  assert.is(batches.flatMap((b) => [...b.labels])[slot], data.samples[slot + 1].label);
  assert.equal(again.flatMap((b) => b.paths), paths);

  const stats = await dataStats(dir, { check: 'decode' });
  assert.equal([stats.identities, stats.images, stats.width, stats.height, stats.perIdentity], [4, 20, [48, 48], [48, 48], [5, 5]]);
  assert.is(stats.problems.length, 4);
  const text = formatStats(stats);
  assert.match(text, /identities\s+4/);
  assert.match(text, /unreadable\s+4/);
  assert.match(text, /truncated\.png: cannot decode/);
});

/** A tiny iCartoonFace recognition layout: each image is a blue frame with a red face square where its box says. */
async function buildICartoonFace(): Promise<string> {
  const top = join(tmp, 'icf', 'personai_icartoonface_rectrain');
  const lines: string[] = [];
  for (let id = 0; id < 3; id++) {
    const folder = `personai_icartoonface_rectrain_${String(id).padStart(5, '0')}`;
    mkdirSync(join(top, 'icartoonface_rectrain', folder), { recursive: true });
    for (let k = 0; k < 3; k++) {
      const file = `${folder}_${String(k).padStart(7, '0')}.jpg`;
      const box = { x1: 10 + 7 * k, y1: 6 + 3 * id, x2: 50 + 7 * k, y2: 46 + 3 * id };
      const red = await sharp({ create: { width: box.x2 - box.x1, height: box.y2 - box.y1, channels: 3, background: { r: 230, g: 20, b: 20 } } })
        .png()
        .toBuffer();
      await sharp({ create: { width: 80, height: 60, channels: 3, background: { r: 20, g: 40, b: 220 } } })
        .composite([{ input: red, left: box.x1, top: box.y1 }])
        .jpeg({ quality: 95 })
        .toFile(join(top, 'icartoonface_rectrain', folder, file));
      if (id === 1 && k === 0) lines.push(`${folder}/${file}\t90\t70\t120\t100`); // entirely outside the 80x60 image
      else if (id === 1 && k === 1) lines.push(`${folder}/${file}\t30\t20\t30\t40`); // empty
      else if (id === 2 && k === 2) continue; // no box at all
      else lines.push(`${folder}/${file}\t${box.x1}\t${box.y1}\t${box.x2}\t${box.y2}`);
    }
  }
  writeFileSync(join(top, 'icartoonface_rectrain_det.txt'), lines.join('\n') + '\n');
  return top;
}

test('iCartoonFace: layout detected from the top, inner or parent folder; face boxes cropped; bad boxes reported', async () => {
  const top = await buildICartoonFace();
  const inner = join(top, 'icartoonface_rectrain');
  for (const dir of [top, inner, join(tmp, 'icf')]) assert.equal(detectLayout(dir), { layout: 'icartoonface', root: inner, boxes: join(top, 'icartoonface_rectrain_det.txt') });
  const data = await readDataset(inner);
  assert.is(data.layout, 'icartoonface');
  assert.equal(data.classes, ['personai_icartoonface_rectrain_00000', 'personai_icartoonface_rectrain_00001', 'personai_icartoonface_rectrain_00002']);
  assert.equal(data.samples.map((s) => s.label), [0, 0, 0, 1, 2, 2]);
  assert.equal(data.samples[1].box, { x1: 17, y1: 6, x2: 57, y2: 46 });
  const reasons = data.problems.map((p) => `${p.path.split('/').pop()}: ${p.reason}`);
  assert.is(reasons.length, 3);
  assert.match(reasons[0], /_00001_0000000\.jpg: face box \(90, 70, 120, 100\) is empty or outside the 80x60 image/);
  assert.match(reasons[1], /_00001_0000001\.jpg: face box .* is empty/);
  assert.match(reasons[2], /_00002_0000002\.jpg: no face box/);
  assert.equal((await readDataset(top, { classes: 2 })).samples.length, 4);

  // The crop keeps only the red face: every pixel of the validation transform is red, up to JPEG's chroma bleed
  // at the square's edge (blue would be about 3.6 away in the red channel).
  for (const s of data.samples) {
    const x = await loadImage(s.path, valTransform(24), { box: s.box });
    const expected = [230, 20, 20].map((v, c) => (v / 255 - MEAN[c]) / STD[c]);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 24 * 24; i++) assert.ok(Math.abs(x[c * 576 + i] - expected[c]) < 0.4, `${s.path} channel ${c} pixel ${i}: ${x[c * 576 + i]}`);
  }
});

test('layouts: a missing folder and a folder of neither layout give one clear DataError', async () => {
  await throwsData(() => readDataset(join(tmp, 'nope')), /no such folder[\s\S]*ImageFolder[\s\S]*iCartoonFace/);
  mkdirSync(join(tmp, 'flat', 'sub'), { recursive: true });
  copyFileSync(join(synthDir, 'id000', '0000.png'), join(tmp, 'flat', 'a.png'));
  await throwsData(() => readDataset(join(tmp, 'flat')), /no identity folders with images[\s\S]*expected one of these layouts/);
  mkdirSync(join(tmp, 'nobox', 'icartoonface_rectrain', 'x'), { recursive: true });
  await throwsData(() => readDataset(join(tmp, 'nobox')), /icartoonface_rectrain_det\.txt: missing/);
});

test('transforms: torchvision crop geometry, Python rounding', () => {
  assert.equal([2.5, 3.5, -2.5, 0.5, 1.4].map(roundHalfEven), [2, 4, -2, 0, 1]);
  // No attempt fits a 100x10 image at scale ~1 with a square-ish ratio: fallback to the centred 4/3 crop.
  assert.equal(randomResizedCropParams(100, 10, () => 0.999, [0.9, 1], [3 / 4, 4 / 3]), { left: 43, top: 0, width: 13, height: 10 });
  assert.equal(randomResizedCropParams(10, 100, () => 0.999, [0.9, 1], [3 / 4, 4 / 3]), { left: 0, top: 43, width: 10, height: 13 });
  // A fitting attempt: area 0.5 * 10000, ratio exp(mid) = 1 -> 71x71 at floor(r * (100 - 71 + 1)).
  assert.equal(randomResizedCropParams(100, 100, () => 0.5, [0, 1], [1 / 2, 2]), { left: 15, top: 15, width: 71, height: 71 });
  for (let seed = 0; seed < 200; seed++) {
    const p = planTransform(trainTransform(32), 90, 70, { x1: 5, y1: 3, x2: 85, y2: 63 }, seed);
    const area = (p.extract.width * p.extract.height) / (80 * 60);
    assert.ok(p.extract.left >= 5 && p.extract.top >= 3 && p.extract.left + p.extract.width <= 85 && p.extract.top + p.extract.height <= 63);
    assert.ok(area <= 1 && (area >= 0.079 || p.extract.width === 80 || p.extract.height === 60), `area ${area}`);
  }
  // Validation: shorter side to round(224 / 0.875) = 256, longer int(256 * 1000 / 500), centre crop offsets round((dim - 224) / 2).
  assert.equal(planTransform(valTransform(224), 1000, 500, undefined, 0), { extract: { left: 0, top: 0, width: 1000, height: 500 }, resize: [512, 256], post: { left: 144, top: 16, width: 224, height: 224 }, flip: false });
  assert.equal(planTransform(valTransform(299), 300, 301, undefined, 0).resize, [342, 343]);
});

test('transforms: CHW layout and ImageNet normalisation, checked by hand on single pixels; flip mirrors', async () => {
  // 64x64 gradient image; valTransform(56) resizes the shorter side to 64 (no change) and crops at (4, 4).
  const raw = Buffer.alloc(64 * 64 * 3);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) raw.set([x * 4, y * 4, (x + y) * 2], (y * 64 + x) * 3);
  const file = join(tmp, 'gradient.png');
  await sharp(raw, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(file);
  const v = await loadImage(file, valTransform(56));
  assert.is(v.length, 3 * 56 * 56);
  for (const [x, y] of [
    [0, 0],
    [10, 3],
    [55, 55],
  ]) {
    for (let c = 0; c < 3; c++) {
      const byHand = (raw[((y + 4) * 64 + x + 4) * 3 + c] / 255 - MEAN[c]) / STD[c];
      assert.ok(Math.abs(v[c * 56 * 56 + y * 56 + x] - byHand) < 1e-6, `pixel (${x}, ${y}) channel ${c}`);
    }
  }
  // (0, 0) of the red channel: input value 16 -> (16/255 - 0.485) / 0.229.
  assert.ok(Math.abs(v[0] - (16 / 255 - 0.485) / 0.229) < 1e-6);
  // Whole-image crop at scale 1 / ratio 1: a seed that flips gives the mirror of one that does not.
  const t = { kind: 'train' as const, size: 64, scale: [1, 1] as const, ratio: [1, 1] as const };
  const seeds = Array.from({ length: 20 }, (_, i) => i);
  const flipSeed = seeds.find((s) => planTransform(t, 64, 64, undefined, s).flip)!;
  const keepSeed = seeds.find((s) => !planTransform(t, 64, 64, undefined, s).flip)!;
  const flipped = await loadImage(file, t, { seed: flipSeed });
  const kept = await loadImage(file, t, { seed: keepSeed });
  for (let c = 0; c < 3; c++) for (const [x, y] of [[0, 0], [5, 9], [63, 20]]) assert.ok(Math.abs(flipped[c * 4096 + y * 64 + x] - kept[c * 4096 + y * 64 + 63 - x]) < 1e-6);
});

test('loader: identical batches across runs and worker counts, reshuffled per epoch, resumable mid-epoch', async () => {
  const { samples } = await readDataset(synthDir);
  const make = (workers: number, extra: { dropLast?: boolean } = {}) => new DataLoader({ samples, batchSize: 6, transform: trainTransform(32), seed: 9, shuffle: true, workers, ...extra });
  const one = make(1);
  const two = make(2);
  const a = await collect(one, 0);
  const b = await collect(two, 0);
  const a2 = await collect(one, 0);
  assert.equal(a.map((x) => x.labels.length), [6, 6, 6, 2]);
  assert.is(a[0].images.length, 6 * 3 * 32 * 32);
  for (const [x, y] of [
    [a, b],
    [a, a2],
  ]) {
    for (let i = 0; i < a.length; i++) {
      assert.equal(x[i].paths, y[i].paths);
      assert.equal([...x[i].labels], [...y[i].labels]);
      assert.ok(Buffer.from(x[i].images.buffer).equals(Buffer.from(y[i].images.buffer)), `batch ${i}`);
    }
  }
  for (const batch of a) batch.paths.forEach((p, k) => assert.is(samples.find((s) => s.path === p)!.label, batch.labels[k]));
  assert.is(new Set(a.flatMap((x) => x.paths)).size, 20);

  const e1 = await collect(one, 1);
  assert.not.equal(e1.flatMap((x) => x.paths), a.flatMap((x) => x.paths));
  const resumed = await collect(two, 1, 2);
  assert.equal(resumed.map((x) => x.paths), e1.slice(2).map((x) => x.paths));
  assert.ok(Buffer.from(resumed[0].images.buffer).equals(Buffer.from(e1[2].images.buffer)));

  // A worker's output equals the same transform run on this thread with the sample's (seed, epoch, index) seed.
  const index = samples.findIndex((s) => s.path === e1[1].paths[3]);
  const here = await loadImage(samples[index].path, trainTransform(32), { seed: hashSeed(9, 1, index) });
  assert.ok(Buffer.from(here.buffer).equals(Buffer.from(e1[1].images.slice(3 * 3072, 4 * 3072).buffer)));

  const dropping = make(2, { dropLast: true });
  assert.is(dropping.batchesPerEpoch, 3);
  await Promise.all([one.close(), two.close(), dropping.close()]);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
