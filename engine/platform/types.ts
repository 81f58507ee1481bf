// The seam between the engine and its host. engine/ and models/ reach the GPU, the clock and
// configuration only through this interface, so the same code runs in Node (dawn.node) and in a browser.

export interface AdapterChoice {
  /** Dawn backend name (vulkan, metal, d3d12, null, ...); browsers ignore it. */
  backend?: string;
  /** Adapter name substring (Dawn's `adapter=` option); browsers ignore it. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
}

export interface Platform {
  readonly name: 'node' | 'browser';
  /** Returns an adapter, or null when none is available. */
  requestAdapter(choice: AdapterChoice): Promise<GPUAdapter | null>;
  /**
   * Awaits a promise that the GPU resolves (mapAsync, onSubmittedWorkDone, popErrorScope).
   * Node: dawn.node busy-polls with setImmediate while such a promise is pending, stealing a core
   * from a software adapter; the Node platform slows its polling down while waiting.
   */
  waitForGPU<T>(promise: Promise<T>): Promise<T>;
  /** Milliseconds, monotonic. */
  now(): number;
  /** A configuration value (environment variable in Node, URL parameter or undefined in a browser). */
  env(name: string): string | undefined;
  /** Text describing how to get an adapter on this platform, for error messages. */
  adapterHelp(): string;
}
