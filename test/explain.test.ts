// Explanation maths on hand-computed values: Grad-CAM, Grad-CAM++ weights, faithfulness metrics.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gradCam, gradCamPlusPlus, normalise } from '../experiments/explain/cam.ts';
import { faithfulness } from '../experiments/explain/faithfulness.ts';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

test('Grad-CAM: channel weights are mean gradients; the map is ReLU of the weighted sum', () => {
  // Two channels of 1x2. G0 = [1, 3] -> alpha0 = 2; G1 = [-2, 0] -> alpha1 = -1.
  // A0 = [1, 2], A1 = [3, 1]: map = ReLU([2*1 - 3, 2*2 - 1]) = [0, 3].
  const cam = gradCam([1, 2, 3, 1], [1, 3, -2, 0], [2, 1, 2]);
  assert.equal(Array.from(cam.weights), [2, -1]);
  assert.equal(Array.from(cam.map), [0, 3]);
  assert.is(cam.signal, 'ok');
  assert.equal(Array.from(normalise(cam.map)), [0, 1]);
});

test('Grad-CAM: a map that is all zero is flagged, not normalised into a picture', () => {
  const cam = gradCam([1, 1], [-1, -1], [1, 1, 2]);
  assert.is(cam.signal, 'no-signal');
  assert.equal(Array.from(normalise(cam.map)), [0, 0]);
  assert.is(gradCam([NaN, 1], [1, 1], [1, 1, 2]).signal, 'not-finite');
});

test('Grad-CAM++: alpha = g^2 / (2 g^2 + sum(A) g^3), weight = sum alpha relu(g)', () => {
  // One channel 1x2, A = [1, 3] (sum 4), G = [0.5, -1].
  // i=0: alpha = 0.25 / (0.5 + 4*0.125) = 0.25; relu(g) = 0.5 -> 0.125.  i=1: relu(-1) = 0 -> 0.  w = 0.125.
  const cam = gradCamPlusPlus([1, 3], [0.5, -1], [1, 1, 2]);
  close(cam.weights[0], 0.125, 'w');
  close(cam.map[0], 0.125, 'map[0]');
  close(cam.map[1], 0.375, 'map[1]');
});

test('faithfulness: Average Drop % divides by Y (the paper), Increase in Confidence counts O > Y', () => {
  // Y = [0.8, 0.5, 0.2], O = [0.4, 0.6, 0.2]: drops 0.5, 0, 0 -> 16.67 %; increases 1 of 3 -> 33.33 %.
  const f = faithfulness([0.8, 0.5, 0.2], [0.4, 0.6, 0.2]);
  close(f.averageDrop, 50 / 3, 'average drop');
  close(f.increaseInConfidence, 100 / 3, 'increase in confidence');
  assert.throws(() => faithfulness([0], [0.1]), /positive/);
});

test.run();
