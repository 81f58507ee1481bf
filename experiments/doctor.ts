// `celgrad doctor`: what the engine will run on, and whether it can.
import { DeviceError, Tensor, matmul, rt } from '../engine/index.ts';
import { startGPU } from './gpu-node.ts';

const LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
] as const;

export async function doctor(flags: { backend?: string; adapter?: string; json?: boolean }): Promise<number> {
  let g;
  try {
    g = await startGPU(flags);
  } catch (e) {
    if (e instanceof DeviceError) {
      console.error(`celgrad doctor: ${e.message}`);
      return 1;
    }
    throw e;
  }
  // A tiny end-to-end check: a kernel compiles, runs and reads back the right numbers.
  const a = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
  const b = Tensor.fromArray([5, 6, 7, 8], [2, 2]);
  const c = await matmul(a, b).toArray();
  const kernelOk = [19, 22, 43, 50].every((v, i) => c[i] === v);
  const report = {
    adapter: g.facts,
    backend: flags.backend ?? process.env.CELGRAD_BACKEND ?? 'default (Vulkan on Linux)',
    limits: Object.fromEntries(LIMITS.map((k) => [k, g.limits[k]])),
    features: { subgroups: g.hasSubgroups, 'shader-f16': g.hasF16, 'timestamp-query': g.hasTimestamps },
    kernelCheck: kernelOk ? 'ok' : `wrong result ${Array.from(c)}`,
    dispatches: rt().dispatchCount,
  };
  if (flags.json) console.log(JSON.stringify(report, null, 2));
  else {
    const f = g.facts;
    console.log(`adapter      ${f.description || f.device} (vendor ${f.vendor}, architecture ${f.architecture}${f.isSoftware ? ', software' : ''})`);
    console.log(`backend      ${report.backend}`);
    for (const [k, v] of Object.entries(report.limits)) console.log(`limit        ${k.padEnd(34)} ${v}`);
    console.log(`features     subgroups ${g.hasSubgroups ? `yes (${f.subgroupSize} lanes)` : 'no'}, shader-f16 ${g.hasF16 ? 'yes' : 'no'}, timestamp-query ${g.hasTimestamps ? 'yes' : 'no'}`);
    console.log(`kernel check ${report.kernelCheck}`);
  }
  return kernelOk ? 0 : 1;
}
