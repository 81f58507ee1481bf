// Headless Chromium with WebGPU for the browser tests: Debian's chromium package (scripts/setup.sh --browser, or
// CELGRAD_CHROMIUM=/path) driven by playwright-core, and the browser bundle the pages load.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

// Test files run bundled at dist/test/<name>.mjs: the repository is two levels up.
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** scripts/build-web.mjs's buildWeb, loaded from the repository (not bundled: it finds its paths from its own location). */
export async function buildWebBundle(options: { outdir?: string; tests?: boolean } = {}): Promise<string> {
  const { buildWeb } = (await import(pathToFileURL(join(ROOT, 'scripts/build-web.mjs')).href)) as typeof import('../scripts/build-web.mjs');
  return buildWeb({ ...options, quiet: true });
}

const CHROMIUM = process.env.CELGRAD_CHROMIUM || '/usr/bin/chromium';

/** Chromium with WebGPU on, or null (with a printed note) when it is not installed: the caller then skips. */
export async function launchChromium(): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) {
    console.log(`\n  note: no Chromium at ${CHROMIUM}, browser test skipped (scripts/setup.sh --browser installs it; CELGRAD_CHROMIUM names another)`);
    return null;
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      // WebGPU is off by default on Linux; with Vulkan enabled Chromium's Dawn finds SwiftShader when there is no GPU.
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      // Chromium's sandbox refuses to start as root (CI containers).
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      // Nothing outside the machine is reachable in CI: no update, sync or QUIC probes.
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
}
