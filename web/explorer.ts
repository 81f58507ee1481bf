// The explorer page that `celgrad serve` shows: pick a run of the study, give it an image, and see the prediction,
// the top-5 identities, Grad-CAM / Grad-CAM++ / saliency and a layer's feature maps, all computed here with the
// bundled engine on the reader's GPU; plus the filters the run saved at each epoch (plain pictures, no GPU needed).
// The last result and a task counter are on `window.explorer`, for the browser tests and the console.
import {
  DeviceError,
  camOf,
  camSignal,
  chwToRgba,
  createModel,
  defaultFeatureLayer,
  activationOf,
  featureMapGrid,
  inputGradient,
  jetOverlay,
  modelInfo,
  nn,
  predict,
  readWeights,
  saliencyOf,
  startGPU,
  type Classifier,
  type ClassifierOutput,
  type Gpu,
  type Prediction,
  type RgbaImage,
} from './celgrad.ts';
import type { RunListing, StudyListing, ValListing } from './api.ts';
import { decodeImage, parseF32 } from './inputs.ts';
import type { Box } from '../experiments/data/types.ts';

type Method = 'gradcam' | 'gradcam++' | 'saliency';

/** Where the current input came from: re-read whenever the run (and so the input size) changes. */
type Source = { name: string; blob: Blob; box?: Box } | { name: string; f32: ArrayBuffer };

/** What the page computed last. */
export interface ExplorerResult {
  run: string;
  source: string;
  method: Method;
  /** The Grad-CAM layer ('' for saliency). */
  layer: string;
  target: number;
  predicted: number;
  logits: number[];
  /** The raw map (Grad-CAM: ReLU'd, before normalisation; saliency: max |gradient| over channels), row-major. */
  map: number[];
  mapWidth: number;
  mapHeight: number;
  /** The model's input, CHW. */
  input: number[];
}

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  status: byId<HTMLParagraphElement>('status'),
  study: byId<HTMLElement>('study'),
  run: byId<HTMLSelectElement>('run'),
  method: byId<HTMLSelectElement>('method'),
  camLayer: byId<HTMLSelectElement>('cam-layer'),
  target: byId<HTMLSelectElement>('target'),
  file: byId<HTMLInputElement>('file'),
  drop: byId<HTMLDivElement>('drop'),
  val: byId<HTMLSelectElement>('val'),
  input: byId<HTMLCanvasElement>('input'),
  inputCaption: byId<HTMLElement>('input-caption'),
  map: byId<HTMLCanvasElement>('map'),
  mapCaption: byId<HTMLElement>('map-caption'),
  prediction: byId<HTMLElement>('prediction'),
  top5: byId<HTMLOListElement>('top5'),
  fmLayer: byId<HTMLSelectElement>('fm-layer'),
  fm: byId<HTMLCanvasElement>('fm'),
  fmCaption: byId<HTMLElement>('fm-caption'),
  epoch: byId<HTMLInputElement>('epoch'),
  epochLabel: byId<HTMLElement>('epoch-label'),
  filters: byId<HTMLDivElement>('filters'),
  report: byId<HTMLParagraphElement>('report'),
};

const state = {
  gpu: null as Gpu | null,
  runs: [] as RunListing[],
  run: null as RunListing | null,
  model: null as Classifier<ClassifierOutput> | null,
  val: [] as ValListing[],
  source: null as Source | null,
  input: null as Float32Array | null,
};

/** Read by the tests: `pending` tasks queued or running, `finished` tasks so far, the last error and result. */
const exposed = { pending: 0, finished: 0, error: null as string | null, result: null as ExplorerResult | null };
(globalThis as { explorer?: typeof exposed }).explorer = exposed;

function say(text: string, isError = false): void {
  el.status.textContent = text;
  el.status.classList.toggle('error', isError);
  if (isError) exposed.error = text;
}

// GPU work runs one task at a time, in the order the reader asked for it.
let queue = Promise.resolve();
function enqueue(task: () => Promise<void>): void {
  exposed.pending++;
  queue = queue.then(async () => {
    exposed.error = null;
    try {
      await task();
    } catch (e) {
      say((e as Error).message ?? String(e), true);
    } finally {
      exposed.pending--;
      exposed.finished++;
    }
  });
}

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()) || res.statusText}`);
  return res;
}

function options(select: HTMLSelectElement, items: [value: string, label: string][], selected?: string): void {
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value, false, value === selected)));
}

function draw(canvas: HTMLCanvasElement, img: RgbaImage, displayWidth = Math.max(224, img.width)): void {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.style.width = `${displayWidth}px`;
  canvas.getContext('2d')!.putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0);
}

const pad2 = (n: number) => String(n).padStart(2, '0');

function showEpoch(): void {
  const run = state.run!;
  if (!run.epochs.length || !run.filterLayers.length) {
    el.epochLabel.textContent = 'this run saved no filter pictures';
    el.filters.replaceChildren();
    return;
  }
  const epoch = run.epochs[Number(el.epoch.value)];
  el.epochLabel.textContent = `epoch ${epoch} of ${run.epochs[run.epochs.length - 1]}`;
  el.filters.replaceChildren(
    ...run.filterLayers.map((layer) => {
      const figure = document.createElement('figure');
      const img = document.createElement('img');
      img.className = 'pixelated';
      img.src = `/study/${run.path}/filters/epoch-${pad2(epoch)}/${layer}.png`;
      img.alt = `${layer} filters at epoch ${epoch}`;
      const caption = document.createElement('figcaption');
      caption.textContent = layer;
      figure.append(img, caption);
      return figure;
    }),
  );
}

async function selectRun(run: RunListing): Promise<void> {
  state.run = run;
  el.epoch.max = String(Math.max(0, run.epochs.length - 1));
  el.epoch.value = el.epoch.max;
  showEpoch();
  state.val = (await (await fetchOk(`/api/runs/${encodeURIComponent(run.name)}/val`)).json()) as ValListing[];
  options(el.val, [['', state.val.length ? '—' : '(no validation split found)'], ...state.val.map((v): [string, string] => [String(v.index), `${v.file} (${run.classes[v.label]})`])]);
  options(el.target, [['', 'the predicted one'], ...run.classes.map((c, i): [string, string] => [String(i), c])]);
  if (!state.gpu) return;

  state.model?.dispose();
  state.model = null;
  say(`Loading the weights of ${run.name}…`);
  const bytes = new Uint8Array(await (await fetchOk(`/study/${run.path}/best.safetensors`)).arrayBuffer());
  const { tensors } = readWeights(bytes, `${run.name}/best.safetensors`);
  for (const k of [...tensors.keys()]) if (k.startsWith('AuxLogits.')) tensors.delete(k);
  try {
    const model = createModel(run.model, { numClasses: run.classes.length, auxLogits: false, transformInput: run.transformInput });
    model.loadStateDict(tensors, { strict: true });
    state.model = model;
  } catch (e) {
    if (e instanceof DeviceError) {
      throw new Error(`The weights of ${run.name} (${(bytes.byteLength / 2 ** 20).toFixed(0)} MiB) do not fit this GPU's limits: ${e.message}`);
    }
    throw e;
  }
  // Blocks and conv layers: the places a reader would look at; other layers (norms, activations) are inside them.
  const layers = [...state.model.namedModules()]
    .filter(([name, m]) => name && (m instanceof nn.Conv2d || !m.namedChildren().next().done))
    .map(([name]): [string, string] => [name, name]);
  options(el.camLayer, layers, modelInfo(run.model).lastConvLayer);
  options(el.fmLayer, layers, defaultFeatureLayer(state.model, run.model));
  say(`${run.name} loaded (${(bytes.byteLength / 2 ** 20).toFixed(0)} MiB of weights). Drop an image or pick a validation image.`);
  if (state.source) await setSource(state.source);
}

async function setSource(source: Source): Promise<void> {
  const run = state.run!;
  state.source = source;
  state.input = 'f32' in source ? parseF32(source.f32, source.name, run.inputSize) : await decodeImage(source.blob, source.name, run.inputSize, source.box);
  draw(el.input, chwToRgba(state.input, [3, run.inputSize, run.inputSize]));
  el.inputCaption.textContent = `${source.name} at ${run.inputSize} px`;
  await explain();
}

/** The feature maps of the chosen layer; recomputed only when the input or the layer changes. */
let featureMapsShown: { input: Float32Array; layer: string } | null = null;
async function showFeatureMaps(): Promise<void> {
  const { model, input, run } = state;
  const layer = el.fmLayer.value;
  if (!model || !input || !run || (featureMapsShown?.input === input && featureMapsShown.layer === layer)) return;
  const fm = await activationOf(model, input, run.inputSize, layer);
  featureMapsShown = { input, layer };
  if (!fm || fm.shape.length !== 3) {
    el.fm.width = 0;
    el.fmCaption.textContent = `${layer} gives no [C, h, w] feature maps${fm ? ` (its output is [${fm.shape}])` : ''}`;
    return;
  }
  const img = featureMapGrid(fm.data, fm.shape, 64);
  draw(el.fm, img, img.width * 2);
  el.fmCaption.textContent = `${Math.min(64, fm.shape[0])} of ${fm.shape[0]} channels, ${fm.shape[2]} x ${fm.shape[1]}`;
}

async function explain(): Promise<void> {
  const { model, input, run, source } = state;
  if (!model || !input || !run || !source) return;
  const started = performance.now();
  const size = run.inputSize;
  const method = el.method.value as Method;
  const layer = method === 'saliency' ? '' : el.camLayer.value;
  say(`Computing ${method} for ${source.name}…`);
  const chosen = el.target.value === '' ? undefined : Number(el.target.value);
  let prediction: Prediction;
  let target: number;
  let map: ArrayLike<number>;
  let width = size;
  let height = size;
  if (method === 'saliency') {
    prediction = await predict(model, input, size);
    target = chosen ?? prediction.predicted;
    map = saliencyOf(await inputGradient(model, input, size, target), size);
  } else {
    // camOf's forward pass also gives the prediction.
    const result = await camOf(model, input, size, { layer, target: chosen, plusPlus: method === 'gradcam++' });
    ({ target, cam: { map, width, height } } = result);
    prediction = result;
  }
  const original = chwToRgba(input, [3, size, size]);
  const signal = camSignal(map);
  draw(el.map, signal === 'ok' ? jetOverlay(original, map, width, height, method === 'saliency' ? 0.6 : 0.5) : original);
  const problem = width * height === 1 ? ' — a 1 x 1 map cannot say where: pick an earlier layer' : signal === 'ok' ? '' : ` — the map is ${signal}: nothing to show`;
  el.mapCaption.textContent = `${method}${layer ? ` at ${layer} (${width} x ${height})` : ''} for ${run.classes[target]}${problem}`;

  const p = prediction.probabilities;
  const order = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 5);
  el.prediction.textContent = `Predicted ${run.classes[prediction.predicted]} (${(p[prediction.predicted] * 100).toFixed(1)}%)`;
  el.top5.replaceChildren(
    ...order.map((c) => {
      const li = document.createElement('li');
      li.textContent = `${run.classes[c]}: ${(p[c] * 100).toFixed(1)}%`;
      li.classList.toggle('predicted', c === prediction.predicted);
      return li;
    }),
  );
  await showFeatureMaps();
  exposed.result = {
    run: run.name,
    source: source.name,
    method,
    layer,
    target,
    predicted: prediction.predicted,
    logits: [...prediction.logits],
    map: Array.from(map),
    mapWidth: width,
    mapHeight: height,
    input: [...input],
  };
  say(`${run.name}: ${method} of ${source.name} in ${Math.round(performance.now() - started)} ms on ${state.gpu!.facts.description || state.gpu!.facts.architecture || 'this GPU'}.`);
}

function takeFile(file: File): void {
  if (!state.run) return;
  enqueue(async () => {
    if (!state.model) throw new Error('No model is loaded, so there is nothing to explain with (see the message above).');
    const source: Source = file.name.toLowerCase().endsWith('.f32') ? { name: file.name, f32: await file.arrayBuffer() } : { name: file.name, blob: file };
    await setSource(source);
  });
}

function wire(): void {
  el.run.addEventListener('change', () => enqueue(() => selectRun(state.runs[Number(el.run.value)])));
  for (const select of [el.method, el.camLayer, el.target]) select.addEventListener('change', () => enqueue(explain));
  el.fmLayer.addEventListener('change', () => enqueue(showFeatureMaps));
  el.epoch.addEventListener('input', showEpoch);
  el.file.addEventListener('change', () => {
    if (el.file.files?.[0]) takeFile(el.file.files[0]);
  });
  el.drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    el.drop.classList.add('over');
  });
  el.drop.addEventListener('dragleave', () => el.drop.classList.remove('over'));
  el.drop.addEventListener('drop', (e) => {
    e.preventDefault();
    el.drop.classList.remove('over');
    const file = e.dataTransfer?.files[0];
    if (file) takeFile(file);
  });
  el.val.addEventListener('change', () => {
    const v = state.val.find((s) => String(s.index) === el.val.value);
    const run = state.run;
    if (!v || !run) return;
    enqueue(async () => {
      if (!state.model) throw new Error('No model is loaded, so there is nothing to explain with (see the message above).');
      const blob = await (await fetchOk(`/api/runs/${encodeURIComponent(run.name)}/val/${v.index}`)).blob();
      await setSource({ name: v.file, blob, box: v.box });
    });
  });
}

enqueue(async () => {
  wire();
  const study = (await (await fetchOk('/api/study')).json()) as StudyListing;
  state.runs = study.runs;
  el.study.textContent = `— ${study.name}`;
  if (study.report) el.report.innerHTML = '<a href="/study/report.html">The study report</a>';
  options(el.run, study.runs.map((r, i): [string, string] => [String(i), r.name]));
  let gpuProblem = '';
  try {
    state.gpu = await startGPU();
  } catch (e) {
    gpuProblem = `No WebGPU here, so the explanations cannot run; the filters below still work.\n${(e as Error).message}`;
  }
  await selectRun(study.runs[0]);
  if (gpuProblem) say(gpuProblem, true);
});
