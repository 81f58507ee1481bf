// Progress display: a redrawn bar on a terminal, plain lines (every few seconds) when output is a log.
export class Progress {
  private lastLine = 0;
  private readonly tty = Boolean(process.stdout.isTTY);
  private drawn = false;
  private started = performance.now();
  private label = '';

  constructor(private readonly quiet: boolean) {}

  update(label: string, step: number, steps: number, stats: { loss?: number; imagesPerSec?: number } = {}): void {
    if (this.quiet) return;
    const now = performance.now();
    if (label !== this.label) {
      this.label = label;
      this.started = now - 1;
    }
    const perStep = (now - this.started) / Math.max(1, step);
    const eta = formatSeconds(((steps - step) * perStep) / 1000);
    const parts = [`${label}`, `step ${step}/${steps}`];
    if (stats.loss !== undefined) parts.push(`loss ${stats.loss.toFixed(4)}`);
    if (stats.imagesPerSec !== undefined) parts.push(`${stats.imagesPerSec.toFixed(1)} img/s`);
    parts.push(`ETA ${eta}`);
    if (this.tty) {
      const width = 24;
      const filled = Math.round((step / Math.max(1, steps)) * width);
      process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${parts.join('  ')}\x1b[K`);
      this.drawn = true;
    } else if (now - this.lastLine > 5000 || step === steps) {
      console.log(parts.join('  '));
      this.lastLine = now;
    }
  }

  done(): void {
    if (this.drawn) process.stdout.write('\n');
    this.drawn = false;
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}
