// The whole study at a tiny size: every output file exists with the right structure, and the report
// renders in headless Chromium with every figure and no console errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudy } from '../experiments/study.ts';
import { EASY_DIFFICULTY } from '../experiments/data/index.ts';
import './gpu.ts';

const root = mkdtempSync(join(tmpdir(), 'celgrad-study-'));
const out = join(root, 'study');

test('a tiny study writes Table 1, curves, filters per epoch, feature maps, Grad-CAM and the report', async () => {
  await runStudy({
    preset: 'smoke',
    out,
    cacheDir: join(root, 'cache'),
    epochs: 2,
    overrides: {
      synth: { identities: 3, perIdentity: 6, size: 40, seed: 1, difficulty: EASY_DIFFICULTY },
      source: { identities: 3, perIdentity: 6, size: 40, seed: 2, epochs: 1, difficulty: EASY_DIFFICULTY },
      imageSize: { resnet50: 32, inception_v3: 75 },
      batchSize: 6,
      gradcamImages: 2,
      faithfulnessImages: 2,
    },
  });
  for (const f of ['study.json', 'table1.md', 'table1.json', 'curves.png', 'curves.svg', 'report.html', 'split.json']) {
    assert.ok(existsSync(join(out, f)), `${f} exists`);
  }
  const table = JSON.parse(readFileSync(join(out, 'table1.json'), 'utf8'));
  assert.equal(
    table.map((r: { model: string; regime: string }) => `${r.model}-${r.regime}`),
    ['resnet50-pretrained', 'resnet50-scratch', 'inception_v3-pretrained', 'inception_v3-scratch'],
  );
  for (const row of table) {
    assert.ok(row.bestValAcc >= 0 && row.bestValAcc <= 1, `${row.model}-${row.regime} accuracy ${row.bestValAcc}`);
    assert.match(row.weightsSource, row.regime === 'pretrained' ? /synthetic source task/ : /random init/);
  }
  for (const run of ['resnet50-pretrained', 'resnet50-scratch', 'inception_v3-pretrained', 'inception_v3-scratch']) {
    const dir = join(out, 'runs', run);
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    assert.is(lines.length, 2, `${run}: one metrics line per epoch`);
    assert.ok(existsSync(join(dir, 'best.safetensors')));
    assert.ok(readdirSync(join(dir, 'filters', 'epoch-01')).some((f) => f.endsWith('.png')), `${run} filters of epoch 1`);
    assert.ok(readdirSync(join(out, 'featuremaps', run)).length > 0, `${run} feature maps`);
  }
  assert.ok(existsSync(join(out, 'featuremaps', 'inception_v3-scratch', 'Mixed_5b.png')), "Inception v3's first inception block");
  assert.equal(readdirSync(join(out, 'gradcam')).sort(), ['image-0.png', 'image-1.png']);
  const notes: string[] = JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')).notes;
  assert.ok(notes.some((n) => /auxiliary classifier/.test(n)), 'the report says Inception trained without its aux classifier');
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.not.match(html, /(src|href)="https?:/, 'no network references');
});

test('the report renders offline in headless Chromium with every figure and no console errors', async () => {
  const chromium = process.env.CELGRAD_CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(chromium)) {
    console.log(`    skipped: no Chromium at ${chromium} (bash scripts/setup.sh --browser installs it)`);
    return;
  }
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({
    executablePath: chromium,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`file://${join(out, 'report.html')}`);
    const images = await page.$$eval('img', (imgs) => imgs.map((i) => ({ src: i.src.slice(0, 30), ok: i.complete && i.naturalWidth > 0 })));
    assert.ok(images.length >= 10, `${images.length} images in the report`);
    assert.equal(images.filter((i) => !i.ok), [], 'every image decodes');
    assert.equal(errors, [], 'no console errors');
    await page.screenshot({ path: join(out, 'report-screenshot.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});

test.run();
