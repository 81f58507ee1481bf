// Verification and identification (experiments/verify.ts): the ROC and TAR at FAR on hand-computed
// scores, the FAR resolution, identification top-1 by hand, gallery and pair sampling (determinism,
// counts, caps), and embeddings taken from a model's final-layer input, with and without a head attached.
// Scores are exact here (float64 on chosen values), so the comparisons are exact or within 1e-12.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import './gpu.ts';
import { Tensor, flatten, noGrad } from '../engine/index.ts';
import { Linear, Module, attachHead } from '../engine/nn/index.ts';
import {
  cosineSimilarity,
  evaluateEmbeddings,
  extractEmbeddings,
  identificationTop1,
  roc,
  samplePairs,
  splitGallery,
  tarAtFar,
  unitRows,
} from '../experiments/verify.ts';

const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

test('roc: one point per distinct score, ties accepted together, from (0, 0) to (1, 1)', () => {
  // Descending: 0.9 G, 0.8 G, 0.7 I, 0.4 G + 0.4 I (tie), 0.1 I, 0.0 I; 3 genuine, 4 impostor.
  const curve = roc([0.9, 0.4, 0.8], [0.7, 0.0, 0.4, 0.1]);
  assert.equal([...curve.thresholds], [Infinity, 0.9, 0.8, 0.7, 0.4, 0.1, 0.0]);
  assert.equal([...curve.fpr], [0, 0, 0, 1 / 4, 2 / 4, 3 / 4, 1]);
  assert.equal([...curve.tpr], [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1]);
  assert.is(curve.genuine, 3);
  assert.is(curve.impostors, 4);
  assert.throws(() => roc([], [0.5]), /genuine and impostor/);
});

test('tarAtFar: the highest TPR at FPR <= FAR, interpolated to the next point; null below 1 / impostors', () => {
  const curve = roc([0.9, 0.4, 0.8], [0.7, 0.0, 0.4, 0.1]);
  assert.is(tarAtFar(curve, 0.1), null, 'below the resolution 1/4');
  near(tarAtFar(curve, 0.25)!, 2 / 3, 'at the point (1/4, 2/3)');
  near(tarAtFar(curve, 0.375)!, 2 / 3 + (1 / 3) * 0.5, 'halfway from (1/4, 2/3) to (1/2, 1)');
  near(tarAtFar(curve, 1)!, 1, 'at FAR 1');
  // 1000 impostors at 0.000 .. 0.999; genuine at 1.5, 0.9985, 0.9965, 0.2.
  const impostors = Array.from({ length: 1000 }, (_, i) => i / 1000);
  const big = roc([1.5, 0.9985, 0.9965, 0.2], impostors);
  assert.is(tarAtFar(big, 1e-4), null, 'FAR 1e-4 with 1000 impostors');
  near(tarAtFar(big, 1e-3)!, 0.5, 'FAR 1e-3: one impostor (0.999) accepted, with genuine 1.5 and 0.9985');
  near(tarAtFar(big, 3e-3)!, 0.75, 'FAR 3e-3');
  near(tarAtFar(big, 1e-2)!, 0.75, 'FAR 1e-2');
});

test('identificationTop1 by hand: nearest gallery image by cosine, ties to the first in gallery order', () => {
  // Gallery 0 (1, 0) id 0, 2 (0, 1) id 1, 4 (-1, 0) id 2; probes 1, 3, 5.
  const data = [1, 0, 0.9, 0.1, 0, 1, 0.8, 0.6, -1, 0, 0.5, 0.5];
  const labels = [0, 0, 1, 1, 2, 1];
  const unit = unitRows(data, 2);
  // Probe 1 -> gallery 0 (right); probe 3 (0.8, 0.6) -> gallery 0 (wrong: id 1); probe 5 ties 0 and 2 -> 0 (wrong).
  near(identificationTop1(unit, 2, labels, [0, 2, 4], [1, 3, 5]), 1 / 3, 'top-1');
  near(identificationTop1(unit, 2, labels, [2, 0, 4], [5]), 1, 'the tie goes to gallery image 2 when it comes first');
  near(cosineSimilarity([1, 2, 2], [2, 0, 0]), 1 / 3, 'cosine');
  assert.is(cosineSimilarity([0, 0], [1, 1]), 0);
});

test('splitGallery: one image per identity (seeded), the rest probes; single-image identities only in the gallery', () => {
  const labels = [3, 1, 3, 3, 1, 7, 1, 3];
  const a = splitGallery(labels, 5);
  assert.equal(a, splitGallery(labels, 5), 'deterministic');
  assert.equal(a.gallery.map((i) => labels[i]).sort(), [1, 3, 7]);
  assert.equal([...a.gallery, ...a.probes].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.ok(a.gallery.includes(5), 'identity 7 has one image');
  const seen = new Set(Array.from({ length: 20 }, (_, s) => splitGallery(labels, s).gallery.join()));
  assert.ok(seen.size > 1, 'the seed chooses the gallery image');
});

test('samplePairs: all genuine pairs up to the cap, impostors >= genuine, seeded and deterministic', () => {
  const labels = Array.from({ length: 30 }, (_, i) => i % 6); // 6 identities x 5 images: 60 genuine, 375 impostor pairs
  const check = (p: ReturnType<typeof samplePairs>) => {
    for (const [i, j] of p.genuine) assert.ok(i < j && labels[i] === labels[j]);
    for (const [i, j] of p.impostor) assert.ok(i < j && labels[i] !== labels[j]);
    const keys = [...p.genuine, ...p.impostor].map(([i, j]) => i * 30 + j);
    assert.is(new Set(keys).size, keys.length, 'no pair twice');
  };
  const all = samplePairs(labels);
  assert.is(all.genuine.length, 60);
  assert.is(all.impostor.length, 375, 'the default 10000 impostors is capped at every different-identity pair');
  check(all);
  const a = samplePairs(labels, { seed: 3, maxGenuine: 40, impostors: 100 });
  assert.is(a.genuine.length, 40);
  assert.is(a.impostor.length, 100);
  check(a);
  assert.equal(a, samplePairs(labels, { seed: 3, maxGenuine: 40, impostors: 100 }), 'same seed, same pairs');
  assert.not.equal(a, samplePairs(labels, { seed: 4, maxGenuine: 40, impostors: 100 }), 'another seed, other pairs');
  assert.throws(() => samplePairs(labels, { impostors: 59 }), /fewer than the 60 genuine/);
});

test('evaluateEmbeddings: separated clusters give TAR 1 and top-1 1; FAR 1e-4 is null with 1008 impostors', () => {
  const [ids, per, dim] = [8, 6, 16];
  const labels = Int32Array.from({ length: ids * per }, (_, i) => Math.floor(i / per));
  const data = new Float32Array(ids * per * dim);
  labels.forEach((l, i) => {
    data[i * dim + l] = 1; // each identity along its own axis, with a small spread
    data[i * dim + ((l + 1) % dim)] = 0.05 * (i % per);
  });
  const r = evaluateEmbeddings({ data, dim, labels }, { seed: 1 });
  assert.is(r.genuinePairs, 8 * 15);
  assert.is(r.impostorPairs, (48 * 47) / 2 - 120);
  assert.equal(
    r.tar.map((t) => t.tar),
    [1, 1, null],
  );
  assert.is(r.top1, 1);
  assert.is(r.galleryImages, 8);
  assert.is(r.probes, 40);
  near(r.farResolution, 1 / 1008, 'resolution');
});

/** Images [N, 3, 4, 4] -> flatten -> Linear(48 -> 5) (the embedding) -> fc Linear(5 -> 2). */
class Tiny extends Module {
  readonly body: Linear;
  fc: Linear;
  constructor() {
    super();
    this.body = this.addModule('body', new Linear(48, 5));
    this.fc = this.addModule('fc', new Linear(5, 2));
  }
  forward(x: Tensor): Tensor {
    return this.fc.call(this.body.call(flatten(x, 1)));
  }
}

test('extractEmbeddings: the input of the final layer, batch by batch, with or without a head attached', async () => {
  const model = new Tiny().initialize(9);
  const images = Float32Array.from({ length: 7 * 48 }, (_, i) => Math.sin(i));
  const batches = async function* () {
    yield { images: images.subarray(0, 4 * 48), labels: Int32Array.of(0, 1, 0, 1) };
    yield { images: images.subarray(4 * 48), labels: Int32Array.of(1, 1, 0) };
  };
  const want = await noGrad(() => model.body.call(Tensor.fromArray(images, [7, 48]))).toArray();
  const plain = await extractEmbeddings(model, batches(), 4);
  assert.is(plain.dim, 5);
  assert.equal([...plain.labels], [0, 1, 0, 1, 1, 1, 0]);
  assert.equal([...plain.data], [...want]);
  const head = attachHead(model, 'arcface', 2, 1);
  const attached = await extractEmbeddings(model, batches(), 4);
  assert.equal([...attached.data], [...want]);
  head.dispose();
  model.dispose();
});

test.run();
