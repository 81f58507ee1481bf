// A restricted pickle virtual machine (protocols 2-5), enough for PyTorch state_dicts.
// Like torch.load(weights_only=True) it never runs code: GLOBAL only resolves names through the
// caller's allow-list, and REDUCE / NEWOBJ may only call the functions that allow-list returns.
//
// Python values map to: int -> number (bigint beyond 2^53), float -> number, str -> string,
// bytes -> Uint8Array, bool -> boolean, None -> null, list -> array, tuple -> frozen array,
// dict / OrderedDict -> Map.

import { WeightsError } from '../errors.ts';

/** A callable the allow-list hands to the VM (a class or function that REDUCE / NEWOBJ may call). */
export class PyCallable {
  constructor(
    readonly qualifiedName: string,
    readonly call: (args: readonly unknown[]) => unknown,
  ) {}
  toString(): string {
    return this.qualifiedName;
  }
}

export interface PickleHooks {
  /** Returns the value of `module.name` (a PyCallable for anything callable), or throws WeightsError to refuse it. */
  findGlobal(module: string, name: string): unknown;
  /** Resolves a persistent id (BINPERSID); torch uses it for storages. */
  persistentLoad(pid: unknown): unknown;
}

const MARK = Symbol('mark');

/** Decodes one pickle starting at `start`; returns its value and the offset just past its STOP opcode. */
export function unpickle(bytes: Uint8Array, start: number, hooks: PickleHooks): { value: unknown; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = start;

  const fail = (message: string, at = pos): never => {
    throw new WeightsError(`pickle at byte ${at}: ${message}`);
  };
  const take = (n: number): number => {
    if (n < 0) fail(`a negative length ${n}; the pickle is corrupt`);
    if (pos + n > bytes.length) fail(`needs ${n} more bytes but the file ends; the file is truncated`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[take(1)];
  const u16 = (): number => view.getUint16(take(2), true);
  const u32 = (): number => view.getUint32(take(4), true);
  const u64 = (): number => {
    const lo = u32();
    const hi = u32();
    if (hi >= 2 ** 21) fail('a length exceeds 2^53; the pickle is corrupt');
    return hi * 4294967296 + lo;
  };
  const raw = (n: number): Uint8Array => bytes.subarray(take(n), pos);
  const text = (n: number): string => decoder.decode(raw(n));
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('a text argument has no terminating newline; the file is truncated');
    const value = decoder.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return value;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('stack underflow; the pickle is corrupt');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('stack underflow; the pickle is corrupt');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const mark = stack.lastIndexOf(MARK);
    if (mark < 0) fail('an opcode needs a MARK but none is on the stack; the pickle is corrupt');
    const items = stack.splice(mark);
    items.shift();
    return items;
  };
  const decimal = (): number => {
    const value = Number(line());
    if (!Number.isSafeInteger(value) || value < 0) fail('a memo index is not a non-negative integer; the pickle is corrupt');
    return value;
  };
  const pairs = (items: unknown[], into: Map<unknown, unknown>): Map<unknown, unknown> => {
    if (items.length % 2) fail('a dict needs key/value pairs but got an odd number of items; the pickle is corrupt');
    for (let i = 0; i < items.length; i += 2) into.set(items[i], items[i + 1]);
    return into;
  };
  const memoGet = (index: number): unknown => {
    if (!memo.has(index)) fail(`memo entry ${index} is read before it is written; the pickle is corrupt`);
    return memo.get(index);
  };
  const list = (): unknown[] => {
    const value = top();
    if (!Array.isArray(value) || Object.isFrozen(value)) fail('APPEND target is not a list; the pickle is corrupt');
    return value as unknown[];
  };
  const dict = (): Map<unknown, unknown> => {
    const value = top();
    if (!(value instanceof Map)) fail('SETITEM target is not a dict; the pickle is corrupt');
    return value as Map<unknown, unknown>;
  };
  const call = (callable: unknown, args: unknown, opcode: string): unknown => {
    if (!(callable instanceof PyCallable)) fail(`${opcode} on ${describe(callable)}, which is not a callable from the allow-list`);
    if (!Array.isArray(args)) fail(`${opcode} arguments must be a tuple, got ${describe(args)}`);
    return (callable as PyCallable).call(args as unknown[]);
  };
  // Little-endian two's-complement integer of n bytes (LONG1 / LONG4).
  const long = (n: number): number | bigint => {
    const data = raw(n);
    let value = 0n;
    for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]);
    if (n > 0 && data[n - 1] & 0x80) value -= 1n << BigInt(8 * n);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  };

  for (;;) {
    const at = pos;
    const opcode = u8();
    switch (opcode) {
      case 0x80: { // PROTO
        const version = u8();
        if (version > 5) fail(`pickle protocol ${version} is newer than 5, the highest this reader knows`, at);
        break;
      }
      case 0x95: // FRAME: a length hint for buffered readers; the whole file is in memory already.
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        stack.push(hooks.findGlobal(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings', at);
        stack.push(hooks.findGlobal(module as string, name as string));
        break;
      }
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x55: // SHORT_BINSTRING (Python 2 str; torch.load decodes it as UTF-8)
        stack.push(text(u8()));
        break;
      case 0x54: { // BINSTRING
        const length = view.getInt32(take(4), true);
        stack.push(text(length));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        stack.push(raw(u8()).slice());
        break;
      case 0x42: // BINBYTES
        stack.push(raw(u32()).slice());
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(take(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8()));
        break;
      case 0x8b: { // LONG4
        const length = view.getInt32(take(4), true);
        stack.push(long(length));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        stack.push(view.getFloat64(take(8), false));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(Object.freeze([]));
        break;
      case 0x74: // TUPLE
        stack.push(Object.freeze(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(Object.freeze([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push(Object.freeze([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(Object.freeze([pop(), b, c]));
        break;
      }
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: // DICT
        stack.push(pairs(popMark(), new Map()));
        break;
      case 0x73: { // SETITEM
        const value = pop();
        const key = pop();
        dict().set(key, value);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        pairs(items, dict());
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: { // APPEND
        const value = pop();
        list().push(value);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const target = list();
        for (const item of items) target.push(item); // no spread: lists can exceed the argument limit
        break;
      }
      case 0x52: { // REDUCE: callable(*args)
        const args = pop();
        stack.push(call(pop(), args, 'REDUCE'));
        break;
      }
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args); allowed classes build their value the same way as a call
        const args = pop();
        stack.push(call(pop(), args, 'NEWOBJ'));
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state)
        const state = pop();
        const target = top();
        // state_dicts are OrderedDicts with a `_metadata` attribute (module versions); tensors do not need it.
        if (!(target instanceof Map && state instanceof Map)) {
          fail(`BUILD (setting the state of an object) on ${describe(target)} is not supported; only plain state_dicts and tensors can be read`, at);
        }
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(pop()));
        break;
      case 0x70: // PUT "index\n"
        memo.set(decimal(), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET "index\n"
        stack.push(memoGet(decimal()));
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      default:
        fail(`opcode 0x${opcode.toString(16).padStart(2, '0')} is not supported by this restricted reader (state_dicts do not use it); the file is corrupt or holds more than tensors`, at);
    }
  }
}

/** A short description of a pickled value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'None';
  if (value instanceof Map) return `a dict with keys ${[...value.keys()].slice(0, 8).map(String).join(', ')}${value.size > 8 ? ', ...' : ''}`;
  if (Array.isArray(value)) return `a ${Object.isFrozen(value) ? 'tuple' : 'list'} of ${value.length} items`;
  if (value instanceof Uint8Array) return `bytes (${value.length})`;
  if (typeof value === 'object') return String(value); // the allow-list's objects describe themselves
  return `${typeof value} ${String(value).slice(0, 40)}`;
}
