// The runtime: kernels -> cached pipelines, dispatches recorded into one command encoder and
// submitted once per flush, per-dispatch parameters packed into one uniform arena, a buffer pool.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { DeviceError, KernelError } from './errors.ts';
import { gpu } from './gpu.ts';
import { platform } from './platform/index.ts';
import { BufferPool } from './pool.ts';
import { Profiler, type KernelTime } from './profiler.ts';

/** Values substituted for `${NAME}` in a kernel file (numbers, booleans for `#if`, or WGSL snippets). */
export type Specialisation = Record<string, number | boolean | string>;

/** One storage binding: a whole buffer, or a window of it. */
export interface Binding {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

export interface DispatchCall {
  kernel: string;
  spec?: Specialisation;
  /** Scalar parameters: packed in order into the kernel's `Params` uniform struct (binding 0). */
  params?: ParamValue[];
  /** Storage buffers, bound at bindings 1..n in order. */
  bindings: Binding[];
  workgroups: [number, number?, number?];
}

/** A u32 by default; wrap floats with f32() and signed ints with i32(). */
export type ParamValue = number | { f32: number } | { i32: number };
export const f32 = (v: number): ParamValue => ({ f32: v });
export const i32 = (v: number): ParamValue => ({ i32: v });

const kernelSources = new Map<string, string>();

/** Registers a kernel's WGSL text (each op file imports its .wgsl and registers it by name). */
export function registerKernel(name: string, source: string): void {
  kernelSources.set(name, source);
}

/**
 * Specialises a kernel file with wgsl-preprocessor: the file is a template whose `${NAME}` holes
 * are filled from `spec`, and whose `#if ${FLAG}` blocks are kept or dropped.
 */
export function specialise(name: string, source: string, spec: Specialisation): string {
  const parts = source.split(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/);
  const strings: string[] = [];
  const values: unknown[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (i % 2 === 0) strings.push(parts[i]);
    else {
      if (!(parts[i] in spec)) throw new KernelError(name, `specialisation value \${${parts[i]}} was not given`);
      values.push(spec[parts[i]]);
    }
  }
  const template = Object.assign([...strings], { raw: strings }) as unknown as TemplateStringsArray;
  return wgsl(template, ...values);
}

interface PipelineEntry {
  label: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  storageCount: number;
}

const UNIFORM_SLOT = 256; // bytes per dispatch in the uniform arena (also the offset alignment)
const ARENA_SLOTS = 4096; // dispatches per flush before an automatic flush

export class Runtime {
  readonly pool: BufferPool;
  readonly device: GPUDevice;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly pipelines = new Map<string, PipelineEntry>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private readonly uniformBuffer: GPUBuffer;
  private readonly arena = new ArrayBuffer(UNIFORM_SLOT * ARENA_SLOTS);
  private readonly arenaU32 = new Uint32Array(this.arena);
  private readonly arenaI32 = new Int32Array(this.arena);
  private readonly arenaF32 = new Float32Array(this.arena);
  private slots = 0;
  private readonly errors: KernelError[] = [];
  private readonly compileChecks = new Set<Promise<void>>();
  private readonly afterSubmit: (() => void)[] = [];
  private profiler: Profiler | null = null;
  /** Dispatches recorded since the runtime started; benches and tests read it. */
  dispatchCount = 0;
  submitCount = 0;

  constructor() {
    const { device } = gpu();
    this.device = device;
    this.pool = new BufferPool(device);
    this.uniformBuffer = device.createBuffer({
      label: 'celgrad uniform arena',
      size: UNIFORM_SLOT * ARENA_SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      this.errors.push(new KernelError(kernelNameIn(error.message), error.message));
    });
  }

  /** Records one compute dispatch. Nothing runs until flush(). */
  dispatch(call: DispatchCall): void {
    this.throwPendingErrors();
    const entry = this.pipeline(call.kernel, call.spec ?? {});
    if (call.bindings.length !== entry.storageCount) {
      throw new KernelError(
        entry.label,
        `expects ${entry.storageCount} storage bindings, got ${call.bindings.length}`,
      );
    }
    const maxBinding = this.device.limits.maxStorageBufferBindingSize;
    for (const b of call.bindings) {
      const size = b.size ?? b.buffer.size - (b.offset ?? 0);
      if (size > maxBinding) {
        throw new KernelError(
          entry.label,
          `a binding of ${mib(size)} exceeds this adapter's maxStorageBufferBindingSize (${mib(maxBinding)}); ` +
            'reduce the batch size or image size, or use an adapter with larger limits',
        );
      }
    }
    const [x, y = 1, z = 1] = call.workgroups;
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new KernelError(entry.label, `dispatch ${x}x${y}x${z} exceeds maxComputeWorkgroupsPerDimension ${maxGroups}`);
    }
    if (x === 0 || y === 0 || z === 0) return;

    if (this.slots === ARENA_SLOTS || this.profiler?.full) this.flush();
    const slot = this.slots++;
    this.writeParams(slot, call.params ?? [], entry.label);
    const bindGroup = this.bindGroup(entry, call.bindings);
    if (this.profiler) {
      this.endPass();
      this.pass = this.commandEncoder().beginComputePass({ timestampWrites: this.profiler.next(call.kernel) });
    }
    const pass = this.computePass();
    pass.setPipeline(entry.pipeline);
    pass.setBindGroup(0, bindGroup, [slot * UNIFORM_SLOT]);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiler) this.endPass();
    this.dispatchCount++;
  }

  /** Starts timing every dispatch on the GPU (needs the adapter's timestamp-query feature). */
  startProfiling(): void {
    if (!gpu().hasTimestamps) throw new DeviceError('profiling needs the timestamp-query feature, which this adapter lacks');
    this.flush();
    this.profiler ??= new Profiler(this.device);
  }

  /** Stops timing and returns GPU milliseconds per kernel, summed over its dispatches, slowest first. */
  async stopProfiling(): Promise<KernelTime[]> {
    const profiler = this.profiler;
    if (!profiler) return [];
    await this.sync();
    this.profiler = null;
    const times = await profiler.collect(platform().waitForGPU.bind(platform()));
    profiler.destroy();
    return times;
  }

  /** Records a buffer-to-buffer copy (ends the current compute pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Runs `fn` once the current recording has been submitted (e.g. to return buffers to the pool). */
  onSubmit(fn: () => void): void {
    this.afterSubmit.push(fn);
  }

  /** Submits everything recorded so far as one command buffer. */
  flush(): void {
    this.throwPendingErrors();
    if (!this.encoder) {
      this.runAfterSubmit();
      return;
    }
    this.endPass();
    this.profiler?.resolve(this.encoder);
    if (this.slots > 0) this.device.queue.writeBuffer(this.uniformBuffer, 0, this.arena, 0, this.slots * UNIFORM_SLOT);
    this.device.queue.submit([this.encoder.finish()]);
    this.submitCount++;
    this.encoder = null;
    this.slots = 0;
    this.pool.settle();
    this.runAfterSubmit();
  }

  /** Flushes and waits until the GPU has finished; surfaces any GPU error as an exception. */
  async sync(): Promise<void> {
    this.flush();
    await platform().waitForGPU(this.device.queue.onSubmittedWorkDone());
    await this.settleCompileChecks();
    this.throwPendingErrors();
  }

  /** Copies `size` bytes of `buffer` to the CPU. Flushes the recording. */
  async read(buffer: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    const staging = this.pool.acquireStaging(size);
    this.copy(buffer, offset, staging, 0, alignTo(size, 4));
    this.flush();
    try {
      await platform().waitForGPU(staging.mapAsync(GPUMapMode.READ, 0, alignTo(size, 4)));
      await this.settleCompileChecks();
      this.throwPendingErrors();
      return staging.getMappedRange(0, alignTo(size, 4)).slice(0, size);
    } finally {
      if (staging.mapState === 'mapped') staging.unmap();
      this.pool.releaseStaging(staging);
    }
  }

  /** Writes CPU data into a buffer that no recorded-but-unsubmitted work uses (see BufferPool). */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    // queue.writeBuffer rejects views onto a SharedArrayBuffer (dawn.node): copy those first.
    const view =
      data.buffer instanceof ArrayBuffer
        ? data
        : new Uint8Array(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.device.queue.writeBuffer(buffer, offset, view.buffer as ArrayBuffer, view.byteOffset, view.byteLength);
  }

  /** True when commands have been recorded and not yet submitted. */
  get recording(): boolean {
    return this.encoder !== null;
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder({ label: 'celgrad step' });
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private runAfterSubmit(): void {
    for (const fn of this.afterSubmit.splice(0)) fn();
  }

  private async settleCompileChecks(): Promise<void> {
    if (this.compileChecks.size) await platform().waitForGPU(Promise.all(this.compileChecks));
  }

  /**
   * Throws the most specific pending GPU error and forgets the rest: one failure (say a kernel that
   * does not compile) also invalidates the command buffer, and that echo names no kernel.
   */
  private throwPendingErrors(): void {
    if (!this.errors.length) return;
    const named =
      this.errors.find((e) => e.message.includes('failed to compile')) ??
      this.errors.find((e) => e.kernel !== 'unknown kernel') ??
      this.errors[0];
    this.errors.length = 0;
    throw named;
  }

  private writeParams(slot: number, params: ParamValue[], label: string): void {
    if (params.length * 4 > UNIFORM_SLOT) throw new KernelError(label, `more than ${UNIFORM_SLOT / 4} scalar parameters`);
    const base = (slot * UNIFORM_SLOT) / 4;
    params.forEach((p, i) => {
      if (typeof p === 'number') this.arenaU32[base + i] = p;
      else if ('f32' in p) this.arenaF32[base + i] = p.f32;
      else this.arenaI32[base + i] = p.i32;
    });
  }

  private pipeline(kernel: string, spec: Specialisation): PipelineEntry {
    const key = `${kernel}|${JSON.stringify(spec)}`;
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    const source = kernelSources.get(kernel);
    if (source === undefined) throw new KernelError(kernel, 'no such kernel is registered');
    const code = specialise(kernel, source, spec);
    const label = Object.keys(spec).length ? `${kernel}(${specLabel(spec)})` : kernel;

    const storage = storageBindings(code);
    const layout = this.device.createBindGroupLayout({
      label,
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
        ...storage.map((readOnly, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: (readOnly ? 'read-only-storage' : 'storage') as GPUBufferBindingType },
        })),
      ],
    });
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label, code });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ label, bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    // Compilation is checked asynchronously; a failure surfaces at the next dispatch, flush or sync.
    const check = this.device.popErrorScope().then(async (error) => {
      if (!error) return;
      const info = await module.getCompilationInfo();
      const lines = code.split('\n');
      const details = info.messages
        .filter((m) => m.type === 'error')
        .map((m) => `kernels/${kernel}.wgsl (specialised) line ${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1]?.trim() ?? ''}`)
        .join('\n');
      this.errors.push(new KernelError(label, `failed to compile:\n${details || error.message}`));
    });
    this.compileChecks.add(check);
    check.finally(() => this.compileChecks.delete(check));
    const entry = { label, pipeline, layout, storageCount: storage.length };
    this.pipelines.set(key, entry);
    return entry;
  }

  private bindGroup(entry: PipelineEntry, bindings: Binding[]): GPUBindGroup {
    let key = entry.label;
    for (const b of bindings) key += `|${this.bufferId(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size > 20000) this.bindGroups.clear();
      group = this.device.createBindGroup({
        label: entry.label,
        layout: entry.layout,
        entries: [
          { binding: 0, resource: { buffer: this.uniformBuffer, offset: 0, size: UNIFORM_SLOT } },
          ...bindings.map((b, i) => ({
            binding: i + 1,
            resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size },
          })),
        ],
      });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = this.nextBufferId++));
    return id;
  }
}

/** For each `@binding(n)` storage variable (n >= 1), in binding order: true when it is read-only. */
function storageBindings(code: string): boolean[] {
  const found: { binding: number; readOnly: boolean }[] = [];
  const re = /@binding\((\d+)\)\s*var<storage\s*(?:,\s*(read_write|read))?\s*>/g;
  for (let m = re.exec(code); m; m = re.exec(code)) found.push({ binding: Number(m[1]), readOnly: m[2] !== 'read_write' });
  found.sort((a, b) => a.binding - b.binding);
  found.forEach((f, i) => {
    if (f.binding !== i + 1) throw new Error(`storage bindings must be numbered 1..n without gaps (found @binding(${f.binding}))`);
  });
  return found.map((f) => f.readOnly);
}

function specLabel(spec: Specialisation): string {
  return Object.entries(spec)
    .filter(([, v]) => typeof v !== 'string' || v.length < 24)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Dawn's messages quote object labels like [ComputePipeline "matmul(...)"]: use them to name the kernel. */
function kernelNameIn(message: string): string {
  return /(?:ComputePipeline|BindGroup|ShaderModule|BindGroupLayout) "([^"]+)"/.exec(message)?.[1] ?? 'unknown kernel';
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
export const alignTo = (n: number, a: number) => Math.ceil(n / a) * a;

let runtime: Runtime | null = null;

/** The process-wide runtime (created on first use after initGPU()). */
export function rt(): Runtime {
  if (!runtime) {
    try {
      runtime = new Runtime();
    } catch (e) {
      if (e instanceof DeviceError) throw e;
      throw new DeviceError(`Starting the runtime failed: ${(e as Error).message}`);
    }
  }
  return runtime;
}
