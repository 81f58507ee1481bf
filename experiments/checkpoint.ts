// Weights and checkpoints on disk: safetensors files written atomically (temp file, fsync, rename), so a
// crash at any moment leaves either the previous file or the new one, never a torn one.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readWeights, writeSafetensors } from '../engine/io/index.ts';
import { WeightsError } from '../engine/errors.ts';
import type { Module } from '../engine/nn/index.ts';

export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export async function saveWeights(path: string, model: Module<unknown>, metadata: Record<string, string> = {}): Promise<void> {
  writeFileAtomic(path, writeSafetensors(await model.readStateDict(), metadata));
}

/** Reads a weights file of any supported format (safetensors, torch zip or legacy .pth). */
export function readWeightsFile(path: string): { tensors: Map<string, { shape: number[]; data: Float32Array }>; metadata: Record<string, string> } {
  if (!existsSync(path)) throw new WeightsError(`weights file ${path} does not exist`);
  const bytes = readFileSync(path);
  try {
    const { tensors, metadata } = readWeights(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
    return { tensors, metadata: metadata ?? {} };
  } catch (e) {
    if (e instanceof WeightsError) throw new WeightsError(`${path}: ${e.message}`);
    throw e;
  }
}
