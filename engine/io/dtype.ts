// Element types found in weight files and their conversion to float32.
// Names follow the safetensors vocabulary (F32, BF16, I64, ...) for every format, so a caller sees
// the same `dtype` string whether the tensor came from a .safetensors or a .pth file.

/** One tensor read from a weights file: always float32 data in C order; `dtype` is the type it had in the file. */
export interface NamedArray {
  shape: number[];
  data: Float32Array;
  dtype: string;
}

/** Real (non-complex) element types this reader converts to float32. */
export type ElementType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export const ELEMENT_SIZE: Record<ElementType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export function isElementType(name: string): name is ElementType {
  return Object.hasOwn(ELEMENT_SIZE, name);
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// All 65536 half-precision values as float32, built on first use: a table lookup is much faster than
// rebuilding each value from its bit fields, and every f16 value is exactly representable in f32.
let f16Table: Float32Array | undefined;

/** The float32 value of an IEEE 754 binary16 bit pattern. */
function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) f16Table[bits] = f16ToF32(bits);
  }
  return f16Table;
}

/**
 * Converts `count` elements of type `type` stored in `bytes` (byte order given by `littleEndian`)
 * to a new Float32Array. 64-bit integers lose precision above 2^24, like any float32.
 */
export function decodeToF32(bytes: Uint8Array, type: ElementType, count: number, littleEndian = true): Float32Array {
  // Fast path: one memcpy into a fresh, aligned buffer, then reinterpret.
  if (type === 'F32' && littleEndian === HOST_LITTLE_ENDIAN) {
    return new Float32Array(bytes.slice(0, count * 4).buffer);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  const le = littleEndian;
  switch (type) {
    case 'F32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, le);
      break;
    case 'F64':
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, le);
      break;
    case 'F16': {
      const table = halfTable();
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(2 * i, le)];
      break;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the bits into place (keeps NaN payloads exact).
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) outBits[i] = view.getUint16(2 * i, le) << 16;
      break;
    }
    case 'I64':
    case 'U64': {
      // Two 32-bit halves avoid BigInt; the sum is exact up to 2^53, far beyond float32 precision.
      const [lo, hi] = le ? [0, 4] : [4, 0];
      const high = type === 'I64' ? view.getInt32.bind(view) : view.getUint32.bind(view);
      for (let i = 0; i < count; i++) out[i] = high(8 * i + hi, le) * 4294967296 + view.getUint32(8 * i + lo, le);
      break;
    }
    case 'I32':
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, le);
      break;
    case 'U32':
      for (let i = 0; i < count; i++) out[i] = view.getUint32(4 * i, le);
      break;
    case 'I16':
      for (let i = 0; i < count; i++) out[i] = view.getInt16(2 * i, le);
      break;
    case 'U16':
      for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, le);
      break;
    case 'I8':
      for (let i = 0; i < count; i++) out[i] = view.getInt8(i);
      break;
    case 'U8':
      for (let i = 0; i < count; i++) out[i] = bytes[i];
      break;
    case 'BOOL':
      for (let i = 0; i < count; i++) out[i] = bytes[i] ? 1 : 0;
      break;
  }
  return out;
}

/** The bytes of `data` in little-endian order (a view when the host is little-endian, else a swapped copy). */
export function littleEndianBytes(data: Float32Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (HOST_LITTLE_ENDIAN) return bytes;
  const swapped = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += 4) {
    swapped[i] = bytes[i + 3];
    swapped[i + 1] = bytes[i + 2];
    swapped[i + 2] = bytes[i + 1];
    swapped[i + 3] = bytes[i];
  }
  return swapped;
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** True for a non-negative safe integer. */
export function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
