// The two screens, dashboard and submission detail, as pure functions of the model and the terminal
// size: a frame is `rows` lines of exactly `cols` columns. Nothing here reads the clock or the terminal.
import type { FailureKind, DashboardData, DetailData } from "./client.ts";
import { renderChart } from "./chart.ts";
import { ago, bytes, clock, duration, num, pct, shortTime, signedPct, tps } from "./format.ts";
import { paintLine, tokenLines, type Token } from "./highlight.ts";
import { beside, box, table, type Column, type Paint } from "./layout.ts";
import type { Panel, Ui } from "./state.ts";
import {
  bold,
  bronze,
  cyan,
  fit,
  gold,
  gray,
  green,
  magenta,
  middle,
  onBlue,
  onRed,
  red,
  sanitize,
  sanitizeCodeLine,
  width as textWidth,
  yellow,
} from "./text.ts";

export const MIN_COLS = 60;
export const MIN_ROWS = 16;

export type Conn =
  | { state: "connecting" }
  | { state: "ok"; at: number }
  | { state: "error"; kind: FailureKind; message: string; retryAt: number; lastOk: number | null };

export interface Model {
  url: string;
  ui: Ui;
  now: number; // this machine's clock
  serverOffset: number; // server clock − local clock, so "ago" matches the API's own times
  refreshSeconds: number;
  nextRefreshAt: number | null;
  conn: Conn;
  dash: DashboardData | null;
  detail: DetailData | null; // for ui.detailId, once loaded
  detailError: string | null; // e.g. the submission is gone
}

export interface Frame {
  lines: string[];
  codeRows: number; // code lines the detail view has room for (the key handler pages by it)
}

const OUTCOME_PAINT: Record<string, Paint> = { queued: yellow, evaluating: cyan, scored: green, failed: red };
const outcome = (o: string) => (OUTCOME_PAINT[o] ?? gray)(o);

// Code is memoised per text: tokenising a long file on every one-second redraw is wasted work.
let codeCache: { code: string; lines: Token[][] } | null = null;
export function codeLines(code: string): Token[][] {
  if (codeCache?.code !== code) {
    const clean = code.replace(/\r\n/g, "\n").split("\n").map((l) => sanitizeCodeLine(l)).join("\n");
    codeCache = { code, lines: tokenLines(clean) };
  }
  return codeCache.lines;
}

export function render(m: Model, cols: number, rows: number): Frame {
  if (cols < MIN_COLS || rows < MIN_ROWS) {
    const lines = Array.from({ length: rows }, () => " ".repeat(Math.max(0, cols)));
    const msg = `terminal is ${cols}×${rows}; the dashboard needs at least ${MIN_COLS}×${MIN_ROWS}`;
    lines[Math.floor(rows / 2)] = fit(yellow(msg), cols, "center");
    return { lines, codeRows: 0 };
  }
  const top = [header(m, cols), ...banner(m, cols)];
  const foot = footer(m, cols);
  const space = rows - top.length - 1;
  const body = m.ui.view === "detail" ? detail(m, cols, space) : { lines: dashboard(m, cols, space), codeRows: 0 };
  const lines = [...top, ...body.lines.slice(0, space), foot];
  while (lines.length < rows) lines.splice(lines.length - 1, 0, " ".repeat(cols));
  return { lines, codeRows: body.codeRows };
}

const serverNow = (m: Model) => m.now + m.serverOffset;

function header(m: Model, cols: number): string {
  const when = m.conn.state === "ok" ? `updated ${clock(m.conn.at)}` : m.conn.state === "error" && m.conn.lastOk ? `last data ${clock(m.conn.lastOk)}` : "";
  const right = `${m.url}${when ? "  " + when : ""} `;
  // The tagline goes first when the terminal is narrow; the URL and freshness matter more.
  for (const left of [" CRUSADES  fastest correct training loop", " CRUSADES"]) {
    const gap = cols - textWidth(left) - textWidth(right);
    if (gap >= 1) return onBlue(left + " ".repeat(gap) + right);
  }
  return onBlue(fit(" CRUSADES  " + right, cols));
}

function banner(m: Model, cols: number): string[] {
  if (m.conn.state === "connecting") return [fit(yellow(` connecting to ${m.url}…`), cols)];
  if (m.conn.state !== "error") return [];
  const secs = Math.max(0, Math.ceil((m.conn.retryAt - m.now) / 1000));
  const stale = m.conn.lastOk ? `  (showing data from ${clock(m.conn.lastOk)})` : "";
  return [onRed(fit(` ✗ ${sanitize(m.conn.message)}, retrying in ${secs}s${stale}`, cols))];
}

function footer(m: Model, cols: number): string {
  const keys =
    m.ui.view === "dashboard"
      ? "q quit  r refresh  tab/h/l panel  j/k move  enter open  1-9 open row"
      : "b/esc back  c code  j/k scroll  pgup/pgdn page  r refresh  q quit";
  const next = m.nextRefreshAt !== null && m.conn.state === "ok" ? `refresh in ${Math.max(0, Math.ceil((m.nextRefreshAt - m.now) / 1000))}s ` : "";
  const gap = cols - 1 - textWidth(keys) - textWidth(next);
  return gray(gap >= 1 ? " " + keys + " ".repeat(gap) + next : fit(" " + keys, cols));
}

// ---- dashboard ---------------------------------------------------------------------------------

function dashboard(m: Model, cols: number, space: number): string[] {
  const d = m.dash;
  const now = serverNow(m);
  const out = [...cards(d, cols), statusLine(d, cols, now)];
  if (d?.status.slots.length) out.push(slotsLine(d.status.slots, cols));
  const rest = space - out.length;
  const chartH = Math.max(6, Math.min(16, Math.floor(rest * 0.4)));
  out.push(...chart(d, cols, chartH, now));
  const panelsH = Math.max(4, rest - chartH);
  const leftW = Math.round(cols * 0.6);
  out.push(
    ...beside([
      { lines: leaderboardPanel(m, leftW, panelsH, now), width: leftW },
      { lines: recentPanel(m, cols - leftW, panelsH, now), width: cols - leftW },
    ]),
  );
  return out;
}

function cards(d: DashboardData | null, cols: number): string[] {
  const o = d?.overview;
  // Each card's small print is built for the room left beside its value.
  type Card = [title: string, value: string, sub: (w: number) => string];
  const items: Card[] = o
    ? [
        [
          "Top TPS",
          bold(green(tps(o.top_tps))),
          (w) => (o.leader ? `uid ${o.leader.uid ?? "—"} ` + middle(sanitize(o.leader.hotkey), w - `uid ${o.leader.uid ?? "—"} `.length) : "no leader yet"),
        ],
        ["Submissions 24h", bold(num(o.submissions_24h)), () => `${num(o.total_submissions)} total`],
        ["Active miners", bold(num(o.active_miners_24h)), () => `of ${num(o.total_miners)} · 24h`],
        [
          "Improvement 24h",
          o.improvement_24h_pct === null ? bold("—") : bold((o.improvement_24h_pct >= 0 ? green : red)(signedPct(o.improvement_24h_pct))),
          () => (o.leader_24h_ago_tps === null ? "no leader 24h ago" : `from ${tps(o.leader_24h_ago_tps)}`),
        ],
      ]
    : ["Top TPS", "Submissions 24h", "Active miners", "Improvement 24h"].map((t): Card => [t, bold("—"), () => "no data"]);
  const w = Math.floor(cols / items.length);
  return beside(
    items.map(([title, value, sub], i) => {
      const cw = i === items.length - 1 ? cols - w * (items.length - 1) : w;
      const room = cw - 2 - 1 - textWidth(value) - 2;
      const line = " " + value + (room >= 5 ? "  " + gray(sub(room)) : "");
      return { lines: box({ title, lines: [line], width: cw, height: 3 }), width: cw };
    }),
  );
}

const STATE_PAINT: Record<string, Paint> = { evaluating: green, setting_weights: green, idle: yellow, stopped: red, unknown: gray };

function statusLine(d: DashboardData | null, cols: number, now: number): string {
  const s = d?.status;
  if (!s) return fit(gray(" ● validator status unknown (no data)"), cols);
  const paint = STATE_PAINT[s.state] ?? gray;
  if (!s.reported) return fit(` ${gray("●")} ${bold("UNKNOWN")}  ${gray("the validator has not reported its status to this store")}`, cols);
  const parts = [`${paint("●")} ${bold(paint(s.state.toUpperCase().replace("_", " ")))}`];
  if (s.current) parts.push(`run ${s.current.run_index + 1} of ${cyan(middle(sanitize(s.current.submission_id), 28))}`);
  if (s.slots.length) {
    const out = s.slots.filter((x) => x.state === "out").length;
    parts.push(`slots ${num(s.slots.filter((x) => x.state === "busy").length)}/${num(s.slots.length - out)} busy${out ? ` ${red(`${num(out)} out`)}` : ""}`);
  }
  parts.push(`${num(s.runs_last_hour)} runs/h${s.failed_runs_last_hour ? ` (${red(num(s.failed_runs_last_hour) + " failed")})` : ""}`);
  const q = s.queue;
  parts.push(`queue ${yellow(num(q.received + q.fetched))} waiting ${cyan(num(q.evaluating))} evaluating`);
  parts.push(`success ${pct(s.success_rate, 0)}`);
  if (s.uptime_seconds !== null) parts.push(`up ${duration(s.uptime_seconds)}`);
  if (s.heartbeat_age_seconds !== null) {
    const seen = `seen ${ago(new Date(now - s.heartbeat_age_seconds * 1000).toISOString(), now)}`;
    parts.push(s.heartbeat_age_seconds > 300 ? yellow(seen) : seen);
  }
  return fit(" " + parts.join(gray("  ·  ")), cols);
}

/** One line for the device pool: each slot, what it runs, and why a slot left the pool. */
function slotsLine(slots: DashboardData["status"]["slots"], cols: number): string {
  const parts = slots.map((x) => {
    const id = bold(sanitize(x.id));
    if (x.state === "out") return `${red("●")} ${id} ${red(`OUT: ${sanitize(x.reason ?? "taken out")}`)}`;
    if (x.run) return `${green("●")} ${id} run ${x.run.run_index + 1} of ${cyan(middle(sanitize(x.run.submission_id), 20))}`;
    return `${gray("●")} ${id} ${gray("idle")}${x.failures ? ` ${yellow(`${x.failures} failing`)}` : ""}`;
  });
  return fit(" " + parts.join(gray("  ·  ")), cols);
}

function chart(d: DashboardData | null, cols: number, height: number, now: number): string[] {
  const o = d?.overview;
  const target = o?.top_tps ? o.top_tps * (1 + o.leader_threshold) : null;
  const points = (d?.history.items ?? []).map((p) => ({ t: Date.parse(p.at), v: p.tps }));
  const changes = d ? `${d.history.total} leader change${d.history.total === 1 ? "" : "s"}` : "";
  const right = target !== null && o ? `${yellow("┄")} to beat ${tps(target)} (+${num(o.leader_threshold * 100, 1)}%)` : "";
  const lines = d
    ? renderChart({ points, now, target, width: cols - 2, height: height - 4 })
    : [fit(gray("no data"), cols - 2, "center")];
  return box({ title: `Leader TPS ${gray(changes)}`, right, lines, width: cols, height });
}

const LEADERBOARD_COLUMNS: Column[] = [
  { title: "#", width: 3, align: "right" },
  { title: "UID", width: 4, align: "right", drop: 3 },
  { title: "Hotkey", min: 11, flex: 1, middle: true },
  { title: "TPS", width: 9, align: "right" },
  { title: "Runs", width: 5, align: "right", drop: 2 },
  { title: "Submitted", width: 9, align: "right", drop: 1 },
];
const rankPaint = (r: number): Paint => (r === 1 ? gold : r === 2 ? bold : r === 3 ? bronze : (s) => s);

function panelBox(m: Model, panel: Panel, title: string, lines: string[], width: number, height: number, right = ""): string[] {
  const active = m.ui.panel === panel;
  const border: Paint = active ? (panel === "leaderboard" ? green : magenta) : gray;
  return box({ title: active ? bold(title) : title, right, lines, width, height, border });
}

function leaderboardPanel(m: Model, width: number, height: number, now: number): string[] {
  const lb = m.dash?.leaderboard;
  const active = m.ui.panel === "leaderboard";
  const rows = (lb?.items ?? []).map((r) => [
    rankPaint(r.rank)(String(r.rank)),
    r.uid === null ? "—" : String(r.uid),
    sanitize(r.hotkey),
    green(tps(r.tps)),
    `${r.successful_runs ?? "—"}/${r.runs_planned ?? "—"}`,
    ago(r.created_at, now),
  ]);
  const t = table({
    columns: LEADERBOARD_COLUMNS,
    rows,
    width: width - 2,
    height: height - 2,
    selected: active ? m.ui.selected.leaderboard : null,
    empty: lb ? "no scored submissions yet" : "no data",
  });
  return panelBox(m, "leaderboard", "Leaderboard", t.lines, width, height, lb ? gray(`${lb.total} scored`) : "");
}

// The owner goes last when the panel narrows: it is how a miner finds its entry (a gists miner has no
// UID), while the status is also told by the result cell's colour and text.
const RECENT_COLUMNS: Column[] = [
  { title: "UID", width: 3, align: "right", drop: 2 },
  { title: "Hotkey", min: 9, flex: 2, drop: 1, middle: true },
  { title: "Status", width: 10, drop: 3 },
  { title: "TPS/result", min: 10, flex: 1, align: "right" },
  { title: "Age", width: 8, align: "right", drop: 4 },
];

function recentPanel(m: Model, width: number, height: number, now: number): string[] {
  const page = m.dash?.recent;
  const active = m.ui.panel === "recent";
  const rows = (page?.items ?? []).map((s) => [
    s.uid === null ? "—" : String(s.uid),
    sanitize(s.hotkey),
    outcome(s.outcome),
    s.outcome === "scored"
      ? green(tps(s.score))
      : s.outcome === "failed"
        ? red(sanitize(s.error_code ?? "failed"))
        : s.outcome === "evaluating"
          ? cyan(`${s.runs_done}/${s.runs_planned ?? "?"} runs`)
          : gray("waiting"),
    ago(s.created_at, now),
  ]);
  const t = table({
    columns: RECENT_COLUMNS,
    rows,
    width: width - 2,
    height: height - 2,
    selected: active ? m.ui.selected.recent : null,
    empty: page ? "no submissions yet" : "no data",
  });
  return panelBox(m, "recent", "Recent activity", t.lines, width, height, page ? gray(`${page.total} in all`) : "");
}

// ---- detail ------------------------------------------------------------------------------------

function detail(m: Model, cols: number, space: number): Frame {
  const id = m.ui.detailId ?? "";
  if (m.detailError || !m.detail) {
    const msg = m.detailError ? red(sanitize(m.detailError)) : gray(`loading ${sanitize(id)}…`);
    return { lines: box({ title: "Submission", lines: ["", " " + msg], width: cols, height: Math.min(space, 5) }), codeRows: 0 };
  }
  const { submission: s, runs, code, codeNote } = m.detail;
  const now = serverNow(m);
  const info = infoLines(s, cols - 2, now);
  const infoBox = box({ title: `Submission ${bold(sanitize(s.id))}`, lines: info, width: cols, height: info.length + 2 });
  const runsWanted = Math.max(1, runs.items.length) + 3;
  const codeMin = m.ui.showCode ? 5 : 0;
  const runsH = m.ui.showCode ? Math.max(4, Math.min(runsWanted, space - infoBox.length - codeMin)) : Math.max(4, space - infoBox.length);
  const ok = runs.items.filter((r) => r.success).length;
  const runsBox = box({
    title: "Runs",
    right: gray(`${ok}/${runs.total} ok`),
    lines: runTable(runs.items, cols - 2, runsH - 2, now),
    width: cols,
    height: runsH,
  });
  const lines = [...infoBox, ...runsBox];
  if (!m.ui.showCode) return { lines, codeRows: 0 };
  const codeH = Math.max(3, space - lines.length);
  const codeRows = codeH - 2;
  if (!code) {
    lines.push(...box({ title: "Code", lines: [" " + gray(sanitize(codeNote ?? "no code"))], width: cols, height: codeH }));
    return { lines, codeRows: 0 };
  }
  const all = codeLines(code.code);
  const first = Math.max(0, Math.min(m.ui.codeScroll, all.length - codeRows));
  const numW = String(all.length).length;
  const shown = all.slice(first, first + codeRows).map((toks, i) => gray(String(first + i + 1).padStart(numW)) + " " + paintLine(toks));
  const range = all.length > codeRows ? `lines ${first + 1}–${Math.min(all.length, first + codeRows)} of ${all.length}` : `${all.length} lines`;
  lines.push(
    ...box({ title: `train.py ${gray(`sha256 ${code.code_sha256.slice(0, 16)}… ${bytes(code.size)}`)}`, right: gray(range), lines: shown, width: cols, height: codeH }),
  );
  return { lines, codeRows };
}

function infoLines(s: DetailData["submission"], w: number, now: number): string[] {
  const kv = (k: string, v: string) => gray(k.padEnd(10)) + v;
  const half = Math.floor(w / 2);
  const pair = (a: string, b: string) => fit(" " + a, half) + fit(b, w - half);
  const rank = s.rank === null ? "—" : `#${s.rank}${s.is_leader ? gold("  leader") : ""}`;
  const lines = [
    " " + kv("Hotkey", sanitize(s.hotkey)),
    pair(kv("UID", s.uid === null ? "—" : String(s.uid)), kv("Status", s.state === s.outcome ? outcome(s.outcome) : `${outcome(s.outcome)} ${gray(`(${s.state})`)}`)),
    pair(kv("TPS", bold(green(tps(s.score)))), kv("Rank", rank)),
    pair(
      kv("Runs", `${s.runs_done}/${s.runs_planned ?? "—"} done, ${s.successful_runs ?? 0} ok`),
      // The gists source orders by the revision's commit time in unix seconds where a chain has a block.
      kv("Submitted", `${ago(s.created_at, now)} · ${s.source === "gists" ? `revision ${shortTime(s.reveal_block * 1000)}` : `block ${s.reveal_block}`}`),
    ),
    pair(kv("Code", s.code_sha256 ? `${s.code_sha256.slice(0, 16)}… ${s.code_size === null ? "" : bytes(s.code_size)}` : "—"), kv("Source", sanitize(s.source))),
    " " + kv("URL", s.url ? sanitize(s.url) : gray(s.outcome === "queued" || s.outcome === "evaluating" ? "hidden until evaluation finishes" : "—")),
  ];
  if (s.error_code || s.error_message) lines.push(" " + kv("Error", red(sanitize(`${s.error_code ?? ""}${s.error_message ? ": " + s.error_message : ""}`))));
  return lines;
}

const RUN_COLUMNS: Column[] = [
  { title: "#", width: 3, align: "right" },
  { title: "State", width: 8 },
  { title: "Result", width: 18 },
  { title: "TPS", width: 10, align: "right" },
  { title: "MFU", width: 6, align: "right", drop: 3 },
  { title: "Tokens", width: 9, align: "right", drop: 4 },
  { title: "Wall", width: 8, align: "right", drop: 2 },
  { title: "Finished", width: 9, align: "right", drop: 1 },
  { title: "Detail", min: 10, flex: 1, drop: 5 },
];

function runTable(items: DetailData["runs"]["items"], w: number, h: number, now: number): string[] {
  const rows = items.map((r) => [
    String(r.run_index + 1),
    r.state === "running" ? cyan("running") : r.state === "pending" ? gray("pending") : "done",
    r.success === null ? gray("—") : r.success ? green("✓ ok") : red(`✗ ${sanitize(r.error_code ?? "failed")}`),
    r.success ? tps(r.tps) : gray("—"),
    r.mfu === null ? "—" : pct(r.mfu),
    r.total_tokens === null ? "—" : num(r.total_tokens),
    r.wall_time_seconds === null ? "—" : `${num(r.wall_time_seconds, 2)}s`,
    ago(r.finished_at, now),
    r.error_message ? red(sanitize(r.error_message)) : gray(sanitize([r.device, r.slot && `slot ${r.slot}`].filter(Boolean).join(" · "))),
  ]);
  return table({ columns: RUN_COLUMNS, rows, width: w, height: h, empty: "no runs yet" }).lines;
}
