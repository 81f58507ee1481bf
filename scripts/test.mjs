// Runs the uvu suite from dist/test in one process (one GPU device for all files) and prints
// the closing summary line CI reads: "N passed, N failed".
// Usage: node scripts/test.mjs [pattern]   (pattern filters test file names)
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pattern = process.argv[2] ?? '\\.test\\.mjs$';
const child = spawn(process.execPath, ['node_modules/uvu/bin.js', 'dist/test', pattern], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  out += chunk.toString();
});
child.on('close', (code) => {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? NaN);
  const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? NaN);
  if (!Number.isFinite(total) || !Number.isFinite(passed)) {
    console.log(`0 passed, 1 failed (the test process exited with code ${code} before uvu printed its summary)`);
    process.exit(1);
  }
  const failed = total - passed + (code !== 0 && total === passed ? 1 : 0);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 || code !== 0 ? 1 : 0);
});
