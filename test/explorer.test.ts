// The explorer end to end: a tiny study (a seeded ResNet-50's weights in a run folder, 3 synthetic identities),
// served by serveStudy, opened in headless Chromium; the page's logits and Grad-CAM and saliency maps,
// computed by the bundled engine on Chromium's WebGPU (Dawn over SwiftShader), against the ones celgrad computes
// in Node (dawn.node over lavapipe) on the same weights and the same float input.
//
// Tolerances. Both sides run the same WGSL but a different compiler and driver: SwiftShader's subgroups have 4
// lanes where lavapipe's have 8, and each compiler may fuse multiply-adds differently, so a kernel whose sums
// depended on either could reassociate them (~sqrt(K) u relative per layer, u = 2^-24, over ResNet-50's ~50 layers):
//   logits 1e-3 relative to max |logit|;
//   maps 1e-2 absolute after min-max normalisation to [0, 1]: a map is a sum over channels of activation x gradient
//   (the gradient another ~50 layers deep) divided by its range, which magnifies absolute differences where the
//   map is flat.
// Measured: 0 for both (bitwise equal). On this path (eval-mode forward, gradients w.r.t. the input and an
// activation) each invocation sums its own outputs in a fixed order and the subgroup shuffles only share operands
// (batch norm's subgroupAdd reductions run in training only), and neither compiler contracted differently.
// The page's own decoding of an image file (createImageBitmap + canvas) resamples differently from sharp; it is
// checked loosely: mean |difference| at most 0.1 of the normalised input (measured 0.04 at 32 px from 80 px,
// i.e. ~2 of 255 levels; single edge pixels differ by up to ~40 levels).
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import './gpu.ts';
import { createModel } from '../models/index.ts';
import { saveWeights } from '../experiments/checkpoint.ts';
import { generateSynthFaces, loadImage, readDataset, stratifiedSplit, valTransform, writeSplit } from '../experiments/data/index.ts';
import { camOf, inputGradient, predict, saliencyOf } from '../experiments/explain/explain.ts';
import { normalise } from '../experiments/explain/cam.ts';
import { serveStudy } from '../experiments/serve.ts';
import { encodePng, filterGrid } from '../experiments/visualize/images.ts';
import type { ExplorerResult } from '../web/explorer.ts';
import { launchChromium } from './chromium.ts';

const SIZE = 32;
const CAM_LAYER = 'layer2';
const LOGIT_TOL = 1e-3;
const MAP_TOL = 1e-2;
const DECODE_TOL = 0.1;

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/** A study folder with one run: config.json, best.safetensors (seeded weights), split.json, two epochs of filters. */
async function tinyStudy(dir: string) {
  const data = join(dir, 'data');
  generateSynthFaces({ out: data, identities: 3, perIdentity: 3, size: 80, seed: 5 });
  const dataset = await readDataset(data);
  const split = stratifiedSplit(dataset.samples, dataset.classes, { seed: 0 });
  writeSplit(join(dir, 'split.json'), split, dataset.root);
  const run = join(dir, 'runs', 'resnet50-scratch');
  const model = createModel('resnet50', { numClasses: 3, seed: 11 });
  for (const epoch of ['00', '01']) {
    mkdirSync(join(run, 'filters', `epoch-${epoch}`), { recursive: true });
    const conv1 = model.stateDict().get('conv1.weight')!;
    writeFileSync(join(run, 'filters', `epoch-${epoch}`, 'conv1.png'), encodePng(filterGrid(await conv1.toArray(), conv1.shape)));
  }
  await saveWeights(join(run, 'best.safetensors'), model);
  const config = { model: 'resnet50', regime: 'scratch', inputSize: SIZE, classes: split.classes, filterLayers: ['conv1'], splitFile: join(dir, 'split.json') };
  writeFileSync(join(run, 'config.json'), JSON.stringify(config));
  return { model, split };
}

const dir = mkdtempSync(join(tmpdir(), 'celgrad-explorer-'));
let study: Awaited<ReturnType<typeof tinyStudy>>;
test.before(async () => {
  study = await tinyStudy(dir);
});
test.after(() => {
  study.model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('serveStudy: the study listing, validation images, loopback names only, nothing outside the folder', async () => {
  const server = await serveStudy({ dir, port: 0 });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const listing = await (await fetch(`${base}/api/study`)).json();
    assert.equal(listing.runs.map((r: { name: string; epochs: number[] }) => [r.name, r.epochs]), [['resnet50-scratch', [0, 1]]]);
    const val = await (await fetch(`${base}/api/runs/resnet50-scratch/val`)).json();
    assert.is(val.length, 3, 'one validation image per identity');
    const png = await fetch(`${base}/api/runs/resnet50-scratch/val/0`);
    assert.is(png.headers.get('content-type'), 'image/png');
    assert.is((await fetch(`${base}/study/runs/resnet50-scratch/config.json`)).status, 200);
    assert.is((await fetch(`${base}/study/%2e%2e/%2e%2e/etc/passwd`)).status, 404);
    assert.is((await fetch(`${base}/api/runs/nope/val`)).status, 404);
    const { request } = await import('node:http');
    const status = await new Promise<number>((ok) =>
      request(`${base}/api/study`, { headers: { host: 'attacker.example' } }, (res) => ok(res.statusCode!)).end(),
    );
    assert.is(status, 403, 'a request addressed to another host name (DNS rebinding) is refused');
  } finally {
    server.close();
  }
});

test('explorer in headless Chromium: logits, Grad-CAM and saliency equal to Node on the same weights and input; decoding; its messages', async () => {
  const browser = await launchChromium();
  if (!browser) return;
  const { model, split } = study;
  // Node's side: the validation image through sharp, and every explanation the page will compute.
  const input = await loadImage(split.val[0].path, valTransform(SIZE));
  const node = await predict(model, input, SIZE);
  const nodeCam = (await camOf(model, input, SIZE, { layer: CAM_LAYER })).cam;
  const nodeSaliency = saliencyOf(await inputGradient(model, input, SIZE, node.predicted), SIZE);
  assert.is(nodeCam.signal, 'ok', 'the seeded model gives a Grad-CAM map with signal');
  const f32File = { name: 'val0.f32', mimeType: 'application/octet-stream', buffer: Buffer.from(input.buffer, input.byteOffset, input.byteLength) };

  const server = await serveStudy({ dir, port: 0 });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  try {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    type Exposed = { pending: number; finished: number; error: string | null; result: ExplorerResult | null };
    const exposed = () => page.evaluate(() => (globalThis as unknown as { explorer: Exposed }).explorer);
    /** Runs an action in the page and waits until the explorer has done what it queued. */
    const act = async (action: () => Promise<unknown>) => {
      const before = (await exposed()).finished;
      await action();
      await page.waitForFunction((n) => {
        const e = (globalThis as unknown as { explorer: Exposed }).explorer;
        return e.finished > n && e.pending === 0;
      }, before);
      return exposed();
    };

    await page.goto(url);
    await page.waitForFunction(() => (globalThis as unknown as { explorer?: Exposed }).explorer?.finished === 1);
    assert.is((await exposed()).error, null, 'the run loads');
    await page.selectOption('#cam-layer', CAM_LAYER);

    // The same validation image decoded by the page itself (createImageBitmap + canvas) instead of sharp.
    let state = await act(() => page.selectOption('#val', '0'));
    let r = state.result!;
    const meanDecodeErr = r.input.reduce((s, v, i) => s + Math.abs(v - input[i]), 0) / input.length;
    assert.ok(meanDecodeErr <= DECODE_TOL, `the page's decoding differs from sharp's by ${meanDecodeErr} on average`);
    console.log(`  page decoding vs sharp: mean |difference| ${meanDecodeErr.toFixed(3)}, max ${maxDiff(r.input, input).toFixed(3)} (normalised units)`);
    assert.ok(await page.locator('#filters img').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), 'the filter picture loads');

    state = await act(() => page.setInputFiles('#file', f32File));
    r = state.result!;
    assert.is(state.error, null);
    assert.equal(r.input, Array.from(input), 'the page ran on exactly Node\'s input');
    const logitErr = maxDiff(r.logits, node.logits) / maxAbs(node.logits);
    assert.is(r.predicted, node.predicted, 'same prediction');
    assert.ok(logitErr <= LOGIT_TOL, `logits differ by ${logitErr} relative`);
    assert.equal([r.mapWidth, r.mapHeight], [nodeCam.width, nodeCam.height]);
    const camErr = maxDiff(normalise(r.map), normalise(nodeCam.map));
    assert.ok(camErr <= MAP_TOL, `Grad-CAM maps differ by ${camErr} after normalisation`);

    state = await act(() => page.selectOption('#method', 'saliency'));
    const salErr = maxDiff(normalise(state.result!.map), normalise(nodeSaliency));
    assert.ok(salErr <= MAP_TOL, `saliency maps differ by ${salErr} after normalisation`);
    console.log(`\n  browser vs Node: logits ${logitErr.toExponential(1)} relative; normalised maps: Grad-CAM ${camErr.toExponential(1)}, saliency ${salErr.toExponential(1)}`);

    state = await act(() => page.setInputFiles('#file', { name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('not an image') }));
    assert.match(state.error ?? '', /broken\.png cannot be decoded/);
    assert.equal(pageErrors, [], 'errors in the page');

    // No WebGPU: a clear message, and the filters still show.
    const bare = await browser.newPage();
    await bare.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await bare.goto(url);
    await bare.waitForFunction(() => (globalThis as unknown as { explorer?: Exposed }).explorer?.finished === 1);
    assert.match(await bare.textContent('#status') ?? '', /No WebGPU here.*\n.*no WebGPU adapter/);
    assert.is(await bare.locator('#filters img').count(), 1);

    // An adapter whose buffers are smaller than the weights' tensors: the page says so instead of failing later.
    const small = await browser.newPage();
    await small.addInitScript(() => {
      const requestDevice = GPUAdapter.prototype.requestDevice;
      GPUAdapter.prototype.requestDevice = async function (descriptor) {
        const device = await requestDevice.call(this, descriptor);
        const limits = device.limits;
        const shrunk = new Proxy(limits, { get: (t, k) => (k === 'maxBufferSize' ? 2 ** 20 : Reflect.get(t, k)) });
        Object.defineProperty(device, 'limits', { get: () => shrunk });
        return device;
      };
    });
    await small.goto(url);
    await small.waitForFunction(() => (globalThis as unknown as { explorer?: Exposed }).explorer?.finished === 1);
    assert.match(await small.textContent('#status') ?? '', /The weights of resnet50-scratch \(\d+ MiB\) do not fit this GPU's limits: .*maxBufferSize/);
  } finally {
    server.close();
    await browser.close();
  }
});

test.run();
