import { describe, expect, test } from "bun:test";
import { initialUi, update, type KeyContext, type Ui } from "./state.ts";

const ctx: KeyContext = { rows: { leaderboard: ["a", "b", "c"], recent: ["x", "y"] }, codeLines: 100, codeRows: 20 };
const press = (ui: Ui, ...keys: string[]) => keys.reduce((u, k) => update(u, k, ctx).ui, ui);

describe("dashboard keys", () => {
  test("j/k and arrows move within the panel's rows and stop at its ends", () => {
    let ui = press(initialUi(), "j", "down");
    expect(ui.selected.leaderboard).toBe(2);
    ui = press(ui, "j", "j");
    expect(ui.selected.leaderboard).toBe(2);
    ui = press(ui, "k", "up", "up", "k");
    expect(ui.selected.leaderboard).toBe(0);
    expect(press(initialUi(), "G").selected.leaderboard).toBe(2);
  });

  test("Tab, h/l and arrows switch panels; each panel keeps its own selection", () => {
    let ui = press(initialUi(), "j", "tab");
    expect(ui.panel).toBe("recent");
    ui = press(ui, "j", "j");
    expect(ui.selected).toEqual({ leaderboard: 1, recent: 1 });
    expect(press(ui, "h").panel).toBe("leaderboard");
    expect(press(ui, "left").panel).toBe("leaderboard");
    expect(press(ui, "h", "l").panel).toBe("recent");
    expect(press(ui, "h", "right").panel).toBe("recent");
    expect(press(ui, "backtab").panel).toBe("leaderboard");
  });

  test("Enter opens the selected row's submission", () => {
    const r = update(press(initialUi(), "j"), "enter", ctx);
    expect(r.effect).toBe("open");
    expect(r.ui.view).toBe("detail");
    expect(r.ui.detailId).toBe("b");
  });

  test("1–9 select and open that row; a number past the end does nothing", () => {
    const r = update(press(initialUi(), "tab"), "2", ctx);
    expect([r.effect, r.ui.detailId, r.ui.selected.recent]).toEqual(["open", "y", 1]);
    const none = update(initialUi(), "7", ctx);
    expect([none.effect, none.ui.view]).toEqual(["none", "dashboard"]);
  });

  test("Enter on an empty panel does nothing", () => {
    const r = update(initialUi(), "enter", { ...ctx, rows: { leaderboard: [], recent: [] } });
    expect([r.effect, r.ui.view]).toEqual(["none", "dashboard"]);
  });

  test("q and Ctrl-C quit, r refreshes, in either view", () => {
    const detail = update(initialUi(), "enter", ctx).ui;
    for (const ui of [initialUi(), detail]) {
      expect(update(ui, "q", ctx).effect).toBe("quit");
      expect(update(ui, "ctrl-c", ctx).effect).toBe("quit");
      expect(update(ui, "r", ctx).effect).toBe("refresh");
    }
  });
});

describe("detail keys", () => {
  const opened = () => update(initialUi(), "enter", ctx).ui;

  test("j/k scroll the code within its length; paging moves a screen less one line", () => {
    let ui = press(opened(), "j", "j", "down");
    expect(ui.codeScroll).toBe(3);
    ui = press(ui, "pagedown");
    expect(ui.codeScroll).toBe(22);
    ui = press(ui, "G");
    expect(ui.codeScroll).toBe(80); // 100 lines, 20 shown
    ui = press(ui, "j");
    expect(ui.codeScroll).toBe(80);
    ui = press(ui, "pageup", "g", "k");
    expect(ui.codeScroll).toBe(0);
  });

  test("c toggles the code; scrolling is ignored while it is hidden", () => {
    let ui = press(opened(), "c");
    expect(ui.showCode).toBe(false);
    ui = press(ui, "j", "j");
    expect(ui.codeScroll).toBe(0);
    expect(press(ui, "c").showCode).toBe(true);
  });

  test("b and Esc go back to the dashboard with the selection kept and the scroll reset", () => {
    for (const key of ["b", "escape"]) {
      const ui = press(initialUi(), "j", "enter", "j", key);
      expect(ui.view).toBe("dashboard");
      expect(ui.detailId).toBeNull();
      expect(ui.codeScroll).toBe(0);
      expect(ui.selected.leaderboard).toBe(1);
    }
  });
});
