// Bundles the TypeScript entry points into dist/ with esbuild (WGSL files inlined as text).
// Entry points: the CLI, every test file, every bench file. npm packages stay external.
import { build } from 'esbuild';
import { readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const list = (dir, suffix) =>
  existsSync(join(root, dir)) ? readdirSync(join(root, dir)).filter((f) => f.endsWith(suffix)).map((f) => join(dir, f)) : [];

export async function buildAll({ quiet = false } = {}) {
  const entryPoints = ['experiments/cli.ts', ...list('test', '.test.ts'), ...list('test/browser', '.test.ts')].filter((f) =>
    existsSync(join(root, f)),
  );
  await build({
    absWorkingDir: root,
    entryPoints,
    outdir: 'dist',
    outbase: '.',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    loader: { '.wgsl': 'text' },
    sourcemap: 'inline',
    logLevel: quiet ? 'error' : 'warning',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
}

if (import.meta.url === `file://${process.argv[1]}`) await buildAll();
