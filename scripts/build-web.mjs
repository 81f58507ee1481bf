// Bundles the engine, the models and the explorer page for browsers into dist/web/ (esbuild, platform
// 'browser', WGSL inlined as text). esbuild cannot resolve Node built-ins (fs, path, worker_threads, ...) on
// this platform, so any Node API that reaches engine/, models/ or the page's imports fails this build.
// Usage: node scripts/build-web.mjs   (npm run build:web)
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const defaultRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Writes celgrad.js (the library), explorer.js and explorer.html into `outdir` (relative to `root`), and with
 * `tests` also kernels.js, the in-browser kernel suite. Returns the absolute output folder.
 */
export async function buildWeb({ root = defaultRoot, outdir = 'dist/web', quiet = false, tests = false } = {}) {
  const out = join(root, outdir);
  await build({
    absWorkingDir: root,
    entryPoints: ['web/celgrad.ts', 'web/explorer.ts', ...(tests ? ['test/browser/kernels.ts'] : [])],
    outdir: out,
    entryNames: '[name]',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    loader: { '.wgsl': 'text' },
    sourcemap: 'linked',
    logLevel: quiet ? 'error' : 'warning',
  });
  mkdirSync(out, { recursive: true });
  copyFileSync(join(root, 'web/explorer.html'), join(out, 'explorer.html'));
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(`browser bundle written to ${await buildWeb()}`);
