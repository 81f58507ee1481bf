// Grad-CAM through the engine against a float64 reference of the formula on a small network, so the
// forward hook, the activation's gradient and the channel weighting are all checked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor } from '../engine/index.ts';
import { AdaptiveAvgPool2d, Conv2d, Flatten, Linear, ReLU, Sequential } from '../engine/nn/index.ts';
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

test.run();
