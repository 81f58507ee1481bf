// Shapes shared by the data modules.

/** A pixel rectangle; x2 and y2 are exclusive (PIL's crop box convention, as in the iCartoonFace tools). */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** One labelled image. `box`, when present, is the face to crop before any other transform. */
export interface Sample {
  path: string;
  label: number;
  box?: Box;
}

/** A file or folder that was skipped, and why. Collected, never thrown, so one bad file cannot stop a run. */
export interface Problem {
  path: string;
  reason: string;
}
