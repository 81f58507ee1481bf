// Runs the kernel bench from the command line until `celgrad bench kernels` is wired to it:
//   npx esbuild bench/run-kernels.ts --bundle --platform=node --format=esm --packages=external \
//     --loader:.wgsl=text --outfile=dist/bench-kernels.mjs && node dist/bench-kernels.mjs [--quick] [--json FILE] [--filter TEXT] [--batch N]
import { initGPU } from '../engine/gpu.ts';
import { setPlatform } from '../engine/platform/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import { benchKernels } from './kernels.ts';

const args = process.argv.slice(2);
const value = (flag: string) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
setPlatform(nodePlatform());
await initGPU();
const batch = value('--batch');
await benchKernels({ quick: args.includes('--quick'), json: value('--json'), filter: value('--filter'), batch: batch ? Number(batch) : undefined });
process.exit(0);
