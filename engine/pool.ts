// GPU buffer pool, bucketed by size class. A released buffer is reusable at once by later GPU work
// recorded into the same command encoder (the GPU orders dispatches), but a CPU upload
// (queue.writeBuffer runs before any unsubmitted work) may only take a buffer whose last use has
// been submitted: "settled" buffers.
import { DeviceError } from './errors.ts';

export interface PoolStats {
  /** Bytes held by live tensors. */
  inUse: number;
  /** Highest inUse seen since the last resetPeak(). */
  peak: number;
  /** Bytes of all GPU buffers the pool owns (live + free). */
  allocated: number;
}

export class BufferPool {
  private readonly settled = new Map<number, GPUBuffer[]>();
  private readonly recycled = new Map<number, GPUBuffer[]>();
  private readonly staging = new Map<number, GPUBuffer[]>();
  private readonly sizeOf = new WeakMap<GPUBuffer, number>();
  private stats: PoolStats = { inUse: 0, peak: 0, allocated: 0 };
  private readonly usage: number;

  constructor(private readonly device: GPUDevice) {
    // GPUBufferUsage exists only once the platform has installed the WebGPU globals: read it here.
    this.usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  }

  /**
   * A buffer of at least `bytes`. `forUpload` buffers come only from settled ones (safe for
   * queue.writeBuffer); others may reuse a buffer released earlier in the current recording.
   */
  acquire(bytes: number, forUpload = false): GPUBuffer {
    const size = sizeClass(bytes);
    const buffer =
      (forUpload ? undefined : this.recycled.get(size)?.pop()) ?? this.settled.get(size)?.pop() ?? this.create(size);
    this.stats.inUse += size;
    this.stats.peak = Math.max(this.stats.peak, this.stats.inUse);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const size = this.sizeOf.get(buffer);
    if (size === undefined) throw new Error('BufferPool.release: buffer does not belong to this pool');
    this.stats.inUse -= size;
    push(this.recycled, size, buffer);
  }

  /** Called after each submit: buffers released during the recording become safe for uploads. */
  settle(): void {
    for (const [size, list] of this.recycled) {
      for (const b of list) push(this.settled, size, b);
      list.length = 0;
    }
  }

  acquireStaging(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    return (
      this.staging.get(size)?.pop() ??
      this.device.createBuffer({ label: 'celgrad read-back', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    );
  }

  releaseStaging(buffer: GPUBuffer): void {
    push(this.staging, buffer.size, buffer);
  }

  /** Destroys every free buffer (live ones stay). */
  trim(): void {
    for (const map of [this.settled, this.recycled, this.staging]) {
      for (const list of map.values()) {
        for (const b of list) {
          if (map !== this.staging) this.stats.allocated -= b.size;
          b.destroy();
        }
        list.length = 0;
      }
    }
  }

  getStats(): PoolStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peak = this.stats.inUse;
  }

  private create(size: number): GPUBuffer {
    const max = this.device.limits.maxBufferSize;
    if (size > max) {
      throw new DeviceError(
        `A tensor of ${(size / 2 ** 20).toFixed(1)} MiB exceeds this adapter's maxBufferSize (${(max / 2 ** 20).toFixed(0)} MiB). Reduce the batch or image size.`,
      );
    }
    const buffer = this.device.createBuffer({ label: 'celgrad tensor', size, usage: this.usage });
    this.sizeOf.set(buffer, size);
    this.stats.allocated += size;
    return buffer;
  }
}

/** Four size classes per power of two (at most 25% slack), at least 256 bytes. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const octave = 2 ** Math.floor(Math.log2(bytes));
  const step = octave / 4;
  return Math.ceil(bytes / step) * step;
}

function push(map: Map<number, GPUBuffer[]>, size: number, buffer: GPUBuffer): void {
  const list = map.get(size);
  if (list) list.push(buffer);
  else map.set(size, [buffer]);
}
