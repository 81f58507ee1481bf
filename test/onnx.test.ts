// ONNX export (engine/io/onnx.ts): the protobuf encoding by hand, every exportable op against ONNX
// Runtime on a small module, each model's whole forward pass against ONNX Runtime, and the errors.
//
// Tolerance: ONNX Runtime's CPU kernels (MLAS) sum in another order than celgrad's WGSL kernels, and
// the rounding differences (~1e-7 relative per f32 operation) grow through 50 to 170 layers. The
// measured difference is 6e-7 to 5e-6 of the largest logit; 1e-4 leaves room for other inputs and
// seeds and is still far below what a wrong padding, epsilon, pooling divisor or weight layout gives
// (1e-2 and more).
// The difference is taken relative to the largest |logit|, not per element: logits near zero have no
// meaningful relative error.
import './gpu.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import {
  abs,
  addScalar,
  adaptiveAvgPool2d,
  avgPool2d,
  CelgradError,
  concat,
  crossEntropy,
  div,
  exp,
  expand,
  flatten,
  log,
  logSoftmax,
  matmul,
  max,
  maximum,
  maxPool2d,
  mean,
  mul,
  mulScalar,
  neg,
  noGrad,
  permute,
  powScalar,
  reshape,
  rt,
  scope,
  sigmoid,
  slice,
  softmax,
  sqrt,
  sub,
  sum,
  tanh,
  Tensor,
  upsampleBilinear,
} from '../engine/index.ts';
import { conv2d } from '../engine/ops/conv2d.ts';
import { BatchNorm2d, Dropout, Linear, Module } from '../engine/nn/index.ts';
import { installHead } from '../engine/nn/heads.ts';
import { ProtoMessage, toOnnx, varint } from '../engine/io/onnx.ts';
import { createModel, logitsOf, type ClassifierOutput } from '../models/index.ts';
import { saveWeights } from '../experiments/checkpoint.ts';
import { exportOnnx } from '../experiments/export.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bytesOf = (m: ProtoMessage) => [...m.finish()];

test('protobuf: varints, keys and length-delimited fields, by hand', () => {
  assert.equal([...varint(0)], [0x00]);
  assert.equal([...varint(1)], [0x01]);
  assert.equal([...varint(300)], [0xac, 0x02]);
  assert.equal([...varint(2 ** 32)], [0x80, 0x80, 0x80, 0x80, 0x10]);
  // int64 -1: 64-bit two's complement, ten bytes.
  assert.equal([...varint(-1)], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.throws(() => varint(0.5), /not an integer/);
  // OperatorSetIdProto { version = 17 }: key (2 << 3 | 0) = 0x10.
  assert.equal(bytesOf(new ProtoMessage().int(2, 17)), [0x10, 0x11]);
  // A string field: key (1 << 3 | 2), length, UTF-8.
  assert.equal(bytesOf(new ProtoMessage().string(1, 'ab')), [0x0a, 0x02, 0x61, 0x62]);
  // A float field: key (2 << 3 | 5), little-endian IEEE 754 (1.0 = 0x3f800000).
  assert.equal(bytesOf(new ProtoMessage().float(2, 1)), [0x15, 0x00, 0x00, 0x80, 0x3f]);
  // A nested message: key (7 << 3 | 2) = 0x3a, the inner length, the inner bytes.
  const inner = new ProtoMessage().int(1, 300);
  assert.equal(bytesOf(new ProtoMessage().message(7, inner).int(1, 8)), [0x3a, 0x03, 0x08, 0xac, 0x02, 0x08, 0x08]);
});

// ---------- running both sides ----------

/** celgrad's eval-mode output (no tape) and ONNX Runtime's on the same seeded input; the difference relative to the largest |output|. */
async function compareWithOrt(
  model: Module<unknown>,
  shape: number[],
  options: { output?: (out: unknown) => Tensor; bytes?: Uint8Array; outputName?: string } = {},
): Promise<{ error: number; bytes: Uint8Array; expected: Float32Array; actual: Float32Array }> {
  const pick = options.output ?? ((out: unknown) => out as Tensor);
  const x = Tensor.normal(shape, 0, 1, 7);
  const input = await x.toArray();
  model.eval();
  const y = noGrad(() => scope(() => pick(model.call(x))));
  const expected = await y.toArray();
  x.dispose();
  y.dispose();
  const bytes = options.bytes ?? (await toOnnx(model, shape, { output: pick }));
  // Graph optimisations off: ONNX Runtime runs the graph as exported, not its own fused rewrite of it
  // (and loads VGG-16's 512 MiB in a third of the time).
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
  const result = await session.run({ input: new ort.Tensor('float32', input, shape) });
  const output = result[options.outputName ?? 'output'];
  const actual = output.data as Float32Array;
  await session.release();
  assert.equal([...output.dims], [...y.shape]);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
  }
  assert.ok(scale > 0 && Number.isFinite(diff), `degenerate output (max |y| ${scale}, max difference ${diff})`);
  return { error: diff / scale, bytes, expected, actual };
}

const logits = (out: unknown) => logitsOf(out as ClassifierOutput);

function report(name: string, error: number, bytes: Uint8Array, started: number): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`  ${name}: max difference ${error.toExponential(2)} of max |logit|; ${(bytes.length / 2 ** 20).toFixed(1)} MiB; ${seconds} s`);
}

// ---------- every exportable op ----------

/** One module using every op with an ONNX form, each output flattened into one [N, K] result. */
class AllOps extends Module {
  readonly bn = this.addModule('bn', new BatchNorm2d(3));
  readonly fc = this.addModule('fc', new Linear(12, 5));
  readonly drop = this.addModule('drop', new Dropout(0.5));

  constructor() {
    super();
    this.declareParameter('proj', [49, 4]);
    this.declareParameter('conv_w', [6, 1, 3, 3]);
    this.declareParameter('conv_b', [6]);
  }

  forward(x: Tensor): Tensor {
    const [proj, convW, convB] = ['proj', 'conv_w', 'conv_b'].map((n) => this.tensor(n));
    const rows = reshape(x, [2, 3, 49]);
    const outputs = [
      conv2d(x, convW, convB, { stride: [2, 1], padding: [1, 0, 2, 1], dilation: [1, 2], groups: 3 }),
      this.bn.call(x),
      this.bn.callWithRelu(x),
      maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }),
      // PyTorch drops a last window that would start in the right padding: 7 -> 4, not 5.
      maxPool2d(x, { kernel: 2, stride: 2, padding: 1, ceilMode: true }),
      avgPool2d(x, { kernel: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad: false }),
      avgPool2d(x, { kernel: 3, stride: 1, padding: 1 }),
      // The last window overhangs the input: PyTorch divides by the 1 value inside.
      avgPool2d(x, { kernel: 2, stride: 2, ceilMode: true }),
      adaptiveAvgPool2d(x, 1),
      adaptiveAvgPool2d(x, 7),
      adaptiveAvgPool2d(x, 3),
      adaptiveAvgPool2d(slice(x, 2, 0, 1), [4, 2]),
      upsampleBilinear(x, [11, 5]),
      softmax(x, 1),
      logSoftmax(x, -1),
      matmul(rows, rows, { transB: true }),
      matmul(rows, rows, { transA: true }),
      matmul(rows, proj),
      this.fc.call(flatten(adaptiveAvgPool2d(x, 2), 1)),
      permute(x, [0, 2, 3, 1]),
      sub(x, expand(slice(x, 1, 0, 1), [2, 3, 7, 7])),
      div(x, addScalar(abs(x), 1)),
      mul(x, slice(x, 3, 2, 3)),
      maximum(x, neg(x)),
      exp(mulScalar(x, 0.5)),
      sqrt(abs(x)),
      log(addScalar(abs(x), 1)),
      sigmoid(x),
      tanh(x),
      powScalar(x, 3),
      sum(x, [2, 3]),
      mean(x, 1, true),
      max(x, [1, 3]),
      this.drop.call(x),
      // A constant made inside the forward pass, without the tape.
      mul(x, Tensor.fromArray([0.5, -1, 2], [1, 3, 1, 1])),
    ];
    return concat(outputs.map((t) => flatten(t, 1)), 1);
  }
}

function allOps(): AllOps {
  return new AllOps().initialize(3, (_m, name, shape, seed) =>
    name === 'running_var' ? Tensor.uniform(shape, 0.5, 1.5, seed) : Tensor.normal(shape, 0, 0.5, seed),
  );
}

test('every op with an ONNX form matches ONNX Runtime; modes and flags are restored', async () => {
  const model = allOps();
  model.train().requiresGrad(false);
  const before = rt().pool.getStats().inUse;
  const bytes = await toOnnx(model, [2, 3, 7, 7]);
  assert.is(rt().pool.getStats().inUse, before, 'the trace freed everything it made');
  assert.ok(model.training, 'train mode restored');
  assert.ok(model.bn.training, 'submodules too');
  assert.ok(model.parameters().every((t) => !t.requiresGrad), 'requiresGrad flags restored');
  const { expected, actual } = await compareWithOrt(model, [2, 3, 7, 7], { bytes });
  // Each op is one or a few f32 operations per value, so per element: within 2e-5 of |value| + 0.1. The
  // largest difference (~5e-6) is Resize's: its source coordinates come from out / in in ONNX Runtime and
  // from in / out in celgrad, an ulp apart.
  let worst = 0;
  expected.forEach((e, i) => (worst = Math.max(worst, Math.abs(actual[i] - e) / (Math.abs(e) + 0.1))));
  console.log(`  all ops: max difference ${worst.toExponential(2)} of (|value| + 0.1)`);
  assert.ok(worst <= 2e-5, `max difference ${worst} of (|value| + 0.1)`);
  model.dispose();
});

test('an op without an ONNX form is named in the error; state restored, nothing leaked', async () => {
  class WithLoss extends Module {
    readonly fc = this.addModule('fc', new Linear(4, 3));
    forward(x: Tensor): Tensor {
      return crossEntropy(this.fc.call(x), Tensor.fromArray([0, 2], [2], 'i32'));
    }
  }
  const model = new WithLoss().initialize(1);
  const before = rt().pool.getStats().inUse;
  try {
    await toOnnx(model, [2, 4]);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, CelgradError);
    assert.match((e as Error).message, /cannot export op 'crossEntropy' to ONNX/);
  }
  assert.is(rt().pool.getStats().inUse, before);
  assert.ok(model.training && model.parameters().every((t) => t.requiresGrad));
  model.dispose();
});

// ---------- the four models, whole forward pass ----------

const MODELS_AT = [
  ['resnet50', [2, 3, 64, 64]],
  ['densenet121', [2, 3, 64, 64]],
] as const;

for (const [name, shape] of MODELS_AT) {
  test(`${name} [${shape}]: ONNX Runtime agrees with celgrad`, async () => {
    const started = performance.now();
    const model = createModel(name, { numClasses: 10, seed: 11 });
    const { error, bytes } = await compareWithOrt(model, [...shape], { output: logits });
    report(name, error, bytes, started);
    assert.ok(error <= 1e-4, `max relative difference ${error}`);
    const text = new TextDecoder('latin1').decode(bytes);
    for (const [key] of [...model.namedParameters(), ...model.namedBuffers()]) {
      if (!key.endsWith('num_batches_tracked')) assert.ok(text.includes(key), `initializer '${key}' is named by the state_dict`);
    }
    model.dispose();
  });
}

test('inception_v3 [2,3,75,75], auxLogits false and true: the same graph, and ONNX Runtime agrees', async () => {
  const started = performance.now();
  const plain = createModel('inception_v3', { numClasses: 10, seed: 11, auxLogits: false });
  const withAux = createModel('inception_v3', { numClasses: 10, seed: 12, auxLogits: true });
  withAux.loadStateDict(await plain.readStateDict(), { strict: false });
  const shape = [2, 3, 75, 75];
  const { error, bytes, expected } = await compareWithOrt(plain, shape, { output: logits });
  report('inception_v3', error, bytes, started);
  assert.ok(error <= 1e-4, `max relative difference ${error}`);
  // Eval mode never runs AuxLogits, so with the same weights the two files are the same bytes.
  const auxBytes = await toOnnx(withAux, shape, { output: logits });
  assert.ok(auxBytes.length === bytes.length && auxBytes.every((b, i) => b === bytes[i]), 'identical ONNX files');
  assert.not.ok(new TextDecoder('latin1').decode(auxBytes).includes('AuxLogits'));
  const aux = await compareWithOrt(withAux, shape, { output: logits, bytes: auxBytes });
  assert.equal(aux.expected, expected);
  plain.dispose();
  withAux.dispose();
});

test('vgg16 [2,3,32,32]: ONNX Runtime agrees with celgrad (classifier.0 in row blocks)', async () => {
  const started = performance.now();
  const model = createModel('vgg16', { numClasses: 10, seed: 11 });
  const { error, bytes } = await compareWithOrt(model, [2, 3, 32, 32], { output: logits });
  report('vgg16', error, bytes, started);
  assert.ok(error <= 1e-4, `max relative difference ${error}`);
  model.dispose();
});

test('exportOnnx: a trained run folder (weights, ArcFace head, classes, input size) and a seeded model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'celgrad-onnx-'));
  try {
    const classes = ['cat', 'dog', 'owl'];
    const model = createModel('densenet121', { numClasses: classes.length, seed: 5 });
    installHead(model, 'arcface', classes.length, 6);
    await saveWeights(join(dir, 'best.safetensors'), model);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model: 'densenet121', inputSize: 32, classes, head: 'arcface' }));
    const out = join(dir, 'run.onnx');
    const result = await exportOnnx({ run: dir, out, batch: 2 });
    assert.equal(result.inputShape, [2, 3, 32, 32]);
    const bytes = new Uint8Array(readFileSync(out));
    assert.ok(new TextDecoder().decode(bytes).includes(JSON.stringify(classes)), 'class names in the metadata');
    const session = await ort.InferenceSession.create(bytes);
    assert.equal([session.inputNames, session.outputNames], [['input'], ['logits']]);
    await session.release();
    const { error } = await compareWithOrt(model, [2, 3, 32, 32], { output: logits, bytes, outputName: 'logits' });
    assert.ok(error <= 1e-4, `max relative difference ${error}`);
    model.dispose();

    const seeded = await exportOnnx({ model: 'densenet121', out: join(dir, 'seeded.onnx'), imageSize: 33, numClasses: 4, seed: 1 });
    assert.equal(seeded.inputShape, [1, 3, 33, 33]);
    const check = await ort.InferenceSession.create(join(dir, 'seeded.onnx'));
    const y = await check.run({ input: new ort.Tensor('float32', new Float32Array(3 * 33 * 33), [1, 3, 33, 33]) });
    assert.equal(y.logits.dims, [1, 4]);
    await check.release();
    await exportOnnx({ out: join(dir, 'x.onnx') }).then(
      () => assert.unreachable('needs --run or --model'),
      (e: Error) => assert.match(e.message, /exactly one of --run RUN or --model NAME/),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
