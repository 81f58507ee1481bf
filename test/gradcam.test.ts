// Grad-CAM through the engine: (1) against a float64 reference of the formula on a small network, so the
// forward hook, the activation's gradient and the channel weighting are all checked; (2) a known answer:
// when the class evidence (a synthetic face) sits in one quadrant of noise, a trained network's map
// peaks in that quadrant far more often than chance (1 in 4).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Adam, Rng, Tensor, crossEntropy, scopeAsync } from '../engine/index.ts';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../engine/nn/index.ts';
import { EASY_DIFFICULTY, generateSynthFaces, loadImage, readDataset, valTransform } from '../experiments/data/index.ts';
import { camOf } from '../experiments/explain/explain.ts';
import { gradCam } from '../experiments/explain/cam.ts';
import { conv2d as refConv2d } from './reference/conv2d.ts';
import { assertClose, type Arr } from './reference/tensor.ts';
import { toArr } from './gpu.ts';

test('Grad-CAM of a small network equals the float64 formula (hook, gradient, weights, ReLU)', async () => {
  const net = new Sequential(new Conv2d(3, 4, 3, { padding: 1 }), new ReLU(), new Conv2d(4, 5, 3, { stride: 2, padding: 1 }), new ReLU(), new AdaptiveAvgPool2d(1), new Flatten(), new Linear(5, 3));
  net.initialize(5);
  const x = Tensor.uniform([1, 3, 9, 9], -1, 1, 6);
  const image = await x.toArray();
  const result = await camOf(net, image, 9, { layer: '3', target: 2 });

  // Reference: A = relu(conv(relu(conv(x)))); S = W[2] . mean_ij(A) + b[2], so dS/dA_kij = W[2,k] / (h w).
  const state = await net.readStateDict();
  const arr = (name: string): Arr => ({ data: Float64Array.from(state.get(name)!.data), shape: state.get(name)!.shape });
  const relu = (a: Arr): Arr => ({ data: a.data.map((v) => Math.max(0, v)), shape: a.shape });
  const x64 = await toArr(x);
  const h1 = relu(refConv2d(x64, arr('0.weight'), arr('0.bias'), { padding: [1, 1] }));
  const a = relu(refConv2d(h1, arr('2.weight'), arr('2.bias'), { stride: [2, 2], padding: [1, 1] }));
  const [, c, h, w] = a.shape;
  const fc = arr('6.weight');
  const grads = new Float64Array(c * h * w).map((_, i) => fc.data[2 * c + Math.floor(i / (h * w))] / (h * w));
  const reference = gradCam(a.data, grads, [c, h, w]);
  assert.equal(result.shape, [c, h, w]);
  assertClose(result.cam.map, reference.map, 1e-5, 'Grad-CAM map');
  assertClose(result.cam.weights, reference.weights, 1e-5, 'channel weights');
  x.dispose();
  net.dispose();
});

const FACE = 32;
const SIZE = 64;

/** A SIZE x SIZE image of blocky noise with a FACE x FACE face pasted into quadrant q (0 TL, 1 TR, 2 BL, 3 BR). */
function faceInQuadrant(face: Float32Array, q: number, rng: Rng): Float32Array {
  const out = new Float32Array(3 * SIZE * SIZE);
  for (let c = 0; c < 3; c++) {
    for (let by = 0; by < SIZE; by += 8) {
      for (let bx = 0; bx < SIZE; bx += 8) {
        const block = rng.normal() * 1.2;
        for (let y = by; y < by + 8; y++) for (let x = bx; x < bx + 8; x++) out[(c * SIZE + y) * SIZE + x] = block + rng.normal() * 0.3;
      }
    }
  }
  const [oy, ox] = [q < 2 ? 0 : FACE, q % 2 ? FACE : 0];
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < FACE; y++) for (let x = 0; x < FACE; x++) out[(c * SIZE + oy + y) * SIZE + ox + x] = face[(c * FACE + y) * FACE + x];
  }
  return out;
}

test("known answer: with the face in one quadrant of noise, a trained network's Grad-CAM peaks in that quadrant", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'celgrad-cam-')), 'faces');
  generateSynthFaces({ out: dir, identities: 3, perIdentity: 40, size: 48, seed: 21, difficulty: EASY_DIFFICULTY });
  const ds = await readDataset(dir);
  const faces = await Promise.all(ds.samples.map((s) => loadImage(s.path, { ...valTransform(FACE), resize: FACE })));
  const labels = ds.samples.map((s) => s.label);
  const train = [...faces.keys()].filter((i) => i % 4 !== 0);
  const held = [...faces.keys()].filter((i) => i % 4 === 0);
  // A small all-convolutional network with global pooling; Grad-CAM on its last block (16x16 at 64 px).
  const net = new Sequential(
    new Conv2d(3, 24, 5, { stride: 2, padding: 2, bias: false }), new BatchNorm2d(24), new ReLU(),
    new Conv2d(24, 48, 3, { stride: 2, padding: 1, bias: false }), new BatchNorm2d(48), new ReLU(),
    new Conv2d(48, 48, 3, { padding: 1, bias: false }), new BatchNorm2d(48), new ReLU(),
    new AdaptiveAvgPool2d(1), new Flatten(), new Linear(48, 3),
  );
  net.initialize(3);
  const adam = new Adam(net.parameters(), { lr: 3e-3 });
  const rng = new Rng(5);
  const batch = 16;
  for (let epoch = 0; epoch < 20; epoch++) {
    rng.shuffle(train);
    for (let b = 0; b + batch <= train.length; b += batch) {
      const ids = train.slice(b, b + batch);
      const x = new Float32Array(batch * 3 * SIZE * SIZE);
      ids.forEach((i, k) => x.set(faceInQuadrant(faces[i], rng.int(4), rng), k * 3 * SIZE * SIZE));
      net.train();
      await scopeAsync(async () => {
        const loss = crossEntropy(net.call(Tensor.fromArray(x, [batch, 3, SIZE, SIZE])), Tensor.fromArray(ids.map((i) => labels[i]), [batch], 'i32'));
        loss.backward();
        adam.step();
        adam.zeroGrad();
      });
    }
  }
  let hits = 0;
  const rngTest = new Rng(9);
  for (const i of held) {
    const quadrant = rngTest.int(4);
    const { cam } = await camOf(net, faceInQuadrant(faces[i], quadrant, rngTest), SIZE, { layer: '8', target: labels[i] });
    let peak = 0;
    for (let j = 1; j < cam.map.length; j++) if (cam.map[j] > cam.map[peak]) peak = j;
    const found = (Math.floor(peak / cam.width) >= cam.height / 2 ? 2 : 0) + (peak % cam.width >= cam.width / 2 ? 1 : 0);
    if (found === quadrant) hits++;
  }
  // Chance is 1 in 4; 18 or more of 30 has probability below 1e-6 under chance (measured here: 29).
  assert.ok(hits >= 18, `Grad-CAM peak in the face's quadrant for ${hits} of ${held.length} held-out images`);
  adam.dispose();
  net.dispose();
});

test.run();
