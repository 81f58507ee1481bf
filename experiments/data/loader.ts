// Batches of decoded, transformed, normalised images, decoded in a pool of worker threads with prefetch.
//
// Determinism: the epoch order is a shuffle seeded by (seed, epoch); each sample's augmentation is seeded by
// (seed, epoch, sample index); batches are assembled in order whatever the workers' timing.
//
// Bad images: a sample that fails to decode is reported (once per loader, through `onProblem` and `problems`)
// and its slot is filled with the next sample in the epoch order that decodes, wrapping around, with that
// sample's own label, path and augmentation. Batches therefore keep their full size; the replacement depends
// only on which files are bad, never on timing (the order in which problems are reported may vary).
//
// The worker is eval'd source text built from the shipped transform functions (no separate file to find after
// bundling); it loads sharp by the path resolved here, so it works from any working directory. This relies on
// those functions' source being runnable as is: fine for esbuild and tsc output, not for source-rewriting
// coverage instrumenters.
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { DataError } from '../../engine/errors.ts';
import { Rng, hashSeed, mulberry32 } from './rng.ts';
import { planTransform, randomResizedCropParams, roundHalfEven, transformInto, type Transform } from './transforms.ts';
import type { Box, Problem, Sample } from './types.ts';

export interface Batch {
  /** N x 3 x size x size, NCHW, normalised. */
  images: Float32Array;
  labels: Int32Array;
  paths: string[];
}

export interface LoaderOptions {
  samples: readonly Sample[];
  batchSize: number;
  transform: Transform;
  /** Default 0. */
  seed?: number;
  /** Reshuffle every epoch (seeded by seed and epoch). Default false. */
  shuffle?: boolean;
  /** Drop a last, smaller batch. Default false. */
  dropLast?: boolean;
  /** Decode threads. Default min(2, available cores). */
  workers?: number;
  /** Batches decoded ahead of the one being consumed. Default 2. */
  prefetch?: number;
  onProblem?: (problem: Problem) => void;
}

interface Item {
  path: string;
  box?: Box;
  seed: number;
}

interface JobResult {
  images: Float32Array;
  errors: { slot: number; reason: string }[];
}

/**
 * Runs in each worker: decode the items of a job into one Float32Array and send it back. `load` is the eval
 * context's require, passed in because a bundler rewrites `require` calls it sees in module code.
 */
function workerMain(load: NodeJS.Require): void {
  const { parentPort, workerData } = load('node:worker_threads');
  const { readFile: read } = load('node:fs/promises');
  const lib = load(workerData.sharpPath);
  // libvips threads are process-wide; the pool supplies the parallelism.
  lib.concurrency(1);
  lib.cache(false);
  parentPort.on('message', async (job: { id: number; items: Item[]; transform: Transform }) => {
    const per = 3 * job.transform.size * job.transform.size;
    const images = new Float32Array(job.items.length * per);
    const errors: { slot: number; reason: string }[] = [];
    for (let slot = 0; slot < job.items.length; slot++) {
      const item = job.items[slot];
      try {
        await transformInto(lib, await read(item.path), item.box, job.transform, item.seed, images, slot * per);
      } catch (e) {
        errors.push({ slot, reason: String((e as Error)?.message ?? e) });
      }
    }
    parentPort.postMessage({ id: job.id, images, errors }, [images.buffer]);
  });
}

const WORKER_SOURCE = [mulberry32, roundHalfEven, randomResizedCropParams, planTransform, transformInto, workerMain].map(String).join('\n') + '\nworkerMain(require);\n';

/** A fixed set of decode threads taking jobs first come, first served. */
class DecodePool {
  private readonly idle: Worker[] = [];
  private readonly queue: { id: number; items: Item[]; transform: Transform }[] = [];
  private readonly waiting = new Map<number, { resolve: (r: JobResult) => void; reject: (e: Error) => void }>();
  private readonly workers: Worker[] = [];
  private nextId = 0;
  private failure?: Error;

  constructor(count: number) {
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    for (let i = 0; i < count; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { sharpPath } });
      // Idle workers must not keep the process alive; busy ones are ref'd while a job is out.
      worker.unref();
      worker.on('message', (msg: { id: number } & JobResult) => {
        const entry = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        entry?.resolve({ images: msg.images, errors: msg.errors });
        this.release(worker);
      });
      worker.on('error', (e) => this.fail(new DataError('decode worker', `crashed: ${e.message}`)));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new DataError('decode worker', `exited with code ${code}`));
      });
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  run(items: Item[], transform: Transform): Promise<JobResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const done = new Promise<JobResult>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.queue.push({ id, items, transform });
    this.dispatch();
    return done;
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const job = this.queue.shift()!;
      worker.ref();
      worker.postMessage(job);
    }
  }

  private release(worker: Worker): void {
    worker.unref();
    this.idle.push(worker);
    this.dispatch();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const entry of this.waiting.values()) entry.reject(this.failure);
    this.waiting.clear();
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    this.failure ??= new DataError('decode pool', 'closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export class DataLoader {
  /** Every sample that failed to decode so far, each path once. */
  readonly problems: Problem[] = [];
  private readonly options: Required<Omit<LoaderOptions, 'onProblem'>> & Pick<LoaderOptions, 'onProblem'>;
  private readonly bad = new Set<number>();
  private pool?: DecodePool;

  constructor(options: LoaderOptions) {
    if (!(options.batchSize >= 1)) throw new RangeError(`batchSize must be at least 1, got ${options.batchSize}`);
    this.options = {
      samples: options.samples,
      batchSize: options.batchSize,
      transform: options.transform,
      seed: options.seed ?? 0,
      shuffle: options.shuffle ?? false,
      dropLast: options.dropLast ?? false,
      workers: Math.max(1, options.workers ?? Math.min(2, availableParallelism())),
      prefetch: Math.max(0, options.prefetch ?? 2),
      onProblem: options.onProblem,
    };
  }

  get batchesPerEpoch(): number {
    const n = this.options.samples.length;
    return this.options.dropLast ? Math.floor(n / this.options.batchSize) : Math.ceil(n / this.options.batchSize);
  }

  /** Sample indices in the order epoch `epoch` visits them. */
  order(epoch: number): Int32Array {
    const indices = Array.from(this.options.samples, (_, i) => i);
    if (this.options.shuffle) new Rng(hashSeed(this.options.seed, epoch)).shuffle(indices);
    return Int32Array.from(indices);
  }

  /** The batches of one epoch, from `startBatch` on (to resume mid-epoch), decoded `prefetch` batches ahead. */
  async *epoch(epoch: number, options: { startBatch?: number } = {}): AsyncGenerator<Batch> {
    const order = this.order(epoch);
    const count = this.batchesPerEpoch;
    const pending = new Map<number, Promise<Batch>>();
    for (let b = options.startBatch ?? 0; b < count; b++) {
      for (let ahead = b; ahead <= Math.min(count - 1, b + this.options.prefetch); ahead++) {
        if (pending.has(ahead)) continue;
        const p = this.loadBatch(order, epoch, ahead);
        // Rejections surface when the batch is awaited; an abandoned prefetch must not be an unhandled rejection.
        p.catch(() => undefined);
        pending.set(ahead, p);
      }
      const batch = await pending.get(b)!;
      pending.delete(b);
      yield batch;
    }
  }

  /** Stops the decode threads. The loader starts new ones if used again. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  private item(index: number, epoch: number): Item {
    const s = this.options.samples[index];
    return { path: s.path, box: s.box, seed: hashSeed(this.options.seed, epoch, index) };
  }

  private report(index: number, reason: string): void {
    if (this.bad.has(index)) return;
    this.bad.add(index);
    const problem = { path: this.options.samples[index].path, reason };
    this.problems.push(problem);
    this.options.onProblem?.(problem);
  }

  private async loadBatch(order: Int32Array, epoch: number, b: number): Promise<Batch> {
    const { batchSize, transform } = this.options;
    this.pool ??= new DecodePool(this.options.workers);
    const pool = this.pool;
    const start = b * batchSize;
    const n = Math.min(batchSize, order.length - start);
    const per = 3 * transform.size * transform.size;
    const images = new Float32Array(n * per);
    const labels = new Int32Array(n);
    const paths = new Array<string>(n);
    const failed: { slot: number; reason: string }[] = [];

    // One job per worker, so a single batch keeps all of them busy.
    const chunk = Math.ceil(n / this.options.workers);
    const jobs: Promise<void>[] = [];
    for (let first = 0; first < n; first += chunk) {
      const slots = Array.from({ length: Math.min(chunk, n - first) }, (_, k) => first + k);
      jobs.push(
        pool.run(slots.map((slot) => this.item(order[start + slot], epoch)), transform).then((r) => {
          images.set(r.images, first * per);
          for (const e of r.errors) failed.push({ slot: first + e.slot, reason: e.reason });
        }),
      );
    }
    await Promise.all(jobs);
    for (let slot = 0; slot < n; slot++) {
      const s = this.options.samples[order[start + slot]];
      labels[slot] = s.label;
      paths[slot] = s.path;
    }

    failed.sort((x, y) => x.slot - y.slot);
    for (const { slot, reason } of failed) {
      this.report(order[start + slot], reason);
      const replacement = await this.replace(order, start + slot, epoch);
      images.set(replacement.images, slot * per);
      labels[slot] = this.options.samples[replacement.index].label;
      paths[slot] = this.options.samples[replacement.index].path;
    }
    return { images, labels, paths };
  }

  /** Decodes the first sample after `position` in the epoch order that works. */
  private async replace(order: Int32Array, position: number, epoch: number): Promise<{ index: number; images: Float32Array }> {
    for (let step = 1; step < order.length; step++) {
      const index = order[(position + step) % order.length];
      if (this.bad.has(index)) continue;
      const r = await this.pool!.run([this.item(index, epoch)], this.options.transform);
      if (r.errors.length === 0) return { index, images: r.images };
      this.report(index, r.errors[0].reason);
    }
    throw new DataError(this.options.samples[order[position]].path, 'no sample in the data set could be decoded; see the problems list');
  }
}
