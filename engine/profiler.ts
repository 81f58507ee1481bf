// GPU-side kernel timing with timestamp queries: while profiling, each dispatch gets its own compute
// pass whose beginning and end write timestamps, so a kernel's time excludes CPU-side recording.
// Used by `celgrad bench models --profile`; never on in normal runs (one pass per dispatch costs).

/** Dispatches per query set (two timestamps each; WebGPU caps a query set at 4096 queries). */
export const PROFILE_CAPACITY = 2048;

interface Pending {
  labels: string[];
  readback: GPUBuffer;
}

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

export class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private labels: string[] = [];
  private readonly pending: Pending[] = [];
  private readonly totals = new Map<string, { calls: number; ns: bigint }>();

  constructor(private readonly device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: PROFILE_CAPACITY * 2 });
    this.resolveBuffer = device.createBuffer({
      size: PROFILE_CAPACITY * 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
  }

  get full(): boolean {
    return this.labels.length === PROFILE_CAPACITY;
  }

  /** The timestamp writes for the next dispatch's pass. */
  next(label: string): GPUComputePassTimestampWrites {
    const i = this.labels.length;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Called before the encoder finishes: resolves this recording's timestamps into a read-back buffer. */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.labels.length;
    if (n === 0) return;
    const readback = this.device.createBuffer({ size: n * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, n * 2, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, readback, 0, n * 16);
    this.pending.push({ labels: this.labels, readback });
    this.labels = [];
  }

  /** Waits for every resolved recording and returns per-kernel totals, slowest first. */
  async collect(wait: <T>(p: Promise<T>) => Promise<T>): Promise<KernelTime[]> {
    for (const { labels, readback } of this.pending.splice(0)) {
      await wait(readback.mapAsync(GPUMapMode.READ));
      const stamps = new BigUint64Array(readback.getMappedRange());
      labels.forEach((label, i) => {
        const entry = this.totals.get(label) ?? { calls: 0, ns: 0n };
        entry.calls++;
        entry.ns += stamps[2 * i + 1] > stamps[2 * i] ? stamps[2 * i + 1] - stamps[2 * i] : 0n;
        this.totals.set(label, entry);
      });
      readback.unmap();
      readback.destroy();
    }
    return [...this.totals]
      .map(([kernel, { calls, ns }]) => ({ kernel, calls, ms: Number(ns) / 1e6 }))
      .sort((a, b) => b.ms - a.ms);
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuffer.destroy();
  }
}
