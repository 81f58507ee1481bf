// The JSON the explorer's server (experiments/serve.ts) answers and the page (web/explorer.ts) reads.
import type { Box } from '../experiments/data/types.ts';

/** GET /api/study */
export interface StudyListing {
  /** The study folder's name. */
  name: string;
  /** Whether the static report exists (at /study/report.html). */
  report: boolean;
  runs: RunListing[];
}

/** One finished run of the study. */
export interface RunListing {
  name: string;
  /** The run folder relative to the study folder: its files are under /study/<path>/. */
  path: string;
  model: string;
  regime?: string;
  inputSize: number;
  classes: string[];
  transformInput?: boolean;
  filterLayers: string[];
  /** Epochs with saved filter pictures (filters/epoch-XX/<layer>.png). */
  epochs: number[];
}

/** One validation image of a run's split (GET /api/runs/<name>/val); its bytes are at /api/runs/<name>/val/<index>. */
export interface ValListing {
  index: number;
  /** The last two path parts (identity/file), for display. */
  file: string;
  label: number;
  box?: Box;
}
