// The README's engine example runs as written: its first ```ts block is bundled and executed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

test("README's engine example runs and trains (the loss is finite at every step)", async () => {
  const readme = readFileSync('README.md', 'utf8');
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has a ```ts example');
  const dir = mkdtempSync(join(tmpdir(), 'celgrad-readme-'));
  // The example imports './engine/...' from the project root; point those at this checkout.
  const source = block!.replace(/from '\.\/(engine|models)\//g, `from '${resolve('.')}/$1/`) + '\nprocess.exit(0);\n';
  writeFileSync(join(dir, 'example.ts'), source);
  await build({
    entryPoints: [join(dir, 'example.ts')],
    // Inside the checkout, so the bundle's package imports resolve from its node_modules.
    outfile: resolve('dist/readme-example.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    loader: { '.wgsl': 'text' },
    logLevel: 'error',
  });
  const out = execFileSync(process.execPath, [resolve('dist/readme-example.mjs')], { encoding: 'utf8' });
  const losses = [...out.matchAll(/step (\d): loss (\S+)/g)].map((m) => Number(m[2]));
  assert.is(losses.length, 3, `output:\n${out}`);
  assert.ok(losses.every(Number.isFinite), out);
});

test.run();
