// What the person is looking at, and how keys change it. Pure: the entry point performs the effect
// (quit, fetch) that a key asks for.
import type { Key } from "./keys.ts";

export type Panel = "leaderboard" | "recent";

export interface Ui {
  view: "dashboard" | "detail";
  panel: Panel;
  selected: Record<Panel, number>;
  detailId: string | null;
  showCode: boolean;
  codeScroll: number; // first code line shown
}

export type Effect = "none" | "quit" | "refresh" | "open";

export interface KeyContext {
  rows: Record<Panel, string[]>; // submission ids of each panel's rows, in display order
  codeLines: number; // lines of the code shown in the detail view (0 when none)
  codeRows: number; // how many of them fit on screen
}

export const initialUi = (): Ui => ({ view: "dashboard", panel: "leaderboard", selected: { leaderboard: 0, recent: 0 }, detailId: null, showCode: true, codeScroll: 0 });

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

export function update(ui: Ui, key: Key, ctx: KeyContext): { ui: Ui; effect: Effect } {
  if (key === "q" || key === "ctrl-c") return { ui, effect: "quit" };
  if (key === "r") return { ui, effect: "refresh" };
  return ui.view === "dashboard" ? dashboardKey(ui, key, ctx) : detailKey(ui, key, ctx);
}

function dashboardKey(ui: Ui, key: Key, ctx: KeyContext): { ui: Ui; effect: Effect } {
  const rows = ctx.rows[ui.panel];
  const select = (i: number): Ui => ({ ...ui, selected: { ...ui.selected, [ui.panel]: clamp(i, 0, Math.max(0, rows.length - 1)) } });
  const open = (i: number) => {
    const id = rows[i];
    if (id === undefined) return { ui, effect: "none" as const };
    return { ui: { ...select(i), view: "detail" as const, detailId: id, codeScroll: 0 }, effect: "open" as const };
  };
  const cur = clamp(ui.selected[ui.panel], 0, Math.max(0, rows.length - 1));
  switch (key) {
    case "tab":
    case "backtab":
      return { ui: { ...ui, panel: ui.panel === "leaderboard" ? "recent" : "leaderboard" }, effect: "none" };
    case "h":
    case "left":
      return { ui: { ...ui, panel: "leaderboard" }, effect: "none" };
    case "l":
    case "right":
      return { ui: { ...ui, panel: "recent" }, effect: "none" };
    case "j":
    case "down":
      return { ui: select(cur + 1), effect: "none" };
    case "k":
    case "up":
      return { ui: select(cur - 1), effect: "none" };
    case "g":
    case "home":
      return { ui: select(0), effect: "none" };
    case "G":
    case "end":
      return { ui: select(rows.length - 1), effect: "none" };
    case "enter":
      return open(cur);
  }
  if (/^[1-9]$/.test(key)) return open(Number(key) - 1);
  return { ui, effect: "none" };
}

function detailKey(ui: Ui, key: Key, ctx: KeyContext): { ui: Ui; effect: Effect } {
  const maxScroll = Math.max(0, ctx.codeLines - ctx.codeRows);
  const scroll = (to: number): { ui: Ui; effect: Effect } => ({ ui: { ...ui, codeScroll: clamp(to, 0, maxScroll) }, effect: "none" });
  const page = Math.max(1, ctx.codeRows - 1);
  switch (key) {
    case "b":
    case "escape":
    case "backspace":
      return { ui: { ...ui, view: "dashboard", detailId: null, codeScroll: 0 }, effect: "none" };
    case "c":
      return { ui: { ...ui, showCode: !ui.showCode }, effect: "none" };
  }
  if (!ui.showCode) return { ui, effect: "none" };
  switch (key) {
    case "j":
    case "down":
      return scroll(ui.codeScroll + 1);
    case "k":
    case "up":
      return scroll(ui.codeScroll - 1);
    case "space":
    case "pagedown":
      return scroll(ui.codeScroll + page);
    case "pageup":
      return scroll(ui.codeScroll - page);
    case "g":
    case "home":
      return scroll(0);
    case "G":
    case "end":
      return scroll(maxScroll);
  }
  return { ui, effect: "none" };
}
