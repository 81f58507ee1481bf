// The study's written outputs: table1.md/json, curves.svg/png, and report.html — one self-contained page (images
// inlined as data: URIs, inline CSS and a few lines of inline JS, nothing fetched) that opens offline.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { DataError } from '../../engine/errors.ts';
import { barChart, lossCurves, rocChart, type EpochMetrics, type RocCurve } from './charts.ts';
import type { CamSignal } from './images.ts';
import { escapeXml } from './raster.ts';

export type { EpochMetrics, RocCurve } from './charts.ts';

/** A PNG or SVG file (path relative to the study folder, or absolute), or PNG bytes. */
export type ImageRef = string | Uint8Array;

export interface StudyConfig {
  preset: string;
  models: string[];
  regimes: string[];
  heads?: string[];
  dataset: { name: string; location?: string; identities: number; trainImages: number; valImages: number; split?: string };
  /** Input size in pixels per model. */
  imageSize: Record<string, number>;
  epochs: number;
  batchSize: number;
  /** E.g. "Adam, lr 1e-3". */
  optimizer: string;
  /** E.g. "StepLR, step 7, gamma 1". */
  schedule: string;
  seed: number;
  /** Anything else worth showing, in this order. */
  extra?: Record<string, string | number | boolean>;
}

export interface Environment {
  /** The WebGPU adapter, as `celgrad doctor` describes it. */
  adapter: string;
  /** E.g. { node: '20.19.0', celgrad: '0.1.0' }. */
  versions?: Record<string, string>;
  /** ISO date-time the study started. */
  startedAt?: string;
}

export interface RunSummary {
  /** Unique, e.g. "resnet50-scratch"; the key other sections use. */
  name: string;
  model: string;
  regime: string;
  head?: string;
  /** What the weights were at the start: "ImageNet (torchvision resnet50-0676ba61.pth)", "synthetic pretext task
   *  (cached .cache/pretext/resnet50.safetensors)", "random (seed 1)". Shown in Table 1. */
  weightsSource: string;
  metrics: EpochMetrics[];
}

/** Filter grids of one conv layer of one run, one image per epoch (epoch 0 = the starting weights, if recorded). */
export interface FilterSeries {
  run: string;
  layer: string;
  epochs: { epoch: number; image: ImageRef }[];
}

export interface FeatureMapPanel {
  run: string;
  layer: string;
  image: ImageRef;
  /** Which validation image the activations are of. */
  input?: string;
}

/** One validation image: the composed row (original | one overlay per run) and what each run predicted. */
export interface GradcamPanel {
  image: string;
  trueLabel: string;
  file: ImageRef;
  runs: { run: string; layer: string; predicted: string; score: number; signal: CamSignal }[];
}

/** Average Drop % and % Increase in Confidence (Grad-CAM++ paper definitions), both in percent. */
export interface FaithfulnessRow {
  run: string;
  method: string;
  averageDrop: number;
  increaseInConfidence: number;
  images: number;
  /** The class score used, e.g. "softmax probability". */
  score: string;
}

export interface VerificationRow {
  run: string;
  /** TAR (fraction) keyed by FAR as written, e.g. { '1e-2': 0.93, '1e-3': 0.81 }. */
  tarAtFar: Record<string, number>;
  /** Identification top-1 against the gallery, fraction. */
  top1?: number;
}

export interface ExplanationPanel {
  image: string;
  file: ImageRef;
  caption?: string;
}

/** Everything report.html shows. Accuracies are fractions in [0, 1] unless a field says percent. */
export interface ReportData {
  title?: string;
  config: StudyConfig;
  environment: Environment;
  runs: RunSummary[];
  /** Wall-clock time per stage, e.g. { label: 'resnet50-scratch', seconds: 312 }, ending with the total. */
  timings: { label: string; seconds: number }[];
  filters: FilterSeries[];
  featureMaps: FeatureMapPanel[];
  gradcam: GradcamPanel[];
  faithfulness?: FaithfulnessRow[];
  verification?: { curves: RocCurve[]; rows: VerificationRow[] };
  explanations?: ExplanationPanel[];
  /** Plain sentences, e.g. "Inception v3 trained without its aux classifier at this input size." */
  notes: string[];
}

// ---------------------------------------------------------------- Table 1

/** The paper's Table 1 (best validation accuracy), as fractions. */
export const PAPER_VAL_ACC: Record<string, Record<string, number>> = {
  inception_v3: { pretrained: 0.7315, scratch: 0.8783 },
  resnet50: { pretrained: 0.8154, scratch: 0.9209 },
};

export interface Table1Row {
  model: string;
  regime: string;
  head?: string;
  /** null when the run recorded no finite validation accuracy. */
  bestValAcc: number | null;
  bestEpoch: number | null;
  weightsSource: string;
  paperValAcc?: number;
}

/** The epoch with the highest finite validation accuracy (the earliest on ties). */
export function bestEpoch(metrics: EpochMetrics[]): EpochMetrics | undefined {
  return metrics.reduce<EpochMetrics | undefined>((b, m) => (Number.isFinite(m.valAcc) && (!b || m.valAcc > b.valAcc) ? m : b), undefined);
}

/** Rows of Table 1; the paper's numbers beside ours only for the paper preset (same data and configuration). */
export function table1Rows(runs: RunSummary[], preset: string): Table1Row[] {
  return runs.map((r) => {
    const best = bestEpoch(r.metrics);
    const paper = preset === 'paper' && (r.head ?? 'linear') === 'linear' ? PAPER_VAL_ACC[r.model]?.[r.regime] : undefined;
    return {
      model: r.model,
      regime: r.regime,
      ...(r.head ? { head: r.head } : {}),
      bestValAcc: best?.valAcc ?? null,
      bestEpoch: best?.epoch ?? null,
      weightsSource: r.weightsSource,
      ...(paper !== undefined ? { paperValAcc: paper } : {}),
    };
  });
}

const pct = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(2)}%`);

function table1Columns(rows: Table1Row[]): { headers: string[]; cells: string[][] } {
  const heads = rows.some((r) => r.head);
  const paper = rows.some((r) => r.paperValAcc !== undefined);
  return {
    headers: ['Model', 'Regime', ...(heads ? ['Head'] : []), 'Best val. accuracy', 'Epoch', 'Weights at start', ...(paper ? ['Paper'] : [])],
    cells: rows.map((r) => [
      modelName(r.model),
      r.regime,
      ...(heads ? [r.head ?? 'linear'] : []),
      pct(r.bestValAcc),
      r.bestEpoch === null ? '—' : String(r.bestEpoch),
      r.weightsSource,
      ...(paper ? [pct(r.paperValAcc)] : []),
    ]),
  };
}

export function writeTable1(studyDir: string, rows: Table1Row[]): void {
  mkdirSync(studyDir, { recursive: true });
  const { headers, cells } = table1Columns(rows);
  const line = (c: string[]) => `| ${c.map((s) => s.replace(/\|/g, '\\|')).join(' | ')} |`;
  const md = ['# Table 1: best validation accuracy', '', line(headers), line(headers.map(() => '---')), ...cells.map(line), ''];
  writeFileSync(join(studyDir, 'table1.md'), md.join('\n'));
  writeFileSync(join(studyDir, 'table1.json'), JSON.stringify(rows, null, 2) + '\n');
}

/** Figure 1 as curves.svg and curves.png. */
export async function writeCurves(studyDir: string, runs: RunSummary[]): Promise<void> {
  mkdirSync(studyDir, { recursive: true });
  const chart = await lossCurves(runs);
  writeFileSync(join(studyDir, 'curves.svg'), chart.svg);
  writeFileSync(join(studyDir, 'curves.png'), chart.png);
}

// ---------------------------------------------------------------- the comparison, in words

const MODEL_NAMES: Record<string, string> = {
  resnet50: 'ResNet-50',
  inception_v3: 'Inception v3',
  densenet121: 'DenseNet-121',
  vgg16: 'VGG-16',
};
const modelName = (m: string) => MODEL_NAMES[m] ?? m;
const runLabel = (r: RunSummary) => `${modelName(r.model)} (${r.regime}${r.head && r.head !== 'linear' ? `, ${r.head}` : ''})`;
const points = (d: number) => `${(Math.abs(d) * 100).toFixed(1)} points`;

/** The first epoch whose validation loss is at or below target; undefined if none is. */
export function epochsToReach(metrics: EpochMetrics[], target: number): number | undefined {
  return metrics.find((m) => m.valLoss <= target)?.epoch;
}

function lowestLoss(metrics: EpochMetrics[]): EpochMetrics | undefined {
  return metrics.reduce<EpochMetrics | undefined>((b, m) => (Number.isFinite(m.valLoss) && (!b || m.valLoss < b.valLoss) ? m : b), undefined);
}

const groupBy = <T>(items: T[], key: (t: T) => string) =>
  items.reduce((g, t) => g.set(key(t), [...(g.get(key(t)) ?? []), t]), new Map<string, T[]>());

/** Sentences comparing the runs, derived from their metrics only. */
export function comparisonSentences(runs: RunSummary[], preset: string): string[] {
  const scored = runs.flatMap((r) => {
    const best = bestEpoch(r.metrics);
    return best ? [{ run: r, best }] : [];
  });
  if (scored.length === 0) return ['No run recorded a finite validation accuracy, so there is nothing to compare.'];
  const out: string[] = [];

  const top = scored.reduce((a, b) => (b.best.valAcc > a.best.valAcc ? b : a));
  out.push(
    `The best validation accuracy, ${pct(top.best.valAcc)}, came from ${runLabel(top.run)} at epoch ${top.best.epoch} of ${top.run.metrics[top.run.metrics.length - 1].epoch}.`,
  );

  // Pretrained against scratch, per model (and head).
  for (const group of groupBy(scored, (s) => `${s.run.model}/${s.run.head ?? ''}`).values()) {
    const acc = (regime: string) => group.find((s) => s.run.regime === regime)?.best.valAcc;
    const pre = acc('pretrained');
    const scr = acc('scratch');
    if (pre === undefined || scr === undefined) continue;
    const others = group.filter((s) => s.run.regime !== 'pretrained' && s.run.regime !== 'scratch');
    const verdict = scr === pre ? 'no difference' : `${points(scr - pre)} in favour of ${scr > pre ? 'training from scratch' : 'the pretrained start'}`;
    out.push(
      `${modelName(group[0].run.model)}: from scratch ${pct(scr)}, pretrained ${pct(pre)}, ${verdict}` +
        others.map((o) => `; ${o.run.regime} ${pct(o.best.valAcc)}`).join('') +
        '.',
    );
  }

  // How fast one model reached the other's lowest validation loss, within a regime.
  for (const group of groupBy(runs, (r) => `${r.regime}/${r.head ?? ''}`).values()) {
    const withLoss = group.flatMap((r) => {
      const low = lowestLoss(r.metrics);
      return low ? [{ r, low }] : [];
    });
    for (const a of withLoss)
      for (const b of withLoss) {
        if (a === b || !(a.low.valLoss < b.low.valLoss)) continue;
        const at = epochsToReach(a.r.metrics, b.low.valLoss);
        out.push(
          `In the ${a.r.regime} regime ${modelName(a.r.model)} reached ${modelName(b.r.model)}'s lowest validation loss ` +
            `(${b.low.valLoss.toFixed(3)}, at its epoch ${b.low.epoch}) by epoch ${at}, and went on to ${a.low.valLoss.toFixed(3)} ` +
            `at epoch ${a.low.epoch}.`,
        );
      }
  }

  out.push(...paperFindings(scored.map((s) => ({ run: s.run, acc: s.best.valAcc }))));

  const paperRows = table1Rows(runs, preset).filter((r) => r.paperValAcc !== undefined && r.bestValAcc !== null);
  if (paperRows.length > 0) {
    const diffs = paperRows.map((r) => ({ r, d: r.bestValAcc! - r.paperValAcc! }));
    const worst = diffs.reduce((a, b) => (Math.abs(b.d) > Math.abs(a.d) ? b : a));
    const mean = diffs.reduce((a, b) => a + Math.abs(b.d), 0) / diffs.length;
    out.push(
      `Against the paper's Table 1 our accuracies differ by ${points(mean)} on average; the largest difference is ` +
        `${modelName(worst.r.model)} (${worst.r.regime}), ${points(worst.d)} ${worst.d < 0 ? 'below' : 'above'} the paper.`,
    );
  }

  // Margin heads measure training accuracy on margin-penalised logits, so their gap is not comparable.
  const last = scored
    .filter((s) => (s.run.head ?? 'linear') === 'linear')
    .map((s) => {
      const m = s.run.metrics[s.run.metrics.length - 1];
      return { run: s.run, gap: m.trainAcc - m.valAcc };
    })
    .filter((g) => Number.isFinite(g.gap));
  const gapText = (d: number) => (d >= 0 ? points(d) : `${points(d)}, validation above training`);
  if (last.length > 1) {
    const wide = last.reduce((a, b) => (b.gap > a.gap ? b : a));
    const narrow = last.reduce((a, b) => (b.gap < a.gap ? b : a));
    out.push(
      wide.gap - narrow.gap < 0.001
        ? `At the last epoch every run had the same train-validation accuracy gap, ${points(wide.gap)}.`
        : `At the last epoch the train-validation accuracy gap, a sign of overfitting, was widest for ${runLabel(wide.run)} ` +
            `(${gapText(wide.gap)}) and narrowest for ${runLabel(narrow.run)} (${gapText(narrow.gap)}).`,
    );
  }
  return out;
}

/** Whether the paper's two qualitative findings hold: scratch beats pretrained per model; ResNet-50 beats Inception v3 per regime. */
function paperFindings(results: { run: RunSummary; acc: number }[]): string[] {
  const acc = (model: string, regime: string) =>
    results.find((x) => x.run.model === model && x.run.regime === regime && (x.run.head ?? 'linear') === 'linear')?.acc;
  const checks: { label: string; holds: boolean }[] = [];
  for (const model of ['resnet50', 'inception_v3']) {
    const [s, p] = [acc(model, 'scratch'), acc(model, 'pretrained')];
    if (s !== undefined && p !== undefined) checks.push({ label: `scratch over pretrained for ${modelName(model)}`, holds: s > p });
  }
  for (const regime of ['pretrained', 'scratch']) {
    const [r, i] = [acc('resnet50', regime), acc('inception_v3', regime)];
    if (r !== undefined && i !== undefined) checks.push({ label: `ResNet-50 over Inception v3 ${regime}`, holds: r > i });
  }
  if (checks.length === 0) return [];
  const failed = checks.filter((c) => !c.holds);
  return [
    `The paper found training from scratch better than the pretrained start for both models, and ResNet-50 ahead of ` +
      `Inception v3 in both regimes; here ${checks.length - failed.length} of these ${checks.length} comparisons agree` +
      (failed.length ? ` (not: ${failed.map((c) => c.label).join('; ')}).` : '.'),
  ];
}

// ---------------------------------------------------------------- HTML

const esc = escapeXml;

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

function table(headers: string[], rows: string[][]): string {
  const tr = (cells: string[], tag: string) => `<tr>${cells.map((c) => `<${tag}>${esc(c)}</${tag}>`).join('')}</tr>`;
  return `<table><thead>${tr(headers, 'th')}</thead><tbody>${rows.map((r) => tr(r, 'td')).join('')}</tbody></table>`;
}

/** <img> with the file inlined; PNG sizes come from the header so the page lays out before decoding. */
function img(studyDir: string, ref: ImageRef, alt: string, opts: { pixelated?: boolean; minWidth?: number } = {}): string {
  let bytes: Uint8Array;
  if (typeof ref === 'string') {
    const path = isAbsolute(ref) ? ref : join(studyDir, ref);
    try {
      bytes = readFileSync(path);
    } catch {
      throw new DataError(path, 'an image the report shows is missing; re-run the study step that writes it');
    }
  } else bytes = ref;
  const isPng = bytes[0] === 0x89 && bytes[1] === 0x50;
  const uri = `data:${isPng ? 'image/png' : 'image/svg+xml'};base64,${Buffer.from(bytes).toString('base64')}`;
  let size = '';
  if (isPng) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const [w, h] = [view.getUint32(16), view.getUint32(20)];
    // Small grids (a 7x7 filter per tile) are enlarged by whole factors so pixels stay square and sharp.
    const k = opts.minWidth && w < opts.minWidth ? Math.ceil(opts.minWidth / w) : 1;
    size = ` width="${w * k}" height="${h * k}"`;
  }
  return `<img src="${uri}" alt="${esc(alt)}"${size}${opts.pixelated ? ' class="px"' : ''}>`;
}

interface Section {
  id: string;
  title: string;
  body: string;
}
const section = (id: string, title: string, body: string): Section => ({ id, title, body });
const figure = (image: string, caption: string, attrs = '') => `<figure${attrs}>${image}<figcaption>${esc(caption)}</figcaption></figure>`;

const CSS = `
body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}h3{margin:1.2rem 0 .4rem}
nav a{margin-right:.8rem}table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}td:nth-child(n+2){font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.4rem .8rem .8rem 0;vertical-align:top}figcaption{font-size:.85rem;color:#555;max-width:60ch}
img{max-width:100%;height:auto}img.px{image-rendering:pixelated}
.pager{margin:.3rem 0;display:flex;gap:.8rem;align-items:center}.pager input{width:min(400px,60vw)}
.warn{color:#a40000}.sub{color:#666;margin-top:0}[hidden]{display:none!important}`;

// Epoch pager: without JS every epoch is shown in order; with it, one slider per layer shows one epoch at a time.
const PAGER_JS = `
for (const box of document.querySelectorAll('.epochs')) {
  const figs = [...box.querySelectorAll('figure[data-epoch]')];
  const epochs = [...new Set(figs.map((f) => +f.dataset.epoch))].sort((a, b) => a - b);
  if (epochs.length < 2) continue;
  const slider = Object.assign(document.createElement('input'), { type: 'range', min: 0, max: epochs.length - 1, value: epochs.length - 1 });
  const label = document.createElement('span');
  const show = () => {
    const e = epochs[slider.value];
    label.textContent = 'epoch ' + e + ' (' + (+slider.value + 1) + ' of ' + epochs.length + ')';
    for (const f of figs) f.hidden = +f.dataset.epoch !== e;
  };
  slider.addEventListener('input', show);
  const bar = Object.assign(document.createElement('div'), { className: 'pager' });
  bar.append(slider, label);
  box.before(bar);
  show();
}`;

/** Writes report.html into studyDir and returns its path. */
export async function writeReport(studyDir: string, data: ReportData): Promise<string> {
  const { config: c, environment: env } = data;
  const runOf = new Map(data.runs.map((r) => [r.name, r]));
  const modelOf = (run: string) => runOf.get(run)?.model ?? run;
  const rows = table1Rows(data.runs, c.preset);
  const I = (ref: ImageRef, alt: string, o?: Parameters<typeof img>[3]) => img(studyDir, ref, alt, o);

  const curves = await lossCurves(data.runs);
  const bars = await barChart(
    rows.filter((r) => r.bestValAcc !== null).map((r) => ({ category: modelName(r.model), series: r.head ? `${r.regime}, ${r.head}` : r.regime, value: r.bestValAcc! })),
    { title: 'Best validation accuracy', valueTitle: 'Accuracy', percent: true },
  );
  const svg = (s: string) => new TextEncoder().encode(s);

  const pretrainedFrom = [...new Set(data.runs.filter((r) => r.regime !== 'scratch').map((r) => `${r.name}: ${r.weightsSource}`))];
  const configRows: string[][] = [
    ['Preset', c.preset],
    ['Models', c.models.map(modelName).join(', ')],
    ['Regimes', c.regimes.join(', ')],
    ...(c.heads ? [['Heads', c.heads.join(', ')]] : []),
    ['Dataset', `${c.dataset.name}${c.dataset.location ? ` (${c.dataset.location})` : ''}`],
    ['Identities / train / val images', `${c.dataset.identities} / ${c.dataset.trainImages} / ${c.dataset.valImages}${c.dataset.split ? ` (${c.dataset.split})` : ''}`],
    ['Image size', Object.entries(c.imageSize).map(([m, s]) => `${modelName(m)} ${s}×${s}`).join(', ')],
    ['Epochs, batch size', `${c.epochs}, ${c.batchSize}`],
    ['Optimiser', c.optimizer],
    ['Schedule', c.schedule],
    ['Seed', String(c.seed)],
    ['Pretrained arm started from', pretrainedFrom.join('; ') || 'no pretrained runs'],
    ['Adapter', env.adapter],
    ...(env.startedAt ? [['Started', env.startedAt]] : []),
    ...Object.entries(env.versions ?? {}).map(([k, v]) => [`${k} version`, v]),
    ...Object.entries(c.extra ?? {}).map(([k, v]) => [k, String(v)]),
  ];

  const t1 = table1Columns(rows);
  const sections = [
    section(
      'config',
      'Configuration',
      table(['Setting', 'Value'], configRows) +
        '<h3>Timings</h3>' +
        table(['Stage', 'Wall-clock'], data.timings.map((t) => [t.label, duration(t.seconds)])),
    ),
    section(
      'table1',
      'Table 1: best validation accuracy',
      table(t1.headers, t1.cells) +
        (rows.some((r) => r.paperValAcc !== undefined) ? '<p class="sub">Paper: the seed paper\'s Table 1, same configuration.</p>' : '') +
        figure(I(svg(bars.svg), 'Best validation accuracy per model and regime'), 'Best validation accuracy per model and regime.'),
    ),
    section('comparison', 'Comparison', `<p>${comparisonSentences(data.runs, c.preset).map(esc).join(' ')}</p>`),
    section(
      'curves',
      'Figure 1: loss and accuracy per epoch',
      figure(I(svg(curves.svg), 'Loss and accuracy per epoch for every run'), 'Solid: training; dashed: validation. Loss left, accuracy right.'),
    ),
    section('filters', 'Filters per epoch', filtersHtml(data.filters, modelOf, I)),
    section('featuremaps', 'Feature maps', featureMapsHtml(data.featureMaps, modelOf, I)),
    section('gradcam', 'Grad-CAM', gradcamHtml(data.gradcam, I)),
    data.faithfulness &&
      section(
        'faithfulness',
        'Faithfulness of the explanations',
        table(
          ['Run', 'Method', 'Average Drop % (lower is better)', 'Increase in Confidence % (higher is better)', 'Images', 'Score'],
          data.faithfulness.map((f) => [f.run, f.method, f.averageDrop.toFixed(2), f.increaseInConfidence.toFixed(2), String(f.images), f.score]),
        ) + '<p class="sub">As defined in the Grad-CAM++ paper: Average Drop = mean of max(0, Y − O)/Y × 100; Increase in Confidence = share of images with O &gt; Y × 100.</p>',
      ),
    data.verification && (await verificationHtml(data.verification, I)),
    data.explanations &&
      section('explanations', 'Explanations', data.explanations.map((e) => figure(I(e.file, e.image), e.caption ?? e.image)).join('')),
    section('notes', 'Notes', data.notes.length ? `<ul>${data.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '<p>None.</p>'),
  ].filter((s): s is Section => typeof s === 'object');

  const title = data.title ?? `celgrad study (${c.preset})`;
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body><h1>${esc(title)}</h1>
<p class="sub">${esc(c.models.map(modelName).join(' vs '))}, ${esc(c.regimes.join(' / '))}, on ${esc(c.dataset.name)}. A reproduction of “Comparing and Visualizing GoogLeNet and ResNet on Face Recognition of Animated Characters”.</p>
<nav>${sections.map((s) => `<a href="#${s.id}">${esc(s.title)}</a>`).join('')}</nav>
${sections.map((s) => `<section id="${s.id}"><h2>${esc(s.title)}</h2>${s.body}</section>`).join('\n')}
<script>${PAGER_JS}</script>
</body></html>
`;
  mkdirSync(studyDir, { recursive: true });
  const path = join(studyDir, 'report.html');
  writeFileSync(path, html);
  return path;
}

type ImgFn = (ref: ImageRef, alt: string, o?: { pixelated?: boolean; minWidth?: number }) => string;

function filtersHtml(series: FilterSeries[], modelOf: (run: string) => string, I: ImgFn): string {
  if (series.length === 0) return '<p>No filter snapshots were recorded.</p>';
  const groups = groupBy(series, (s) => `${modelName(modelOf(s.run))} · ${s.layer}`);
  return [...groups]
    .map(([key, list]) => {
      const figs = list
        .flatMap((s) => s.epochs.map((e) => ({ run: s.run, ...e })))
        .sort((a, b) => a.epoch - b.epoch || list.findIndex((s) => s.run === a.run) - list.findIndex((s) => s.run === b.run))
        .map((f) => figure(I(f.image, `${f.run} ${key} epoch ${f.epoch}`, { pixelated: true, minWidth: 240 }), `${f.run}, epoch ${f.epoch}`, ` data-epoch="${f.epoch}"`));
      return `<h3>${esc(key)}</h3><div class="epochs">${figs.join('')}</div>`;
    })
    .join('');
}

function featureMapsHtml(panels: FeatureMapPanel[], modelOf: (run: string) => string, I: ImgFn): string {
  if (panels.length === 0) return '<p>No feature maps were recorded.</p>';
  return [...groupBy(panels, (p) => `${modelName(modelOf(p.run))} · ${p.layer}`)]
    .map(
      ([key, list]) =>
        `<h3>${esc(key)}</h3>` +
        list.map((p) => figure(I(p.image, `${p.run} ${p.layer}`, { pixelated: true, minWidth: 240 }), p.input ? `${p.run} (${p.input})` : p.run)).join(''),
    )
    .join('');
}

function gradcamHtml(panels: GradcamPanel[], I: ImgFn): string {
  if (panels.length === 0) return '<p>No Grad-CAM maps were computed.</p>';
  const flagged = panels.flatMap((p) => p.runs.filter((r) => r.signal !== 'ok').map((r) => `${p.image} / ${r.run}: ${r.signal}`));
  const intro =
    '<p class="sub">Each row: the validation image, then each run\'s heat map (red: most evidence for the class explained).</p>' +
    (flagged.length
      ? `<p class="warn">${flagged.length} map(s) carried no usable signal and are drawn greyed and hatched, not as heat maps: ${esc(flagged.join('; '))}.</p>`
      : '');
  return (
    intro +
    panels
      .map(
        (p) =>
          figure(I(p.file, `Grad-CAM for ${p.image}`), `${p.image}, true identity ${p.trueLabel}.`) +
          table(
            ['Run', 'Predicted', 'Score', 'Target layer', 'Map'],
            p.runs.map((r) => [r.run, r.predicted, r.score.toFixed(3), r.layer, r.signal]),
          ),
      )
      .join('')
  );
}

async function verificationHtml(v: NonNullable<ReportData['verification']>, I: ImgFn): Promise<Section> {
  const fars = [...new Set(v.rows.flatMap((r) => Object.keys(r.tarAtFar)))].sort((a, b) => Number(b) - Number(a));
  const top1 = v.rows.some((r) => r.top1 !== undefined);
  const roc = v.curves.length ? figure(I(new TextEncoder().encode((await rocChart(v.curves)).svg), 'Verification ROC'), 'Verification ROC (log FAR axis).') : '';
  return section(
    'verification',
    'Verification and identification',
    roc +
      table(
        ['Run', ...fars.map((f) => `TAR @ FAR ${f}`), ...(top1 ? ['Identification top-1'] : [])],
        v.rows.map((r) => [r.run, ...fars.map((f) => pct(r.tarAtFar[f])), ...(top1 ? [pct(r.top1)] : [])]),
      ),
  );
}
