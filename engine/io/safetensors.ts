// safetensors reader and float32 writer.
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then one byte buffer that the
// tensors tile exactly (no holes, no overlaps). Each JSON entry is {dtype, shape, data_offsets:[begin,end]}
// with offsets relative to the buffer; an optional "__metadata__" entry maps strings to strings.

import { WeightsError } from '../errors.ts';
import { ELEMENT_SIZE, decodeToF32, isElementType, isIndex, littleEndianBytes, shapeSize, type ElementType, type NamedArray } from './dtype.ts';

export type { NamedArray } from './dtype.ts';

/** The reference implementation refuses larger headers; so do we, which also bounds the JSON parse. */
const MAX_HEADER_BYTES = 100_000_000;

/** Complex types are returned as their real and imaginary parts in a trailing dimension of 2 (torch.view_as_real). */
const COMPLEX_PARTS: Record<string, ElementType> = { C64: 'F32' };

export interface SafetensorsContents {
  tensors: Map<string, NamedArray>;
  metadata: Record<string, string>;
}

interface Entry {
  name: string;
  /** The stored dtype, as written in the header. */
  dtype: string;
  /** What to decode: the dtype itself, or the part type of a complex dtype. */
  type: ElementType;
  /** Shape of the float32 result (complex dtypes gain a trailing 2). */
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Reads a .safetensors file. Every tensor is converted to float32 (`dtype` keeps the stored type);
 * the map is in file (data offset) order. Throws WeightsError for any malformed header or buffer.
 */
export function readSafetensors(bytes: Uint8Array): SafetensorsContents {
  const bufferStart = 8 + readHeaderLength(bytes);
  const header = parseHeader(bytes.subarray(8, bufferStart));
  const metadata = readMetadata(header.__metadata__);
  const entries = Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .map(([name, value]) => readEntry(name, value));
  checkTiling(entries, bytes.length - bufferStart);

  const tensors = new Map<string, NamedArray>();
  for (const { name, dtype, type, shape, begin, end } of entries) {
    const data = decodeToF32(bytes.subarray(bufferStart + begin, bufferStart + end), type, shapeSize(shape));
    tensors.set(name, { shape, data, dtype });
  }
  return { tensors, metadata };
}

function readHeaderLength(bytes: Uint8Array): number {
  if (bytes.length < 8) {
    throw new WeightsError(`safetensors: file is ${bytes.length} bytes, shorter than the 8-byte header length; the file is truncated or not a safetensors file`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(4, true) * 4294967296 + view.getUint32(0, true);
  if (length > MAX_HEADER_BYTES) {
    throw new WeightsError(`safetensors: header length ${length} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes; the file is corrupt or not a safetensors file`);
  }
  if (8 + length > bytes.length) {
    throw new WeightsError(`safetensors: header length ${length} runs past the end of the ${bytes.length}-byte file; the file is truncated or corrupt`);
  }
  return length;
}

function parseHeader(headerBytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new WeightsError('safetensors: header is not valid UTF-8; the file is corrupt or not a safetensors file');
  }
  if (!text.startsWith('{')) {
    throw new WeightsError(`safetensors: header must be a JSON object starting with '{' but starts with ${JSON.stringify(text.slice(0, 16))}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new WeightsError(`safetensors: header is not valid JSON (${(e as Error).message}); the file is corrupt`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new WeightsError('safetensors: header must be a JSON object mapping tensor names to {dtype, shape, data_offsets}');
  }
  return header as Record<string, unknown>;
}

function readMetadata(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  const ok = typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string');
  if (!ok) throw new WeightsError('safetensors: "__metadata__" must be an object of string values', '__metadata__');
  return { ...(value as Record<string, string>) };
}

function readEntry(name: string, value: unknown): Entry {
  const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  if (typeof info !== 'object' || info === null) {
    throw new WeightsError('safetensors: header entry must be an object {dtype, shape, data_offsets}', name);
  }
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string' || !(isElementType(dtype) || dtype in COMPLEX_PARTS)) {
    const known = [...Object.keys(ELEMENT_SIZE), ...Object.keys(COMPLEX_PARTS)].join(', ');
    throw new WeightsError(`safetensors: dtype ${dtype === undefined ? '(missing)' : JSON.stringify(dtype)} is not supported (supported: ${known}); convert the tensor in Python before saving`, name);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw new WeightsError(`safetensors: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
    throw new WeightsError(`safetensors: data_offsets must be [begin, end] integers with begin <= end, got ${JSON.stringify(offsets)}`, name);
  }
  const [begin, end] = offsets as [number, number];
  const type = isElementType(dtype) ? dtype : COMPLEX_PARTS[dtype];
  const outShape = isElementType(dtype) ? shape : [...shape, 2];
  const expected = shapeSize(outShape) * ELEMENT_SIZE[type];
  if (end - begin !== expected) {
    throw new WeightsError(`safetensors: shape [${shape}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}; the header is corrupt`, name);
  }
  return { name, dtype, type, shape: outShape, begin, end };
}

/** The tensors must cover the byte buffer exactly: sorted by offset, each starts where the previous ended. */
function checkTiling(entries: Entry[], bufferLength: number): void {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const { name, begin, end } of entries) {
    if (begin !== cursor) {
      const what = begin > cursor ? `a hole (bytes ${cursor}..${begin} belong to no tensor)` : `an overlap with the previous tensor (which ends at ${cursor})`;
      throw new WeightsError(`safetensors: data_offsets [${begin}, ${end}] leave ${what}; the header is corrupt`, name);
    }
    cursor = end;
  }
  if (cursor !== bufferLength) {
    const what = cursor > bufferLength ? 'the file is truncated' : 'the file has trailing bytes or a corrupt header';
    throw new WeightsError(`safetensors: tensors cover ${cursor} buffer bytes but the file holds ${bufferLength} after the header; ${what}`);
  }
}

/** Orders strings by Unicode code point, which is the byte order of their UTF-8 form (how the Rust writer sorts names). */
function compareCodePoints(a: string, b: string): number {
  const ca = Array.from(a, (c) => c.codePointAt(0)!);
  const cb = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i] - cb[i];
  return ca.length - cb.length;
}

/**
 * Writes float32 tensors as a .safetensors file. Like the reference writer, tensors are laid out by
 * dtype (all F32 here) then name, and the header is padded with spaces to a multiple of 8 bytes so the
 * buffer stays 8-byte aligned. `metadata` becomes the "__metadata__" entry.
 */
export function writeSafetensors(
  tensors: Iterable<[string, { shape: number[]; data: Float32Array }]>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list: Array<[string, { shape: number[]; data: Float32Array }]> = [];
  const seen = new Set<string>();
  for (const [name, tensor] of tensors) {
    if (name === '__metadata__') throw new WeightsError('safetensors: "__metadata__" is reserved for the metadata entry; rename the tensor', name);
    if (seen.has(name)) throw new WeightsError('safetensors: tensor name given twice; names must be unique', name);
    if (!tensor.shape.every(isIndex)) throw new WeightsError(`safetensors: shape must hold non-negative integers, got [${tensor.shape}]`, name);
    if (shapeSize(tensor.shape) !== tensor.data.length) {
      throw new WeightsError(`safetensors: shape [${tensor.shape}] has ${shapeSize(tensor.shape)} elements but data has ${tensor.data.length}`, name);
    }
    seen.add(name);
    list.push([name, tensor]);
  }
  if (metadata !== undefined && !Object.values(metadata).every((v) => typeof v === 'string')) {
    throw new WeightsError('safetensors: metadata values must be strings; stringify numbers and objects first', '__metadata__');
  }
  list.sort(([a], [b]) => compareCodePoints(a, b));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, { shape, data }] of list) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  // Note: JSON object key order puts integer-like names ("0", "1") first; readers go by data_offsets, so that is harmless.
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;

  const out = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength % 4294967296, true);
  view.setUint32(4, Math.floor(headerLength / 4294967296), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let cursor = 8 + headerLength;
  for (const [, { data }] of list) {
    out.set(littleEndianBytes(data), cursor); // a byte copy keeps NaN payloads bit-exact
    cursor += data.byteLength;
  }
  return out;
}
