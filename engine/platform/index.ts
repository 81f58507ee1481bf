import type { Platform } from './types.ts';

export type { Platform, AdapterChoice } from './types.ts';

let current: Platform | null = null;

/** Installs the host platform (node.ts or browser.ts). Call once before initGPU(). */
export function setPlatform(platform: Platform): void {
  current = platform;
}

export function platform(): Platform {
  if (!current) {
    throw new Error(
      "celgrad: no platform installed. In Node import 'celgrad/engine/platform/node.ts' and call setPlatform(nodePlatform()); in a browser use browserPlatform().",
    );
  }
  return current;
}
