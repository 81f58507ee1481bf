// `celgrad serve STUDY_DIR`: the study folder and the explorer page (web/) over HTTP, so a reader can explain
// images live with the study's weights on their own GPU. The server only reads files; every computation runs
// in the page. Bound to the loopback interface by default, and, while it is, it answers only requests addressed
// to a loopback name, so a web page that rebinds its own host name to 127.0.0.1 cannot read the study.
import { createReadStream, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { basename, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CelgradError } from '../engine/errors.ts';
import type { RunListing, StudyListing, ValListing } from '../web/api.ts';
import { readSplit, type Split } from './data/split.ts';

export interface ServeOptions {
  /** A study folder (runs/<name>/config.json + best.safetensors) or one run folder (config.json at its top). */
  dir: string;
  /** 0 picks a free port. Default 8080. */
  port?: number;
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
}

interface RunConfig {
  model: string;
  regime?: string;
  inputSize: number;
  classes: string[];
  transformInput?: boolean;
  filterLayers?: string[];
  splitFile?: string;
}

// The server runs bundled at dist/<folder>/<file>.mjs (the CLI or a test), so the repository root is two levels up.
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.jsonl': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.bmp': 'image/bmp',
  '.webp': 'image/webp',
};

const LOOPBACK_HOSTS = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;

function listRuns(dir: string): { runs: RunListing[]; configs: Map<string, RunConfig & { dir: string }> } {
  const folders = existsSync(join(dir, 'config.json'))
    ? [dir]
    : existsSync(join(dir, 'runs'))
      ? readdirSync(join(dir, 'runs')).sort().map((f) => join(dir, 'runs', f))
      : [];
  const runs: RunListing[] = [];
  const configs = new Map<string, RunConfig & { dir: string }>();
  for (const folder of folders) {
    if (!existsSync(join(folder, 'config.json')) || !existsSync(join(folder, 'best.safetensors'))) continue;
    const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as RunConfig;
    const name = basename(folder);
    const filters = join(folder, 'filters');
    const epochs = existsSync(filters)
      ? readdirSync(filters)
          .map((f) => /^epoch-(\d+)$/.exec(f)?.[1])
          .filter((e): e is string => e !== undefined)
          .map(Number)
          .sort((a, b) => a - b)
      : [];
    configs.set(name, { ...config, dir: folder });
    runs.push({
      name,
      path: relative(dir, folder).split(sep).join('/') || '.',
      model: config.model,
      regime: config.regime,
      inputSize: config.inputSize,
      classes: config.classes,
      transformInput: config.transformInput,
      filterLayers: config.filterLayers ?? [],
      epochs,
    });
  }
  return { runs, configs };
}

/** Serves `dir` and the explorer until the returned server is closed. Rebuilds the page bundle first (under a second). */
export async function serveStudy({ dir, port = 8080, host = '127.0.0.1' }: ServeOptions): Promise<Server> {
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new CelgradError(`${dir} is not a folder: pass a study folder (celgrad study --out) or a run folder`);
  if (!listRuns(root).runs.length) {
    throw new CelgradError(`${dir} holds no finished run: expected runs/<name>/config.json and best.safetensors (a study folder) or config.json and best.safetensors (a run folder)`);
  }
  // Loaded from the repository at run time, not bundled into the CLI: the script finds its paths from its own location.
  const { buildWeb } = (await import(pathToFileURL(join(ROOT, 'scripts/build-web.mjs')).href)) as typeof import('../scripts/build-web.mjs');
  const web = await buildWeb({ quiet: true });
  const loopbackOnly = LOOPBACK_HOSTS.test(host) || host === '::1';
  const splits = new Map<string, Split>();

  /** The run's split manifest: its config's splitFile, else split.json in the run or the study folder. */
  function splitOf(config: RunConfig & { dir: string }, name: string): Split | undefined {
    if (!splits.has(name)) {
      const file = [config.splitFile, join(config.dir, 'split.json'), join(root, 'split.json')].find((f) => f && existsSync(f));
      // Not remembered while missing: a study that is still running writes it later.
      if (file) splits.set(name, readSplit(file));
    }
    return splits.get(name);
  }

  function sendFile(req: IncomingMessage, res: ServerResponse, file: string): void {
    if (!existsSync(file) || !statSync(file).isFile()) return sendText(res, 404, `not found: ${req.url}`);
    res.writeHead(200, {
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      // A study can still be training: always read the files afresh.
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).on('error', () => res.destroy()).pipe(res);
  }

  function sendJson(res: ServerResponse, value: unknown): void {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(value));
  }

  function sendText(res: ServerResponse, status: number, text: string): void {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(text);
  }

  /** `base` joined with a URL path, or null when the path leaves `base`. */
  function inside(base: string, urlPath: string): string | null {
    const file = resolve(base, `.${urlPath}`);
    return file === base || file.startsWith(base + sep) ? file : null;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendText(res, 405, 'only GET and HEAD');
    if (loopbackOnly && !LOOPBACK_HOSTS.test(req.headers.host ?? '')) return sendText(res, 403, 'this server answers requests to localhost only');
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      return sendText(res, 400, 'malformed URL');
    }
    if (path.includes('\0')) return sendText(res, 400, 'malformed URL');
    if (path === '/') return sendFile(req, res, join(web, 'explorer.html'));
    if (path === '/api/study') {
      const study: StudyListing = { name: basename(root), report: existsSync(join(root, 'report.html')), runs: listRuns(root).runs };
      return sendJson(res, study);
    }
    const api = /^\/api\/runs\/([^/]+)\/val(?:\/(\d+))?$/.exec(path);
    if (api) {
      const config = listRuns(root).configs.get(api[1]);
      if (!config) return sendText(res, 404, `no run '${api[1]}'`);
      const split = splitOf(config, api[1]);
      const val = split?.val ?? [];
      if (api[2] === undefined) {
        const listing: ValListing[] = val.map((s, index) => ({ index, file: s.path.split(/[\\/]/).slice(-2).join('/'), label: s.label, box: s.box }));
        return sendJson(res, listing);
      }
      const sample = val[Number(api[2])];
      if (!sample) return sendText(res, 404, `no validation image ${api[2]} in run '${api[1]}'`);
      if (!existsSync(sample.path)) return sendText(res, 404, `validation image ${sample.path} is missing (was the dataset moved?)`);
      return sendFile(req, res, sample.path);
    }
    if (path.startsWith('/study/')) {
      const file = inside(root, path.slice('/study'.length));
      return file ? sendFile(req, res, file) : sendText(res, 403, 'outside the study folder');
    }
    const asset = inside(web, path);
    return asset ? sendFile(req, res, asset) : sendText(res, 404, `not found: ${path}`);
  }

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      sendText(res, 500, (e as Error).message);
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(e.code === 'EADDRINUSE' ? new CelgradError(`port ${port} on ${host} is in use: pass another --port (0 picks a free one)`) : e),
    );
    server.listen(port, host, () => ok());
  });
  return server;
}
