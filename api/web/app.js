// Crusades dashboard: plain JS over the public API, no build step. Every value from the API reaches the
// page through textContent or SVG attributes, never innerHTML, so miner-controlled text (code, error
// messages, hotkeys) cannot inject markup; `neutralise` keeps it from reordering the text around it.
"use strict";

const REFRESH_MS = 15000;
const KEY_STORE = "crusades.apiKey";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

// ---- small helpers --------------------------------------------------------------------------------

// The bidi embedding, override and isolate controls and the invisible direction marks ("trojan source":
// `\u202egnp.exe` reads as `exe.png`), as scripts/tui/text.ts strips them for the terminal. Here each is
// shown as a visible escape instead, so a reader sees that the text carries one.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const neutralise = (s) => s.replace(BIDI, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = neutralise(String(v));
    else if (k === "title") node.title = neutralise(String(v));
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : neutralise(String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
const fmtTps = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 }));
const fmtPct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)}%`);
const shortKey = (k) => (k && k.length > 16 ? `${k.slice(0, 6)}…${k.slice(-6)}` : k || "–");
// A hotkey in full where there is room, but a gists login or a hostile id can be 100 KB: both ends and
// the length are enough to recognise it, and the API serves the whole value.
const longKey = (k) => (k && k.length > 128 ? `${k.slice(0, 56)}…${k.slice(-56)} (${fmtInt(k.length)} characters)` : k || "–");
const subLink = (id) => `#/submission/${encodeURIComponent(id)}`;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m`;
  return `${s}s`;
}

function ago(iso, now) {
  if (!iso) return "–";
  const s = Math.max(0, ((now ?? Date.now()) - Date.parse(iso)) / 1000);
  if (s < 60) return "just now";
  return `${duration(s)} ago`;
}

// ---- API ------------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path) {
  const key = localStorage.getItem(KEY_STORE);
  const res = await fetch(path, { headers: key ? { "X-API-Key": key } : {} });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new HttpError(res.status, body);
  return body;
}

/** The badge: "ok" (green), "warn" (yellow: the data is fresh but no validator is producing it), "bad". */
function setConn(level, text) {
  const c = $("conn");
  c.textContent = text;
  c.className = `conn ${level}`;
}

// Set by the last validator status the page saw: why "live" would mislead (stopped, silent), or null.
let validatorAlert = null;

function needKey() {
  $("keyform").hidden = false;
  setConn("bad", "API key required");
}

$("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(KEY_STORE, $("keyinput").value.trim());
  $("keyform").hidden = true;
  route();
});

// ---- dashboard ------------------------------------------------------------------------------------

let serverNow = Date.now();
let leaderboardRows = [];
const LB_PAGE = 20;
let lbShown = LB_PAGE;
let sortState = { key: "rank", dir: 1 };

function renderOverview(o) {
  $("c-top").textContent = fmtTps(o.top_tps);
  $("c-top-sub").replaceChildren(o.leader ? el("a", { href: subLink(o.leader.submission_id), text: `${o.leader.uid === null ? "" : `UID ${o.leader.uid} · `}${shortKey(o.leader.hotkey)}`, title: longKey(o.leader.hotkey) }) : "no leader yet");
  const imp = o.improvement_24h_pct;
  $("c-imp").textContent = imp === null ? "–" : `${imp >= 0 ? "+" : ""}${imp.toFixed(2)}%`;
  $("c-imp").className = `value ${imp > 0 ? "up" : ""}`;
  $("c-imp-sub").textContent = o.leader_24h_ago_tps === null ? "no leader 24 h ago" : `from ${fmtTps(o.leader_24h_ago_tps)} TPS`;
  $("c-24h").textContent = fmtInt(o.submissions_24h);
  $("c-total").textContent = `${fmtInt(o.total_submissions)} total · ${fmtInt(o.failed_total)} failed`;
  $("c-miners").textContent = fmtInt(o.active_miners_24h);
  $("c-miners-sub").textContent = `${fmtInt(o.total_miners)} ever`;
  $("chart-note").textContent = `· a challenger must beat the leader by ${(o.leader_threshold * 100).toFixed(1)}%`;
}

function renderValidator(v) {
  const colors = { evaluating: "green", setting_weights: "cyan", idle: "yellow", stopped: "red", unknown: "grey" };
  const stale = v.heartbeat_age_seconds !== null && v.heartbeat_age_seconds > 300 && v.state !== "stopped";
  $("v-dot").className = `dot ${stale ? "red" : colors[v.state] || "grey"}`;
  $("v-state").textContent = v.state.replace("_", " ").toUpperCase() + (stale ? ` (silent ${duration(v.heartbeat_age_seconds)})` : "");
  validatorAlert = v.state === "stopped" ? "validator stopped" : stale ? "validator silent" : null;
  $("v-current").replaceChildren(
    v.current ? el("span", {}, "evaluating ", el("a", { href: subLink(v.current.submission_id), text: shortKey(v.current.submission_id.split(":").pop()) }), ` run ${v.current.run_index + 1}`) : "",
  );
  $("v-runs").textContent = `${v.runs_last_hour}${v.failed_runs_last_hour ? ` (${v.failed_runs_last_hour} failed)` : ""}`;
  $("v-queued").textContent = v.queue.received + v.queue.fetched;
  $("v-running").textContent = v.queue.evaluating;
  $("v-inflight").textContent = `${v.queue.running_runs} running · ${v.queue.pending_runs} pending`;
  $("v-uptime").textContent = duration(v.uptime_seconds);
  $("v-weights").textContent = v.last_weights_block === null ? "–" : `#${v.last_weights_block}`;
  $("v-who").textContent = v.reported ? `${v.network ?? "?"} · netuid ${v.netuid ?? "?"} · uid ${v.uid ?? "?"}` : "validator has not reported";
  $("c-success").textContent = fmtPct(v.success_rate);
  $("c-success-sub").textContent = "of settled submissions scored";
  renderSlots(v.slots);
}

// The executor's device pool: what each slot runs, which left the pool and why.
function renderSlots(slots) {
  $("slots").hidden = slots.length === 0;
  const out = slots.filter((s) => s.state === "out").length;
  const busy = slots.filter((s) => s.state === "busy").length;
  $("slots-note").textContent = `· ${busy} of ${slots.length - out} busy${out ? ` · ${out} out of the pool` : ""}`;
  document.querySelector("#slots-table tbody").replaceChildren(
    ...slots.map((s) =>
      el(
        "tr",
        { class: `slot-${s.state}` },
        el("td", {}, el("code", { text: s.id })),
        el("td", { text: s.devices }),
        el("td", { class: s.state === "out" ? "bad" : s.state === "busy" ? "ok" : "", text: s.state === "out" ? `out: ${s.reason ?? "taken out"}` : s.state }),
        el("td", {}, s.run ? el("span", {}, el("a", { href: subLink(s.run.submission_id), text: shortKey(s.run.submission_id.split(":").pop()) }), ` run ${s.run.run_index + 1}`) : "–"),
        el("td", { class: "num", text: fmtInt(s.runs) }),
        el("td", { class: s.failures ? "num bad" : "num", text: s.failures }),
      ),
    ),
  );
}

function sortRows(rows) {
  const th = document.querySelector(`#leaderboard th[data-key="${sortState.key}"]`);
  const num = th && th.dataset.type === "num";
  return [...rows].sort((a, b) => {
    const x = a[sortState.key], y = b[sortState.key];
    if (x === y) return a.rank - b.rank;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (num ? x - y : String(x).localeCompare(String(y))) * sortState.dir;
  });
}

function renderLeaderboard() {
  const body = document.querySelector("#leaderboard tbody");
  const rows = sortRows(leaderboardRows).map((r) =>
    el(
      "tr",
      { class: `rank-${Math.min(r.rank, 4)} clickable`, "data-id": r.submission_id, onclick: () => (location.hash = subLink(r.submission_id)) },
      el("td", { text: r.rank }),
      el("td", { text: r.uid ?? "–" }),
      el("td", {}, el("a", { href: subLink(r.submission_id), text: shortKey(r.hotkey), title: longKey(r.hotkey) })),
      el("td", { class: "num tps", text: fmtTps(r.tps) }),
      el("td", { class: "num", text: `${r.successful_runs ?? "–"}/${r.runs_planned ?? "–"}` }),
      el("td", { text: ago(r.created_at, serverNow), title: r.created_at }),
    ),
  );
  body.replaceChildren(...rows);
  $("lb-empty").hidden = leaderboardRows.length > 0;
  for (const th of document.querySelectorAll("#leaderboard th")) {
    th.setAttribute("aria-sort", th.dataset.key === sortState.key ? (sortState.dir > 0 ? "ascending" : "descending") : "none");
  }
}

for (const th of document.querySelectorAll("#leaderboard th")) {
  th.tabIndex = 0;
  const sort = () => {
    const key = th.dataset.key;
    // Numbers people want biggest-first (TPS, runs) start descending; rank and text ascending.
    const firstDir = key === "tps" || key === "successful_runs" ? -1 : 1;
    sortState = sortState.key === key ? { key, dir: -sortState.dir } : { key, dir: firstDir };
    renderLeaderboard();
  };
  th.addEventListener("click", sort);
  th.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), sort()));
}

const OUTCOME_LABEL = { queued: "queued", evaluating: "evaluating", scored: "scored", failed: "failed" };

function badge(outcome, title) {
  return el("span", { class: `badge ${outcome}`, text: OUTCOME_LABEL[outcome] || outcome, title });
}

function renderRecent(page) {
  const rows = page.items.map((s) =>
    el(
      "tr",
      { class: "clickable", "data-id": s.id, onclick: () => (location.hash = subLink(s.id)) },
      el("td", { text: s.uid ?? "–" }),
      el("td", {}, el("a", { href: subLink(s.id), text: shortKey(s.hotkey), title: longKey(s.hotkey) })),
      el("td", {}, badge(s.outcome, s.error_message || s.state)),
      el("td", { class: "num tps", text: s.score === null ? "–" : fmtTps(s.score) }),
      el("td", { text: ago(s.created_at, serverNow), title: s.created_at }),
    ),
  );
  document.querySelector("#recent tbody").replaceChildren(...rows);
  $("recent-empty").hidden = page.items.length > 0;
  $("recent-note").textContent = `· ${fmtInt(page.total)} in all`;
}

// ---- the chart: leader TPS as a step line over time ------------------------------------------------

function niceStep(range, target) {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function renderChart(history, now) {
  const box = $("chart");
  const points = history.items;
  if (points.length === 0) {
    box.replaceChildren(el("p", { class: "empty", text: "No leader yet: the chart starts with the first scored submission." }));
    return;
  }
  const W = Math.max(320, box.clientWidth || 900), H = 240;
  const m = { l: 64, r: 18, t: 14, b: 30 };
  const t0 = Date.parse(points[0].at);
  const t1 = Math.max(now, Date.parse(points[points.length - 1].at) + 1);
  const span = Math.max(t1 - t0, 3600e3);
  const tMin = t0 - span * 0.03, tMax = t1;
  const vals = points.map((p) => p.tps);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  const pad = hi === lo ? Math.max(hi * 0.1, 1) : (hi - lo) * 0.12;
  lo = Math.max(0, lo - pad);
  hi = hi + pad;
  const x = (t) => m.l + ((t - tMin) / (tMax - tMin)) * (W - m.l - m.r);
  const y = (v) => H - m.b - ((v - lo) / (hi - lo)) * (H - m.t - m.b);

  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", height: H, role: "img", "aria-label": "leader TPS over time" });
  const defs = svg("defs");
  const grad = svg("linearGradient", { id: "fill", x1: 0, y1: 0, x2: 0, y2: 1 });
  grad.append(svg("stop", { offset: "0%", "stop-color": "#22d3ee", "stop-opacity": 0.35 }), svg("stop", { offset: "100%", "stop-color": "#22d3ee", "stop-opacity": 0 }));
  defs.append(grad);
  root.append(defs);

  const step = niceStep(hi - lo, 4);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: "gridline" }));
    root.append(svg("text", { x: m.l - 8, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmtInt(v)));
  }
  const ticks = Math.min(6, Math.max(2, Math.floor((W - m.l - m.r) / 140)));
  for (let i = 0; i <= ticks; i++) {
    const t = tMin + ((tMax - tMin) * i) / ticks;
    const d = new Date(t);
    const label = span > 2 * 86400e3 ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
    root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle", class: "axis" }, label));
  }

  // Step path: the leader's TPS holds until the next change of lead, and up to now.
  let d = "";
  points.forEach((p, i) => {
    const px = x(Date.parse(p.at)), py = y(p.tps);
    d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
  });
  d += `H${x(tMax)}`;
  const area = `${d}V${y(lo)}H${x(Date.parse(points[0].at))}Z`;
  root.append(svg("path", { d: area, fill: "url(#fill)", stroke: "none" }));
  root.append(svg("path", { d, class: "line" }));

  const tip = el("div", { class: "tip", hidden: true });
  for (const p of points) {
    const dot = svg("circle", { cx: x(Date.parse(p.at)), cy: y(p.tps), r: 4.5, class: "point", tabindex: 0 });
    dot.append(svg("title", {}, `${fmtTps(p.tps)} TPS · ${p.at.slice(0, 16).replace("T", " ")} UTC`));
    const show = () => {
      tip.hidden = false;
      tip.textContent = `${fmtTps(p.tps)} TPS · ${shortKey(p.hotkey)} · ${ago(p.at, now)}`;
      tip.style.left = `${(x(Date.parse(p.at)) / W) * 100}%`;
      tip.style.top = `${y(p.tps) - 34}px`;
    };
    dot.addEventListener("mouseenter", show);
    dot.addEventListener("focus", show);
    dot.addEventListener("mouseleave", () => (tip.hidden = true));
    dot.addEventListener("click", () => (location.hash = subLink(p.submission_id)));
    root.append(dot);
  }
  box.replaceChildren(root, tip);
}

let lastHistory = null;

async function loadDashboard() {
  const [overview, status, history, board, recent] = await Promise.all([
    api("/api/stats/overview"),
    api("/api/validator/status"),
    api("/api/stats/history?limit=500"),
    api(`/leaderboard?limit=${lbShown}`),
    api("/api/submissions?limit=15"),
  ]);
  serverNow = Date.parse(overview.generated_at);
  renderOverview(overview);
  renderValidator(status);
  lastHistory = history;
  renderChart(history, serverNow);
  leaderboardRows = board.items;
  $("lb-note").textContent = `· top ${board.items.length} of ${fmtInt(board.total)} · threshold order, click a column to sort`;
  $("lb-more").hidden = board.items.length >= board.total;
  renderLeaderboard();
  renderRecent(recent);
}

$("lb-more").addEventListener("click", async () => {
  lbShown += LB_PAGE;
  const board = await api(`/leaderboard?limit=${lbShown}`);
  leaderboardRows = board.items;
  $("lb-more").hidden = board.items.length >= board.total;
  renderLeaderboard();
});

window.addEventListener("resize", () => lastHistory && !$("dashboard").hidden && renderChart(lastHistory, serverNow));

// ---- submission page ------------------------------------------------------------------------------

const PY_KEYWORDS = new Set(
  "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield".split(" "),
);
const PY_BUILTINS = new Set("print len range enumerate zip min max sum abs isinstance getattr setattr super self next iter list dict tuple set int float str bool".split(" "));
const PY_TOKEN = /("""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|[rbfuRBFU]{0,2}"(?:\\.|[^"\\\n])*"?|[rbfuRBFU]{0,2}'(?:\\.|[^'\\\n])*'?)|(#[^\n]*)|(@[\w.]+)|(\b\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?j?\b)|([A-Za-z_]\w*)|(\n)|([^\w\n#'"@]+|.)/g;

/** Python code as lines of classed spans, built with textContent only. */
function highlight(code) {
  const lines = [];
  let line = el("span", { class: "ln" });
  let prev = "";
  const push = (text, cls) => {
    // Multi-line strings are split so each line stays its own element.
    const parts = text.split("\n");
    parts.forEach((part, i) => {
      if (i > 0) {
        lines.push(line);
        line = el("span", { class: "ln" });
      }
      if (part) line.append(cls ? el("span", { class: cls, text: part }) : document.createTextNode(neutralise(part)));
    });
  };
  for (const m of code.matchAll(PY_TOKEN)) {
    const [tok, str, comment, deco, num, word, nl] = m;
    if (nl) push("\n");
    else if (str) push(tok, "s");
    else if (comment) push(tok, "c");
    else if (deco) push(tok, "d");
    else if (num) push(tok, "n");
    else if (word) push(tok, PY_KEYWORDS.has(word) ? "k" : prev === "def" || prev === "class" ? "f" : PY_BUILTINS.has(word) ? "b" : null);
    else push(tok);
    if (word) prev = word;
    else if (!/^\s+$/.test(tok)) prev = "";
  }
  lines.push(line);
  if (lines.length > 1 && lines[lines.length - 1].childNodes.length === 0) lines.pop();
  return lines;
}

const utc = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
const checkLine = (c) => `${c.passed ? "✓" : "✗"} ${c.name} ${c.value ?? ""} ${c.bound ?? ""}`;

/** A failed run's reason as a row of its own under it: what the miner must change, readable on a phone. */
function runReason(r) {
  const failed = r.checks.filter((c) => !c.passed).map(checkLine);
  const text = r.error_message || (failed.length ? failed.join(" · ") : "no reason was recorded");
  return el("tr", { class: "reason" }, el("td", { colspan: 9, text }));
}

function fact(label, value) {
  return [el("dt", { text: label }), el("dd", {}, value)];
}

async function loadSubmission(id) {
  $("d-id").textContent = neutralise(longKey(id));
  const [s, runs] = await Promise.all([api(`/api/submissions/${encodeURIComponent(id)}`), api(`/api/submissions/${encodeURIComponent(id)}/runs?limit=100`)]);
  const now = Date.now();
  $("d-facts").replaceChildren(
    ...fact("Status", badge(s.outcome, s.state)),
    ...fact("TPS", el("b", { class: "tps", text: s.score === null ? "–" : fmtTps(s.score) })),
    ...fact("Rank", s.rank === null ? "–" : s.is_leader ? "1 · leader" : String(s.rank)),
    ...fact("UID", String(s.uid ?? "–")),
    ...fact("Hotkey", el("code", { text: longKey(s.hotkey) })),
    ...fact("Runs", `${s.runs_done}/${s.runs_planned ?? "–"} done · ${s.successful_runs ?? "–"} succeeded`),
    // The gists source orders by the revision's commit time, in unix seconds, where a chain has a block.
    ...(s.source === "gists" ? fact("Revision", `${utc(s.reveal_block * 1000)} UTC`) : fact("Reveal block", `#${s.reveal_block}`)),
    ...fact("Submitted", `${ago(s.created_at, now)} (${utc(Date.parse(s.created_at))} UTC)`),
    ...fact("Code sha256", el("code", { text: s.code_sha256 ? s.code_sha256.slice(0, 16) + "…" : "–", title: s.code_sha256 || "" })),
    ...fact("Source", s.url ? el("a", { href: s.url, text: s.url, rel: "noopener noreferrer nofollow", target: "_blank" }) : `${s.source} (URL shown after evaluation)`),
  );
  $("d-error").hidden = !s.error_message;
  $("d-error").textContent = s.error_message ? neutralise(`${s.error_code}: ${s.error_message}`) : "";

  $("d-runs-note").textContent = `· ${runs.total} planned`;
  document.querySelector("#runs tbody").replaceChildren(
    ...runs.items.flatMap((r) => [
      el(
        "tr",
        {},
        el("td", { text: r.run_index + 1 }),
        el("td", { text: r.state + (r.attempts > 1 ? ` (${r.attempts} tries)` : "") }),
        el("td", { class: "num tps", text: r.success ? fmtTps(r.tps) : "–" }),
        el("td", { class: "num", text: r.success && r.mfu !== null ? fmtPct(r.mfu) : "–" }),
        el("td", { class: "num", text: fmtInt(r.total_tokens) }),
        el("td", { class: "num", text: r.success ? `${r.wall_time_seconds.toFixed(2)} s` : "–" }),
        el("td", { text: r.device ?? "–", title: r.data_sha256 ? `token shard sha256 ${r.data_sha256}` : "" }),
        el("td", {}, r.slot ? el("code", { text: r.slot }) : "–"),
        el("td", { class: r.success === true ? "ok" : r.success === false ? "bad" : "", text: r.success === null ? "…" : r.success ? "✓ passed" : `✗ ${r.error_code ?? "failed"}`, title: r.checks.map(checkLine).join("\n") }),
      ),
      ...(r.success === false ? [runReason(r)] : []),
    ]),
  );

  const pre = $("code");
  if (!s.code_available) {
    pre.replaceChildren(el("span", { class: "muted", text: s.code_sha256 ? "The code is shown once the evaluation has finished." : "No code was stored for this submission." }));
    $("d-code-note").textContent = "";
    return;
  }
  const c = await api(`/api/submissions/${encodeURIComponent(id)}/code`);
  const lines = highlight(c.code);
  pre.replaceChildren(...lines);
  $("d-code-note").textContent = `· ${lines.length} lines · ${fmtInt(c.size)} bytes · sha256 ${c.code_sha256.slice(0, 12)}…`;
}

// ---- routing and refresh -------------------------------------------------------------------------

let timer = null;

async function route() {
  clearTimeout(timer);
  const m = location.hash.match(/^#\/submission\/(.+)$/);
  $("dashboard").hidden = !!m;
  $("detail").hidden = !m;
  try {
    if (m) await loadSubmission(decodeURIComponent(m[1]));
    else await loadDashboard();
    setConn(validatorAlert ? "warn" : "ok", validatorAlert ?? "live");
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) return needKey();
    if (e instanceof HttpError && e.status === 404 && m) {
      $("d-facts").replaceChildren(el("dd", { class: "error", text: e.message }));
      return;
    }
    setConn("bad", e instanceof HttpError ? `API error: ${e.message}` : "API unreachable");
  }
  if (!m) timer = setTimeout(route, REFRESH_MS);
}

window.addEventListener("hashchange", () => {
  window.scrollTo(0, 0);
  route();
});
route();
