// engine/nn: Module names and state_dict order, initialisation, loading, freezing, hooks, and the
// layers' behaviour (BatchNorm buffers, Linear row blocks, Dropout seeding).
import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, scope, sum, Tensor, WeightsError, CelgradError, ShapeError } from '../engine/index.ts';
import { BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU, Sequential, type StateDictData } from '../engine/nn/index.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { stats } from './stats.ts';

setPlatform(nodePlatform());
await initGPU();

// ---------- helpers ----------

function closeTo(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

async function assertAllClose(a: Tensor, b: Tensor, tolerance: number, what: string): Promise<void> {
  assert.equal([...a.shape], [...b.shape], `${what}: shapes`);
  const [x, y] = [await a.toArray(), await b.toArray()];
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i] - y[i]) > tolerance) assert.unreachable(`${what}: index ${i}: ${x[i]} vs ${y[i]}`);
  }
}

function throwsError(fn: () => unknown, type: Function, patterns: RegExp[]): string {
  try {
    fn();
  } catch (e) {
    assert.instance(e, type, `expected ${type.name}, got ${String(e)}`);
    const message = (e as Error).message;
    for (const p of patterns) assert.ok(p.test(message), `message does not match ${p}:\n${message}`);
    return message;
  }
  assert.unreachable(`expected a ${type.name}`);
  return '';
}

/** conv (no bias) -> BatchNorm -> ReLU -> flatten -> Linear: a little of everything. */
function smallNet(): Sequential {
  return new Sequential(new Conv2d(2, 4, 3, { padding: 1, bias: false }), new BatchNorm2d(4), new ReLU(), new Flatten(), new Linear(4 * 5 * 5, 3));
}

// ---------- names and order ----------

test('Sequential names children 0, 1, ...; state_dict interleaves parameters and buffers per module, as PyTorch', () => {
  const net = new Sequential(new Conv2d(3, 4, 3), new BatchNorm2d(4), new ReLU());
  assert.equal(
    [...net.namedModules()].map(([name]) => name),
    ['', '0', '1', '2'],
  );
  const shapes = net.stateDictShapes();
  assert.equal(
    [...shapes.keys()],
    ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked'],
  );
  assert.equal(shapes.get('0.weight'), [4, 3, 3, 3]);
  assert.equal(shapes.get('1.num_batches_tracked'), []);
  assert.is(net.numParameters(), 4 * 27 + 4 + 8);
  // Nothing is allocated before initialize(): the shapes alone answer these.
  throwsError(() => (net.get('0') as Conv2d).weight, CelgradError, [/meta: true/, /initialize/]);
});

test('initialize allocates parameters (requiresGrad) and buffers (not); namedParameters and namedBuffers in order', () => {
  const net = smallNet().initialize(1);
  assert.equal(
    [...net.namedParameters()].map(([name, t]) => [name, t.requiresGrad]),
    [['0.weight', true], ['1.weight', true], ['1.bias', true], ['4.weight', true], ['4.bias', true]],
  );
  assert.equal(
    [...net.namedBuffers()].map(([name, t]) => [name, t.requiresGrad]),
    [['1.running_mean', false], ['1.running_var', false], ['1.num_batches_tracked', false]],
  );
  assert.is(net.parameters().length, 5);
  net.dispose();
});

test('get() addresses layers by dotted name and lists the children where a name fails', () => {
  const net = new Sequential(new Sequential(new Conv2d(1, 1, 1), new ReLU()), new Linear(2, 2));
  assert.instance(net.get('0.0'), Conv2d);
  assert.instance(net.get('1'), Linear);
  assert.is(net.get(''), net);
  throwsError(() => net.get('0.5'), CelgradError, [/no layer '0\.5'/, /'0' has children 0, 1/]);
  throwsError(() => net.get('fc'), CelgradError, [/the model has children 0, 1/]);
});

test('addModule with an existing name replaces the module in place (replaceHead keeps state_dict order)', () => {
  const net = new Sequential(new Linear(4, 4), new ReLU(), new Linear(4, 2));
  net.addModule('0', new Linear(4, 4, { bias: false }));
  assert.equal([...net.stateDictShapes().keys()], ['0.weight', '2.weight', '2.bias']);
});

// ---------- initialisation ----------

test('initialize is deterministic per seed', async () => {
  const [a, b, c] = [smallNet().initialize(7), smallNet().initialize(7), smallNet().initialize(8)];
  const w = (net: Sequential) => (net.get('4') as Linear).weightBlocks[0].toArray();
  assert.equal(Array.from(await w(a)), Array.from(await w(b)));
  assert.not.equal(Array.from(await w(a)), Array.from(await w(c)));
  for (const net of [a, b, c]) net.dispose();
});

test('Linear and Conv2d defaults: kaiming_uniform(a=sqrt 5), i.e. weight and bias U(±1/sqrt(fan_in))', async () => {
  const fc = new Linear(400, 300).initialize(3);
  const bound = 1 / Math.sqrt(400);
  const w = stats(await fc.weightBlocks[0].toArray());
  assert.ok(w.min >= -bound && w.max <= bound, `weight in [${w.min}, ${w.max}], bound ${bound}`);
  closeTo(w.std, bound / Math.sqrt(3), 0.02 * bound, 'weight std of U(-b, b)');
  const b = stats(await fc.bias!.toArray());
  assert.ok(b.min >= -bound && b.max <= bound && b.std > bound / 3, `bias ${JSON.stringify(b)}`);

  const conv = new Conv2d(16, 32, 3).initialize(4);
  const convBound = 1 / Math.sqrt(16 * 9);
  const cw = stats(await conv.weight.toArray());
  assert.ok(cw.min >= -convBound && cw.max <= convBound, `conv weight in [${cw.min}, ${cw.max}]`);
  closeTo(cw.std, convBound / Math.sqrt(3), 0.05 * convBound, 'conv weight std');
  fc.dispose();
  conv.dispose();
});

test('BatchNorm2d starts at weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0', async () => {
  const bn = new BatchNorm2d(3).initialize(0);
  assert.equal(Array.from(await bn.weight.toArray()), [1, 1, 1]);
  assert.equal(Array.from(await bn.bias.toArray()), [0, 0, 0]);
  assert.equal(Array.from(await bn.runningMean.toArray()), [0, 0, 0]);
  assert.equal(Array.from(await bn.runningVar.toArray()), [1, 1, 1]);
  assert.is(await bn.numBatchesTracked.item(), 0);
  bn.dispose();
});

// ---------- layers ----------

test('BatchNorm2d: training updates running stats and counts batches; eval does neither', async () => {
  const bn = new BatchNorm2d(2, { momentum: 0.5 }).initialize(0);
  // Channel 0 holds 1..4 (mean 2.5, unbiased var 5/3), channel 1 holds 10 everywhere.
  const x = Tensor.fromArray([1, 2, 3, 4, 10, 10, 10, 10], [1, 2, 2, 2]);
  scope(() => bn.call(x));
  scope(() => bn.call(x));
  assert.is(await bn.numBatchesTracked.item(), 2);
  const mean = await bn.runningMean.toArray();
  closeTo(mean[0], 2.5 * 0.75, 1e-5, 'running_mean[0] after two steps of momentum 0.5');
  closeTo(mean[1], 10 * 0.75, 1e-5, 'running_mean[1]');
  closeTo((await bn.runningVar.toArray())[0], 0.25 + (5 / 3) * 0.75, 1e-5, 'running_var[0] (unbiased)');
  bn.eval();
  scope(() => bn.call(x));
  assert.is(await bn.numBatchesTracked.item(), 2);
  closeTo((await bn.runningMean.toArray())[0], 2.5 * 0.75, 1e-5, 'running_mean unchanged in eval');
  x.dispose();
  bn.dispose();
});

test('BatchNorm2d.callWithRelu equals BatchNorm then ReLU, and fires the hooks of both layers', async () => {
  const bn = new BatchNorm2d(3).initialize(0);
  const relu = new ReLU();
  bn.eval();
  const x = Tensor.normal([2, 3, 4, 4], 0, 1, 5);
  const fused = bn.callWithRelu(x, relu);
  const seen: string[] = [];
  const bnOutputs: Tensor[] = [];
  const h1 = bn.registerForwardHook('', (_m, _input, output) => {
    seen.push('bn');
    bnOutputs.push(output);
  });
  const h2 = relu.registerForwardHook('', () => void seen.push('relu'));
  const separate = bn.callWithRelu(x, relu);
  h1.remove();
  h2.remove();
  assert.equal(seen, ['bn', 'relu']);
  assert.ok((await bnOutputs[0].toArray()).some((v) => v < 0), 'the BatchNorm hook sees the value before the ReLU');
  await assertAllClose(fused, separate, 1e-6, 'fused vs separate');
  assert.ok((await fused.toArray()).every((v) => v >= 0));
  for (const t of [x, fused, separate]) t.dispose();
  bn.dispose();
});

test('Linear stores a weight above the block limit as row blocks, with the same outputs and gradients', async () => {
  // 10 rows of 64 floats, blocks of at most 3 rows: [3, 3, 3, 1].
  const blocked = new Linear(64, 10, { maxBlockBytes: 3 * 64 * 4 }).initialize(11);
  assert.equal(
    blocked.weightBlocks.map((t) => t.shape[0]),
    [3, 3, 3, 1],
  );
  assert.equal(
    [...blocked.namedParameters()].map(([name]) => name),
    ['weight#0', 'weight#1', 'weight#2', 'weight#3', 'bias'],
  );
  const whole = new Linear(64, 10).initialize(99);
  whole.loadStateDict(await blocked.readStateDict());
  // The state_dict holds the whole weight, gathered from the blocks.
  const gathered = blocked.stateDict().get('weight')!;
  await assertAllClose(gathered, whole.weightBlocks[0], 0, 'gathered weight');
  gathered.dispose();

  const x = Tensor.normal([2, 64], 0, 1, 1).setRequiresGrad();
  const [y1, y2] = [blocked.call(x), whole.call(x)];
  await assertAllClose(y1, y2, 1e-5, 'outputs');
  sum(y1).backward();
  sum(y2).backward();
  const wholeGrad = await whole.weightBlocks[0].grad!.toArray();
  let row = 0;
  for (const block of blocked.weightBlocks) {
    const g = await block.grad!.toArray();
    for (let i = 0; i < g.length; i++) closeTo(g[i], wholeGrad[row * 64 + i], 1e-5, `grad row ${row}`);
    row += block.shape[0];
  }
  await assertAllClose(blocked.bias!.grad!, whole.bias!.grad!, 1e-5, 'bias grad');
  for (const t of [x, y1, y2]) t.dispose();
  blocked.dispose();
  whole.dispose();
});

test('Dropout: seeded masks per model seed, scaled survivors in training, identity in eval', async () => {
  const x = Tensor.ones([4000]);
  const [a, b] = [new Dropout(0.5).initialize(3), new Dropout(0.5).initialize(3)];
  const ya = await a.call(x).toArray();
  assert.equal(Array.from(ya), Array.from(await b.call(x).toArray()), 'same seed, same mask');
  assert.not.equal(Array.from(ya), Array.from(await a.call(x).toArray()), 'a new mask per call');
  const zeros = ya.filter((v) => v === 0).length;
  closeTo(zeros / ya.length, 0.5, 0.05, 'dropped fraction');
  assert.ok(ya.every((v) => v === 0 || v === 2), 'survivors scaled by 1 / (1 - p)');
  a.eval();
  assert.ok((await a.call(x).toArray()).every((v) => v === 1));
  x.dispose();
});

// ---------- loading ----------

test('loadStateDict copies every tensor by name (round trip)', async () => {
  const [a, b] = [smallNet().initialize(1), smallNet().initialize(2)];
  scope(() => a.call(Tensor.normal([2, 2, 5, 5], 0, 1, 3))); // moves the running stats off their initial values
  b.loadStateDict(await a.readStateDict());
  const [sa, sb] = [a.stateDict(), b.stateDict()];
  for (const [key, t] of sa) assert.equal(Array.from(await sb.get(key)!.toArray()), Array.from(await t.toArray()), key);
  assert.is(await (b.get('1') as BatchNorm2d).numBatchesTracked.item(), 1);
  a.dispose();
  b.dispose();
});

test('loadStateDict names every missing, unexpected and misshaped key at once, and changes nothing', async () => {
  const net = smallNet().initialize(1);
  const before = await net.readStateDict();
  const dict: StateDictData = new Map();
  for (const [key, shape] of net.stateDictShapes()) dict.set(key, { shape, data: new Float32Array(shape.reduce((p, d) => p * d, 1)) });
  dict.delete('1.bias');
  dict.delete('1.running_var');
  dict.set('5.weight', { shape: [1], data: new Float32Array(1) });
  dict.set('4.weight', { shape: [3, 99], data: new Float32Array(297) });
  throwsError(() => net.loadStateDict(dict), WeightsError, [
    /missing keys \(2\):\s+1\.bias\s+1\.running_var/,
    /unexpected keys \(1\):\s+5\.weight/,
    /wrong shapes \(1\):\s+4\.weight: file has \[3,99\] \(297 values\), model has \[3,100\]/,
    /nothing was loaded/,
  ]);
  // Misshaped keys are refused even when not strict.
  throwsError(() => net.loadStateDict(dict, { strict: false }), WeightsError, [/wrong shapes \(1\)/]);
  const after = await net.readStateDict();
  for (const [key, value] of before) assert.equal(Array.from(after.get(key)!.data), Array.from(value.data), `${key} unchanged`);

  // Not strict: missing and unexpected keys are skipped, the rest loads.
  dict.set('4.weight', { shape: [3, 100], data: new Float32Array(300) });
  net.loadStateDict(dict, { strict: false });
  assert.ok((await (net.get('4') as Linear).weightBlocks[0].toArray()).every((v) => v === 0));
  net.dispose();
});

test('loadStateDict accepts files without num_batches_tracked (older PyTorch) and keeps the count', async () => {
  const net = smallNet().initialize(1);
  scope(() => net.call(Tensor.normal([2, 2, 5, 5], 0, 1, 3)));
  const dict = await net.readStateDict();
  dict.delete('1.num_batches_tracked');
  net.loadStateDict(dict);
  assert.is(await (net.get('1') as BatchNorm2d).numBatchesTracked.item(), 1);
  net.dispose();
});

// ---------- freezing, modes ----------

test('requiresGrad(false) freezes a sub-tree: no gradients there, the rest trains', async () => {
  const net = smallNet().initialize(1);
  net.get('0').requiresGrad(false);
  net.get('1').requiresGrad(false);
  assert.is(net.numParameters({ trainableOnly: true }), 300 + 3);
  const x = Tensor.normal([2, 2, 5, 5], 0, 1, 3);
  scope(() => sum(net.call(x)).backward());
  const grads = [...net.namedParameters()].map(([name, t]) => [name, t.grad !== null]);
  assert.equal(grads, [['0.weight', false], ['1.weight', false], ['1.bias', false], ['4.weight', true], ['4.bias', true]]);
  x.dispose();
  net.dispose();
});

test('train() and eval() set the mode on the whole sub-tree', () => {
  const net = smallNet();
  net.eval();
  assert.ok([...net.namedModules()].every(([, m]) => !m.training));
  net.get('1').train();
  assert.equal(
    [...net.namedModules()].map(([, m]) => m.training),
    [false, false, true, false, false, false],
  );
});

// ---------- hooks ----------

test('forward hooks see the named layer output, may replace it, and stop after remove()', async () => {
  const net = smallNet().initialize(1).eval();
  const x = Tensor.normal([2, 2, 5, 5], 0, 1, 3);
  const seen: number[][] = [];
  const handle = net.registerForwardHook('1', (module, input, output) => {
    assert.instance(module, BatchNorm2d);
    assert.is(input.shape[1], 4);
    seen.push([...output.shape]);
  });
  const zero = net.registerForwardHook('4', (_m, _input, output) => Tensor.zeros(output.shape));
  const y = net.call(x);
  assert.equal(seen, [[2, 4, 5, 5]]);
  assert.ok((await y.toArray()).every((v) => v === 0), 'the hook replaced the output');
  handle.remove();
  zero.remove();
  handle.remove(); // twice is harmless
  const y2 = net.call(x);
  assert.is(seen.length, 1);
  assert.ok((await y2.toArray()).some((v) => v !== 0));
  assert.not.ok(net.get('1').hasForwardHooks || net.get('4').hasForwardHooks);
  for (const t of [x, y, y2]) t.dispose();
  net.dispose();
});

test('a hook removed in finally is gone when the forward pass throws', () => {
  const net = new Sequential(new Linear(4, 3), new Linear(5, 2)).initialize(0);
  let calls = 0;
  const handle = net.registerForwardHook('0', () => void calls++);
  try {
    throwsError(() => net.call(Tensor.ones([1, 4])), ShapeError, [/linear/]);
  } finally {
    handle.remove();
  }
  assert.is(calls, 1);
  assert.not.ok(net.get('0').hasForwardHooks);
  throwsError(() => net.call(Tensor.ones([1, 4])), ShapeError, [/linear/]);
  assert.is(calls, 1);
  net.dispose();
});

test('dispose() frees parameters, buffers and gradients', () => {
  const net = smallNet().initialize(1);
  const w = (net.get('4') as Linear).weightBlocks[0];
  net.dispose();
  assert.ok(w.disposed);
  throwsError(() => (net.get('4') as Linear).weightBlocks, CelgradError, [/no value/]);
});

test.run();
