// The terminal dashboard end to end: the real API over a seeded store on a loopback port, the real
// `scripts/tui.ts` in a tmux pane, driven with send-keys and read back with capture-pane.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createApp, type App } from "../api/app.ts";
import { seedScenario, THRESHOLD, type Scenario } from "./fixtures/seed-db.ts";
import { requireService } from "./services.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "crusades-tui-e2e-"));
const db = join(dir, "s.db");
let sc: Scenario;
const apps: App[] = [];
const sockets: string[] = [];
const ready = await requireService("tui in tmux", "tmux");

beforeAll(async () => {
  sc = await seedScenario(db);
});
afterEach(() => {
  for (const s of sockets.splice(0)) tmux(s, "kill-server");
});
afterAll(async () => {
  for (const a of apps) await a.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(opts: { port?: number; apiKey?: string } = {}) {
  const app = (await createApp({ dbPath: db, hparams: { leader_threshold: THRESHOLD }, apiKey: opts.apiKey, now: () => sc.now })).listen({ port: opts.port ?? 0, hostname: "127.0.0.1" });
  apps.push(app);
  return `http://127.0.0.1:${app.server!.port}`;
}

function tmux(socket: string, ...args: string[]) {
  // A socket of its own inside the test's temp dir: an isolated server, and nothing left behind.
  const r = Bun.spawnSync(["tmux", "-S", join(dir, socket), "-f", "/dev/null", ...args], { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout.toString(), err: r.stderr.toString() };
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Starts the dashboard in a fresh tmux server of its own. The pane runs a shell that reports how the
 * dashboard exited and the terminal's line settings afterwards; with `keep`, that shell then waits for
 * Enter, so the restored terminal (cursor, screen) can be inspected while the pane is still alive.
 */
function start(args: string[], size: [number, number], keep = true, runtime: "bun" | "deno" = "bun") {
  const socket = `tmux-${sockets.length}-${Date.now()}`;
  sockets.push(socket);
  const exe = runtime === "bun" ? [process.execPath] : [join(root, "node_modules/.bin/deno"), "run", "-A"];
  const tui = [...exe, join(root, "scripts/tui.ts"), ...args].map(quote).join(" ");
  const script = `cd ${quote(root)} && env -u CRUSADES_API_KEY ${tui} 2>${quote(join(dir, socket + ".err"))}; echo "tui exited $?"; stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\{0,1\\}icanon' -e '-\\{0,1\\}echo' | tr '\\n' ' '; echo${keep ? "; read _" : ""}`;
  const cmd = ["new-session", "-d", "-s", "tui", "-x", String(size[0]), "-y", String(size[1]), "sh", "-c", script];
  const r = tmux(socket, ...cmd);
  if (!r.ok) throw new Error(`tmux failed: ${r.err}`);
  const screen = (escapes = false) => tmux(socket, "capture-pane", "-p", ...(escapes ? ["-e"] : []), "-t", "tui").out;
  return {
    socket,
    screen,
    keys: (...keys: string[]) => tmux(socket, "send-keys", "-t", "tui", ...keys),
    info: (fmt: string) => tmux(socket, "display-message", "-p", "-t", "tui", fmt).out.trim(),
    alive: () => tmux(socket, "has-session", "-t", "tui").ok,
    /** Waits for the shell's report after the dashboard exits: its status, then the line settings. */
    exited: () => until((s) => /tui exited \d+\n\S*icanon \S*echo/.test(s), "the dashboard to exit and the shell to report"),
    until,
  };
  /** Polls the screen until `pred` holds; fails with the last screen when it does not within `ms`. */
  async function until(pred: (s: string) => boolean, what: string, ms = 15_000): Promise<string> {
    const end = Date.now() + ms;
    let s = "";
    while (Date.now() < end) {
      s = screen();
      if (pred(s)) return s;
      await Bun.sleep(100);
    }
    const err = join(dir, socket + ".err");
    throw new Error(`timed out waiting for ${what}; screen:\n${s}\nstderr:\n${existsSync(err) ? readFileSync(err, "utf8") : ""}`);
  }
}

/** The session ends once its only pane's shell has exited. */
async function waitGone(t: { alive(): boolean }) {
  const end = Date.now() + 10_000;
  while (t.alive() && Date.now() < end) await Bun.sleep(100);
  expect(t.alive()).toBe(false);
}

async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe.skipIf(!ready)("tui in tmux", () => {
  test(
    "dashboard → move → detail with runs and code → toggle code → back → quit restores the terminal",
    async () => {
      const url = await serve();
      const t = start(["--url", url, "--refresh", "60"], [160, 48]);
      const leaderHotkey = sc.hotkeys[2]!; // the seeded leader's miner
      const runnerUpId = sc.ids.runnerUp;

      let s = await t.until((s) => s.includes("Leaderboard") && s.includes(leaderHotkey), "the dashboard");
      const leaderRow = s.split("\n").find((l) => l.includes(leaderHotkey) && /│\s+1\s/.test(l));
      expect(leaderRow).toBeDefined();
      expect(leaderRow).toContain("1,495.0");
      expect(s).toContain("EVALUATING");
      expect(s).toContain("Top TPS");
      expect(t.info("#{alternate_on} #{cursor_flag}")).toBe("1 0"); // alternate screen, cursor hidden

      // j moves the selection (reverse video) from the leader to the runner-up.
      t.keys("j");
      const runnerUpHotkey = runnerUpId.split(":")[2]!;
      await t.until(() => t.screen(true).split("\n").some((l) => l.includes("\x1b[7m") && l.includes(runnerUpHotkey)), "the selection on row 2");

      t.keys("Enter");
      s = await t.until((s) => s.includes(`Submission ${runnerUpId}`) && s.includes("def inner_steps"), "the detail view");
      expect(s).toContain("# runner-up"); // first line of its code
      expect(s).toContain("1,510.0"); // its fastest run
      expect(s).toMatch(/Runs[─ ]+5\/5 ok/);
      expect(s.match(/✓ ok/g)?.length).toBe(5);
      // Highlighted: `def` in the keyword colour.
      expect(t.screen(true)).toMatch(/\x1b\[35mdef/);

      t.keys("c");
      s = await t.until((s) => !s.includes("def inner_steps"), "the code to hide");
      expect(s).toContain(`Submission ${runnerUpId}`);
      expect(s).toContain("1,510.0");
      t.keys("c");
      await t.until((s) => s.includes("def inner_steps"), "the code to come back");

      t.keys("b");
      s = await t.until((s) => s.includes("Leaderboard") && !s.includes("Submission chain"), "the dashboard again");
      expect(s).toContain(leaderHotkey);

      // Tab to the recent panel, 1 opens its newest row: the queued submission, whose code is not shown yet.
      t.keys("Tab", "1");
      s = await t.until((s) => s.includes(`Submission ${sc.ids.queued}`), "the queued submission");
      await t.until((s) => s.includes("hidden until evaluation finishes"), "the hidden URL");
      t.keys("Escape");
      await t.until((s) => s.includes("Recent activity"), "the dashboard after Esc");

      // A resize re-lays the frame out to the new width.
      t.keys("r");
      tmux(t.socket, "resize-window", "-t", "tui", "-x", "100", "-y", "30");
      await t.until((s) => s.split("\n").some((l) => l.startsWith("╭─ Leader TPS") && [...l].length === 100), "a 100-column frame");

      t.keys("q");
      s = await t.exited();
      expect(s).toContain("tui exited 0");
      expect(s).toMatch(/(^|\s)icanon(\s|$)/m); // line editing back on
      expect(s).toMatch(/(^|\s)echo(\s|$)/m);
      expect(s).not.toContain("Leaderboard"); // the primary screen, not the dashboard
      expect(t.info("#{alternate_on} #{cursor_flag}")).toBe("0 1");
      t.keys("Enter");
      await waitGone(t);
    },
    90_000,
  );

  test(
    "API down: says it is unreachable with the reason and a countdown, then recovers when it comes up; q ends the session",
    async () => {
      const port = await deadPort();
      const url = `http://127.0.0.1:${port}`;
      const t = start(["--url", url, "--refresh", "2"], [80, 24], false);
      const s = await t.until((s) => s.includes(`API unreachable at ${url}: connection refused`), "the unreachable banner");
      expect(s).toMatch(/connection refused, retrying in \d+s/);
      expect(s).toContain("no data");
      expect(s).not.toContain("1,495.0");

      await serve({ port });
      await t.until((s) => s.includes("1,495.0") && !s.includes("unreachable"), "recovery once the API is up", 20_000);

      t.keys("q");
      await waitGone(t);
    },
    90_000,
  );

  test(
    "a missing API key reads as a 401, not as an empty competition",
    async () => {
      const url = await serve({ apiKey: "sesame" });
      const t = start(["--url", url], [100, 30]);
      const s = await t.until((s) => s.includes("(401)"), "the 401 banner");
      expect(s).toContain(`${url} requires an API key (401): pass --api-key`);
      t.keys("q");
      expect(await t.exited()).toContain("tui exited 0");

      const ok = start(["--url", url, "--api-key", "sesame"], [100, 30]);
      await ok.until((s) => s.includes("1,495.0"), "the dashboard with the key");
      ok.keys("q");
      expect(await ok.exited()).toContain("tui exited 0");
    },
    90_000,
  );

  test(
    "SIGTERM restores the terminal too",
    async () => {
      const url = await serve();
      const t = start(["--url", url], [100, 30]);
      await t.until((s) => s.includes("Leaderboard"), "the dashboard");
      const shell = t.info("#{pane_pid}");
      const child = Bun.spawnSync(["ps", "-o", "pid=", "--ppid", shell], { stdout: "pipe" }).stdout.toString().trim().split(/\s+/)[0];
      expect(Number(child)).toBeGreaterThan(0);
      process.kill(Number(child), "SIGTERM");
      const s = await t.exited();
      expect(s).toContain("tui exited 143");
      expect(s).toMatch(/(^|\s)icanon(\s|$)/m);
      expect(t.info("#{alternate_on} #{cursor_flag}")).toBe("0 1");
    },
    60_000,
  );

  test(
    "runs under Deno 2 too (node:tty raw mode, resize, restore)",
    async () => {
      const url = await serve();
      const t = start(["--url", url], [100, 30], true, "deno");
      await t.until((s) => s.includes("1,495.0") && s.includes("Leaderboard"), "the dashboard under Deno", 30_000);
      t.keys("Enter");
      await t.until((s) => s.includes(`Submission ${sc.ids.leader}`) && s.includes("def inner_steps"), "the leader's detail");
      tmux(t.socket, "resize-window", "-t", "tui", "-x", "90", "-y", "28");
      await t.until((s) => s.split("\n").some((l) => l.startsWith("╭─ Submission") && [...l].length === 90), "a 90-column frame");
      t.keys("q");
      const s = await t.exited();
      expect(s).toContain("tui exited 0");
      expect(s).toMatch(/(^|\s)icanon(\s|$)/m);
      expect(t.info("#{alternate_on} #{cursor_flag}")).toBe("0 1");
    },
    90_000,
  );
});
