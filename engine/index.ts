// celgrad's engine: the public API. Runs unchanged in Node and in a browser (see engine/platform/).
export { Tensor, type Shape, type DType } from './tensor.ts';
export { noGrad, scope, scopeAsync, keep, withBackwardMode, type BackwardMode } from './autograd.ts';
export { initGPU, gpu, type Gpu, type AdapterFacts } from './gpu.ts';
export { rt, type Runtime } from './runtime.ts';
export { setPlatform, type Platform } from './platform/index.ts';
export { Rng } from './random.ts';
export * from './errors.ts';
export * from './ops/index.ts';
export * from './optim/index.ts';
