#!/usr/bin/env bun
// The whole competition on one machine: a localnet, three miners' train.py files on a loopback server
// (the template, a faster honest loop, a cheat), submitted with the miner CLI, evaluated by the validator
// on the CPU (tiny profile, process executor), weights set on the localnet, and the API and dashboard
// serving the result. Stays up until Ctrl-C; `--once` exits after the leaderboard.
// Exit codes: 0 done, 1 failed, 2 bad usage, 130 interrupted.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { z } from "zod";
import type { LeaderboardPage, RunPage, SubmissionPage } from "../api/schemas.ts";
import { connectChain, type ChainClient } from "../core/chain/index.ts";
import { UserError } from "../core/errors.ts";
import { defaultHParamsPath, repoRoot } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { hostFiles, type CodeHost } from "./demo/host.ts";
import { formatLeaderboard, type Entry } from "./demo/leaderboard.ts";
import { checkPython, portFree } from "./demo/preflight.ts";
import { startScript, type Child } from "./demo/processes.ts";

const HELP = `usage: bun scripts/demo.ts [--once] [--port N] [--runs N] [--keep]

Runs a whole Crusades competition locally: localnet, three miners, a validator on the CPU, weights,
the REST API and the web dashboard. Ctrl-C stops everything it started.

  --once      exit after printing the leaderboard (non-interactive; for CI and tests)
  --port N    dashboard/API port on 127.0.0.1 (default 8080; a free one when N is taken; 0 = any)
  --runs N    evaluation runs per submission (default 3; the score is their median)
  --keep      keep the work dir (database, configs, logs) instead of removing it on exit
  --help      this text`;

/** The demo's miners, in submission order: name, file, what it shows. */
const MINERS = [
  { name: "template", file: "local_test/train.py", about: "the plain loop miners start from" },
  { name: "fast", file: "local_test/examples/fast_train.py", about: "honest, less Python per step" },
  { name: "cheat", file: "local_test/examples/cheat_train.py", about: "skips work; must be rejected" },
] as const;

// Fast blocks so reveals and weights happen in seconds; drand still reveals on its own 3 s rounds.
const BLOCK_MS = 1000;
const SETTLE_TIMEOUT_MS = 20 * 60_000;
const MIN_TIMED_STEPS = 40;

class Interrupted extends Error {}

const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
const out = (line = "") => process.stdout.write(line + "\n");
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

let stepNo = 0;
const STEPS = 7;
async function step<T>(title: string, fn: () => Promise<T>): Promise<T> {
  stepNo++;
  out(bold(`[${stepNo}/${STEPS}] ${title}`));
  const start = performance.now();
  const value = await fn();
  out(`      done in ${((performance.now() - start) / 1000).toFixed(1)}s (${elapsed()} since start)`);
  return value;
}
const note = (line: string) => out(`      ${line}`);

function args() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        once: { type: "boolean" },
        port: { type: "string" },
        runs: { type: "string" },
        keep: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UserError(`${(e as Error).message}\n\n${HELP}`, "usage");
  }
  if (values.help) {
    out(HELP);
    process.exit(0);
  }
  const int = (name: string, v: string | undefined, fallback: number, min: number, max: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new UserError(`--${name} must be an integer ${min}–${max}, got ${JSON.stringify(v)}`, "usage");
    return n;
  };
  return { once: !!values.once, port: int("port", values.port, 8080, 0, 65535), runs: int("runs", values.runs, 3, 1, 20), keep: !!values.keep };
}

/** Everything the demo starts, so one place stops it. */
class Resources {
  children: Child[] = [];
  host: CodeHost | null = null;
  chain: ChainClient | null = null;
  net: Localnet | null = null;
  workDir: string | null = null;

  async stopAll(keep: boolean) {
    // The validator first: it abandons its run and stops the evaluation's processes.
    for (const c of [...this.children].reverse()) await c.stop();
    await this.host?.close();
    await this.chain?.close().catch(() => {});
    await this.net?.stop();
    if (this.workDir && !keep) rmSync(this.workDir, { recursive: true, force: true });
  }
}

async function api<T>(base: string, path: string): Promise<T> {
  const r = await fetch(`${base}${path}`);
  if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}

async function main(): Promise<number> {
  const a = args();
  const res = new Resources();
  const stop = new AbortController();
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals > 1) {
      // A second Ctrl-C: no more waiting for graceful exits.
      for (const c of res.children) {
        try {
          process.kill(-c.pid, "SIGKILL");
        } catch {
          // that group is already gone
        }
      }
      process.exit(130);
    }
    out("\nstopping everything the demo started… (Ctrl-C again to force)");
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const sleep = (ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (stop.signal.aborted) return reject(new Interrupted());
      const t = setTimeout(() => {
        stop.signal.removeEventListener("abort", abort);
        resolve();
      }, ms);
      const abort = () => {
        clearTimeout(t);
        reject(new Interrupted());
      };
      stop.signal.addEventListener("abort", abort, { once: true });
    });
  const unlessStopped = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, reject) => stop.signal.addEventListener("abort", () => reject(new Interrupted()), { once: true }))]);

  let code = 0;
  let keep = a.keep;
  try {
    out(bold("Crusades demo: a whole competition on this machine (CPU, tiny model)"));
    await step("checking Python and the evaluation packages", async () => note(`✓ ${await checkPython(process.env.PYTHON ?? "python3")}`));

    const workDir = (res.workDir = mkdtempSync(join(tmpdir(), "crusades-demo-")));
    const logDir = join(workDir, "logs");
    mkdirSync(logDir);
    const net = await step("starting the localnet (a subtensor stand-in on a real websocket)", async () => {
      const n = (res.net = await startLocalnet({
        port: 0,
        blockMs: BLOCK_MS,
        miners: MINERS.length,
        weightsRateLimit: 5,
        log: createLogger({ level: "warn" }).child({ component: "localnet" }),
      }));
      note(`✓ ${n.url}, netuid ${n.netuid}, a block every ${BLOCK_MS / 1000}s`);
      note(`  validator ${n.accounts.validator.uri} uid ${n.accounts.validator.uid}, burn uid ${n.accounts.burn.uid}, miners ${n.accounts.miners.map((m) => `${m.uri} uid ${m.uid}`).join(", ")}`);
      return n;
    });
    res.chain = await connectChain({ network: net.url, log: createLogger({ level: "warn" }) });

    // The demo's own competition parameters: fewer runs and near-instant reveals and weights, same
    // verification as production. A longer timed window than a few steps: on a small shared CPU the
    // clock's noise would otherwise decide the ranking (it costs little next to starting the harness).
    const hp = JSON.parse(readFileSync(defaultHParamsPath, "utf8"));
    Object.assign(hp, { netuid: net.netuid, evaluation_runs: a.runs, reveal_blocks: 4, block_time: BLOCK_MS / 1000, set_weights_interval_blocks: 10 });
    hp.profiles.tiny.eval_steps = Math.max(hp.profiles.tiny.eval_steps, MIN_TIMED_STEPS);
    const hparamsPath = join(workDir, "hparams.json");
    writeFileSync(hparamsPath, JSON.stringify(hp, null, 2));
    const dbPath = join(workDir, "crusades.db");
    const configPath = join(workDir, "validator.config.json");
    writeFileSync(
      configPath,
      JSON.stringify(
        {
          network: net.url,
          database: dbPath,
          hparams: hparamsPath,
          profile: "tiny",
          sources: [{ use: "chain-reveals" }],
          executor: { use: "process", options: { unsafe: true } },
          sinks: [{ use: "chain-weights" }],
          allowLoopbackCode: true,
          pollIntervalSeconds: 2,
        },
        null,
        2,
      ),
    );

    const host = await step("hosting three train.py files on a loopback HTTP server", async () => {
      const h = (res.host = await hostFiles(Object.fromEntries(MINERS.map((m) => [m.name, join(repoRoot, m.file)]))));
      for (const m of MINERS) note(`✓ ${m.name.padEnd(8)} ${h.urls[m.name]}  (${m.file}: ${m.about})`);
      return h;
    });

    const apiUrl = await step("starting the API and the web dashboard", async () => {
      // Created and migrated now, so the dashboard can be watched from the first submission on.
      (await Store.open(dbPath)).close();
      let port = a.port;
      if (port !== 0 && !(await portFree(port))) {
        note(`port ${port} is busy; using a free one instead (--port N picks another)`);
        port = 0;
      }
      const child = startScript("api", "scripts/api.ts", ["--db", dbPath, "--port", String(port), "--host", "127.0.0.1", "--hparams", hparamsPath], { logDir });
      res.children.push(child);
      const m = await unlessStopped(child.waitFor(/listening on (http:\/\/\S+)/, 60_000));
      note(`✓ dashboard ${m[1]}/  (OpenAPI ${m[1]}/openapi)`);
      return m[1]!;
    });

    const label = new Map<string, string>(net.accounts.miners.map((acc, i) => [acc.ss58, MINERS[i]!.name]));
    await step("submitting with scripts/submit.ts: one miner hotkey each, timelocked commitments", async () => {
      const submits = MINERS.map((m, i) => {
        const child = startScript(
          `submit-${m.name}`,
          "scripts/submit.ts",
          ["submit", host.urls[m.name]!, "--network", net.url, "--netuid", String(net.netuid), "--reveal-blocks", String(hp.reveal_blocks), "--block-time", String(hp.block_time), "--yes", "--allow-loopback"],
          { logDir, env: { CRUSADES_HOTKEY_URI: net.accounts.miners[i]!.uri } },
        );
        res.children.push(child);
        return child;
      });
      const codes = await unlessStopped(Promise.all(submits.map((c) => c.exited)));
      for (const [i, c] of submits.entries()) {
        if (codes[i] !== 0) throw new UserError(`submitting ${MINERS[i]!.name} failed (exit ${codes[i]}):\n${c.tail()}`);
        const block = c.tail(30).match(/committed in block (\d+)/)?.[1];
        const reveal = c.tail(30).match(/reveal block\s+≈ (\d+)/)?.[1];
        note(`✓ ${MINERS[i]!.name.padEnd(8)} ${net.accounts.miners[i]!.uri} uid ${net.accounts.miners[i]!.uid}: committed in block ${block}, reveals ≈ block ${reveal}`);
      }
      res.children = res.children.filter((c) => !submits.includes(c));
    });

    const validator = startScript("validator", "scripts/validator.ts", ["--config", configPath], {
      logDir,
      env: { CRUSADES_HOTKEY_URI: net.accounts.validator.uri },
    });
    res.children.push(validator);

    const entries = await step(`validating: reveal, fetch and pin, ${a.runs} runs each on the CPU, score`, async () => {
      await unlessStopped(validator.waitFor(/crusades validator/, 60_000));
      note(`✓ validator ${net.accounts.validator.uri} running (process executor, tiny profile); log ${validator.logPath}`);
      const seen = new Map<string, string>();
      const runsSeen = new Map<string, number>();
      const runsOf = async (id: string) => (await api<z.infer<typeof RunPage>>(apiUrl, `/api/submissions/${encodeURIComponent(id)}/runs`)).items;
      const deadline = Date.now() + SETTLE_TIMEOUT_MS;
      for (;;) {
        if (!validator.running()) {
          throw new UserError(`the validator exited early:\n${validator.tail()}`);
        }
        const page = await api<z.infer<typeof SubmissionPage>>(apiUrl, "/api/submissions?limit=50");
        const ours = page.items.filter((s) => label.has(s.hotkey)).reverse();
        for (const s of ours) {
          const who = label.get(s.hotkey)!.padEnd(8);
          const say = (line: string) => note(`[${elapsed().padStart(6)}] ${who} ${line}`);
          if (s.runs_done > (runsSeen.get(s.id) ?? 0)) {
            for (const r of (await runsOf(s.id)).filter((r) => r.state === "done" && r.run_index >= (runsSeen.get(s.id) ?? 0))) {
              say(
                r.success
                  ? `run ${r.run_index + 1}/${s.runs_planned}: ${Math.round(r.tps ?? 0).toLocaleString("en-US")} TPS (timed window ${r.wall_time_seconds?.toFixed(2)}s)`
                  : `run ${r.run_index + 1}/${s.runs_planned}: rejected, ${r.error_code}`,
              );
            }
            runsSeen.set(s.id, s.runs_done);
          }
          const what =
            s.outcome === "scored"
              ? `scored: median ${Math.round(s.score ?? 0).toLocaleString("en-US")} TPS over ${s.successful_runs}/${s.runs_planned} runs`
              : s.outcome === "failed"
                ? `failed: ${s.successful_runs ?? 0}/${s.runs_planned ?? "?"} runs verified`
                : `${s.state === "evaluating" ? "code pinned, runs queued" : s.state} (revealed at block ${s.reveal_block})`;
          if (seen.get(s.id) !== what) {
            seen.set(s.id, what);
            say(what);
          }
        }
        if (ours.length === MINERS.length && ours.every((s) => s.outcome === "scored" || s.outcome === "failed")) {
          return Promise.all(ours.map(async (s): Promise<Entry> => ({ submission: s, runs: await runsOf(s.id) })));
        }
        if (Date.now() > deadline) throw new UserError(`not every submission settled within ${SETTLE_TIMEOUT_MS / 60_000} minutes; validator log:\n${validator.tail()}`);
        await sleep(2000);
      }
    });
    const scoredAt = elapsed();

    const board = await api<z.infer<typeof LeaderboardPage>>(apiUrl, "/api/leaderboard?limit=50");
    for (const e of entries) e.row = board.items.find((r) => r.submission_id === e.submission.id);
    const leader = board.items.find((r) => r.is_leader) ?? null;

    await step("setting weights on the localnet", async () => {
      const validatorUid = net.accounts.validator.uid!;
      const byUid = new Map<number, string>([[hp.burn_uid, "burn"], ...net.accounts.miners.map((m, i): [number, string] => [m.uid!, MINERS[i]!.name])]);
      const want = leader?.uid ?? null;
      for (;;) {
        const onChain = await res.chain!.weights(net.netuid, validatorUid);
        const total = onChain.reduce((s, w) => s + w.weight, 0);
        const leaderShare = want === null ? 0 : (onChain.find((w) => w.uid === want)?.weight ?? 0);
        // Done once the chain holds weights that give the current leader its share (or all to burn).
        if (total > 0 && (want === null ? onChain.every((w) => w.uid === hp.burn_uid) : leaderShare > 0)) {
          const shares = onChain.map((w) => `uid ${w.uid} (${byUid.get(w.uid) ?? "?"}) ${((w.weight / total) * 100).toFixed(1)}%`);
          note(`✓ weights set by uid ${validatorUid} at block ${await res.chain!.lastUpdate(net.netuid, validatorUid)}: ${shares.join(", ")}`);
          return;
        }
        await sleep(1000);
      }
    });

    out("");
    out(bold(`Leaderboard (scored ${scoredAt} after start; ${a.runs} runs each, tiny profile on the CPU)`));
    for (const line of formatLeaderboard(entries, (hk) => label.get(hk) ?? "?")) out(line && `  ${line}`);
    out("");
    out(`  dashboard  ${apiUrl}/`);
    out(`  OpenAPI    ${apiUrl}/openapi   (JSON: ${apiUrl}/openapi/json)`);
    out(`  try        curl -s ${apiUrl}/api/leaderboard`);
    out(`  work dir   ${workDir}${a.keep ? " (kept)" : " (removed on exit)"}`);
    out(`  logs       ${logDir}`);
    out("");
    if (a.once) {
      out(`--once: stopping (${elapsed()} in all)`);
    } else {
      out(bold("Running until Ctrl-C (the validator keeps polling; submit more with scripts/submit.ts)."));
      const exit = await unlessStopped(validator.exited).catch(() => null);
      if (exit !== null) throw new UserError(`the validator exited (status ${exit}):\n${validator.tail()}`);
    }
  } catch (e) {
    if (e instanceof Interrupted) code = 130;
    else {
      // Said before the clean-up, so it is not buried under the stop messages.
      process.stderr.write(`demo: ${e instanceof UserError ? e.message : ((e as Error).stack ?? String(e))}\n`);
      code = e instanceof UserError && e.code === "usage" ? 2 : 1;
      // What went wrong is in the logs: a failed demo keeps them.
      keep = true;
    }
  } finally {
    await res.stopAll(keep);
    if (res.workDir) out(`stopped everything the demo started; ${keep ? `kept ${res.workDir} (logs in ${join(res.workDir, "logs")})` : `removed ${res.workDir}`}`);
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`demo: ${e instanceof UserError ? e.message : (e.stack ?? String(e))}\n`);
    process.exit(e instanceof UserError && e.code === "usage" ? 2 : 1);
  },
);
