// Browser platform: navigator.gpu, performance.now, URL parameters for configuration.
import type { AdapterChoice, Platform } from './types.ts';

export function browserPlatform(): Platform {
  return {
    name: 'browser',
    async requestAdapter(choice: AdapterChoice) {
      const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
      if (!gpu) return null;
      return gpu.requestAdapter({ powerPreference: choice.powerPreference });
    },
    waitForGPU: (promise) => promise,
    now: () => performance.now(),
    env(name) {
      const search = (globalThis as { location?: { search: string } }).location?.search ?? '';
      return new URLSearchParams(search).get(name) ?? undefined;
    },
    adapterHelp: () =>
      'This browser exposes no WebGPU adapter. Use a browser with WebGPU enabled (Chrome/Edge 113+, or Chromium with --enable-unsafe-webgpu).',
  };
}
