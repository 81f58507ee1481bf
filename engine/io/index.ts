// Weight files: safetensors and PyTorch torch.save (zip and legacy), read into float32 arrays.
// Pure TypeScript on Uint8Array, so it runs in browsers as well as Node.

import { WeightsError } from '../errors.ts';
import type { NamedArray } from './dtype.ts';
import { isZip, readTorchFile } from './pth.ts';
import { readSafetensors } from './safetensors.ts';

export type { NamedArray } from './dtype.ts';
export { readSafetensors, writeSafetensors, type SafetensorsContents } from './safetensors.ts';
export { readTorchFile, remapTorchvisionDenseNetKeys } from './pth.ts';

export type WeightsFormat = 'safetensors' | 'torch-zip' | 'torch-legacy';

export interface WeightsContents {
  format: WeightsFormat;
  tensors: Map<string, NamedArray>;
  /** The safetensors `__metadata__`; empty for torch files. */
  metadata: Record<string, string>;
}

/** Recognises a weights file by its first bytes; undefined when it is none of the accepted formats. */
export function detectWeightsFormat(bytes: Uint8Array): WeightsFormat | undefined {
  if (isZip(bytes)) return 'torch-zip';
  // safetensors: a u64 header length that fits in the file, then a JSON object. Checked before the
  // pickle test because a header length such as 128 also starts with byte 0x80.
  if (bytes.length >= 10) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLength = view.getUint32(4, true) * 4294967296 + view.getUint32(0, true);
    if (headerLength >= 2 && 8 + headerLength <= bytes.length && bytes[8] === 0x7b) return 'safetensors';
  }
  // torch.save's legacy format opens with a pickle PROTO opcode.
  if (bytes.length > 0 && bytes[0] === 0x80) return 'torch-legacy';
  return undefined;
}

/**
 * Reads a weights file of any accepted format, chosen by its magic bytes (not by its name).
 * `nameHint` (e.g. the file name) only makes error messages clearer.
 */
export function readWeights(bytes: Uint8Array, nameHint?: string): WeightsContents {
  const format = detectWeightsFormat(bytes);
  if (format === 'safetensors') return { format, ...readSafetensors(bytes) };
  if (format) return { format, tensors: readTorchFile(bytes), metadata: {} };
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new WeightsError(
    `${nameHint ?? 'weights file'}: unrecognised format (${bytes.length} bytes, starting ${head || '(empty)'}). ` +
      'Accepted formats: safetensors (8-byte header length + JSON header), PyTorch torch.save zip (PyTorch >= 1.6, starts with "PK\\x03\\x04") ' +
      'and PyTorch legacy torch.save (pre-1.6 pickle, starts with 0x80). Convert other files (ONNX, TensorFlow, Keras) to safetensors first.',
  );
}
