#!/usr/bin/env bun
// The terminal dashboard over the public API.
//   bun scripts/tui.ts --url http://127.0.0.1:8080 [--refresh 30] [--api-key KEY]
//   deno run -A scripts/tui.ts --url ...
// The key may also come from CRUSADES_API_KEY. Keys: q quit, r refresh, tab/h/l panel, j/k move,
// enter open, 1-9 open row, c code, b/esc back.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { ApiFailure, createClient } from "./tui/client.ts";
import { codeLines, render, type Frame, type Model } from "./tui/render.ts";
import { initialUi, update } from "./tui/state.ts";
import { openTerminal } from "./tui/terminal.ts";

const USAGE = "usage: scripts/tui.ts [--url http://127.0.0.1:8080] [--refresh SECONDS] [--api-key KEY] [--timeout SECONDS]";

function parse() {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:8080" },
      refresh: { type: "string", default: "30" },
      "api-key": { type: "string" },
      timeout: { type: "string", default: "10" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const seconds = (name: string, raw: string, min: number) => {
    const v = Number(raw);
    if (!Number.isFinite(v) || v < min || v > 86_400) throw new UserError(`--${name} must be a number of seconds, at least ${min}, got ${JSON.stringify(raw)}`);
    return v;
  };
  return {
    url: values.url,
    refresh: seconds("refresh", values.refresh, 1),
    timeout: seconds("timeout", values.timeout, 0.1),
    apiKey: values["api-key"] ?? (process.env.CRUSADES_API_KEY || undefined),
  };
}

async function main() {
  const args = parse();
  const client = createClient({ url: args.url, apiKey: args.apiKey, timeoutMs: args.timeout * 1000 });
  if (!process.stdout.isTTY || !process.stdin.isTTY) throw new UserError("the dashboard needs a terminal (stdin and stdout must be a TTY); for scripts, query the API directly");

  const m: Model = {
    url: client.base,
    ui: initialUi(),
    now: Date.now(),
    serverOffset: 0,
    refreshSeconds: args.refresh,
    nextRefreshAt: null,
    conn: { state: "connecting" },
    dash: null,
    detail: null,
    detailError: null,
  };
  let frame: Frame = { lines: [], codeRows: 0 };
  let inflight = false;
  let again = false;
  let failures = 0;
  let lastOk: number | null = null;

  const draw = () => {
    m.now = Date.now();
    const { cols, rows } = term.size();
    frame = render(m, cols, rows);
    term.draw(frame.lines);
  };

  const refresh = async () => {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    const view = m.ui.view;
    const id = m.ui.detailId;
    try {
      if (view === "dashboard" || id === null) {
        const sent = Date.now();
        const d = await client.dashboard();
        m.dash = d;
        m.serverOffset = Date.parse(d.overview.generated_at) - (sent + Date.now()) / 2;
      } else {
        const known = m.detail?.submission.id === id ? m.detail.code : null;
        try {
          const d = await client.detail(id, known);
          if (m.ui.detailId === id) [m.detail, m.detailError] = [d, null];
        } catch (e) {
          if (!(e instanceof ApiFailure && e.kind === "not_found")) throw e;
          if (m.ui.detailId === id) [m.detail, m.detailError] = [null, `no submission ${id} on this API: ${e.message}`];
        }
      }
      failures = 0;
      lastOk = Date.now();
      m.conn = { state: "ok", at: lastOk };
      m.nextRefreshAt = lastOk + args.refresh * 1000;
    } catch (e) {
      if (!(e instanceof ApiFailure)) throw e;
      failures++;
      const delay = Math.min(args.refresh, 2 ** Math.min(failures - 1, 4));
      const retryAt = Date.now() + delay * 1000;
      m.conn = { state: "error", kind: e.kind, message: e.message, retryAt, lastOk };
      m.nextRefreshAt = retryAt;
    } finally {
      inflight = false;
    }
    draw();
    if (again) {
      again = false;
      void refresh();
    }
  };

  const quit = () => {
    clearInterval(ticker);
    term.close();
    process.exit(0);
  };

  const term = openTerminal({
    onResize: draw,
    onKeys(keys) {
      for (const key of keys) {
        const before = m.ui;
        const { ui, effect } = update(m.ui, key, {
          rows: {
            leaderboard: m.dash?.leaderboard.items.map((r) => r.submission_id) ?? [],
            recent: m.dash?.recent.items.map((s) => s.id) ?? [],
          },
          codeLines: m.detail?.code ? codeLines(m.detail.code.code).length : 0,
          codeRows: frame.codeRows,
        });
        m.ui = ui;
        if (effect === "quit") return quit();
        if (effect === "open") {
          m.detail = null;
          m.detailError = null;
          void refresh();
        } else if (effect === "refresh") void refresh();
        else if (before.view === "detail" && ui.view === "dashboard" && m.nextRefreshAt !== null && m.nextRefreshAt <= Date.now()) void refresh();
        draw();
      }
    },
  });

  // One tick a second: due refreshes, the retry countdown, "ago" times, and a size check for runtimes
  // that do not report resizes.
  const ticker = setInterval(() => {
    if (m.nextRefreshAt !== null && Date.now() >= m.nextRefreshAt && !inflight) void refresh();
    draw();
  }, 1000);
  draw();
  await refresh();
}

main().catch((e) => {
  if (e instanceof UserError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(e);
  process.exit(1);
});
