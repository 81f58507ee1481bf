// Starts the engine on Node's platform (dawn.node), honouring --backend / --adapter flags and the
// CELGRAD_BACKEND / CELGRAD_ADAPTER environment variables.
import { initGPU, setPlatform, type Gpu } from '../engine/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';

let installed = false;

export async function startGPU(flags: { backend?: string; adapter?: string } = {}): Promise<Gpu> {
  if (!installed) {
    setPlatform(nodePlatform());
    installed = true;
  }
  return initGPU({
    backend: flags.backend ?? process.env.CELGRAD_BACKEND ?? undefined,
    adapter: flags.adapter ?? process.env.CELGRAD_ADAPTER ?? undefined,
  });
}
