// models/: torchvision's exact names, shapes and counts (shape-only builds), each model's default
// initialisation, heads, hooks on the Grad-CAM layers, and forward passes at small inputs.
// Expected counts: ../shared/reference-facts.md section 1 (torchvision's num_params and state_dict).
import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { initGPU, noGrad, rt, scope, sum, Tensor, CelgradError, ShapeError } from '../engine/index.ts';
import { BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU, type Module } from '../engine/nn/index.ts';
import {
  MODELS,
  createModel,
  describeModels,
  freezeBackbone,
  inception_v3,
  logitsOf,
  resnet50,
  densenet121,
  vgg16,
  stateDictSize,
  type ClassifierOutput,
} from '../models/index.ts';
import { InceptionAux } from '../models/inception.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { stats } from './stats.ts';

setPlatform(nodePlatform());
await initGPU();

// ---------- helpers ----------

function closeTo(actual: number, expected: number, relTolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= relTolerance * Math.abs(expected), `${what}: ${actual} is not within ${relTolerance * 100}% of ${expected}`);
}

async function tensorStats(model: Module<unknown>, key: string): Promise<ReturnType<typeof stats>> {
  const t = model.stateDict().get(key);
  if (!t) throw new Error(`no state_dict key ${key}`);
  return stats(await t.toArray());
}

const isBuffer = (key: string) => /\.(running_mean|running_var|num_batches_tracked)$/.test(key);

/** Runs the model in eval mode without a tape on a seeded random batch; returns the logits' shape and values. */
async function evalForward(model: Module<ClassifierOutput>, n: number, size: number): Promise<{ shape: number[]; values: Float32Array }> {
  model.eval();
  const logits = noGrad(() => scope(() => logitsOf(model.call(Tensor.normal([n, 3, size, size], 0, 1, 42)))));
  const values = await logits.toArray();
  logits.dispose();
  return { shape: [...logits.shape], values };
}

// ---------- names, shapes, counts (shape-only builds: nothing is allocated) ----------

const TABLE = [
  // name, options, num_params, param tensors, state_dict entries, BatchNorm layers, entries without num_batches_tracked
  ['resnet50', {}, 25_557_032, 161, 320, 53, 267],
  ['inception_v3', {}, 27_161_264, 292, 580, 96, 484],
  ['inception_v3', { auxLogits: false }, 23_834_568, 284, 566, 94, 472],
  ['densenet121', {}, 7_978_856, 364, 727, 121, 606],
  ['vgg16', {}, 138_357_544, 32, 32, 0, 32],
  ['vgg16_bn', {}, 138_365_992, 58, 97, 13, 84],
] as const;

for (const [name, options, params, paramTensors, entries, bnLayers, withoutCounter] of TABLE) {
  test(`${name} ${JSON.stringify(options)}: torchvision's counts (${params.toLocaleString('en')} parameters, ${entries} state_dict entries)`, () => {
    const model = createModel(name, { ...options, meta: true });
    const keys = [...model.stateDictShapes().keys()];
    assert.is(model.numParameters(), params);
    assert.is(keys.filter((k) => !isBuffer(k)).length, paramTensors);
    assert.is(keys.length, entries);
    assert.is([...model.namedModules()].filter(([, m]) => m instanceof BatchNorm2d).length, bnLayers);
    assert.is(keys.filter((k) => !k.endsWith('num_batches_tracked')).length, withoutCounter);
  });
}

function firstAndLast(name: string, options = {}): { shapes: Map<string, number[]>; keys: string[] } {
  const shapes = createModel(name, { ...options, meta: true }).stateDictShapes();
  return { shapes, keys: [...shapes.keys()] };
}

test('resnet50 keys: stem, v1.5 bottleneck (stride on conv2), downsample, fc', () => {
  const { shapes, keys } = firstAndLast('resnet50');
  assert.equal(keys.slice(0, 7), [
    'conv1.weight',
    'bn1.weight',
    'bn1.bias',
    'bn1.running_mean',
    'bn1.running_var',
    'bn1.num_batches_tracked',
    'layer1.0.conv1.weight',
  ]);
  assert.equal(keys.slice(-2), ['fc.weight', 'fc.bias']);
  assert.equal(shapes.get('conv1.weight'), [64, 3, 7, 7]);
  assert.equal(shapes.get('layer1.0.downsample.0.weight'), [256, 64, 1, 1]);
  assert.equal(shapes.get('layer4.2.bn3.running_var'), [2048]);
  assert.equal(shapes.get('fc.weight'), [1000, 2048]);
  const model = resnet50({ meta: true });
  const stride = (layer: string) => (model.get(`layer2.0.${layer}`) as Conv2d).stride;
  assert.equal(stride('conv1'), [1, 1]);
  assert.equal(stride('conv2'), [2, 2]);
  assert.equal(stride('downsample.0'), [2, 2]);
});

test('inception_v3 keys: BasicConv2d conv/bn, AuxLogits between Mixed_6e and Mixed_7a, fc last', () => {
  const { shapes, keys } = firstAndLast('inception_v3');
  assert.equal(keys.slice(0, 6), [
    'Conv2d_1a_3x3.conv.weight',
    'Conv2d_1a_3x3.bn.weight',
    'Conv2d_1a_3x3.bn.bias',
    'Conv2d_1a_3x3.bn.running_mean',
    'Conv2d_1a_3x3.bn.running_var',
    'Conv2d_1a_3x3.bn.num_batches_tracked',
  ]);
  assert.equal(shapes.get('Conv2d_1a_3x3.conv.weight'), [32, 3, 3, 3]);
  const aux = keys.indexOf('AuxLogits.conv0.conv.weight');
  assert.is(keys[aux - 1], 'Mixed_6e.branch_pool.bn.num_batches_tracked');
  assert.is(keys[aux + 12], 'AuxLogits.fc.weight');
  assert.is(keys[aux + 14], 'Mixed_7a.branch3x3_1.conv.weight');
  assert.equal(shapes.get('AuxLogits.conv0.conv.weight'), [128, 768, 1, 1]);
  assert.equal(shapes.get('AuxLogits.conv1.conv.weight'), [768, 128, 5, 5]);
  assert.equal(shapes.get('AuxLogits.fc.weight'), [1000, 768]);
  assert.equal(shapes.get('Mixed_6b.branch7x7_2.conv.weight'), [128, 128, 1, 7]);
  assert.equal(shapes.get('Mixed_7c.branch3x3dbl_3b.conv.weight'), [384, 384, 3, 1]);
  assert.equal(keys.slice(-3), ['Mixed_7c.branch_pool.bn.num_batches_tracked', 'fc.weight', 'fc.bias']);
  assert.equal(shapes.get('fc.weight'), [1000, 2048]);
  assert.not.ok(firstAndLast('inception_v3', { auxLogits: false }).keys.some((k) => k.startsWith('AuxLogits')));
  const bn = inception_v3({ meta: true }).get('Mixed_5b.branch1x1.bn') as BatchNorm2d;
  assert.is(bn.eps, 0.001);
});

test('densenet121 keys: features.conv0 ... denseblock/denselayer/transition ... norm5, classifier', () => {
  const { shapes, keys } = firstAndLast('densenet121');
  assert.equal(keys.slice(0, 2), ['features.conv0.weight', 'features.norm0.weight']);
  assert.equal(shapes.get('features.conv0.weight'), [64, 3, 7, 7]);
  assert.equal(shapes.get('features.denseblock1.denselayer1.conv1.weight'), [128, 64, 1, 1]);
  assert.equal(shapes.get('features.denseblock1.denselayer1.conv2.weight'), [32, 128, 3, 3]);
  assert.equal(shapes.get('features.denseblock1.denselayer6.norm1.weight'), [224]);
  assert.equal(shapes.get('features.transition1.conv.weight'), [128, 256, 1, 1]);
  assert.equal(shapes.get('features.denseblock4.denselayer16.conv2.weight'), [32, 128, 3, 3]);
  assert.ok(keys.indexOf('features.transition1.norm.weight') > keys.indexOf('features.denseblock1.denselayer6.conv2.weight'));
  assert.equal(keys.slice(-7), [
    'features.norm5.weight',
    'features.norm5.bias',
    'features.norm5.running_mean',
    'features.norm5.running_var',
    'features.norm5.num_batches_tracked',
    'classifier.weight',
    'classifier.bias',
  ]);
  assert.equal(shapes.get('classifier.weight'), [1000, 1024]);
});

test('vgg16 / vgg16_bn keys: convs at torchvision indices, BatchNorm at conv + 1, classifier.0/3/6', () => {
  const convIndices = (keys: string[]) => keys.filter((k) => /^features\.\d+\.weight$/.test(k)).map((k) => Number(k.split('.')[1]));
  const plain = firstAndLast('vgg16');
  assert.equal(convIndices(plain.keys), [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]);
  assert.equal(plain.keys.slice(-6), ['classifier.0.weight', 'classifier.0.bias', 'classifier.3.weight', 'classifier.3.bias', 'classifier.6.weight', 'classifier.6.bias']);
  assert.equal(plain.shapes.get('classifier.0.weight'), [4096, 25088]);
  const bn = firstAndLast('vgg16_bn');
  const withBn = convIndices(bn.keys);
  const convs = withBn.filter((i) => bn.shapes.get(`features.${i}.weight`)!.length === 4);
  assert.equal(convs, [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]);
  assert.equal(withBn.filter((i) => !convs.includes(i)), convs.map((i) => i + 1));
  const model = createModel('vgg16', { meta: true });
  assert.is((model.get('classifier.2') as Dropout).p, 0.5);
  // The Grad-CAM layers are the ReLUs after the last conv, just before the last pool.
  assert.instance(model.get(MODELS.vgg16.lastConvLayer), ReLU);
  assert.instance(model.get('features.30'), MaxPool2d);
  assert.instance(createModel('vgg16_bn', { meta: true }).get(MODELS.vgg16_bn.lastConvLayer), ReLU);
});

test('numClasses sizes the heads; registry facts; celgrad models --json summary; unknown names', () => {
  assert.equal(createModel('inception_v3', { numClasses: 10, meta: true }).stateDictShapes().get('AuxLogits.fc.weight'), [10, 768]);
  assert.equal(createModel('vgg16', { numClasses: 10, meta: true }).stateDictShapes().get('classifier.6.bias'), [10]);
  assert.equal(describeModels(), [
    { name: 'resnet50', params: 25_557_032, stateDictKeys: 320, defaultInputSize: 224 },
    { name: 'inception_v3', params: 27_161_264, stateDictKeys: 580, defaultInputSize: 299 },
    { name: 'densenet121', params: 7_978_856, stateDictKeys: 727, defaultInputSize: 224 },
    { name: 'vgg16', params: 138_357_544, stateDictKeys: 32, defaultInputSize: 224 },
    { name: 'vgg16_bn', params: 138_365_992, stateDictKeys: 97, defaultInputSize: 224 },
  ]);
  // Buffers count in the byte size: 4 bytes per entry value.
  assert.is(stateDictSize('vgg16').stateDictBytes, 138_357_544 * 4);
  for (const [name, entry] of Object.entries(MODELS)) {
    const model = entry.build({ meta: true });
    assert.ok(model.get(entry.lastConvLayer), `${name}: ${entry.lastConvLayer}`);
    // replaceHead swaps exactly the layers that stay trainable in the frozen-backbone regime.
    model.replaceHead(5);
    for (const prefix of entry.headParameterPrefixes) {
      assert.ok(model.get(prefix) instanceof Linear, `${name}: ${prefix}`);
      assert.is(model.stateDictShapes().get(`${prefix}.weight`)![0], 5, `${name}: ${prefix} has 5 outputs`);
    }
    model.dispose();
  }
  assert.throws(() => createModel('resnet18'), (e: Error) => e instanceof CelgradError && /known models: resnet50, inception_v3, densenet121, vgg16, vgg16_bn/.test(e.message));
  assert.throws(() => createModel('resnet50', { numClasses: 0, meta: true }), /positive integer/);
});

// ---------- materialised models: init, forward, hooks, heads ----------

test('resnet50: kaiming fan_out convs, BatchNorm 1/0, nn.Linear fc; layer4 hook; forward at 64x64; replaceHead', async () => {
  const model = resnet50({ seed: 1 });
  closeTo((await tensorStats(model, 'conv1.weight')).std, Math.sqrt(2 / (64 * 49)), 0.03, 'conv1 std');
  closeTo((await tensorStats(model, 'layer4.0.conv2.weight')).std, Math.sqrt(2 / (512 * 9)), 0.01, 'layer4.0.conv2 std');
  const fc = await tensorStats(model, 'fc.weight');
  const bound = 1 / Math.sqrt(2048);
  assert.ok(fc.min >= -bound && fc.max <= bound, 'fc weight within ±1/sqrt(2048)');
  closeTo(fc.std, bound / Math.sqrt(3), 0.01, 'fc weight std (uniform)');
  const bn = await tensorStats(model, 'layer1.0.bn3.weight');
  assert.ok(bn.min === 1 && bn.max === 1, 'bn3 weight 1 (zero_init_residual off)');

  const features: number[][] = [];
  const hook = model.registerForwardHook(MODELS.resnet50.lastConvLayer, (_m, _x, out) => void features.push([...out.shape]));
  let out: Awaited<ReturnType<typeof evalForward>>;
  try {
    out = await evalForward(model, 1, 64);
  } finally {
    hook.remove();
  }
  assert.equal(features, [[1, 2048, 2, 2]]);
  assert.equal(out.shape, [1, 1000]);
  assert.ok(out.values.every(Number.isFinite));

  const twin = resnet50({ seed: 1 });
  assert.equal(Array.from((await evalForward(twin, 1, 64)).values), Array.from(out.values), 'same seed, same logits');
  twin.dispose();

  model.replaceHead(7, 3);
  assert.equal(model.stateDictShapes().get('fc.weight'), [7, 2048]);
  assert.equal((await evalForward(model, 1, 64)).shape, [1, 7]);
  model.dispose();
});

test('resnet50 trains: a backward pass at 32x32, batch 2, reaches the stem; frozen backbone leaves only fc trainable', async () => {
  const model = resnet50({ numClasses: 5 }).train();
  freezeBackbone(model, MODELS.resnet50.headParameterPrefixes);
  assert.is(model.numParameters({ trainableOnly: true }), 2048 * 5 + 5);
  model.requiresGrad(true);
  const x = Tensor.normal([2, 3, 32, 32], 0, 1, 1);
  scope(() => sum(logitsOf(model.call(x))).backward());
  const grads = new Map(model.namedParameters());
  for (const key of ['conv1.weight', 'layer1.0.bn1.weight', 'layer4.2.conv3.weight', 'fc.bias']) {
    const g = stats(await grads.get(key)!.grad!.toArray());
    assert.ok(Number.isFinite(g.std) && Math.max(g.max, -g.min) > 0, `${key} has a non-zero, finite gradient`);
  }
  assert.is(await (model.get('bn1') as BatchNorm2d).numBatchesTracked.item(), 1);
  x.dispose();
  model.dispose();
});

test('inception_v3: truncated normal init (0.1; AuxLogits.fc 0.001), Mixed_7c hook, forward at 75x75, aux rules', async () => {
  const model = inception_v3({ seed: 2, transformInput: true });
  const conv = await tensorStats(model, 'Mixed_6e.branch7x7dbl_1.conv.weight');
  closeTo(conv.std, 0.1, 0.02, 'conv std');
  assert.ok(conv.min >= -2 && conv.max <= 2);
  const aux = await tensorStats(model, 'AuxLogits.fc.weight');
  closeTo(aux.std, 0.001, 0.05, 'AuxLogits.fc std');
  closeTo((await tensorStats(model, 'fc.weight')).std, 0.1, 0.02, 'fc std');
  const fcBias = await tensorStats(model, 'fc.bias');
  assert.ok(fcBias.max <= 1 / Math.sqrt(2048) && fcBias.std > 0, 'fc bias keeps the nn.Linear default');

  const features: number[][] = [];
  const hook = model.registerForwardHook(MODELS.inception_v3.lastConvLayer, (_m, _x, out) => void features.push([...out.shape]));
  try {
    assert.equal((await evalForward(model, 1, 75)).shape, [1, 1000], 'eval returns logits only, even with the aux classifier');
  } finally {
    hook.remove();
  }
  assert.equal(features, [[1, 2048, 1, 1]]);
  assert.throws(() => scope(() => model.call(Tensor.zeros([1, 3, 74, 74]))), (e: Error) => e instanceof ShapeError && /H, W >= 75/.test(e.message));

  // Training with the aux classifier needs 299x299 inputs: a clear error below that.
  model.train();
  assert.throws(
    () => noGrad(() => scope(() => model.call(Tensor.normal([2, 3, 75, 75], 0, 1, 1)))),
    (e: Error) => e instanceof ShapeError && /auxLogits: false/.test(e.message),
  );
  model.dispose();
});

test('inception_v3: the aux classifier returns { logits, aux } in training; without it training returns logits; replaceHead swaps both', async () => {
  const auxHead = new InceptionAux(768, 10).initialize(0);
  const y = noGrad(() => auxHead.call(Tensor.normal([2, 768, 17, 17], 0, 1, 1)));
  assert.equal([...y.shape], [2, 10]);
  auxHead.dispose();

  const noAux = inception_v3({ auxLogits: false, numClasses: 4 }).train();
  const out = noGrad(() => scope(() => noAux.call(Tensor.normal([2, 3, 75, 75], 0, 1, 1))));
  assert.instance(out, Tensor);
  assert.equal([...(out as Tensor).shape], [2, 4]);
  noAux.dispose();

  const model = inception_v3({ meta: true });
  model.replaceHead(3, 1);
  const shapes = model.stateDictShapes();
  assert.equal(shapes.get('fc.weight'), [3, 2048]);
  assert.equal(shapes.get('AuxLogits.fc.weight'), [3, 768]);
});

test('densenet121: kaiming fan_in convs, classifier bias 0; features hook; forward at 32x32; state_dict round trip', async () => {
  const model = densenet121({ seed: 3 });
  closeTo((await tensorStats(model, 'features.denseblock3.denselayer5.conv2.weight')).std, Math.sqrt(2 / (128 * 9)), 0.02, 'conv2 std');
  const bias = await tensorStats(model, 'classifier.bias');
  assert.ok(bias.min === 0 && bias.max === 0, 'classifier bias 0');
  const features: number[][] = [];
  const hook = model.registerForwardHook(MODELS.densenet121.lastConvLayer, (_m, _x, out) => void features.push([...out.shape]));
  let out: Awaited<ReturnType<typeof evalForward>>;
  try {
    out = await evalForward(model, 1, 32);
  } finally {
    hook.remove();
  }
  assert.equal(features, [[1, 1024, 1, 1]]);
  assert.equal(out.shape, [1, 1000]);

  // Saving and loading by name reproduces the logits of another seed's model exactly.
  const other = densenet121({ seed: 4 });
  other.loadStateDict(await model.readStateDict());
  assert.equal(Array.from((await evalForward(other, 1, 32)).values), Array.from(out.values));
  model.dispose();
  other.dispose();
});

test('vgg16: kaiming fan_out convs, Linear N(0, 0.01); classifier.0 in row blocks within the binding limit; forward at 32x32', async () => {
  const model = vgg16({ seed: 5 });
  closeTo((await tensorStats(model, 'features.28.weight')).std, Math.sqrt(2 / (512 * 9)), 0.01, 'features.28 std');
  assert.ok((await tensorStats(model, 'features.0.bias')).max === 0, 'conv bias 0');
  closeTo((await tensorStats(model, 'classifier.3.weight')).std, 0.01, 0.01, 'classifier.3 std');

  const fc0 = model.get('classifier.0') as Linear;
  const limit = rt().device.limits.maxStorageBufferBindingSize;
  assert.is(fc0.weightBlocks.length, Math.ceil((4096 * 25088 * 4) / (Math.floor(limit / (25088 * 4)) * 25088 * 4)));
  assert.ok(fc0.weightBlocks.every((t) => t.byteLength <= limit));
  assert.is(fc0.weightBlocks.reduce((n, t) => n + t.shape[0], 0), 4096);

  const features: number[][] = [];
  const hook = model.registerForwardHook(MODELS.vgg16.lastConvLayer, (_m, _x, out) => void features.push([...out.shape]));
  let out: Awaited<ReturnType<typeof evalForward>>;
  try {
    out = await evalForward(model, 1, 32);
  } finally {
    hook.remove();
  }
  assert.equal(features, [[1, 512, 2, 2]]);
  assert.equal(out.shape, [1, 1000]);
  assert.ok(out.values.every(Number.isFinite));
  model.replaceHead(6, 0);
  assert.equal((await evalForward(model, 1, 32)).shape, [1, 6]);
  model.dispose();
});

test.run();
