// ONNX export. The graph is the autograd tape of one forward pass: each op describes its ONNX form
// beside its derivative rule (GradNode.export, engine/ops/), and this module walks the tape from the
// output back to the input and writes an ONNX ModelProto (opset 17, IR version 8) with a small
// protobuf encoder. Parameters and buffers become initializers under their state_dict names.
// No Node APIs: runs in browsers too.
import { keep, scope, type GradNode, type OnnxAttribute, type OnnxConstant, type OnnxInput, type OpExport } from '../autograd.ts';
import { CelgradError } from '../errors.ts';
import type { Module } from '../nn/module.ts';
import { Tensor } from '../tensor.ts';
import { littleEndianBytes } from './dtype.ts';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

export interface OnnxExportOptions {
  /** Picks the tensor to export from the model's output (default: the output, which must be a tensor). */
  output?: (out: unknown) => Tensor;
  /** Graph input and output names (default 'input' and 'output'). */
  inputName?: string;
  outputName?: string;
  /** Written as the model's metadata_props (class names, input size, ...). */
  metadata?: Record<string, string>;
}

/**
 * Traces one forward pass of `model` in eval mode on an input of `inputShape` and returns the .onnx
 * file's bytes, weights included. During the trace every parameter and the input require grad, so
 * that every op records its tape node; the flags and train/eval modes are restored afterwards, also
 * on error. Throws a CelgradError naming the first op that has no ONNX form.
 */
export async function toOnnx(model: Module<unknown>, inputShape: number[], options: OnnxExportOptions = {}): Promise<Uint8Array> {
  const names = new Map<Tensor, string>();
  for (const [name, t] of [...model.namedParameters(), ...model.namedBuffers()]) names.set(t, name);
  const modes = [...model.namedModules()].map(([, m]) => [m, m.training] as const);
  const flags = [...model.namedParameters()].map(([, t]) => [t, t.requiresGrad] as const);
  let graph: Graph;
  try {
    model.eval();
    for (const [t] of flags) t.setRequiresGrad(true);
    graph = scope(() => {
      // Zeros, not the caller's data: an activation wrongly baked in as a constant cannot pass a test at other inputs.
      const x = Tensor.zeros(inputShape).setRequiresGrad(true);
      const out = model.call(x);
      const y = options.output ? options.output(out) : out;
      if (!(y instanceof Tensor)) throw new CelgradError('toOnnx: the model returned no tensor; pass options.output to pick one');
      return planGraph(model.constructor.name, x, y, names, options.inputName ?? 'input', options.outputName ?? 'output');
    });
  } finally {
    for (const [m, training] of modes) m.training = training;
    for (const [t, flag] of flags) t.setRequiresGrad(flag);
  }
  try {
    const data = await Promise.all(graph.initializers.map(initializerBytes));
    return encodeModel(graph, data, options.metadata ?? {});
  } finally {
    for (const t of graph.constants) t.dispose();
  }
}

// ---- the tape as a graph ----

interface Node {
  type: string;
  /** The node's name and its (only) output's name. */
  name: string;
  inputs: string[];
  attrs: Record<string, OnnxAttribute>;
}

interface Initializer {
  name: string;
  dims: number[];
  value: Tensor | OnnxConstant;
}

interface Graph {
  name: string;
  nodes: Node[];
  initializers: Initializer[];
  input: { name: string; dims: number[] };
  output: { name: string; dims: number[] };
  /** Copies of the forward pass's constants (tensors made without the tape), freed once read. */
  constants: Tensor[];
}

/** The nodes from `input` to `output` in topological order, and the initializers they read. */
function planGraph(name: string, input: Tensor, output: Tensor, names: Map<Tensor, string>, inputName: string, outputName: string): Graph {
  if (!output.gradFn) throw new CelgradError('toOnnx: the output is not computed from the input');
  const graph: Graph = {
    name,
    nodes: [],
    initializers: [],
    input: { name: inputName, dims: [...input.shape] },
    output: { name: outputName, dims: [...output.shape] },
    constants: [],
  };
  const values = new Map<Tensor, string>([[input, inputName]]);

  const emit = (e: OpExport, node: GradNode, nodeName: string): void => {
    let sub = 0;
    const inputs = (e.inputs ?? tapeInputs(node)).map((v): string => {
      if (v === null) return '';
      if (typeof v === 'number') return values.get(node.inputs[v]!) ?? '';
      if (v instanceof Tensor) return values.get(v)!;
      const subName = `${nodeName}/${sub++}`;
      if ('values' in v) graph.initializers.push({ name: subName, dims: v.dims, value: v });
      else emit(v, node, subName);
      return subName;
    });
    graph.nodes.push({ type: e.type, name: nodeName, inputs, attrs: e.attrs ?? {} });
  };

  for (const t of postOrder(output)) {
    if (values.has(t)) continue;
    const node = t.gradFn;
    const known = names.get(t);
    if (node) {
      // Numbered in graph order, not by tensor id: the same model gives the same file.
      const nodeName = t === output ? outputName : `${node.export!.type}_${graph.nodes.length}`;
      emit(node.export!, node, nodeName);
      values.set(t, nodeName);
    } else if (known !== undefined) {
      graph.initializers.push({ name: known, dims: [...t.shape], value: t });
      values.set(t, known);
    } else {
      // A constant of the forward pass (made without the tape): copied, as the trace's scope frees it.
      if (t.dtype !== 'f32') throw new CelgradError(`toOnnx: cannot export the ${t.dtype} constant [${t.shape}]`);
      const copy = keep(Tensor.empty(t.shape));
      copy.copyFrom(t);
      graph.constants.push(copy);
      const constName = `constant_${graph.constants.length}`;
      graph.initializers.push({ name: constName, dims: [...t.shape], value: copy });
      values.set(t, constName);
    }
  }
  return graph;
}

/** Every tensor `root` depends on through the ops' ONNX forms, each after its dependencies. */
function postOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack = [{ t: root, deps: dependencies(root), next: 0 }];
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (top.next < top.deps.length) {
      const d = top.deps[top.next++];
      if (!seen.has(d)) {
        seen.add(d);
        stack.push({ t: d, deps: dependencies(d), next: 0 });
      }
    } else {
      stack.pop();
      order.push(top.t);
    }
  }
  return order;
}

function dependencies(t: Tensor): Tensor[] {
  const node = t.gradFn;
  if (!node) return [];
  if (!node.export) throw new CelgradError(`cannot export op '${node.op}' to ONNX: it has no ONNX form`);
  const deps: Tensor[] = [];
  const visit = (e: OpExport): void => {
    for (const v of e.inputs ?? tapeInputs(node)) {
      if (typeof v === 'number') {
        const input = node.inputs[v];
        if (input) deps.push(input);
      } else if (v instanceof Tensor) deps.push(v);
      else if (v && 'type' in v) visit(v);
    }
  };
  visit(node.export);
  return deps;
}

/** The op's tape inputs by index, missing trailing ones dropped and missing middle ones omitted (''). */
function tapeInputs(node: GradNode): OnnxInput[] {
  let n = node.inputs.length;
  while (n > 0 && !node.inputs[n - 1]) n--;
  return node.inputs.slice(0, n).map((t, k) => (t ? k : null));
}

async function initializerBytes({ value }: Initializer): Promise<Uint8Array> {
  if (value instanceof Tensor) return littleEndianBytes(await value.toArray());
  if (value.dtype === 'float') return littleEndianBytes(Float32Array.from(value.values));
  const view = new DataView(new ArrayBuffer(8 * value.values.length));
  value.values.forEach((v, i) => view.setBigInt64(8 * i, BigInt(v), true));
  return new Uint8Array(view.buffer);
}

// ---- protobuf ----

/** Protobuf's base-128 varint; negative integers as their 64-bit two's complement (ten bytes), as int64 fields want. */
export function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value)) throw new CelgradError(`protobuf: ${value} is not an integer that can be written exactly`);
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

const utf8 = new TextEncoder();

/** A protobuf message being written: its encoded pieces, joined once at the end, so weights are copied once. */
export class ProtoMessage {
  private readonly parts: Uint8Array[] = [];
  length = 0;

  /** A varint field (int64, int32, enum). */
  int(field: number, value: number): this {
    this.key(field, 0);
    return this.push(varint(value));
  }

  /** A float field (fixed 32 bits, little-endian). */
  float(field: number, value: number): this {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.key(field, 5);
    return this.push(bytes);
  }

  bytes(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.push(varint(data.length));
    return this.push(data);
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: ProtoMessage): this {
    this.key(field, 2);
    this.push(varint(m.length));
    for (const part of m.parts) this.push(part);
    return this;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const part of this.parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  private key(field: number, wireType: number): void {
    this.push(varint(field * 8 + wireType));
  }

  private push(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.length += bytes.length;
    return this;
  }
}

// Field numbers and enums of onnx/onnx.proto.
const FLOAT = 1;
const INT64 = 7;
const ATTRIBUTE = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 };

function encodeModel(graph: Graph, data: Uint8Array[], metadata: Record<string, string>): Uint8Array {
  const g = new ProtoMessage();
  for (const node of graph.nodes) g.message(1, encodeNode(node));
  g.string(2, graph.name);
  graph.initializers.forEach(({ name, dims, value }, i) => {
    const t = new ProtoMessage();
    for (const d of dims) t.int(1, d);
    t.int(2, value instanceof Tensor || value.dtype === 'float' ? FLOAT : INT64);
    g.message(5, t.string(8, name).bytes(9, data[i]));
  });
  g.message(11, valueInfo(graph.input.name, graph.input.dims));
  g.message(12, valueInfo(graph.output.name, graph.output.dims));
  const model = new ProtoMessage()
    .int(1, ONNX_IR_VERSION)
    .string(2, 'celgrad')
    .message(7, g)
    .message(8, new ProtoMessage().int(2, ONNX_OPSET));
  for (const [key, value] of Object.entries(metadata)) model.message(14, new ProtoMessage().string(1, key).string(2, value));
  return model.finish();
}

function encodeNode(node: Node): ProtoMessage {
  const m = new ProtoMessage();
  for (const input of node.inputs) m.string(1, input);
  m.string(2, node.name).string(3, node.name).string(4, node.type);
  for (const [name, value] of Object.entries(node.attrs)) {
    const a = new ProtoMessage().string(1, name);
    if (typeof value === 'string') a.int(20, ATTRIBUTE.STRING).string(4, value);
    else if (typeof value === 'object' && 'float' in value) a.int(20, ATTRIBUTE.FLOAT).float(2, value.float);
    else {
      if (![value].flat().every(Number.isInteger)) {
        throw new CelgradError(`${node.type} attribute '${name}': ${value} is not an integer (a float attribute is written { float: x })`);
      }
      if (Array.isArray(value)) {
        a.int(20, ATTRIBUTE.INTS);
        for (const v of value) a.int(8, v);
      } else a.int(20, ATTRIBUTE.INT).int(3, value);
    }
    m.message(5, a);
  }
  return m;
}

/** A float tensor's ValueInfoProto: name, and TypeProto.tensor_type with element type and shape. */
function valueInfo(name: string, dims: number[]): ProtoMessage {
  const shape = new ProtoMessage();
  for (const d of dims) shape.message(1, new ProtoMessage().int(1, d));
  const tensorType = new ProtoMessage().int(1, FLOAT).message(2, shape);
  return new ProtoMessage().string(1, name).message(2, new ProtoMessage().message(1, tensorType));
}
