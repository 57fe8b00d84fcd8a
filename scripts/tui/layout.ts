// Building blocks of a frame: boxes, tables whose columns give way as the terminal narrows, and side by
// side placement. Every function returns lines of exactly the width it was given.
import { fit, gray, inverse, middle, stripAnsi, width as textWidth } from "./text.ts";

export type Paint = (s: string) => string;

export interface BoxOptions {
  title: string;
  right?: string; // text set into the top border's right end
  lines: string[];
  width: number;
  height: number; // borders included
  border?: Paint;
}

/** A rounded box, `height` lines of `width` columns; extra content lines are cut, missing ones blank. */
export function box(o: BoxOptions): string[] {
  const paint = o.border ?? gray;
  const inner = Math.max(0, o.width - 2);
  const title = o.title ? ` ${o.title} ` : "";
  const right = o.right ? ` ${o.right} ` : "";
  const titleW = Math.min(textWidth(title), Math.max(0, inner - 1));
  const rightW = textWidth(right) <= inner - 1 - titleW - 1 ? textWidth(right) : 0;
  const top =
    paint("╭─") + fit(title, titleW) + paint("─".repeat(Math.max(0, inner - 1 - titleW - rightW))) + (rightW ? right : "") + paint("╮");
  const body: string[] = [];
  for (let i = 0; i < Math.max(0, o.height - 2); i++) body.push(paint("│") + fit(o.lines[i] ?? "", inner) + paint("│"));
  const bottom = paint("╰" + "─".repeat(inner) + "╯");
  if (o.height <= 1) return [top].slice(0, o.height);
  return [top, ...body, bottom];
}

export interface Column {
  title: string;
  width?: number; // fixed width
  min?: number; // minimum width of a flexible column
  flex?: number; // share of the spare width
  align?: "left" | "right";
  drop?: number; // columns with a higher number are dropped first when the table does not fit
  middle?: boolean; // shorten in the middle (identifiers), not at the end
}

/** Widths for `columns` in `total` columns with one space between; a dropped column gets width 0. */
export function columnWidths(columns: Column[], total: number): number[] {
  const kept = columns.map(() => true);
  const need = () => columns.reduce((s, c, i) => s + (kept[i] ? (c.width ?? c.min ?? 1) + 1 : 0), 0) - 1;
  while (need() > total) {
    let worst = -1;
    columns.forEach((c, i) => {
      if (kept[i] && c.drop !== undefined && (worst < 0 || c.drop > columns[worst]!.drop!)) worst = i;
    });
    if (worst < 0) break;
    kept[worst] = false;
  }
  const widths = columns.map((c, i) => (kept[i] ? (c.width ?? c.min ?? 1) : 0));
  let spare = total - need();
  const flex = columns.map((c, i) => (kept[i] ? (c.flex ?? 0) : 0));
  const flexSum = flex.reduce((a, b) => a + b, 0);
  if (spare > 0 && flexSum > 0) {
    let given = 0;
    flex.forEach((f, i) => {
      const add = Math.floor((spare * f) / flexSum);
      widths[i]! += add;
      given += add;
    });
    const last = flex.findLastIndex((f) => f > 0);
    widths[last]! += spare - given;
  }
  return widths;
}

export interface TableOptions {
  columns: Column[];
  rows: string[][]; // cells, possibly styled
  width: number;
  height: number; // lines for header + rows
  selected?: number | null; // row index shown in reverse video
  empty?: string; // shown when there are no rows
}

/** Header and the window of rows that keeps `selected` in view, each line `width` wide. */
export function table(o: TableOptions): { lines: string[]; offset: number } {
  const widths = columnWidths(o.columns, o.width);
  const line = (cells: string[]) =>
    o.columns
      .map((c, i) => {
        const w = widths[i]!;
        if (!w) return null;
        const cell = cells[i] ?? "";
        return fit(c.middle && textWidth(cell) > w ? middle(stripAnsi(cell), w) : cell, w, c.align ?? "left");
      })
      .filter((s): s is string => s !== null)
      .join(" ");
  const header = gray(fit(line(o.columns.map((c) => c.title)), o.width));
  const visible = Math.max(0, o.height - 1);
  if (o.rows.length === 0) return { lines: [header, fit(gray(o.empty ?? ""), o.width)], offset: 0 };
  const sel = o.selected === undefined || o.selected === null ? null : Math.max(0, Math.min(o.selected, o.rows.length - 1));
  const offset = sel === null ? 0 : Math.max(0, Math.min(sel - visible + 1, o.rows.length - visible));
  const lines = [header];
  for (let r = offset; r < Math.min(o.rows.length, offset + visible); r++) {
    const text = fit(line(o.rows[r]!), o.width);
    // The selection is plain text in reverse video: nested colours would end the reverse early.
    lines.push(r === sel ? inverse(stripAnsi(text)) : text);
  }
  return { lines, offset };
}

/** Blocks side by side; each block's lines must already be its width, and shorter blocks are padded. */
export function beside(blocks: { lines: string[]; width: number }[]): string[] {
  const height = Math.max(0, ...blocks.map((b) => b.lines.length));
  return Array.from({ length: height }, (_, i) => blocks.map((b) => b.lines[i] ?? " ".repeat(b.width)).join(""));
}
