// A small anti-aliased rasteriser for the synthetic faces. Shapes are signed distance functions (negative
// inside) in their own local units; an affine map places them on the canvas. Coverage of a pixel is
// clamp(0.5 - distance in pixels), which gives one-pixel-wide anti-aliased edges without supersampling.

export type Rgb = readonly [number, number, number];

/** Local -> pixel map: px = a*x + c*y + e, py = b*x + d*y + f. */
export interface Affine {
  a: number;
  b: number;
  c: number;
  d: number;
  e: number;
  f: number;
}

/** Scale x by `squashX` (a yaw-like foreshortening), rotate by `rotation` radians, scale by `scale`, move to (tx, ty). */
export function placement(tx: number, ty: number, scale: number, rotation = 0, squashX = 1): Affine {
  const cos = Math.cos(rotation) * scale;
  const sin = Math.sin(rotation) * scale;
  return { a: cos * squashX, b: sin * squashX, c: -sin, d: cos, e: tx, f: ty };
}

/** The map that applies `inner` first, then `outer`. */
export function compose(outer: Affine, inner: Affine): Affine {
  return {
    a: outer.a * inner.a + outer.c * inner.b,
    b: outer.b * inner.a + outer.d * inner.b,
    c: outer.a * inner.c + outer.c * inner.d,
    d: outer.b * inner.c + outer.d * inner.d,
    e: outer.a * inner.e + outer.c * inner.f + outer.e,
    f: outer.b * inner.e + outer.d * inner.f + outer.f,
  };
}

export interface Shape {
  /** Local-space bounding box [x0, y0, x1, y1]; pixels outside it are never visited. */
  bounds: readonly [number, number, number, number];
  sdf(x: number, y: number): number;
}

export function ellipse(cx: number, cy: number, rx: number, ry: number, angle = 0): Shape {
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const r = Math.max(rx, ry);
  return {
    bounds: [cx - r, cy - r, cx + r, cy + r],
    sdf(x, y) {
      const u = ((x - cx) * cos + (y - cy) * sin) / rx;
      const v = (-(x - cx) * sin + (y - cy) * cos) / ry;
      const k0 = Math.hypot(u, v);
      const k1 = Math.hypot(u / rx, v / ry);
      // First-order distance estimate k0 (k0 - 1) / k1; exact on the boundary, which is all anti-aliasing needs.
      return k1 === 0 ? -Math.min(rx, ry) : (k0 * (k0 - 1)) / k1;
    },
  };
}

function boundsOf(points: readonly number[], pad: number): [number, number, number, number] {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < points.length; i += 2) {
    x0 = Math.min(x0, points[i]);
    x1 = Math.max(x1, points[i]);
    y0 = Math.min(y0, points[i + 1]);
    y1 = Math.max(y1, points[i + 1]);
  }
  return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
}

/** Closed polygon from flat [x0, y0, x1, y1, ...]; any winding, self-intersections fill by the even-odd rule. */
export function polygon(points: readonly number[]): Shape {
  const n = points.length / 2;
  return {
    bounds: boundsOf(points, 0),
    sdf(x, y) {
      let best = Infinity;
      let inside = false;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const xi = points[2 * i];
        const yi = points[2 * i + 1];
        const ex = points[2 * j] - xi;
        const ey = points[2 * j + 1] - yi;
        const wx = x - xi;
        const wy = y - yi;
        const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey || 1)));
        const bx = wx - ex * t;
        const by = wy - ey * t;
        best = Math.min(best, bx * bx + by * by);
        // Crossing test for the inside/outside sign.
        if (yi > y !== points[2 * j + 1] > y && x < xi + (ex * (y - yi)) / ey) inside = !inside;
      }
      return inside ? -Math.sqrt(best) : Math.sqrt(best);
    },
  };
}

/** A line of the given width along a polyline (flat [x0, y0, ...]), with round ends. */
export function stroke(points: readonly number[], width: number, closed = false): Shape {
  const half = width / 2;
  const count = points.length / 2;
  return {
    bounds: boundsOf(points, half),
    sdf(x, y) {
      let best = Infinity;
      const segments = closed ? count : count - 1;
      for (let s = 0; s < segments; s++) {
        const i = 2 * s;
        const j = 2 * ((s + 1) % count);
        const ex = points[j] - points[i];
        const ey = points[j + 1] - points[i + 1];
        const wx = x - points[i];
        const wy = y - points[i + 1];
        const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey || 1)));
        best = Math.min(best, (wx - ex * t) ** 2 + (wy - ey * t) ** 2);
      }
      return Math.sqrt(best) - half;
    },
  };
}

/** Points along a quadratic Bezier curve from (x0, y0) to (x1, y1) with control point (cx, cy). */
export function curve(x0: number, y0: number, cx: number, cy: number, x1: number, y1: number, segments = 10): number[] {
  const out: number[] = [];
  for (let k = 0; k <= segments; k++) {
    const t = k / segments;
    const u = 1 - t;
    out.push(u * u * x0 + 2 * u * t * cx + t * t * x1, u * u * y0 + 2 * u * t * cy + t * t * y1);
  }
  return out;
}

/** Points of a closed outline r(theta) around (cx, cy), theta from 0 (pointing +x) clockwise on screen (y down). */
export function outline(cx: number, cy: number, segments: number, at: (theta: number) => readonly [number, number]): number[] {
  const out: number[] = [];
  for (let k = 0; k < segments; k++) {
    const [x, y] = at((2 * Math.PI * k) / segments);
    out.push(cx + x, cy + y);
  }
  return out;
}

/** An RGB image of floats in [0, 1], row-major, 3 values per pixel. */
export class Canvas {
  readonly rgb: Float32Array;

  constructor(readonly size: number) {
    this.rgb = new Float32Array(size * size * 3);
  }

  /** Linear gradient from colour `from` to `to` along direction `angle`, across the whole canvas. */
  gradient(from: Rgb, to: Rgb, angle: number): void {
    const dx = Math.cos(angle);
    const dy = Math.sin(angle);
    const half = this.size / 2;
    for (let y = 0; y < this.size; y++) {
      for (let x = 0; x < this.size; x++) {
        const t = Math.min(1, Math.max(0, 0.5 + ((x + 0.5 - half) * dx + (y + 0.5 - half) * dy) / (2 * half)));
        const o = (y * this.size + x) * 3;
        for (let ch = 0; ch < 3; ch++) this.rgb[o + ch] = from[ch] + (to[ch] - from[ch]) * t;
      }
    }
  }

  /** Paints `shape` (placed by `m`) in `colour`, blending with what is there by coverage x opacity. */
  fill(shape: Shape, colour: Rgb, m: Affine, opacity = 1): void {
    const det = m.a * m.d - m.b * m.c;
    if (det === 0) return;
    const pixelsPerUnit = Math.sqrt(Math.abs(det));
    // Inverse map, pixel -> local.
    const ia = m.d / det;
    const ib = -m.b / det;
    const ic = -m.c / det;
    const id = m.a / det;
    const [x0, y0, x1, y1] = shape.bounds;
    let px0 = Infinity;
    let py0 = Infinity;
    let px1 = -Infinity;
    let py1 = -Infinity;
    for (const [lx, ly] of [
      [x0, y0],
      [x1, y0],
      [x0, y1],
      [x1, y1],
    ]) {
      const px = m.a * lx + m.c * ly + m.e;
      const py = m.b * lx + m.d * ly + m.f;
      px0 = Math.min(px0, px);
      px1 = Math.max(px1, px);
      py0 = Math.min(py0, py);
      py1 = Math.max(py1, py);
    }
    const xs = Math.max(0, Math.floor(px0 - 1));
    const xe = Math.min(this.size - 1, Math.ceil(px1 + 1));
    const ys = Math.max(0, Math.floor(py0 - 1));
    const ye = Math.min(this.size - 1, Math.ceil(py1 + 1));
    for (let py = ys; py <= ye; py++) {
      const cy = py + 0.5 - m.f;
      for (let px = xs; px <= xe; px++) {
        const cx = px + 0.5 - m.e;
        const distance = shape.sdf(ia * cx + ic * cy, ib * cx + id * cy) * pixelsPerUnit;
        const alpha = Math.min(1, Math.max(0, 0.5 - distance)) * opacity;
        if (alpha <= 0) continue;
        const o = (py * this.size + px) * 3;
        for (let ch = 0; ch < 3; ch++) this.rgb[o + ch] += (colour[ch] - this.rgb[o + ch]) * alpha;
      }
    }
  }

  /** 8-bit RGB bytes, clamped and rounded. */
  toRgb8(): Buffer {
    const out = Buffer.alloc(this.rgb.length);
    for (let i = 0; i < this.rgb.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, this.rgb[i])) * 255);
    return out;
  }
}
