// The leader's TPS over time as a braille step chart. Leadership changes only when a challenger beats
// the leader by the threshold, so the series is a staircase held until the next change (and until now),
// drawn against real time; a dashed line marks the TPS a challenger has to beat today.
import { dim, fit, gray, green, yellow } from "./text.ts";
import { num, shortTime } from "./format.ts";

export interface Point {
  t: number; // ms since epoch
  v: number;
}

export interface ChartInput {
  points: Point[]; // leader changes, any order
  now: number; // the right edge
  target?: number | null; // TPS to beat (leader × (1 + threshold))
  width: number; // columns, labels included
  height: number; // plot rows (each holds four braille dot rows)
}

/** The value range shown: data and target, padded 5% (±10% of the value, or ±1, when flat). */
export function yRange(values: number[]): { lo: number; hi: number } {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return { lo: lo - pad, hi: hi + pad };
  }
  const pad = (hi - lo) * 0.05;
  return { lo: lo - pad, hi: hi + pad };
}

/** Row of pixel `v` on a `rows`-pixel axis, 0 at the top (`hi`), rows − 1 at the bottom (`lo`). */
export const pixelRow = (v: number, lo: number, hi: number, rows: number) =>
  Math.min(rows - 1, Math.max(0, Math.round(((hi - v) / (hi - lo)) * (rows - 1))));

/** The step series sampled at each of `cols` pixel columns spread over [t0, t1]; null before the first point. */
export function sampleSteps(points: Point[], t0: number, t1: number, cols: number): (number | null)[] {
  const sorted = [...points].sort((a, b) => a.t - b.t);
  const out: (number | null)[] = [];
  let k = -1;
  for (let x = 0; x < cols; x++) {
    const t = cols === 1 ? t1 : t0 + ((t1 - t0) * x) / (cols - 1);
    while (k + 1 < sorted.length && sorted[k + 1]!.t <= t) k++;
    out.push(k < 0 ? null : sorted[k]!.v);
  }
  return out;
}

// Braille dot bits by [column within cell][row within cell].
const DOT = [
  [0x01, 0x02, 0x04, 0x40],
  [0x08, 0x10, 0x20, 0x80],
];

/** A pixel canvas of cols×rows cells, 2×4 dots each, with two layers (line, target) for colouring. */
export class BrailleCanvas {
  readonly line: Uint8Array;
  readonly mark: Uint8Array;
  constructor(readonly cols: number, readonly rows: number) {
    this.line = new Uint8Array(cols * rows);
    this.mark = new Uint8Array(cols * rows);
  }
  set(px: number, py: number, layer: "line" | "mark" = "line") {
    if (px < 0 || py < 0 || px >= this.cols * 2 || py >= this.rows * 4) return;
    const i = (py >> 2) * this.cols + (px >> 1);
    (layer === "line" ? this.line : this.mark)[i]! |= DOT[px & 1]![py & 3]!;
  }
  /** Cell text per row: the line in green over the target in dim yellow; blank cells are spaces. */
  render(): string[] {
    const out: string[] = [];
    for (let r = 0; r < this.rows; r++) {
      let s = "";
      for (let c = 0; c < this.cols; c++) {
        const i = r * this.cols + c;
        const l = this.line[i]!;
        const m = this.mark[i]!;
        if (l) s += green(String.fromCharCode(0x2800 | l | m));
        else if (m) s += dim(yellow(String.fromCharCode(0x2800 | m)));
        else s += " ";
      }
      out.push(s);
    }
    return out;
  }
}

/**
 * The chart as `height + 2` lines of exactly `width` columns: plot rows with a y axis (top, middle and
 * bottom values), the x axis, and the first and last times under it.
 */
export function renderChart(input: ChartInput): string[] {
  const { width, height } = input;
  const points = input.points.filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v));
  if (points.length === 0) {
    const blank = Array.from({ length: height + 2 }, () => " ".repeat(width));
    blank[Math.floor((height + 2) / 2)] = fit(gray("no leader yet: nobody has scored"), width, "center");
    return blank;
  }
  const values = points.map((p) => p.v);
  if (input.target && Number.isFinite(input.target)) values.push(input.target);
  const { lo, hi } = yRange(values);
  const decimals = hi - lo < 10 ? 1 : 0;
  const labels = [hi, (hi + lo) / 2, lo].map((v) => num(v, decimals));
  const labelW = Math.max(...labels.map((l) => l.length));
  const plotCols = Math.max(1, width - labelW - 1);
  const canvas = new BrailleCanvas(plotCols, height);
  const px = plotCols * 2;
  const py = height * 4;

  let t0 = Math.min(...points.map((p) => p.t));
  const t1 = Math.max(input.now, ...points.map((p) => p.t));
  if (t1 - t0 < 60_000) t0 = t1 - 3_600_000; // a lone or fresh change still gets a readable span
  if (input.target && Number.isFinite(input.target)) {
    const y = pixelRow(input.target, lo, hi, py);
    for (let x = 0; x < px; x++) if (x % 4 < 2) canvas.set(x, y, "mark");
  }
  let prev: number | null = null;
  sampleSteps(points, t0, t1, px).forEach((v, x) => {
    if (v === null) return;
    const y = pixelRow(v, lo, hi, py);
    // Join the stair's riser so a change reads as a step, not as a gap.
    if (prev !== null && prev !== y) for (let k = Math.min(prev, y); k <= Math.max(prev, y); k++) canvas.set(x, k);
    canvas.set(x, y);
    prev = y;
  });

  const mid = Math.floor((height - 1) / 2);
  const rows = canvas.render().map((row, r) => {
    const label = r === 0 ? labels[0]! : r === height - 1 ? labels[2]! : r === mid ? labels[1]! : "";
    const tick = label ? "┤" : "│";
    return gray(label.padStart(labelW) + tick) + row;
  });
  const axis = gray(" ".repeat(labelW) + "└" + "─".repeat(plotCols));
  const left = shortTime(t0);
  const right = "now";
  const gap = plotCols - left.length - right.length;
  const times = " ".repeat(labelW + 1) + (gap >= 1 ? left + " ".repeat(gap) + right : left);
  return [...rows, axis, fit(gray(times), width)];
}
