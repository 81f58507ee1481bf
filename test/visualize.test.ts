// experiments/visualize: charts, image helpers, Table 1 and the offline report (opened in headless Chromium if present).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { lossCurves, rocChart, type EpochMetrics } from '../experiments/visualize/charts.ts';
import {
  camSignal,
  chwToRgba,
  decodePng,
  encodePng,
  featureMapGrid,
  filterGrid,
  heatmapOverlay,
  jet,
  labelledRow,
  stackRows,
  viridis,
  type RgbaImage,
} from '../experiments/visualize/images.ts';
import {
  comparisonSentences,
  epochsToReach,
  table1Rows,
  writeCurves,
  writeReport,
  writeTable1,
  type GradcamPanel,
  type ReportData,
  type RunSummary,
} from '../experiments/visualize/report.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = join(root, 'out', 'test');

let seed = 7;
const rand = () => (seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32;
const randoms = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);

const pixel = (img: RgbaImage, x: number, y: number) => [...img.data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 3)];
const solid = (w: number, h: number, v: number): RgbaImage => ({ width: w, height: h, data: new Uint8Array(w * h * 4).fill(v).map((x, i) => (i % 4 === 3 ? 255 : x)) });

/** Metrics that improve each epoch; `k` shifts a run's level so runs differ. */
function fakeMetrics(epochs: number, k: number): EpochMetrics[] {
  return Array.from({ length: epochs }, (_, i) => ({
    epoch: i + 1,
    trainLoss: 2 / (i + 1 + k),
    valLoss: 2.2 / (i + 1 + k) + 0.05,
    trainAcc: 1 - 0.5 / (i + 1 + k),
    valAcc: 0.9 - 0.5 / (i + 1 + k),
  }));
}

const RUNS: RunSummary[] = [
  ['resnet50', 'pretrained', 1],
  ['resnet50', 'scratch', 3],
  ['inception_v3', 'pretrained', 0],
  ['inception_v3', 'scratch', 2],
].map(([model, regime, k]) => ({
  name: `${model}-${regime}`,
  model: model as string,
  regime: regime as string,
  weightsSource: regime === 'pretrained' ? 'synthetic pretext task (cached)' : 'random (seed 1)',
  metrics: fakeMetrics(4, k as number),
}));

test('lossCurves: SVG names every run and axis; PNG decodes at twice the SVG size and is not blank', async () => {
  const chart = await lossCurves(RUNS);
  for (const text of [...RUNS.map((r) => r.name), 'Epoch', 'Cross-entropy loss', 'Accuracy', 'train', 'validation'])
    assert.ok(chart.svg.includes(text), `SVG lacks "${text}"`);
  const png = decodePng(chart.png);
  const [w, h] = [/width="(\d+)"/, /height="(\d+)"/].map((re) => Number(re.exec(chart.svg)![1]));
  assert.is(png.width, 2 * w);
  assert.is(png.height, 2 * h);
  let inked = 0;
  for (let p = 0; p < png.data.length; p += 4) if (png.data[p] < 128 && png.data[p + 1] < 128) inked++;
  assert.ok(inked > png.width * png.height * 0.005, `only ${inked} dark pixels: text and lines missing`);
});

test('rocChart: log FAR axis drops FAR = 0 and renders', async () => {
  const chart = await rocChart([{ name: 'run-a', fpr: [0, 1e-4, 1e-2, 1], tpr: [0.2, 0.5, 0.8, 1] }]);
  assert.ok(chart.svg.includes('False accept rate (FAR)') && chart.svg.includes('run-a') && chart.svg.includes('1e-3'));
  assert.ok(decodePng(chart.png).width > 0);
});

test('filterGrid: sizes for [64,3,7,7] and [64,64,3,3]; a hand-checked colour pixel', () => {
  // Colour, scale 2: 8 x 8 tiles of 14 px with 1 px gaps: 8 * 15 + 1.
  const first = filterGrid(randoms(64 * 3 * 49), [64, 3, 7, 7], { scale: 2 });
  assert.equal([first.width, first.height], [121, 121]);
  // Greyscale, scale 4: cells of 8 tiles of 12 px (8 * 13 - 1 = 103 px), round(sqrt(64 * 12 / 103)) = 3 columns,
  // 22 rows, 3 px between cells: 3 * 106 + 3 wide, 22 * 15 + 3 high.
  const deep = filterGrid(randoms(64 * 64 * 9), [64, 64, 3, 3], { scale: 4 });
  assert.equal([deep.width, deep.height], [321, 333]);
  // Default scale makes 3x3 tiles 15 px: cells 127 px, 3 columns: 3 * 130 + 3 by 22 * 18 + 3.
  const auto = filterGrid(randoms(64 * 64 * 9), [64, 64, 3, 3]);
  assert.equal([auto.width, auto.height], [393, 399]);
  // Filter 0: R = 1, G = 0, B = 0.5 everywhere; min-max over the filter gives (255, 0, 128) in the first tile.
  const w = randoms(2 * 3 * 9);
  w.fill(1, 0, 9).fill(0, 9, 18).fill(0.5, 18, 27);
  const g = filterGrid(w, [2, 3, 3, 3], { scale: 1 });
  assert.equal(pixel(g, 1, 1), [255, 0, 128]);
  assert.equal(pixel(g, 0, 0), [255, 255, 255], 'gap');
  w[0] = NaN;
  assert.equal(pixel(filterGrid(w, [2, 3, 3, 3], { scale: 1 }), 1, 1), [255, 0, 255], 'non-finite is magenta');
  assert.throws(() => filterGrid(randoms(10), [64, 3, 7, 7]), /shape/);
});

test('featureMapGrid: viridis per channel, sizes', () => {
  assert.equal(viridis(0), [68, 1, 84]);
  assert.equal(viridis(1), [253, 231, 37]);
  const act = new Float32Array(2 * 4 * 4);
  act[16 + 5] = 3; // channel 1 has one hot pixel; channel 0 is dead (constant)
  const g = featureMapGrid(act, [2, 4, 4], 64, 2);
  assert.equal([g.width, g.height], [2 * 9 + 1, 9 + 1]);
  assert.equal(pixel(g, 1, 1), [68, 1, 84], 'a constant channel is drawn dark');
  assert.equal(pixel(g, 10 + 2, 1 + 2), [253, 231, 37], 'the maximum is yellow');
});

test('heatmapOverlay: jet blend by hand, bilinear upsampling', () => {
  assert.equal(jet(0), [0, 0, 127.5]);
  assert.equal(jet(0.5), [127.5, 255, 127.5]);
  assert.equal(jet(1), [127.5, 0, 0]);
  // 2x2 grey image, cam [[0, 1], [0, 0]] at the same size, alpha 0.5: 0.5 * 100 + 0.5 * jet.
  const { image, signal } = heatmapOverlay(solid(2, 2, 100), [0, 1, 0, 0], 2, 2, 0.5);
  assert.is(signal, 'ok');
  assert.equal(pixel(image, 1, 0), [114, 50, 50]);
  assert.equal(pixel(image, 0, 0), [50, 50, 114]);
  // A 2x1 cam [0, 1] upsampled to 4 px samples 0, 0.25, 0.75, 1; jet(0.25) = (0, 127.5, 255).
  const up = heatmapOverlay(solid(4, 1, 0), [0, 1], 2, 1, 1).image;
  assert.equal(pixel(up, 1, 0), [0, 128, 255]);
  assert.equal(pixel(up, 3, 0), [128, 0, 0]);
});

test('heatmapOverlay: an all-zero or non-finite map is flagged and not drawn as a heat map', () => {
  assert.is(camSignal([0, 0, 0, 0]), 'no-signal');
  assert.is(camSignal([-1, -2]), 'no-signal');
  assert.is(camSignal([2, 2]), 'no-signal');
  assert.is(camSignal([0, Infinity]), 'not-finite');
  assert.is(camSignal([0, 0.1]), 'ok');
  for (const [cam, expected] of [
    [new Float32Array(49), 'no-signal'],
    [new Float32Array(49).fill(NaN), 'not-finite'],
  ] as const) {
    const { image, signal } = heatmapOverlay(solid(64, 64, 100), cam, 7, 7);
    assert.is(signal, expected);
    // Grey image, grey veil, black hatching, white/black label: no pixel may carry jet's colour.
    let maxChroma = 0;
    for (let p = 0; p < image.data.length; p += 4)
      maxChroma = Math.max(maxChroma, Math.abs(image.data[p] - image.data[p + 2]), Math.abs(image.data[p + 1] - image.data[p + 2]));
    assert.ok(maxChroma < 12, `coloured pixels in a flagged map (chroma ${maxChroma})`);
    const darker = image.data.filter((v, i) => i % 4 === 0 && v < 90).length;
    assert.ok(darker > 64 * 64 * 0.1, 'hatching is visible');
  }
});

test('chwToRgba undoes ImageNet normalisation; labelledRow adds captions below', () => {
  const img = chwToRgba(new Float32Array(3 * 2 * 2), [3, 2, 2]);
  assert.equal(pixel(img, 0, 0), [124, 116, 104]);
  const row = labelledRow([
    { image: solid(40, 30, 0), caption: 'input\ntrue: 3' },
    { image: encodePng(solid(50, 20, 0)), caption: 'a rather long caption' },
  ]);
  assert.ok(row.height > 30 + 2 * 12, 'room for two caption lines');
  assert.ok(row.width >= 40 + 50);
  assert.equal(pixel(row, 34, 20), [0, 0, 0], 'first panel drawn, centred in its column');
  const below = row.data.subarray(row.width * 4 * (8 + 30 + 6), row.data.length);
  assert.ok(below.some((v, i) => i % 4 === 0 && v < 100), 'caption text rendered');
  const stacked = stackRows([row, row], 4);
  assert.equal([stacked.width, stacked.height], [row.width, 2 * row.height + 4]);
});

test('comparison sentences and Table 1 rows', () => {
  // resnet50-scratch: 2.2 / (e + 3) + 0.05 is 0.6 at epoch 1, 0.49 at epoch 2; inception_v3-pretrained: 0.6 at epoch 4.
  assert.is(epochsToReach(RUNS[1].metrics, 0.5), 2);
  assert.is(epochsToReach(RUNS[2].metrics, 0.61), 4);
  assert.is(epochsToReach(RUNS[2].metrics, 0.5), undefined);
  const text = comparisonSentences(RUNS, 'smoke').join(' ');
  assert.ok(text.includes('came from ResNet-50 (scratch)'), text);
  assert.ok(text.includes('in favour of training from scratch'), text);
  assert.ok(/ResNet-50 reached Inception v3's lowest validation loss \(0\.[0-9]{3}, at its epoch 4\) by epoch \d/.test(text), text);
  assert.ok(text.includes('4 of these 4 comparisons agree'), text);
  const smoke = table1Rows(RUNS, 'smoke');
  assert.is(smoke[0].paperValAcc, undefined);
  const paper = table1Rows(RUNS, 'paper');
  assert.equal(paper[1], {
    model: 'resnet50',
    regime: 'scratch',
    bestValAcc: 0.9 - 0.5 / 7,
    bestEpoch: 4,
    weightsSource: 'random (seed 1)',
    paperValAcc: 0.9209,
  });
  const dir = join(outDir, 'visualize-table1');
  writeTable1(dir, paper);
  assert.ok(readFileSync(join(dir, 'table1.md'), 'utf8').includes('| ResNet-50 | scratch | 82.86% | 4 | random (seed 1) | 92.09% |'));
  assert.equal(JSON.parse(readFileSync(join(dir, 'table1.json'), 'utf8')), paper);
});

test('writeCurves writes Figure 1 as SVG and PNG', async () => {
  const dir = join(outDir, 'visualize-table1');
  await writeCurves(dir, RUNS);
  assert.ok(readFileSync(join(dir, 'curves.svg'), 'utf8').includes('resnet50-scratch'));
  assert.ok(decodePng(readFileSync(join(dir, 'curves.png'))).width > 1000);
});

/** A fake four-run study folder with files on disk, as the study would leave them. */
function fakeStudy(dir: string): ReportData {
  rmSync(dir, { recursive: true, force: true });
  const write = (rel: string, img: RgbaImage) => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), encodePng(img));
    return rel;
  };
  const firstConv: Record<string, [string, number[]]> = { resnet50: ['conv1', [64, 3, 7, 7]], inception_v3: ['Conv2d_1a_3x3', [32, 3, 3, 3]] };
  const epochs = [0, 1, 2, 3, 4];
  // First conv layer as files on disk, a deeper one as PNG bytes: the report takes both.
  const filters = RUNS.flatMap((r) => {
    const [layer, shape] = firstConv[r.model];
    const grid = () => filterGrid(randoms(shape.reduce((a, b) => a * b, 1)), shape);
    const deep = r.model === 'resnet50' ? 'layer1.0.conv2' : 'Mixed_5b.branch3x3dbl_2.conv';
    return [
      { run: r.name, layer, epochs: epochs.map((e) => ({ epoch: e, image: write(`runs/${r.name}/filters/epoch-0${e}/${layer}.png`, grid()) })) },
      { run: r.name, layer: deep, epochs: epochs.map((e) => ({ epoch: e, image: encodePng(filterGrid(randoms(64 * 64 * 9), [64, 64, 3, 3])) })) },
    ];
  });
  const featureMaps = RUNS.map((r) => ({
    run: r.name,
    layer: r.model === 'resnet50' ? 'layer1.2.conv1' : 'Mixed_5b',
    image: write(`featuremaps/${r.name}/${r.model === 'resnet50' ? 'layer1.2.conv1' : 'Mixed_5b'}.png`, featureMapGrid(randoms(48 * 14 * 14), [48, 14, 14])),
    input: 'val/0003.png',
  }));
  const face = chwToRgba(randoms(3 * 96 * 96), [3, 96, 96]);
  const gradcam: GradcamPanel[] = ['val-0003', 'val-0017'].map((name, i) => {
    const results = RUNS.map((r, k) => {
      const cam = i === 1 && k === 2 ? new Float32Array(49) : randoms(49);
      return { run: r, ...heatmapOverlay(face, cam, 7, 7), predicted: `id ${k}`, score: 0.5 + k / 10 };
    });
    const row = labelledRow([
      { image: face, caption: `${name}\ntrue: id 1` },
      ...results.map((x) => ({ image: x.image, caption: `${x.run.name}\npred: ${x.predicted} (${x.score.toFixed(2)})${x.signal === 'ok' ? '' : `\n${x.signal}`}` })),
    ]);
    return {
      image: name,
      trueLabel: 'id 1',
      file: write(`gradcam/${name}.png`, row),
      runs: results.map((x) => ({ run: x.run.name, layer: x.run.model === 'resnet50' ? 'layer4' : 'Mixed_7c', predicted: x.predicted, score: x.score, signal: x.signal })),
    };
  });
  const explanationRow = labelledRow(['Grad-CAM', 'Grad-CAM++', 'saliency'].map((m) => ({ image: heatmapOverlay(face, randoms(49), 7, 7).image, caption: m })));
  const fpr = Array.from({ length: 60 }, (_, i) => (i === 0 ? 0 : 10 ** (-5 + (i * 5) / 59)));
  return {
    config: {
      preset: 'smoke',
      models: ['resnet50', 'inception_v3'],
      regimes: ['pretrained', 'scratch'],
      dataset: { name: 'synthetic cartoon faces', identities: 8, trainImages: 256, valImages: 64, split: 'stratified 80/20' },
      imageSize: { resnet50: 64, inception_v3: 75 },
      epochs: 4,
      batchSize: 16,
      optimizer: 'Adam, lr 1e-3',
      schedule: 'StepLR, step 7, gamma 1',
      seed: 1,
      extra: { 'Inception v3 aux classifier': 'off' },
    },
    environment: { adapter: 'lavapipe (fake, for the test)', versions: { node: process.versions.node }, startedAt: '2025-01-01T00:00:00Z' },
    runs: RUNS,
    timings: [...RUNS.map((r, i) => ({ label: r.name, seconds: 30 + i * 50 })), { label: 'total', seconds: 4000 }],
    filters,
    featureMaps,
    gradcam,
    faithfulness: RUNS.map((r) => ({ run: r.name, method: 'gradcam', averageDrop: 40 * rand(), increaseInConfidence: 30 * rand(), images: 64, score: 'softmax probability' })),
    verification: {
      curves: RUNS.map((r, k) => ({ name: r.name, fpr, tpr: fpr.map((f) => Math.min(1, 0.4 + k / 10 + 0.1 * Math.log10(Math.max(f, 1e-6)) + 0.5)) })),
      rows: RUNS.map((r) => ({ run: r.name, tarAtFar: { '1e-2': 0.9, '1e-3': 0.7, '1e-4': 0.5 }, top1: 0.8 })),
    },
    explanations: [{ image: 'val-0003', file: encodePng(stackRows([explanationRow, explanationRow])), caption: 'rows: runs; columns: methods' }],
    notes: ['Inception v3 trained without its aux classifier at this input size.'],
  };
}

const SECTIONS = ['config', 'table1', 'comparison', 'curves', 'filters', 'featuremaps', 'gradcam', 'faithfulness', 'verification', 'explanations', 'notes'];
const studyDir = join(outDir, 'visualize-study');

test('report.html: every section, images inlined, nothing fetched from the network', async () => {
  const data = fakeStudy(studyDir);
  const path = await writeReport(studyDir, data);
  const html = readFileSync(path, 'utf8');
  for (const id of SECTIONS) assert.ok(html.includes(`<section id="${id}">`), `section ${id} missing`);
  assert.not.match(html, /https?:/i);
  assert.not.match(html, /<(img|script|link)[^>]+(src|href)="(?!data:|#)/);
  assert.ok(html.includes('no-signal'), 'the flagged map is reported');
  assert.ok(html.includes('synthetic pretext task'), 'where the pretrained arm started');
  assert.ok(html.includes('Inception v3 trained without its aux classifier'));
  // Optional sections appear only with their data.
  const bare = await writeReport(join(outDir, 'visualize-study-bare'), { ...data, faithfulness: undefined, verification: undefined, explanations: undefined, filters: [], featureMaps: [], gradcam: [] });
  const bareHtml = readFileSync(bare, 'utf8');
  for (const id of ['faithfulness', 'verification', 'explanations']) assert.not.ok(bareHtml.includes(`id="${id}"`), id);
  assert.ok(bareHtml.includes('No filter snapshots were recorded.'));
});

const chromiumPath = process.env.CELGRAD_CHROMIUM ?? '/usr/bin/chromium';

test('report.html opens in headless Chromium: no console errors, every image decoded, epoch pager works', async () => {
  if (!existsSync(chromiumPath)) {
    console.log(`  (skipped: no Chromium at ${chromiumPath}; scripts/setup.sh --browser installs it)`);
    return;
  }
  const path = join(studyDir, 'report.html');
  if (!existsSync(path)) await writeReport(studyDir, fakeStudy(studyDir));
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => !/^(data|file):/.test(r.url()) && problems.push(`request: ${r.url()}`));
    await page.goto(pathToFileURL(path).href, { waitUntil: 'load' });
    const images = await page.evaluate(() => [...document.images].map((i) => ({ alt: i.alt, ok: i.complete && i.naturalWidth > 0 })));
    assert.ok(images.length > 20, `only ${images.length} images`);
    assert.equal(images.filter((i) => !i.ok).map((i) => i.alt), [], 'images that did not decode');
    // One slider per layer; moving it shows exactly the figures of the chosen epoch.
    const pager = await page.evaluate(() => {
      const sliders = [...document.querySelectorAll<HTMLInputElement>('.pager input[type=range]')];
      const box = sliders[0].parentElement!.nextElementSibling!;
      sliders[0].value = '1';
      sliders[0].dispatchEvent(new Event('input'));
      const shown = [...box.querySelectorAll<HTMLElement>('figure')].filter((f) => !f.hidden).map((f) => f.dataset.epoch);
      return { sliders: sliders.length, shown };
    });
    assert.is(pager.sliders, 4, 'a pager per model x layer');
    assert.equal(pager.shown, ['1', '1'], 'pretrained beside scratch at epoch 1');
    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'report.png'), fullPage: true });
    assert.equal(problems, []);
  } finally {
    await browser.close();
  }
});

test.run();
