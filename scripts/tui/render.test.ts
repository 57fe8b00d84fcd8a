import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../../api/app.ts";
import { seedEmpty, seedScenario, THRESHOLD, type Scenario } from "../../tests/fixtures/seed-db.ts";
import { createClient, type DashboardData, type DetailData } from "./client.ts";
import { render, type Model } from "./render.ts";
import { initialUi, type Ui } from "./state.ts";
import { stripAnsi, width } from "./text.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-tui-render-"));
let sc: Scenario;
let apps: App[] = [];
let dash: DashboardData;
let emptyDash: DashboardData;
let runnerUp: DetailData;
let evaluating: DetailData;

async function serve(db: string, now: number) {
  const app = (await createApp({ dbPath: db, hparams: { leader_threshold: THRESHOLD }, now: () => now })).listen({ port: 0, hostname: "127.0.0.1" });
  apps.push(app);
  return createClient({ url: `http://127.0.0.1:${app.server!.port}` });
}

beforeAll(async () => {
  sc = await seedScenario(join(dir, "s.db"));
  const client = await serve(join(dir, "s.db"), sc.now);
  dash = await client.dashboard();
  runnerUp = await client.detail(sc.ids.runnerUp);
  evaluating = await client.detail(sc.ids.evaluating);
  await seedEmpty(join(dir, "e.db"));
  emptyDash = await (await serve(join(dir, "e.db"), sc.now)).dashboard();
});
afterAll(async () => {
  for (const a of apps) await a.stop();
  rmSync(dir, { recursive: true, force: true });
});

const model = (over: Partial<Model> = {}, ui: Partial<Ui> = {}): Model => ({
  url: "http://127.0.0.1:8080",
  ui: { ...initialUi(), ...ui },
  now: sc.now,
  serverOffset: 0,
  refreshSeconds: 30,
  nextRefreshAt: sc.now + 12_000,
  conn: { state: "ok", at: sc.now },
  dash,
  detail: null,
  detailError: null,
  ...over,
});

const text = (lines: string[]) => lines.map(stripAnsi).join("\n");

/** Every frame fills the terminal exactly: `rows` lines of `cols` columns, nothing more. */
function expectFills(lines: string[], cols: number, rows: number) {
  expect(lines).toHaveLength(rows);
  lines.forEach((l, i) => expect({ line: i, width: width(l) }).toEqual({ line: i, width: cols }));
}

/** Only SGR colour sequences reach the terminal from the renderer: nothing that moves, clears or retitles. */
function expectOnlySgr(lines: string[]) {
  for (const l of lines) expect(l.replace(/\x1b\[[0-9;]*m/g, "")).not.toContain("\x1b");
}

describe("dashboard", () => {
  test("fills 80×24, 160×48 and 220×60 exactly", () => {
    for (const [c, r] of [
      [80, 24],
      [160, 48],
      [220, 60],
      [60, 16],
    ] as const) {
      const f = render(model(), c, r);
      expectFills(f.lines, c, r);
      expectOnlySgr(f.lines);
    }
  });

  test("160×48 shows the cards, status line, chart and both panels with full hotkeys", () => {
    const t = text(render(model(), 160, 48).lines);
    const leader = dash.overview.leader!;
    expect(t).toContain("Top TPS");
    expect(t).toContain(`${Math.round(leader.tps).toLocaleString("en-US")}.0`);
    expect(t).toContain(leader.hotkey); // the leaderboard has room for the whole hotkey
    expect(t).toContain("EVALUATING");
    expect(t).toContain("Leader TPS");
    expect(t).toContain("to beat");
    expect(t).toContain("Leaderboard");
    expect(t).toContain("Recent activity");
    expect(t).toContain("fetch_failed"); // a failed submission's error code in the recent panel
    expect(t).toContain("10h ago"); // times relative to the server's clock
    expect(t).toMatch(/[\u2801-\u28ff]/); // the braille chart
  });

  test("the device pool: slots busy, idle and out (with why), in the status line and a line of their own", () => {
    const run = { submission_id: sc.ids.evaluating, run_index: 2, started_at: null };
    const slots = [
      { id: "gpu:0", host: null, devices: "GPU 0", state: "busy" as const, run, failures: 0, reason: null, runs: 4 },
      { id: "gpu:1", host: null, devices: "GPU 1", state: "idle" as const, run: null, failures: 1, reason: null, runs: 5 },
      { id: "gpu:2", host: null, devices: "GPU 2", state: "out" as const, run: null, failures: 3, reason: "3 runs in a row failed on the validator's side", runs: 3 },
    ];
    const withSlots = { ...dash, status: { ...dash.status, slots } };
    for (const [c, r] of [[160, 48], [80, 24]] as const) expectFills(render(model({ dash: withSlots }), c, r).lines, c, r);
    const t = text(render(model({ dash: withSlots }), 160, 48).lines);
    expect(t).toContain("slots 1/2 busy 1 out");
    expect(t).toContain("gpu:0 run 3 of");
    expect(t).toContain("gpu:1 idle 1 failing");
    expect(t).toContain("gpu:2 OUT: 3 runs in a row failed");
    expect(text(render(model(), 160, 48).lines)).not.toContain("slots ");
  });

  test("80×24 shortens hotkeys in the middle and still shows TPS and both panels", () => {
    const t = text(render(model(), 80, 24).lines);
    const hk = dash.leaderboard.items[0]!.hotkey;
    expect(t).not.toContain(hk);
    expect(t).toMatch(new RegExp(`${hk.slice(0, 4)}\\S*…\\S*${hk.slice(-4)}`));
    expect(t).toContain("1,495.0");
    expect(t).toContain("Recent activity");
  });

  test("80×24 keeps the owner columns in recent activity: a gists miner (no UID) finds its entry by hotkey", () => {
    const lines = render(model(), 80, 24).lines.map(stripAnsi);
    const top = lines.findIndex((l) => l.includes("Recent activity"));
    const left = lines[top]!.indexOf("╭", 1); // the recent panel's box starts where the leaderboard's ends
    const panel = lines.slice(top + 1, top + 6).map((l) => l.slice(left));
    expect(panel[0]).toContain("UID");
    expect(panel[0]).toContain("Hotkey");
    dash.recent.items.slice(0, 4).forEach((s, i) => {
      expect(panel[i + 1]).toContain(s.hotkey.slice(0, 3));
      expect(panel[i + 1]).toContain(s.hotkey.slice(-3));
    });
  });

  test("the selected row of the active panel is in reverse video, the other panel's is not", () => {
    const lines = render(model({}, { selected: { leaderboard: 1, recent: 2 } }), 160, 48).lines;
    const reversed = lines.filter((l) => l.includes("\x1b[7m"));
    expect(reversed).toHaveLength(1);
    expect(stripAnsi(reversed[0]!)).toContain(dash.leaderboard.items[1]!.hotkey);
    const recent = render(model({}, { panel: "recent", selected: { leaderboard: 1, recent: 2 } }), 160, 48).lines.filter((l) => l.includes("\x1b[7m"));
    expect(recent).toHaveLength(1);
    expect(stripAnsi(recent[0]!)).toContain(dash.recent.items[2]!.outcome);
  });

  test("the selection scrolls a long list so the selected row stays visible", () => {
    const many = structuredClone(dash);
    many.leaderboard.items = Array.from({ length: 40 }, (_, i) => ({ ...dash.leaderboard.items[0]!, rank: i + 1, hotkey: `hk-${String(i + 1).padStart(2, "0")}` }));
    const t = text(render(model({ dash: many }, { selected: { leaderboard: 35, recent: 0 } }), 80, 24).lines);
    expect(t).toContain("hk-36");
    expect(t).not.toContain("hk-01");
  });

  test("an empty store says so instead of showing zeros as if they were data", () => {
    const t = text(render(model({ dash: emptyDash }), 160, 48).lines);
    expect(t).toContain("no leader yet");
    expect(t).toContain("no scored submissions yet");
    expect(t).toContain("no submissions yet");
  });
});

describe("connection problems", () => {
  test("unreachable with no data yet: the reason and the countdown, and dashes, not zeros", () => {
    const m = model({
      dash: null,
      conn: { state: "error", kind: "unreachable", message: "API unreachable at http://127.0.0.1:9: connection refused", retryAt: sc.now + 3_000, lastOk: null },
    });
    const f = render(m, 80, 24);
    expectFills(f.lines, 80, 24);
    const t = text(f.lines);
    expect(t).toContain("API unreachable at http://127.0.0.1:9: connection refused, retrying in 3s");
    expect(t).toContain("no data");
    expect(t).not.toMatch(/│ 0 /); // no card shows a zero
    expect(t).not.toContain("refresh in"); // no promise of a refresh while failing
  });

  test("unreachable after data arrived: the last data stays, marked with its time", () => {
    const m = model({ conn: { state: "error", kind: "unreachable", message: "API unreachable at X: connection reset", retryAt: sc.now + 8_000, lastOk: sc.now - 60_000 } });
    const t = text(render(m, 160, 48).lines);
    expect(t).toContain("retrying in 8s");
    expect(t).toContain("showing data from");
    expect(t).toContain("1,495.0");
  });

  test("a refused API key is shown as such", () => {
    const m = model({ dash: null, conn: { state: "error", kind: "unauthorized", message: "API key rejected by http://h (401): check --api-key or CRUSADES_API_KEY", retryAt: sc.now + 1_000, lastOk: null } });
    expect(text(render(m, 80, 24).lines)).toContain("API key rejected by http://h (401)");
  });

  test("connecting: a line that says so", () => {
    expect(text(render(model({ dash: null, conn: { state: "connecting" } }), 80, 24).lines)).toContain("connecting to http://127.0.0.1:8080");
  });
});

describe("detail", () => {
  const open = (detail: DetailData | null, ui: Partial<Ui> = {}, over: Partial<Model> = {}) =>
    model({ detail, ...over }, { view: "detail", detailId: detail?.submission.id ?? "x", ...ui });

  test("shows the submission, each run's TPS and the highlighted code", () => {
    for (const [c, r] of [
      [80, 24],
      [160, 48],
    ] as const) {
      const f = render(open(runnerUp), c, r);
      expectFills(f.lines, c, r);
      const t = text(f.lines);
      expect(t).toContain("Runs");
      expect(t).toContain("1,510.0"); // the fastest run
      expect(t).toContain("train.py");
      expect(f.codeRows).toBeGreaterThan(0);
    }
    const f = render(open(runnerUp), 160, 48);
    const t = text(f.lines);
    expect(t).toContain("def inner_steps(model, data_iterator, optimizer, num_steps, device):");
    expect(t).toContain("#2"); // its rank
    expect(f.lines.join("")).toContain("\x1b[35mdef"); // keywords coloured
  });

  test("c hides the code and gives the room to the runs", () => {
    const f = render(open(runnerUp, { showCode: false }), 160, 48);
    expectFills(f.lines, 160, 48);
    expect(text(f.lines)).not.toContain("def inner_steps");
    expect(f.codeRows).toBe(0);
  });

  test("scrolling moves the code window and the title says where it is", () => {
    const f = render(open(runnerUp, { codeScroll: 5 }), 80, 24);
    const t = text(f.lines);
    expect(t).toMatch(/lines 6–\d+ of 14/);
    expect(t).not.toContain("# runner-up"); // line 1 scrolled away
  });

  test("a failed run shows its error code; code not yet evaluated shows why it is hidden", () => {
    const t = text(render(open(evaluating), 160, 48).lines);
    expect(t).toContain("running");
    expect(t).toContain("pending");
    expect(t).toContain("once evaluation has finished");
    expect(t).toContain("hidden until evaluation finishes");
  });

  test("a gists submission shows its revision time, not a unix time as a block", () => {
    const gist = structuredClone(runnerUp);
    gist.submission.source = "gists";
    gist.submission.uid = null;
    gist.submission.reveal_block = Date.UTC(2025, 4, 31, 9, 30) / 1000;
    const t = text(render(open(gist), 160, 48).lines);
    expect(t).toContain("revision 05-31 09:30");
    expect(t).not.toContain(String(gist.submission.reveal_block));
    expect(text(render(open(runnerUp), 160, 48).lines)).toContain(`block ${runnerUp.submission.reveal_block}`);
  });

  test("loading and not-found states", () => {
    expect(text(render(open(null, { detailId: "chain:1:x" }), 80, 24).lines)).toContain("loading chain:1:x");
    const nf = open(null, { detailId: "chain:1:x" }, { detailError: "no submission chain:1:x on this API" });
    expect(text(render(nf, 80, 24).lines)).toContain("no submission chain:1:x on this API");
  });

  test("hostile and wide text is cut to the frame and cannot drive the terminal", () => {
    const evil = structuredClone(runnerUp);
    evil.submission.hotkey = "鍵".repeat(60);
    evil.submission.error_code = "crash";
    evil.submission.error_message = "错误：\x1b]0;pwned\x07\x1b[2J" + "長".repeat(100);
    evil.runs.items[0]!.error_message = "\x1b[31mred?\u202etxt.exe";
    evil.code = { ...evil.code!, code: "x = '\x1b[2J\x1b[H'\t# tab\n" + "y = '日本語'".repeat(30) + "\n" };
    for (const [c, r] of [
      [80, 24],
      [160, 48],
    ] as const) {
      const f = render(open(evil), c, r);
      expectFills(f.lines, c, r);
      expectOnlySgr(f.lines);
      expect(f.lines.join("")).not.toContain("\u202e");
    }
  });
});

test("a terminal too small for the layout says what it needs", () => {
  const f = render(model(), 50, 10);
  expectFills(f.lines, 50, 10);
  expect(text(f.lines)).toContain("terminal is 50×10");
});
