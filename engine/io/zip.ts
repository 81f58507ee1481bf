// Minimal zip reader for torch.save archives: reads the central directory (ZIP64 included) and returns
// stored (uncompressed) entries as views into the file. torch.save never compresses, so compressed
// entries are refused rather than inflated; CRCs are not checked (torch's own reader does not either
// by default, and it would cost a pass over every weight).

import { WeightsError } from '../errors.ts';

export interface ZipEntry {
  name: string;
  /** 0 = stored; anything else is compressed. */
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const ZIP64_EXTRA_ID = 0x0001;
const U32_MAX = 0xffffffff;

function fail(message: string): never {
  throw new WeightsError(`zip: ${message}`);
}

function u64(view: DataView, at: number): number {
  const high = view.getUint32(at + 4, true);
  if (high >= 2 ** 21) fail(`64-bit field at byte ${at} exceeds 2^53; the archive is corrupt`);
  return high * 4294967296 + view.getUint32(at, true);
}

function need(bytes: Uint8Array, at: number, length: number, what: string): void {
  if (at < 0 || at + length > bytes.length) fail(`${what} at byte ${at} runs past the end of the ${bytes.length}-byte file; the file is truncated`);
}

/** Lists the archive's entries by name, from the central directory at the end of the file. */
export function readZipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 65535); at--) {
    if (view.getUint32(at, true) === EOCD_SIGNATURE) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail('no end-of-central-directory record; the file is truncated (re-download it) or not a zip archive');

  let count = view.getUint16(eocd + 10, true);
  let directorySize = view.getUint32(eocd + 12, true);
  let directoryOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || directorySize === U32_MAX || directoryOffset === U32_MAX) {
    // ZIP64: a locator just before the record points at the 64-bit end-of-central-directory record.
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE) fail('ZIP64 sizes are used but the ZIP64 locator is missing; the archive is corrupt');
    const record = u64(view, locator + 8);
    need(bytes, record, 56, 'ZIP64 end-of-central-directory record');
    if (view.getUint32(record, true) !== ZIP64_EOCD_SIGNATURE) fail('ZIP64 end-of-central-directory record has a bad signature; the archive is corrupt');
    count = u64(view, record + 32);
    directorySize = u64(view, record + 40);
    directoryOffset = u64(view, record + 48);
  }
  need(bytes, directoryOffset, directorySize, 'central directory');

  const decoder = new TextDecoder();
  const entries = new Map<string, ZipEntry>();
  let at = directoryOffset;
  for (let i = 0; i < count; i++) {
    need(bytes, at, 46, 'central directory entry');
    if (view.getUint32(at, true) !== CENTRAL_SIGNATURE) fail(`central directory entry ${i} at byte ${at} has a bad signature; the archive is corrupt`);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    need(bytes, at + 46, nameLength + extraLength, 'central directory entry name');
    const entry: ZipEntry = {
      name: decoder.decode(bytes.subarray(at + 46, at + 46 + nameLength)),
      flags: view.getUint16(at + 8, true),
      method: view.getUint16(at + 10, true),
      compressedSize: view.getUint32(at + 20, true),
      size: view.getUint32(at + 24, true),
      localHeaderOffset: view.getUint32(at + 42, true),
    };
    readZip64Extra(view, at + 46 + nameLength, extraLength, entry);
    entries.set(entry.name, entry);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** A ZIP64 extra field holds, in this order, only those of size, compressed size and offset that overflowed 32 bits. */
function readZip64Extra(view: DataView, start: number, length: number, entry: ZipEntry): void {
  for (let at = start; at + 4 <= start + length; ) {
    const id = view.getUint16(at, true);
    const size = view.getUint16(at + 2, true);
    if (id === ZIP64_EXTRA_ID) {
      let field = at + 4;
      const next = (): number => {
        if (field + 8 > at + 4 + size) fail(`ZIP64 extra field of '${entry.name}' is too short; the archive is corrupt`);
        const value = u64(view, field);
        field += 8;
        return value;
      };
      if (entry.size === U32_MAX) entry.size = next();
      if (entry.compressedSize === U32_MAX) entry.compressedSize = next();
      if (entry.localHeaderOffset === U32_MAX) entry.localHeaderOffset = next();
    }
    at += 4 + size;
  }
}

/** The bytes of a stored entry, as a view into `bytes`. */
export function zipEntryData(bytes: Uint8Array, entry: ZipEntry): Uint8Array {
  if (entry.flags & 1) fail(`entry '${entry.name}' is encrypted; torch.save archives never are, so this is not a PyTorch weights file`);
  if (entry.method !== 0) {
    fail(
      `entry '${entry.name}' is compressed (method ${entry.method}); torch.save stores entries uncompressed and only stored entries are read. ` +
        'The file was probably re-zipped by another tool: re-save it with torch.save, or re-zip without compression (zip -0).',
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const local = entry.localHeaderOffset;
  need(bytes, local, 30, `local header of '${entry.name}'`);
  if (view.getUint32(local, true) !== LOCAL_SIGNATURE) fail(`local header of '${entry.name}' at byte ${local} has a bad signature; the archive is corrupt`);
  // The local name and extra lengths can differ from the central ones (torch pads data to 64 bytes there).
  const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
  need(bytes, start, entry.size, `data of '${entry.name}'`);
  return bytes.subarray(start, start + entry.size);
}
