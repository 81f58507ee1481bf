// PyTorch torch.save files (.pt / .pth), read without running any pickled code.
//
// Two containers exist:
//  - zip (PyTorch >= 1.6): `<archive>/data.pkl` holds the object; each storage is the raw record
//    `<archive>/data/<key>`; `<archive>/byteorder` says little or big (absent = little).
//  - legacy (< 1.6): five pickles in a row (magic number, protocol version, sys_info, the object,
//    the list of storage keys), then per key an int64 element count and the storage bytes.
// In both, tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls and
// storages are persistent ids ('storage', torch.<Type>Storage, key, location, numel[, view]).
//
// Which tensors are returned: torch.save writes whatever object it was given. If that object (a dict or
// a list) holds tensors, those are returned. Otherwise, for a checkpoint such as {'state_dict': ...} or
// {'model': ..., 'optimizer': ...}, the first of PREFERRED_KEYS that holds tensors is used; failing that,
// the single nested dict/list that holds tensors (found depth-first). Several candidates is an error
// that lists them. List entries are named by their index ("0", "1", ...); a file holding a single bare
// tensor (torch.save(tensor)) gives it the empty name "".

import { WeightsError } from '../errors.ts';
import { ELEMENT_SIZE, decodeToF32, isIndex, shapeSize, type ElementType, type NamedArray } from './dtype.ts';
import { PyCallable, describe, unpickle, type PickleHooks } from './pickle.ts';
import { readZipDirectory, zipEntryData } from './zip.ts';

export type { NamedArray } from './dtype.ts';

/** Keys of training checkpoints that hold the model's state_dict, tried in this order. */
const PREFERRED_KEYS = ['state_dict', 'model_state_dict', 'model', 'module', 'net'];

/** The value of torch.save's legacy MAGIC_NUMBER, the first pickle of a legacy file. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

/** The largest tensor materialised (2^31 - 1 float32 values, 8 GiB). */
const MAX_ELEMENTS = 2 ** 31 - 1;

/** A torch.<Type>Storage class. Complex storages are read as pairs of real parts (torch.view_as_real). */
class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: string,
    readonly part: ElementType,
    readonly parts: 1 | 2 = 1,
  ) {}
  get elementSize(): number {
    return ELEMENT_SIZE[this.part] * this.parts;
  }
  toString(): string {
    return `torch.${this.name}`;
  }
}

const STORAGE_TYPES: Record<string, StorageType> = {
  FloatStorage: new StorageType('FloatStorage', 'F32', 'F32'),
  DoubleStorage: new StorageType('DoubleStorage', 'F64', 'F64'),
  HalfStorage: new StorageType('HalfStorage', 'F16', 'F16'),
  BFloat16Storage: new StorageType('BFloat16Storage', 'BF16', 'BF16'),
  LongStorage: new StorageType('LongStorage', 'I64', 'I64'),
  IntStorage: new StorageType('IntStorage', 'I32', 'I32'),
  ShortStorage: new StorageType('ShortStorage', 'I16', 'I16'),
  CharStorage: new StorageType('CharStorage', 'I8', 'I8'),
  ByteStorage: new StorageType('ByteStorage', 'U8', 'U8'),
  BoolStorage: new StorageType('BoolStorage', 'BOOL', 'BOOL'),
  ComplexFloatStorage: new StorageType('ComplexFloatStorage', 'C64', 'F32', 2),
  ComplexDoubleStorage: new StorageType('ComplexDoubleStorage', 'C128', 'F64', 2),
};

/** One storage record of the file; `bytes` is filled in once the record is located. */
interface RootStorage {
  key: string;
  type: StorageType;
  numel: number;
  bytes?: Uint8Array;
}

/** A window on a root storage (legacy files can pickle views of a storage; otherwise the whole root). */
class StorageView {
  constructor(
    readonly root: RootStorage,
    readonly offset: number,
    readonly numel: number,
  ) {}
  toString(): string {
    return `a ${this.root.type.dtype} storage`;
  }
}

/** A tensor as pickled: a strided view of a storage, materialised after all storages are read. */
class TensorRef {
  constructor(
    readonly storage: StorageView,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
  toString(): string {
    return `a tensor of size [${this.size}]`;
  }
}

/**
 * Reads a torch.save file (zip or legacy) and returns its tensors as float32, in pickle order.
 * `dtype` keeps the stored type (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, C64, C128);
 * complex tensors get a trailing dimension of 2 (real, imaginary). See the header comment for how
 * nested checkpoints are resolved.
 */
export function readTorchFile(bytes: Uint8Array): Map<string, NamedArray> {
  const { root, littleEndian } = isZip(bytes) ? readZipFormat(bytes) : readLegacyFormat(bytes);
  const result = new Map<string, NamedArray>();
  for (const [key, tensor] of findTensors(root)) result.set(key, materialise(tensor, littleEndian, key));
  return result;
}

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

function readZipFormat(bytes: Uint8Array): { root: unknown; littleEndian: boolean } {
  const entries = readZipDirectory(bytes);
  // Like torch's reader: every record sits under one folder, named by the first entry.
  const first = entries.keys().next().value ?? '';
  const prefix = first.slice(0, first.indexOf('/') + 1);
  const pickle = entries.get(`${prefix}data.pkl`);
  if (!prefix || !pickle) {
    const names = [...entries.keys()].slice(0, 6).join(', ');
    throw new WeightsError(`torch zip: no '<archive>/data.pkl' record (entries: ${names || 'none'}); this zip is not a torch.save file`);
  }

  const order = entries.get(`${prefix}byteorder`);
  const byteorder = order ? new TextDecoder().decode(zipEntryData(bytes, order)).trim() : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') {
    throw new WeightsError(`torch zip: byteorder record says '${byteorder.slice(0, 20)}', expected 'little' or 'big'; the file is corrupt`);
  }

  const roots = new Map<string, RootStorage>();
  const persistentLoad = (pid: unknown): StorageView => {
    const [kind, type, key, , numel] = pidTuple(pid, 5);
    const root = storageRoot(roots, kind, type, key, numel);
    if (!root.bytes) {
      const record = entries.get(`${prefix}data/${root.key}`);
      if (!record) throw new WeightsError(`torch zip: storage record '${prefix}data/${root.key}' is missing; the file is truncated or corrupt`);
      root.bytes = zipEntryData(bytes, record);
      const needed = root.numel * root.type.elementSize;
      if (root.bytes.length < needed) {
        throw new WeightsError(`torch zip: storage '${root.key}' holds ${root.bytes.length} bytes but ${root.numel} elements of ${root.type.dtype} need ${needed}; the file is corrupt`);
      }
    }
    return new StorageView(root, 0, root.numel);
  };
  const { value } = unpickle(zipEntryData(bytes, pickle), 0, torchHooks(persistentLoad));
  return { root: value, littleEndian: byteorder === 'little' };
}

function readLegacyFormat(bytes: Uint8Array): { root: unknown; littleEndian: boolean } {
  if (bytes.length > 262 && new TextDecoder().decode(bytes.subarray(257, 262)) === 'ustar') {
    throw new WeightsError('torch: this is the tar format of PyTorch < 0.1.10, which is not supported; load it in Python and re-save with torch.save');
  }
  if (bytes[0] !== 0x80) {
    throw new WeightsError('torch: not a torch.save file: expected a zip archive (PyTorch >= 1.6, starts with "PK") or a legacy pickle (starts with byte 0x80)');
  }
  const plain: PickleHooks = {
    findGlobal: (module, name) => {
      throw new WeightsError(`torch legacy: unexpected global '${module}.${name}' in the file header; the file is corrupt`);
    },
    persistentLoad: () => {
      throw new WeightsError('torch legacy: unexpected persistent id in the file header; the file is corrupt');
    },
  };
  let pos = 0;
  const next = (hooks: PickleHooks): unknown => {
    const { value, end } = unpickle(bytes, pos, hooks);
    pos = end;
    return value;
  };

  if (next(plain) !== LEGACY_MAGIC) {
    throw new WeightsError('torch legacy: the file is a pickle but not torch.save output (magic number mismatch); only tensors saved with torch.save can be read');
  }
  const protocol = next(plain);
  if (protocol !== LEGACY_PROTOCOL_VERSION) {
    throw new WeightsError(`torch legacy: protocol version ${String(protocol)} is not ${LEGACY_PROTOCOL_VERSION}, the only one PyTorch wrote; the file is corrupt`);
  }
  const sysInfo = next(plain);
  const littleEndian = !(sysInfo instanceof Map && sysInfo.get('little_endian') === false);

  const roots = new Map<string, RootStorage>();
  const persistentLoad = (pid: unknown): StorageView => {
    if (Array.isArray(pid) && pid[0] === 'module') {
      throw new WeightsError('torch legacy: the file holds a whole pickled nn.Module (torch.save(model)); in Python, re-save model.state_dict() instead');
    }
    const [kind, type, key, , numel, view] = pidTuple(pid, 6);
    const root = storageRoot(roots, kind, type, key, numel);
    if (view === null) return new StorageView(root, 0, root.numel);
    // (view_key, offset, size) in elements: a slice of the root storage that tensors index into.
    const [, offset, size] = Array.isArray(view) ? view : [];
    if (!isIndex(offset) || !isIndex(size) || offset + size > root.numel) {
      throw new WeightsError(`torch legacy: storage view ${describe(view)} does not fit storage '${root.key}' of ${root.numel} elements; the file is corrupt`);
    }
    return new StorageView(root, offset, size);
  };
  const root = next(torchHooks(persistentLoad));
  const keys = next(plain);
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new WeightsError(`torch legacy: the storage key list is ${describe(keys)}, expected a list of strings; the file is corrupt`);
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const key of keys as string[]) {
    const storage = roots.get(key);
    if (!storage) throw new WeightsError(`torch legacy: storage '${key}' is listed but no tensor uses it; the file is corrupt`);
    if (pos + 8 > bytes.length) throw new WeightsError(`torch legacy: the file ends before storage '${key}'; the file is truncated`);
    const [lo, hi] = littleEndian ? [0, 4] : [4, 0];
    const count = view.getUint32(pos + hi, littleEndian) * 4294967296 + view.getUint32(pos + lo, littleEndian);
    if (count !== storage.numel) {
      throw new WeightsError(`torch legacy: storage '${key}' has ${count} elements in the data section but ${storage.numel} in the pickle; the file is corrupt`);
    }
    const length = count * storage.type.elementSize;
    if (pos + 8 + length > bytes.length) {
      throw new WeightsError(`torch legacy: storage '${key}' needs ${length} bytes but the file ends first; the file is truncated`);
    }
    storage.bytes = bytes.subarray(pos + 8, pos + 8 + length);
    pos += 8 + length;
  }
  return { root, littleEndian };
}

/** Checks that a persistent id is a tuple of (at least) `length` items. */
function pidTuple(pid: unknown, length: number): unknown[] {
  if (!Array.isArray(pid) || pid.length < length) {
    throw new WeightsError(`torch: persistent id ${describe(pid)} is not a ('storage', type, key, location, numel, ...) tuple; the file is corrupt`);
  }
  return pid;
}

function storageRoot(roots: Map<string, RootStorage>, kind: unknown, type: unknown, key: unknown, numel: unknown): RootStorage {
  if (kind !== 'storage' || !(type instanceof StorageType) || typeof key !== 'string' || !isIndex(numel)) {
    throw new WeightsError(`torch: persistent id ('${String(kind)}', ${describe(type)}, ${describe(key)}, numel ${String(numel)}) is not a valid storage reference; the file is corrupt`);
  }
  let root = roots.get(key);
  if (!root) {
    root = { key, type, numel };
    roots.set(key, root);
  }
  return root;
}

/** The allow-list: like torch.load(weights_only=True), only containers, storages and tensor rebuilders resolve. */
function torchHooks(persistentLoad: (pid: unknown) => StorageView): PickleHooks {
  return {
    persistentLoad,
    findGlobal(module, name) {
      const qualified = `${module}.${name}`;
      if (module === 'torch' && Object.hasOwn(STORAGE_TYPES, name)) return STORAGE_TYPES[name];
      const allowed = ALLOWED_CALLABLES.get(qualified);
      if (allowed) return allowed;
      if (qualified === 'torch.storage._load_from_bytes') {
        throw new WeightsError('torch: a storage was pickled with torch.storage._load_from_bytes (a nested torch.save, e.g. saved with pickle.dump instead of torch.save), which is refused; re-save the state_dict with torch.save', qualified);
      }
      const hint = module.startsWith('__torch__')
        ? 'this is a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save instead'
        : 'only tensors, storages and (Ordered)dicts are read, as torch.load(weights_only=True) does; if the file holds a whole model or custom objects, save model.state_dict() instead';
      throw new WeightsError(`torch: the file refers to the Python global '${qualified}', which is not on the allow-list; ${hint}`, qualified);
    },
  };
}

function rebuildTensor(name: string) {
  return new PyCallable(name, (args) => {
    const [storage, offset, size, stride] = args;
    const valid =
      storage instanceof StorageView && isIndex(offset) &&
      Array.isArray(size) && size.every(isIndex) &&
      Array.isArray(stride) && stride.every(isIndex) && stride.length === size.length;
    if (!valid) throw new WeightsError(`torch: ${name} got (${args.slice(0, 4).map(describe).join(', ')}), not (storage, offset, size, stride); the file is corrupt`);
    return new TensorRef(storage, offset, [...size], [...stride]);
  });
}

const ALLOWED_CALLABLES = new Map<string, PyCallable>([
  ['torch._utils._rebuild_tensor_v2', rebuildTensor('torch._utils._rebuild_tensor_v2')],
  ['torch._utils._rebuild_tensor', rebuildTensor('torch._utils._rebuild_tensor')],
  [
    'torch._utils._rebuild_parameter',
    new PyCallable('torch._utils._rebuild_parameter', ([data]) => {
      if (!(data instanceof TensorRef)) throw new WeightsError(`torch: _rebuild_parameter got ${describe(data)} instead of a tensor; the file is corrupt`);
      return data;
    }),
  ],
  [
    'collections.OrderedDict',
    new PyCallable('collections.OrderedDict', (args) => {
      if (args.length === 0) return new Map();
      const [items] = args;
      if (args.length === 1 && Array.isArray(items) && items.every((p) => Array.isArray(p) && p.length === 2)) {
        return new Map(items as Array<[unknown, unknown]>);
      }
      throw new WeightsError(`torch: OrderedDict(${args.map(describe).join(', ')}) is not supported; expected no arguments or a list of pairs`);
    }),
  ],
]);

/** The (key, tensor) pairs directly inside a dict or list; empty for anything else. */
function tensorsIn(value: unknown): Array<[string, TensorRef]> {
  const entries: Array<[unknown, unknown]> = value instanceof Map ? [...value] : Array.isArray(value) ? value.map((v, i) => [i, v]) : [];
  return entries.filter((e): e is [unknown, TensorRef] => e[1] instanceof TensorRef).map(([k, t]) => [String(k), t]);
}

/** Picks the dict (or list) that holds the tensors; see the header comment for the rules. */
function findTensors(root: unknown): Array<[string, TensorRef]> {
  if (root instanceof TensorRef) return [['', root]];
  const direct = tensorsIn(root);
  if (direct.length) return direct;
  if (root instanceof Map) {
    for (const key of PREFERRED_KEYS) {
      const found = tensorsIn(root.get(key));
      if (found.length) return found;
    }
  }
  const holders: Array<{ path: string; tensors: Array<[string, TensorRef]> }> = [];
  const seen = new Set<unknown>();
  const walk = (value: unknown, path: string): void => {
    if (seen.has(value) || !(value instanceof Map || Array.isArray(value))) return;
    seen.add(value);
    const tensors = tensorsIn(value);
    if (tensors.length) holders.push({ path, tensors });
    const children: Array<[unknown, unknown]> = value instanceof Map ? [...value] : value.map((v, i) => [i, v]);
    for (const [key, child] of children) walk(child, path ? `${path}.${String(key)}` : String(key));
  };
  walk(root, '');
  if (holders.length === 1) return holders[0].tensors;
  if (holders.length === 0) {
    throw new WeightsError(`torch: the file holds no tensors (it holds ${describe(root)}); expected a state_dict saved with torch.save(model.state_dict(), path)`);
  }
  const paths = holders.map((h) => `'${h.path}' (${h.tensors.length} tensors)`).join(', ');
  throw new WeightsError(`torch: tensors sit in several nested containers: ${paths}; it is unclear which is the model, so save that one alone with torch.save(checkpoint[...], path)`);
}

/** Copies a strided view of a storage into a contiguous float32 array. */
function materialise(tensor: TensorRef, littleEndian: boolean, key: string): NamedArray {
  const { root } = tensor.storage;
  const { type } = root;
  let { size, stride } = tensor;
  let offset = tensor.storage.offset + tensor.offset;
  let storageEnd = tensor.storage.offset + tensor.storage.numel;
  if (type.parts === 2) {
    // A complex element is two consecutive real parts: index in parts and add a trailing dimension of 2.
    size = [...size, 2];
    stride = [...stride.map((s) => 2 * s), 1];
    offset *= 2;
    storageEnd *= 2;
  }
  const count = shapeSize(size);
  // Strides may be 0 (expanded tensors are saved as such), so the size is not bounded by the file size.
  if (count > MAX_ELEMENTS) {
    throw new WeightsError(`torch: tensor of size [${tensor.size}] has ${count} elements, more than the ${MAX_ELEMENTS} a Float32Array can hold here; the file is corrupt or the tensor must be split`, key);
  }
  if (count === 0) return { shape: size, data: new Float32Array(0), dtype: type.dtype };
  if (!root.bytes) throw new WeightsError(`torch: storage '${root.key}' has no data in the file; the file is truncated or corrupt`, key);

  const last = offset + size.reduce((sum, n, d) => sum + (n - 1) * stride[d], 0);
  if (last >= storageEnd) {
    throw new WeightsError(`torch: tensor of size [${tensor.size}] at offset ${tensor.offset} reaches past the end of its ${tensor.storage.numel}-element storage; the file is corrupt`, key);
  }
  const partSize = ELEMENT_SIZE[type.part];
  const span = decodeToF32(root.bytes.subarray(offset * partSize, (last + 1) * partSize), type.part, last + 1 - offset, littleEndian);
  if (isContiguous(size, stride)) return { shape: size, data: span, dtype: type.dtype };

  // Walk the view in C order with an odometer over the indices, tracking the storage position.
  const data = new Float32Array(count);
  const index = new Array<number>(size.length).fill(0);
  let at = 0;
  for (let i = 0; i < count; i++) {
    data[i] = span[at];
    for (let d = size.length - 1; d >= 0; d--) {
      at += stride[d];
      if (++index[d] < size[d]) break;
      at -= stride[d] * size[d];
      index[d] = 0;
    }
  }
  return { shape: size, data, dtype: type.dtype };
}

/** C-contiguous strides (dimensions of size 1 may have any stride). */
function isContiguous(size: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) return false;
    expected *= size[d];
  }
  return true;
}

const DENSENET_OLD_KEY = /^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$/;

/**
 * Renames the old torchvision DenseNet keys (`...denselayerN.norm.1.weight`) to the current ones
 * (`...denselayerN.norm1.weight`), as torchvision's densenet `_load_state_dict` does with the same
 * regex. Other keys pass through; order is kept.
 */
export function remapTorchvisionDenseNetKeys<T>(tensors: Map<string, T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [key, value] of tensors) {
    const match = DENSENET_OLD_KEY.exec(key);
    const name = match ? match[1] + match[2] : key;
    if (out.has(name)) throw new WeightsError(`DenseNet key remap: two keys map to '${name}'; the file mixes old and new key names`, key);
    out.set(name, value);
  }
  return out;
}
