// Adam and StepLR against PyTorch's semantics: hand-worked values and the float64 reference.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Adam, StepLR, Tensor, keep } from '../engine/index.ts';
import './gpu.ts';
import { adamReference, stepLrReference } from './reference/optim.ts';
import { assertClose, randArr } from './reference/tensor.ts';

test('Adam: two steps worked by hand (lr 0.1, default betas and eps)', async () => {
  // Step 1: m = 0.05, v = 0.00025, step size 0.1/0.1 = 1, denom = sqrt(v)/sqrt(0.001) + eps = 0.5 + 1e-8,
  //   p = 1 - 0.05/0.50000001 = 0.9000000020.
  // Step 2 (g = 0.25): m = 0.07, v = 0.00031225, step size 0.1/0.19, denom = sqrt(v)/sqrt(0.001999) + eps,
  //   p = 0.9000000020 - 0.5263157895 * 0.07 / 0.3952288 = 0.80678...
  const p = keep(Tensor.fromArray([1], [1]).setRequiresGrad());
  const adam = new Adam([p], { lr: 0.1 });
  p.grad = keep(Tensor.fromArray([0.5], [1]));
  adam.step();
  assert.ok(Math.abs((await p.item()) - 0.900000002) < 1e-6, `step 1: ${await p.item()}`);
  adam.zeroGrad();
  p.grad = keep(Tensor.fromArray([0.25], [1]));
  adam.step();
  const expected2 = 0.900000002 - ((0.1 / 0.19) * 0.07) / (Math.sqrt(0.00031225) / Math.sqrt(1 - 0.999 ** 2) + 1e-8);
  assert.ok(Math.abs((await p.item()) - expected2) < 1e-6, `step 2: ${await p.item()} vs ${expected2}`);
  adam.dispose();
});

test('Adam with weight decay over 5 steps matches the float64 reference on 257 values', async () => {
  const p0 = randArr([257], 1);
  const grads = [2, 3, 4, 5, 6].map((s) => randArr([257], s).data);
  const opts = { lr: 0.01, betas: [0.8, 0.95] as [number, number], eps: 1e-6, weightDecay: 0.1 };
  const p = keep(Tensor.fromArray(Float32Array.from(p0.data), [257]).setRequiresGrad());
  const adam = new Adam([p], opts);
  for (const g of grads) {
    adam.zeroGrad();
    p.grad = keep(Tensor.fromArray(Float32Array.from(g), [257]));
    adam.step();
  }
  const ref = adamReference(Float32Array.from(p0.data), grads.map((g) => Float32Array.from(g)), opts);
  assertClose(await p.toArray(), ref[4], 1e-5, 'Adam after 5 steps');
  adam.dispose();
});

test('Adam skips parameters without a gradient and their step count does not advance', async () => {
  const a = keep(Tensor.fromArray([1], [1]).setRequiresGrad());
  const b = keep(Tensor.fromArray([1], [1]).setRequiresGrad());
  const adam = new Adam([a, b], { lr: 0.1 });
  a.grad = keep(Tensor.fromArray([1], [1]));
  adam.step();
  adam.step();
  b.grad = keep(Tensor.fromArray([1], [1]));
  adam.zeroGrad();
  b.grad = keep(Tensor.fromArray([1], [1]));
  adam.step();
  // b took one step: its first step moves it by lr * g/(|g| + eps) ~ 0.1.
  assert.ok(Math.abs((await b.item()) - 0.9) < 1e-6, `b ${await b.item()}`);
  const state = await adam.stateDict();
  assert.equal(state.steps, [2, 1]);
  adam.dispose();
});

test('StepLR: epochs 0..step-1 use the base lr, then multiply by gamma every step epochs', () => {
  const opt = { lr: 0.05 };
  const sched = new StepLR(opt, 30, 0.1);
  const seen: number[] = [];
  for (let epoch = 0; epoch < 90; epoch++) {
    seen.push(opt.lr);
    sched.step();
  }
  for (const epoch of [0, 29, 30, 59, 60, 89]) {
    assert.ok(Math.abs(seen[epoch] - stepLrReference(0.05, 30, 0.1, epoch)) < 1e-15, `epoch ${epoch}: ${seen[epoch]}`);
  }
  assert.ok(Math.abs(seen[29] - 0.05) < 1e-15 && Math.abs(seen[30] - 0.005) < 1e-15);
  const paper = { lr: 1e-3 };
  const paperSched = new StepLR(paper, 7, 1);
  for (let e = 0; e < 10; e++) paperSched.step();
  assert.is(paper.lr, 1e-3, "the paper's StepLR(7, gamma 1) keeps the lr constant");
});

test.run();
