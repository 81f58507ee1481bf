// Tests for engine/io: safetensors read/write, torch.save (zip and legacy) reading, format detection.
// Fixtures live in test/fixtures/weights (see SOURCES.md there). Expected values come from SOURCES.md,
// from hand-computed bit patterns, or from an independent reader (CPython pickle + numpy), as noted.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { WeightsError } from '../engine/errors.ts';
import { PyCallable, unpickle } from '../engine/io/pickle.ts';
import { readSafetensors, readTorchFile, readWeights, remapTorchvisionDenseNetKeys, writeSafetensors, type NamedArray } from '../engine/io/index.ts';

// The bundle runs from dist/test/, so the fixtures are two folders up.
const fixture = (path: string): Uint8Array => new Uint8Array(readFileSync(new URL(`../../test/fixtures/weights/${path}`, import.meta.url)));

// ---------- helpers ----------

function throwsWeights(fn: () => unknown, pattern: RegExp, key?: string): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, WeightsError, `expected WeightsError, got ${String(e)}`);
    assert.ok(pattern.test((e as Error).message), `message "${(e as Error).message}" does not match ${pattern}`);
    if (key !== undefined) assert.is((e as WeightsError).key, key);
    return;
  }
  assert.unreachable(`expected a WeightsError matching ${pattern}`);
}

function get(map: Map<string, NamedArray>, key: string): NamedArray {
  const value = map.get(key);
  if (!value) assert.unreachable(`missing tensor '${key}' (have ${[...map.keys()].join(', ')})`);
  return value!;
}

function values(map: Map<string, NamedArray>, key: string): number[] {
  return Array.from(get(map, key).data);
}

function closeTo(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);
}

function bits(data: Float32Array): number[] {
  return Array.from(new Uint32Array(data.buffer, data.byteOffset, data.length));
}

type Part = Uint8Array | number[] | string;
const utf8 = (s: string) => new TextEncoder().encode(s);
/** Concatenates byte parts; strings are taken byte-per-char (latin1), like pickle opcode text. */
function cat(...parts: Part[]): Uint8Array {
  const arrays = parts.map((p) => (typeof p === 'string' ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : Uint8Array.from(p)));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}
const u16 = (v: number) => [v & 0xff, (v >>> 8) & 0xff];
const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const u64 = (v: number) => [...u32(v % 2 ** 32), ...u32(Math.floor(v / 2 ** 32))];

/** A safetensors file from a raw header object and buffer (no validation, so it can be broken on purpose). */
function rawSafetensors(header: unknown, buffer: Part = []): Uint8Array {
  const json = utf8(JSON.stringify(header));
  return cat(u64(json.length), json, buffer);
}

// A tiny pickle assembler for hand-made torch files.
const S = (s: string) => cat([0x58], u32(utf8(s).length), utf8(s)); // BINUNICODE
const I = (n: number) => cat([0x4a], u32(n)); // BININT
const G = (module: string, name: string) => `c${module}\n${name}\n`; // GLOBAL
const T = (...items: Part[]) => cat('(', ...items, 't'); // TUPLE
const pickle = (...body: Part[]) => cat('\x80\x02', ...body, '.');
const dict = (...entries: Array<[string, Part]>) => cat('}(', ...entries.flatMap(([k, v]) => [S(k), v]), 'u');
/** _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()); legacy persistent ids carry a 6th item (view). */
function tensorPickle(type: string, key: string, numel: number, offset: number, size: number[], stride: number[], legacy = false): Uint8Array {
  const pid = T(S('storage'), G('torch', type), S(key), S('cpu'), I(numel), legacy ? 'N' : '');
  return cat(G('torch._utils', '_rebuild_tensor_v2'), '(', pid, 'Q', I(offset), T(...size.map(I)), T(...stride.map(I)), '\x89', G('collections', 'OrderedDict'), ')R', 't', 'R');
}

/** A zip of stored entries; `zip64` moves sizes and offsets into ZIP64 extra fields and records. */
function makeZip(entries: Array<[string, Uint8Array]>, options: { method?: number; zip64?: boolean } = {}): Uint8Array {
  const { method = 0, zip64 = false } = options;
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = utf8(name);
    const local = cat(u32(0x04034b50), u16(20), u16(0), u16(method), u16(0), u16(0), u32(0), u32(data.length), u32(data.length), u16(nameBytes.length), u16(0), nameBytes, data);
    const big = (v: number) => (zip64 ? 0xffffffff : v);
    const extra = zip64 ? cat(u16(1), u16(24), u64(data.length), u64(data.length), u64(offset)) : new Uint8Array();
    centrals.push(cat(u32(0x02014b50), u16(45), u16(45), u16(0), u16(method), u16(0), u16(0), u32(0), u32(big(data.length)), u32(big(data.length)),
      u16(nameBytes.length), u16(extra.length), u16(0), u16(0), u16(0), u32(0), u32(big(offset)), nameBytes, extra));
    locals.push(local);
    offset += local.length;
  }
  const directory = cat(...centrals);
  const end = zip64
    ? cat(
        cat(u32(0x06064b50), u64(44), u16(45), u16(45), u32(0), u32(0), u64(entries.length), u64(entries.length), u64(directory.length), u64(offset)),
        cat(u32(0x07064b50), u32(0), u64(offset + directory.length), u32(1)),
        cat(u32(0x06054b50), u16(0), u16(0), u16(0xffff), u16(0xffff), u32(0xffffffff), u32(0xffffffff), u16(0)),
      )
    : cat(u32(0x06054b50), u16(0), u16(0), u16(entries.length), u16(entries.length), u32(directory.length), u32(offset), u16(0));
  return cat(...locals, directory, end);
}

function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, options: { byteorder?: string; method?: number; zip64?: boolean } = {}): Uint8Array {
  const entries: Array<[string, Uint8Array]> = [['archive/data.pkl', pkl], ['archive/byteorder', utf8(options.byteorder ?? 'little')]];
  for (const [key, data] of Object.entries(storages)) entries.push([`archive/data/${key}`, data]);
  return makeZip(entries, options);
}

const f32le = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
const LEGACY_PROTOCOL = [0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e];
/** A legacy torch.save file: magic, protocol, sys_info, the object, storage keys, then count + bytes per storage. */
function legacyFile(main: Uint8Array, storages: Array<[string, number, Uint8Array]>): Uint8Array {
  const sysInfo = pickle(dict(['little_endian', '\x88']));
  const keys = pickle(']', '(', ...storages.map(([k]) => S(k)), 'e');
  return cat(LEGACY_MAGIC, LEGACY_PROTOCOL, sysInfo, main, keys, ...storages.flatMap(([, count, data]) => [u64(count), data]));
}

// ---------- safetensors ----------

test('safetensors: hf sample holds range(-3,3) in nine dtypes, metadata, file order', () => {
  const { tensors, metadata } = readSafetensors(fixture('safetensors/hf-samples/overall.safetensors'));
  assert.equal(metadata, { test: 'a' });
  assert.equal([...tensors.keys()], ['B', 'H', 'I', 'b', 'd', 'e', 'f', 'h', 'i']);
  assert.equal(values(tensors, 'B'), [253, 254, 255, 0, 1, 2]); // unsigned wrap of -3..-1
  assert.equal(values(tensors, 'H'), [65533, 65534, 65535, 0, 1, 2]);
  // 2^32-3 .. 2^32-1 round to 2^32 in float32
  assert.equal(values(tensors, 'I'), [2 ** 32, 2 ** 32, 2 ** 32, 0, 1, 2]);
  for (const key of ['b', 'd', 'e', 'f', 'h', 'i']) {
    assert.equal(values(tensors, key), [-3, -2, -1, 0, 1, 2], key);
    assert.equal(get(tensors, key).shape, [6]);
  }
  assert.equal(['B', 'H', 'I', 'b', 'd', 'e', 'f', 'h', 'i'].map((k) => get(tensors, k).dtype), ['U8', 'U16', 'U32', 'I8', 'F64', 'F16', 'F32', 'I16', 'I32']);
});

test('safetensors: burn multi_layer names, shapes, I64 scalar, values (numpy-checked)', () => {
  const { tensors, metadata } = readSafetensors(fixture('safetensors/burn/multi_layer.safetensors'));
  assert.equal(metadata, {});
  const shapes = Object.fromEntries([...tensors].map(([k, v]) => [k, v.shape]));
  assert.equal(shapes, {
    'norm1.num_batches_tracked': [], 'conv1.bias': [4], 'conv1.weight': [4, 3, 3, 3], 'fc1.bias': [16], 'fc1.weight': [16, 256],
    'norm1.bias': [4], 'norm1.running_mean': [4], 'norm1.running_var': [4], 'norm1.weight': [4],
  });
  const step = get(tensors, 'norm1.num_batches_tracked');
  assert.is(step.dtype, 'I64');
  assert.equal(Array.from(step.data), [1]);
  const conv = values(tensors, 'conv1.weight');
  assert.is(conv[0], Math.fround(0.09916245192289352));
  assert.is(conv[107], Math.fround(0.010049121454358101));
  closeTo(values(tensors, 'fc1.weight').reduce((a, b) => a + b, 0), -3.8182605504989624, 1e-6, 'sum fc1.weight');
  assert.equal(values(tensors, 'norm1.weight'), [1, 1, 1, 1]);
});

test('safetensors: F16 and BF16 decode to hand-computed values', () => {
  // F16: sign | 5-bit exponent (bias 15) | 10-bit fraction.
  const f16 = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x7e00];
  const f16Expected = [1, -2, 1365 / 4096, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity, NaN];
  // BF16: the top 16 bits of a float32.
  const bf16 = [0x3f80, 0x4049, 0xc2f7, 0x0001, 0x7f80, 0xff7f];
  const bf16Expected = [1, 3.140625, -123.5, 2 ** -133, Infinity, -255 * 2 ** 120];
  const file = rawSafetensors(
    {
      a: { dtype: 'F16', shape: [10], data_offsets: [0, 20] },
      b: { dtype: 'BF16', shape: [2, 3], data_offsets: [20, 32] },
      c: { dtype: 'I64', shape: [3], data_offsets: [32, 56] },
    },
    cat(...f16.map(u16), ...bf16.map(u16), u64(2 ** 33), [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], u64(0)),
  );
  const { tensors } = readSafetensors(file);
  values(tensors, 'a').forEach((v, i) => assert.ok(Object.is(v, f16Expected[i]), `f16 0x${f16[i].toString(16)}: ${v} != ${f16Expected[i]}`));
  values(tensors, 'b').forEach((v, i) => assert.ok(Object.is(v, bf16Expected[i]), `bf16 0x${bf16[i].toString(16)}: ${v} != ${bf16Expected[i]}`));
  assert.equal(get(tensors, 'b').shape, [2, 3]);
  assert.equal(values(tensors, 'c'), [2 ** 33, -3, 0]);
});

test('safetensors: write then read is bit-exact, sorted by code point, header padded to 8', () => {
  const special = new Float32Array(new Uint32Array([0x7fc00001, 0x80000000, 0x7f800000, 0x00000001, 0x7f7fffff, 0x3eaaaaab]).buffer);
  const input: Array<[string, { shape: number[]; data: Float32Array }]> = [
    ['😀', { shape: [2, 3], data: special }],
    ['\ue000', { shape: [], data: new Float32Array([42.5]) }],
    ['b', { shape: [0, 4], data: new Float32Array(0) }],
    ['a.weight', { shape: [3], data: new Float32Array([1, -2, 3.25]) }],
    ['10', { shape: [1], data: new Float32Array([7]) }],
    ['9', { shape: [1], data: new Float32Array([8]) }],
  ];
  const bytes = writeSafetensors(input, { format: 'pt', note: 'é' });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is(headerLength % 8, 0);
  assert.match(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)), /^\{.*\} *$/s); // JSON, then space padding
  const { tensors, metadata } = readSafetensors(bytes);
  assert.equal(metadata, { format: 'pt', note: 'é' });
  // UTF-8 byte order: U+E000 sorts before U+1F600 although its UTF-16 code unit is larger.
  assert.equal([...tensors.keys()], ['10', '9', 'a.weight', 'b', '\ue000', '😀']);
  for (const [name, { shape, data }] of input) {
    const read = get(tensors, name);
    assert.equal(read.shape, shape, name);
    assert.is(read.dtype, 'F32');
    assert.equal(bits(read.data), bits(data), name);
  }
  // And a real file: its F32 tensors survive write -> read unchanged.
  const real = readSafetensors(fixture('safetensors/burn/multi_layer.safetensors')).tensors;
  const again = readSafetensors(writeSafetensors(real)).tensors;
  for (const [name, t] of real) assert.equal(bits(get(again, name).data), bits(t.data), name);
});

test('safetensors: writer refuses bad input', () => {
  throwsWeights(() => writeSafetensors([['x', { shape: [2, 2], data: new Float32Array(3) }]]), /shape \[2,2\] has 4 elements but data has 3/, 'x');
  throwsWeights(() => writeSafetensors([['x', { shape: [1], data: new Float32Array(1) }], ['x', { shape: [1], data: new Float32Array(1) }]]), /given twice/, 'x');
  throwsWeights(() => writeSafetensors([['__metadata__', { shape: [1], data: new Float32Array(1) }]]), /reserved/);
});

test('safetensors: corrupt files give informative WeightsErrors', () => {
  const good = fixture('safetensors/hf-samples/overall.safetensors');
  throwsWeights(() => readSafetensors(good.subarray(0, good.length - 4)), /cover 168 buffer bytes but the file holds 164.*truncated/);
  throwsWeights(() => readSafetensors(good.subarray(0, 5)), /shorter than the 8-byte header length/);
  throwsWeights(() => readSafetensors(good.subarray(0, 100)), /header length 526 runs past the end of the 100-byte file/);
  const huge = good.slice();
  huge[6] = 0x01; // header length 2^48 + 526
  throwsWeights(() => readSafetensors(huge), /exceeds the format's limit/);
  const badJson = good.slice();
  badJson[8 + 525] = 0x78; // the closing '}' becomes 'x'
  throwsWeights(() => readSafetensors(badJson), /not valid JSON/);
  throwsWeights(() => readSafetensors(rawSafetensors([1, 2])), /must be a JSON object starting with/);
  throwsWeights(
    () => readSafetensors(rawSafetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32le(0, 0))),
    /a hole \(bytes 0\.\.4 belong to no tensor\)/, 'a',
  );
  throwsWeights(
    () => readSafetensors(rawSafetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32le(0, 0))),
    /overlap/, 'b',
  );
  throwsWeights(() => readSafetensors(rawSafetensors({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32le(0, 0))), /needs 12 bytes but data_offsets \[0, 8\] span 8/, 'a');
  throwsWeights(() => readSafetensors(rawSafetensors({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, [0])), /dtype "F8_E4M3" is not supported/, 'a');
  throwsWeights(() => readSafetensors(rawSafetensors({ __metadata__: { n: 1 } })), /string values/, '__metadata__');
});

// ---------- torch.save zip ----------

test('torch zip: real MNIST state_dict (names, shapes, values checked with CPython pickle + numpy)', () => {
  const tensors = readTorchFile(fixture('torch/burn/mnist.pt'));
  const shapes = [...tensors].map(([k, v]) => `${k} ${v.dtype} [${v.shape}]`);
  assert.equal(shapes, [
    'conv1.weight F32 [8,1,3,3]', 'conv1.bias F32 [8]', 'conv2.weight F32 [16,8,3,3]', 'conv2.bias F32 [16]',
    'conv3.weight F32 [24,16,3,3]', 'conv3.bias F32 [24]', 'norm1.weight F32 [24]', 'norm1.bias F32 [24]',
    'norm1.running_mean F32 [24]', 'norm1.running_var F32 [24]', 'norm1.num_batches_tracked I64 []',
    'fc1.weight F32 [32,11616]', 'fc1.bias F32 [32]', 'fc2.weight F32 [10,32]', 'fc2.bias F32 [10]',
    'norm2.weight F32 [10]', 'norm2.bias F32 [10]', 'norm2.running_mean F32 [10]', 'norm2.running_var F32 [10]',
    'norm2.num_batches_tracked I64 []',
  ]);
  const checks: Array<[string, number, number, number]> = [
    // name, first, last, float64 sum
    ['conv1.weight', 0.16227687895298004, -0.20682549476623535, -0.2826172108761966],
    ['conv3.weight', -0.12507911026477814, -0.05927503854036331, -55.32611427820666],
    ['fc1.weight', 0.0016727697802707553, -0.01694413833320141, -510.434496281791],
    ['norm2.running_var', 86.590087890625, 78.60401916503906, 708.1247406005859],
  ];
  for (const [name, first, last, sum] of checks) {
    const data = get(tensors, name).data;
    assert.is(data[0], Math.fround(first), `${name}[0]`);
    assert.is(data[data.length - 1], Math.fround(last), `${name}[-1]`);
    closeTo(data.reduce((a, b) => a + b, 0), sum, Math.abs(sum) * 1e-9 + 1e-9, `sum ${name}`);
  }
  assert.equal(values(tensors, 'norm1.num_batches_tracked'), [3752]);
});

test('torch zip: BatchNorm2d state_dict, f16 and bf16 tensors', () => {
  const bn = readTorchFile(fixture('torch/burn/batch_norm2d.pt'));
  assert.equal([...bn.keys()], ['norm1.weight', 'norm1.bias', 'norm1.running_mean', 'norm1.running_var', 'norm1.num_batches_tracked']);
  assert.equal(values(bn, 'norm1.running_mean'), Array(5).fill(Math.fround(0.05)));
  assert.equal(values(bn, 'norm1.running_var'), Array(5).fill(Math.fround(0.9)));
  assert.equal(get(bn, 'norm1.num_batches_tracked'), { shape: [], data: new Float32Array([1]), dtype: 'I64' });
  // Stored bits: f16 3e00 c080 4240, bf16 3fc0 c020 4060.
  assert.equal(readTorchFile(fixture('torch/burn/float16.pt')).get('tensor'), { shape: [3], data: new Float32Array([1.5, -2.25, 3.125]), dtype: 'F16' });
  assert.equal(readTorchFile(fixture('torch/burn/bfloat16.pt')).get('tensor'), { shape: [3], data: new Float32Array([1.5, -2.5, 3.5]), dtype: 'BF16' });
});

test('torch: a training checkpoint resolves to model_state_dict', () => {
  const tensors = readTorchFile(fixture('torch/burn/checkpoint.pt'));
  assert.equal([...tensors.keys()], ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
  assert.equal(get(tensors, 'fc1.weight').shape, [10, 5]);
  const w = get(tensors, 'fc1.weight').data;
  assert.is(w[0], Math.fround(1.0414010286331177));
  assert.is(w[49], Math.fround(1.080486536026001));
  assert.is(get(tensors, 'fc2.bias').data[2], Math.fround(0.4995947778224945));
});

test('torch: every dtype, zip and legacy give identical results; non-contiguous views are materialised', () => {
  const zip = readTorchFile(fixture('torch/bumblebee/tensors.zip.pt'));
  const legacy = readTorchFile(fixture('torch/bumblebee/tensors.legacy.pt'));
  assert.equal(zip, legacy);
  assert.equal([...zip.values()].map((t) => t.dtype), ['F64', 'F32', 'F16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'BF16', 'C128', 'C64']);
  for (const key of ['0', '1', '2', '3', '4', '5', '6', '9']) assert.equal(values(zip, key), [-1, 1], key);
  assert.equal(values(zip, '7'), [0, 1]);
  assert.equal(values(zip, '8'), [0, 1, 0, 1]);
  // complex [1-1j, 1+1j] as (real, imaginary) pairs
  assert.equal(get(zip, '11'), { shape: [2, 2], data: new Float32Array([1, -1, 1, 1]), dtype: 'C64' });
  assert.equal(get(zip, '10').data, new Float32Array([1, -1, 1, 1]));

  // int64 [2,2,3] with stride (1,6,2) over [1,1,2,2,...,6,6] (numpy as_strided gives this)
  const expected = { shape: [2, 2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]), dtype: 'I64' };
  assert.equal(readTorchFile(fixture('torch/bumblebee/noncontiguous_tensor.zip.pt')), new Map([['', expected]]));
  assert.equal(readTorchFile(fixture('torch/bumblebee/noncontiguous_tensor.legacy.pt')), new Map([['', expected]]));
  assert.equal([...readTorchFile(fixture('torch/bumblebee/state_dict_full.zip.pt')).keys()], [
    'base.conv.weight', 'base.conv.bias', 'classifier.layers.0.weight', 'classifier.layers.0.bias', 'extra.weight',
  ]);
});

// ---------- torch legacy ----------

test('torch legacy: dict of tensors, shared storage with offsets', () => {
  const simple = readTorchFile(fixture('torch/burn/simple_legacy.pt'));
  assert.equal([...simple.keys()], ['weight', 'bias', 'running_mean']);
  assert.equal(get(simple, 'weight').shape, [2, 3]);
  assert.is(get(simple, 'weight').data[0], Math.fround(-1.8129550218582153));
  assert.is(get(simple, 'weight').data[5], Math.fround(2.087892770767212));
  assert.equal(values(simple, 'bias'), [1, 1]);
  assert.equal(values(simple, 'running_mean'), [0, 0]);

  const views = readTorchFile(fixture('torch/burn/legacy_uncloned_views.pt'));
  assert.equal(values(views, 'tensor1'), Array.from({ length: 10 }, (_, i) => 10 + i));
  assert.equal(values(views, 'tensor2'), Array.from({ length: 10 }, (_, i) => 50 + i));

  const offsets = readTorchFile(fixture('torch/burn/legacy_with_offsets.pt'));
  values(offsets, 'tensor1').forEach((v, i) => closeTo(v, 1 + i / 100, 1e-6, `tensor1[${i}]`));
  values(offsets, 'tensor3').forEach((v, i) => closeTo(v, 3 + i / 10, 1e-6, `tensor3[${i}]`));

  const shared = readTorchFile(fixture('torch/burn/legacy_shared_storage.pt'));
  assert.equal([...shared].map(([k, v]) => `${k} [${v.shape}]`), ['view1 [10]', 'view2 [20]', 'view3 [10]']);
  assert.is(get(shared, 'view2').data[19], Math.fround(0.9274455308914185));
});

// ---------- hand-made files: formats, layouts and refusals ----------

const twoTensorPickle = pickle(dict(['w', tensorPickle('FloatStorage', '0', 6, 0, [2, 3], [3, 1])], ['b', tensorPickle('HalfStorage', '1', 2, 0, [2], [1])]));
const twoTensorStorages = { '0': f32le(1, 2, 3, 4, 5, 6), '1': cat(u16(0x3c00), u16(0xc000)) };

test('torch zip: ZIP64 records, big-endian byteorder, transposed view with offset', () => {
  const plain = readTorchFile(torchZip(twoTensorPickle, twoTensorStorages));
  assert.equal(values(plain, 'w'), [1, 2, 3, 4, 5, 6]);
  assert.equal(values(plain, 'b'), [1, -2]);
  assert.equal(readTorchFile(torchZip(twoTensorPickle, twoTensorStorages, { zip64: true })), plain);

  const swap = (b: Uint8Array, size: number) => cat(...Array.from({ length: b.length / size }, (_, i) => Array.from(b.subarray(i * size, (i + 1) * size)).reverse()));
  const big = torchZip(twoTensorPickle, { '0': swap(twoTensorStorages['0'], 4), '1': swap(twoTensorStorages['1'], 2) }, { byteorder: 'big' });
  assert.equal(readTorchFile(big), plain);

  // size [3,2] stride [1,3] offset 1 over a 7-element storage: the transpose of [[1,2,3],[4,5,6]]
  const transposed = pickle(dict(['t', tensorPickle('FloatStorage', '0', 7, 1, [3, 2], [1, 3])]));
  assert.equal(values(readTorchFile(torchZip(transposed, { '0': f32le(0, 1, 2, 3, 4, 5, 6) })), 't'), [1, 4, 2, 5, 3, 6]);
  // stride 0: an expanded row, as torch.save keeps it
  const expanded = pickle(dict(['e', tensorPickle('FloatStorage', '0', 3, 0, [2, 3], [0, 1])]));
  assert.equal(values(readTorchFile(torchZip(expanded, { '0': f32le(7, 8, 9) })), 'e'), [7, 8, 9, 7, 8, 9]);
});

// Protocol-4 data.pkl written by CPython's pickle.Pickler(protocol=4) for
// {'w': tensor [2,3] stride (3,1), 'wt': tensor [3,2] stride (1,3) (same FloatStorage '0', 6 elements),
//  'meta': {'lr': 0.5, 'big': 2**70, 'neg': -5, 'name': 'é', 'flag': True, 'none': None, 'list': [1, 2]}},
// with stand-in modules named torch / torch._utils / collections (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, LONG1).
const PROTOCOL4 = Uint8Array.from(
  ('80049525010000000000007d94288c0177948c0c746f7263682e5f7574696c73948c125f72656275696c645f74656e736f725f763294939428288c07' +
    '73746f72616765948c05746f726368948c0c466c6f617453746f726167659493948c0130948c03637075944b067494514b004b024b0386944b034b01' +
    '8694898c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294749452948c0277749468042828680568086809680a4b0674' +
    '94514b004b034b0286944b014b038694896810295294749452948c046d657461947d94288c026c7294473fe00000000000008c03626967948a090000' +
    '000000000000408c036e6567944afbffffff8c046e616d65948c02c3a9948c04666c616794888c046e6f6e65944e8c046c697374945d94284b014b02' +
    '6575752e').match(/../g)!,
  (h) => parseInt(h, 16),
);

test('pickle: protocol 4 from CPython decodes scalars, strings, memo and stack globals', () => {
  const { value, end } = unpickle(PROTOCOL4, 0, {
    findGlobal: (module, name) => new PyCallable(`${module}.${name}`, (args) => ({ called: `${module}.${name}`, args })),
    persistentLoad: (pid) => ({ pid }),
  });
  assert.is(end, PROTOCOL4.length);
  const meta = (value as Map<string, unknown>).get('meta') as Map<string, unknown>;
  assert.equal([...meta], [['lr', 0.5], ['big', 2n ** 70n], ['neg', -5], ['name', 'é'], ['flag', true], ['none', null], ['list', [1, 2]]]);
  const tensors = readTorchFile(torchZip(PROTOCOL4, { '0': f32le(1, 2, 3, 4, 5, 6) }));
  assert.equal([...tensors.keys()], ['w', 'wt']);
  assert.equal(values(tensors, 'w'), [1, 2, 3, 4, 5, 6]);
  assert.equal(values(tensors, 'wt'), [1, 4, 2, 5, 3, 6]);
});

test('torch: nested checkpoints, parameters, ambiguity', () => {
  const param = cat(G('torch._utils', '_rebuild_parameter'), '(', tensorPickle('FloatStorage', '0', 6, 0, [6], [1]), '\x88', G('collections', 'OrderedDict'), ')R', 't', 'R');
  const nested = pickle(dict(['epoch', I(3)], ['state_dict', dict(['p', param])]));
  assert.equal(values(readTorchFile(torchZip(nested, { '0': f32le(1, 2, 3, 4, 5, 6) })), 'p'), [1, 2, 3, 4, 5, 6]);

  // No preferred key: the single nested dict holding tensors is used.
  const deep = pickle(dict(['a', dict(['b', dict(['x', tensorPickle('FloatStorage', '0', 6, 0, [6], [1])])])]));
  assert.equal([...readTorchFile(torchZip(deep, { '0': f32le(1, 2, 3, 4, 5, 6) })).keys()], ['x']);

  const two = pickle(dict(['a', dict(['x', tensorPickle('FloatStorage', '0', 6, 0, [6], [1])])], ['b', dict(['y', tensorPickle('FloatStorage', '0', 6, 0, [6], [1])])]));
  throwsWeights(() => readTorchFile(torchZip(two, { '0': f32le(1, 2, 3, 4, 5, 6) })), /several nested containers: 'a' \(1 tensors\), 'b' \(1 tensors\)/);
});

test('torch: refuses globals outside the allow-list, naming them', () => {
  const system = pickle(G('os', 'system'), S('echo pwned'), '\x85R');
  throwsWeights(() => readTorchFile(torchZip(system, {})), /global 'os\.system', which is not on the allow-list/, 'os.system');
  throwsWeights(() => readTorchFile(legacyFile(system, [])), /'os\.system'/, 'os.system');
  // protocol 4 STACK_GLOBAL route
  const stacked = cat('\x80\x04', [0x8c, 5], 'posix', [0x8c, 6], 'system', [0x93], S('id'), '\x85R.');
  throwsWeights(() => readTorchFile(torchZip(stacked, {})), /'posix\.system'/, 'posix.system');
  throwsWeights(() => readTorchFile(torchZip(pickle(G('__torch__', 'Net'), ')R'), {})), /TorchScript archive/);
  throwsWeights(() => readTorchFile(torchZip(pickle(G('torch.storage', '_load_from_bytes'), ')R'), {})), /_load_from_bytes/);
  // REDUCE on something that is not an allowed callable
  throwsWeights(() => readTorchFile(torchZip(pickle(S('x'), ')R'), {})), /REDUCE on string x, which is not a callable/);
});

test('torch: malformed, truncated and non-tensor files give informative WeightsErrors', () => {
  const mnist = fixture('torch/burn/mnist.pt');
  throwsWeights(() => readTorchFile(mnist.subarray(0, 700_000)), /no end-of-central-directory record; the file is truncated/);
  const legacy = fixture('torch/burn/simple_legacy.pt');
  throwsWeights(() => readTorchFile(legacy.subarray(0, 602)), /the file ends before storage '94081736991712'; the file is truncated/);
  throwsWeights(() => readTorchFile(legacy.subarray(0, 610)), /storage '94081736991712' needs 8 bytes but the file ends first; the file is truncated/);
  throwsWeights(() => readTorchFile(legacy.subarray(0, 300)), /pickle at byte \d+: .*; the file is truncated/);
  throwsWeights(() => readTorchFile(fixture('torch/bumblebee/ordered_dict.zip.pt')), /holds no tensors \(it holds a dict with keys x, y\)/);
  throwsWeights(() => readTorchFile(torchZip(twoTensorPickle, twoTensorStorages, { method: 8 })), /compressed \(method 8\).*zip -0/);
  throwsWeights(() => readTorchFile(torchZip(twoTensorPickle, { '0': twoTensorStorages['0'] })), /'archive\/data\/1' is missing/);
  throwsWeights(() => readTorchFile(torchZip(twoTensorPickle, { ...twoTensorStorages, '0': f32le(1, 2) })), /storage '0' holds 8 bytes but 6 elements of F32 need 24/);
  const outside = pickle(dict(['t', tensorPickle('FloatStorage', '0', 4, 2, [2, 2], [2, 1])]));
  throwsWeights(() => readTorchFile(torchZip(outside, { '0': f32le(1, 2, 3, 4) })), /reaches past the end of its 4-element storage/, 't');
  const expanded = pickle(dict(['t', tensorPickle('FloatStorage', '0', 1, 0, [65536, 65536], [0, 0])]));
  throwsWeights(() => readTorchFile(torchZip(expanded, { '0': f32le(1) })), /has 4294967296 elements, more than/, 't');
  throwsWeights(() => readTorchFile(makeZip([['x/other.txt', utf8('hi')]])), /no '<archive>\/data\.pkl' record \(entries: x\/other\.txt\)/);
  throwsWeights(() => readTorchFile(cat(LEGACY_MAGIC.map((b, i) => (i === 5 ? 0 : b)))), /magic number mismatch/);
  throwsWeights(() => readTorchFile(utf8('hello world')), /expected a zip archive .* or a legacy pickle/);
  throwsWeights(() => readTorchFile(pickle('\x99')), /opcode 0x99 is not supported/);
  // legacy storage count disagreeing with the pickle
  const main = pickle(dict(['t', tensorPickle('FloatStorage', 'k', 2, 0, [2], [1], true)]));
  throwsWeights(() => readTorchFile(legacyFile(main, [['k', 3, f32le(1, 2, 3)]])), /storage 'k' has 3 elements in the data section but 2 in the pickle/);
  assert.equal(values(readTorchFile(legacyFile(main, [['k', 2, f32le(1, 2)]])), 't'), [1, 2]);
});

// ---------- detection and key remapping ----------

test('readWeights: detects each format by magic, refuses others with the accepted list', () => {
  const cases: Array<[string, string]> = [
    ['safetensors/burn/multi_layer.safetensors', 'safetensors'],
    ['torch/burn/batch_norm2d.pt', 'torch-zip'],
    ['torch/burn/simple_legacy.pt', 'torch-legacy'],
  ];
  for (const [path, format] of cases) {
    const result = readWeights(fixture(path), path);
    assert.is(result.format, format, path);
    assert.ok(result.tensors.size > 0);
  }
  assert.equal(readWeights(fixture('safetensors/hf-samples/overall.safetensors')).metadata, { test: 'a' });
  // A 128-byte header makes the file start with 0x80, like a pickle; it is still safetensors.
  const header = utf8(JSON.stringify({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }).padEnd(128));
  const st128 = readWeights(cat(u64(128), header, f32le(2.5)));
  assert.is(st128.format, 'safetensors');
  assert.equal(values(st128.tensors, 'x'), [2.5]);
  throwsWeights(() => readWeights(utf8('\x08onnx-model-bytes...'), 'model.onnx'), /^model\.onnx: unrecognised format .*Accepted formats: safetensors .*torch\.save zip .*legacy/);
  throwsWeights(() => readWeights(new Uint8Array(0)), /weights file: unrecognised format \(0 bytes, starting \(empty\)\)/);
});

test('remapTorchvisionDenseNetKeys renames old DenseNet keys like torchvision', () => {
  const input = new Map([
    ['features.conv0.weight', 0],
    ['features.denseblock1.denselayer1.norm.1.weight', 1],
    ['features.denseblock1.denselayer1.conv.2.weight', 2],
    ['features.denseblock4.denselayer16.norm.2.running_var', 3],
    ['features.transition1.norm.weight', 4],
    ['features.denseblock1.denselayer1.norm.3.weight', 5],
  ]);
  assert.equal([...remapTorchvisionDenseNetKeys(input)], [
    ['features.conv0.weight', 0],
    ['features.denseblock1.denselayer1.norm1.weight', 1],
    ['features.denseblock1.denselayer1.conv2.weight', 2],
    ['features.denseblock4.denselayer16.norm2.running_var', 3],
    ['features.transition1.norm.weight', 4],
    ['features.denseblock1.denselayer1.norm.3.weight', 5],
  ]);
  throwsWeights(() => remapTorchvisionDenseNetKeys(new Map([['a.denselayer1.norm1.weight', 0], ['a.denselayer1.norm.1.weight', 1]])), /two keys map to/);
});

test.run();
