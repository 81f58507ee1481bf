// The browser bundle, and the kernel reference suite run a second time inside headless Chromium on its own WebGPU
// implementation (Chromium's Dawn over SwiftShader here; dawn.node over lavapipe runs the Node suites), so every
// kernel is checked on two independent implementations and drivers. The cases and tolerances: test/browser/kernels.ts.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CaseResult } from './browser/kernels.ts';
import { ROOT, buildWebBundle, launchChromium } from './chromium.ts';

// Any loopback origin is a secure context (WebGPU needs one); the page's files are served by request interception.
const ORIGIN = 'http://127.0.0.1:9';

test('npm run build:web: the engine, models and explorer bundle for browsers (a Node built-in fails it) and type-check without Node types', async () => {
  await buildWebBundle();
  // esbuild rejects Node modules on platform 'browser' but not Node globals (process, Buffer): the compiler does.
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.web.json'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(tsc.status, 0, `tsc -p tsconfig.web.json:\n${tsc.stdout}${tsc.stderr}`);
});

test('kernel reference suite in headless Chromium: every family and variant matches the float64 references', async () => {
  const browser = await launchChromium();
  if (!browser) return;
  try {
    const out = await buildWebBundle({ outdir: 'dist/web-test', tests: true });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.route(`${ORIGIN}/**`, (route) => {
      const path = new URL(route.request().url()).pathname;
      if (path === '/') return route.fulfill({ contentType: 'text/html', body: '<!doctype html><script type="module" src="/kernels.js"></script>' });
      return route.fulfill({ contentType: 'text/javascript', body: readFileSync(join(out, path.slice(1))) });
    });
    await page.goto(`${ORIGIN}/`);
    await page.waitForFunction(() => 'runKernelSuite' in globalThis);
    const suite = (await page.evaluate(() =>
      (globalThis as unknown as { runKernelSuite(): Promise<{ adapter: string; subgroupSize: number; results: CaseResult[] }> }).runKernelSuite(),
    )) as { adapter: string; subgroupSize: number; results: CaseResult[] };
    console.log(`\n  Chromium WebGPU adapter: ${suite.adapter}, subgroup size ${suite.subgroupSize || 'none'}`);
    for (const r of suite.results) {
      const verdict = r.skipped ? `skip (${r.skipped})` : r.ok ? 'ok' : `FAIL: ${r.error}`;
      console.log(`  ${r.family.padEnd(11)} ${r.name} — ${verdict} [${(r.ms / 1000).toFixed(1)} s]`);
    }
    assert.equal(pageErrors, [], 'errors in the page');
    assert.ok(suite.results.length >= 20, `${suite.results.length} cases ran`);
    const failed = suite.results.filter((r) => !r.ok).map((r) => `${r.family}: ${r.name}: ${r.error}`);
    assert.equal(failed, [], 'cases that failed in the browser');
  } finally {
    await browser.close();
  }
});

test.run();
