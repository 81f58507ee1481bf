// Node platform: dawn.node through the npm `webgpu` package. The one file in engine/ allowed Node APIs.
import { create, globals } from 'webgpu';
import type { AdapterChoice, Platform } from './types.ts';

// dawn.node crashes (or never resolves promises) if the object returned by create() is garbage
// collected, so every GPU instance made here is kept for the life of the process.
const keepAlive: unknown[] = [];
let lastGpu: GPU | null = null;
let globalsInstalled = false;

/**
 * The `GPU` object (navigator.gpu's counterpart) behind the last adapter requested here, or null. The
 * kernel bench hands it to TF.js's WebGPU backend, which checks navigator.gpu, to run on the same device.
 */
export function nodeGpu(): GPU | null {
  return lastGpu;
}

// dawn.node re-queues its event processing with setImmediate while a GPU promise is pending,
// which spins the main thread at 100%. While we wait, route setImmediate through setTimeout:
// about 1 ms of latency per await, and the core goes back to the (software) GPU.
let waiting = 0;
const realSetImmediate = globalThis.setImmediate;
function politeSetImmediate<A extends unknown[]>(fn: (...args: A) => void, ...args: A) {
  return setTimeout(() => fn(...args), 0) as unknown as NodeJS.Immediate;
}

export function nodePlatform(): Platform {
  return {
    name: 'node',
    async requestAdapter(choice: AdapterChoice) {
      if (!globalsInstalled) {
        Object.assign(globalThis, globals);
        globalsInstalled = true;
      }
      const options: string[] = [];
      if (choice.backend) options.push(`backend=${choice.backend}`);
      if (choice.adapter) options.push(`adapter=${choice.adapter}`);
      const gpu = create(options);
      keepAlive.push(gpu);
      lastGpu = gpu;
      return gpu.requestAdapter({ powerPreference: choice.powerPreference });
    },
    async waitForGPU<T>(promise: Promise<T>): Promise<T> {
      if (waiting++ === 0) (globalThis as { setImmediate: unknown }).setImmediate = politeSetImmediate;
      try {
        return await promise;
      } finally {
        if (--waiting === 0) globalThis.setImmediate = realSetImmediate;
      }
    },
    now: () => performance.now(),
    env: (name) => process.env[name],
    adapterHelp: () =>
      [
        'No WebGPU adapter was found.',
        'Fix: run `bash scripts/setup.sh` (installs Mesa >= 25 lavapipe, a software Vulkan driver, on Debian/Ubuntu),',
        'or install a GPU driver with Vulkan support. On Debian bookworm, Mesa 22 is too old for Dawn;',
        'Mesa 25 comes from bookworm-backports: apt-get install -t bookworm-backports mesa-vulkan-drivers.',
        'Select a backend or adapter with CELGRAD_BACKEND=vulkan|null|... and CELGRAD_ADAPTER=<name substring>.',
      ].join('\n'),
  };
}
