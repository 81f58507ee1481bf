// Device bootstrap: one adapter and device per process, the limits and features celgrad relies on,
// and GPU errors turned into exceptions.
import { DeviceError } from './errors.ts';
import { platform, type AdapterChoice } from './platform/index.ts';

export interface AdapterFacts {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Lanes per subgroup when the `subgroups` feature is on, else 0. */
  subgroupSize: number;
  isSoftware: boolean;
}

export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  facts: AdapterFacts;
  limits: GPUSupportedLimits;
  hasSubgroups: boolean;
  hasF16: boolean;
  hasTimestamps: boolean;
}

/** Limits the engine asks for, each up to what the adapter allows. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
] as const;

const WANTED_FEATURES = ['subgroups', 'shader-f16', 'timestamp-query'] as const;

let current: Gpu | null = null;
let pending: Promise<Gpu> | null = null;

/** The adapter choice from the environment: CELGRAD_BACKEND and CELGRAD_ADAPTER. */
export function adapterChoiceFromEnv(): AdapterChoice {
  const p = platform();
  return { backend: p.env('CELGRAD_BACKEND') || undefined, adapter: p.env('CELGRAD_ADAPTER') || undefined };
}

/** Starts (once) and returns the GPU. Throws DeviceError with the fix when there is no adapter. */
export function initGPU(choice: AdapterChoice = adapterChoiceFromEnv()): Promise<Gpu> {
  pending ??= start(choice).catch((e) => {
    pending = null;
    throw e;
  });
  return pending;
}

/** The started GPU; throws if initGPU() has not completed. */
export function gpu(): Gpu {
  if (!current) throw new DeviceError('The GPU is not started: await initGPU() first.');
  return current;
}

async function start(choice: AdapterChoice): Promise<Gpu> {
  const p = platform();
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await p.requestAdapter(choice);
  } catch (e) {
    throw new DeviceError(
      `Requesting a WebGPU adapter failed: ${(e as Error).message}\nCheck --backend / --adapter (CELGRAD_BACKEND / CELGRAD_ADAPTER).`,
    );
  }
  if (!adapter) throw new DeviceError(p.adapterHelp());

  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });

  const info = adapter.info;
  const hasSubgroups = device.features.has('subgroups');
  const facts: AdapterFacts = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    subgroupSize: hasSubgroups ? subgroupSizeOf(info) : 0,
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(`${info.architecture} ${info.description} ${info.device}`),
  };
  current = {
    device,
    adapter,
    facts,
    limits: device.limits,
    hasSubgroups,
    hasF16: device.features.has('shader-f16'),
    hasTimestamps: device.features.has('timestamp-query'),
  };
  device.lost.then((lost) => {
    if (lost.reason !== 'destroyed') console.error(`celgrad: the GPU device was lost: ${lost.message}`);
  });
  return current;
}

function subgroupSizeOf(info: GPUAdapterInfo): number {
  const min = (info as unknown as { subgroupMinSize?: number }).subgroupMinSize;
  // Lavapipe's lanes follow LP_NATIVE_VECTOR_WIDTH (256 bits -> 8 f32 lanes by default).
  return min && min > 0 ? min : 8;
}
