// The validator end to end, with real parts: the localnet over a websocket, miners committing through
// scripts/submit.ts, code served over loopback HTTP, `scripts/validator.ts --once` as a subprocess
// running the real harness (process executor, tiny profile, PyTorch on CPU), weights read back from the
// chain, and a REST receiver that checks every signature. Then the same round again under a validator
// that is SIGKILLed at random points and restarted: it must end in the same place, with no run recorded
// twice and no event lost.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectChain, type ChainClient } from "../core/chain/index.ts";
import { loadHParams, repoRoot } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { verifySignature } from "../plugins/sinks/rest.ts";

const NETUID = 3;
const BLOCK_MS = 250;
const SECRET = "e2e-webhook-secret-0123456789";
const quiet = createLogger({ level: "error" });

const template = readFileSync(join(repoRoot, "local_test/train.py"), "utf8");
const CODE = {
  // Honest but slow: the template with a 4 s pause in each call, a floor that CPU contention from other jobs cannot erase.
  "slow.py": `${template}\n\nimport time as _time\n_template_inner_steps = inner_steps\n\n\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    _time.sleep(4.0)\n    return _template_inner_steps(model, data_iterator, optimizer, num_steps, device)\n`,
  // Honest and fast.
  "fast.py": readFileSync(join(repoRoot, "tests/fixtures/train/honest_fast.py"), "utf8"),
  // The cheat the demo ships: trains on every other batch and reports every step's tokens. Unchecked, it
  // would be the fastest by far.
  "cheat.py": readFileSync(join(repoRoot, "local_test/examples/cheat_train.py"), "utf8"),
};
const VERIFICATION_FAILURES = ["token_count", "logits_shape", "non_finite", "frozen_params", "weights_mismatch", "loss_mismatch", "logits_mismatch", "optimizer_state"];

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-e2e-"));
const servers: Server[] = [];
let net: Localnet;
let chain: ChainClient;
let codeBase = "";
let hookBase = "";
const hook: { path: string; id: string; kind: string; status: number; verified: boolean; body: Record<string, unknown> }[] = [];
let hookFailuresLeft = 2; // the receiver starts "down": the first deliveries must be retried
const miners: Record<string, { uri: string; uid: number; hotkey: string }> = {};

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function run(cmd: string[], env: Record<string, string>, logFile: string): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn(process.execPath, cmd, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (c) => (out += c));
  child.stderr!.on("data", (c) => (out += c));
  const done = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      writeFileSync(logFile, out, { flag: "a" });
      resolve(code);
    }),
  );
  return { child, done };
}

/** Direct children of `pid` (the process executor starts the harness as a process-group leader). */
function childrenOf(pid: number): number[] {
  const tasks = `/proc/${pid}/task`;
  if (!existsSync(tasks)) return [];
  return readdirSync(tasks).flatMap((t) => {
    try {
      return readFileSync(`${tasks}/${t}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

function writeConfig(name: string, hookPath: string): string {
  const hp = { ...loadHParams(), evaluation_runs: 2, reveal_blocks: 4, block_time: BLOCK_MS / 1000, set_weights_interval_blocks: 100_000 };
  writeFileSync(join(dir, "hparams.json"), JSON.stringify(hp, null, 2));
  const config = {
    network: net.url,
    netuid: NETUID,
    database: join(dir, `${name}.db`),
    hparams: join(dir, "hparams.json"),
    profile: "tiny",
    sources: [{ use: "chain-reveals" }],
    executor: { use: "process", options: { unsafe: true } },
    sinks: [{ use: "chain-weights" }, { use: "rest", options: { urls: [`${hookBase}${hookPath}`], secret: SECRET, timeoutMs: 5000 } }],
    allowLoopbackCode: true,
    pollIntervalSeconds: 1,
  };
  const path = join(dir, `${name}.config.json`);
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

const minerUri: Record<keyof typeof CODE, string> = { "slow.py": "//Miner1", "fast.py": "//Miner2", "cheat.py": "//Miner3" };
const hotkeyOf = (file: keyof typeof CODE) => miners[minerUri[file]]!.hotkey;

beforeAll(async () => {
  net = await startLocalnet({ port: 0, blockMs: BLOCK_MS, netuid: NETUID, miners: 3, log: quiet });
  for (const m of net.accounts.miners) miners[m.uri] = { uri: m.uri, uid: m.uid!, hotkey: m.ss58 };
  chain = await connectChain({ network: net.url, log: quiet });

  codeBase = await listen(
    createServer((req, res) => {
      const body = CODE[(req.url ?? "").slice(1) as keyof typeof CODE];
      if (body === undefined) return res.writeHead(404).end();
      res.writeHead(200, { "content-type": "text/plain" }).end(body);
    }),
  );
  hookBase = await listen(
    createServer((req, res) => {
      let raw = "";
      req.on("data", (c) => (raw += c));
      req.on("end", () => {
        const status = hookFailuresLeft-- > 0 ? 503 : 200;
        const verified = verifySignature(SECRET, String(req.headers["x-crusades-timestamp"]), raw, String(req.headers["x-crusades-signature"]));
        const body = JSON.parse(raw) as Record<string, unknown>;
        hook.push({ path: req.url ?? "", id: String(req.headers["idempotency-key"]), kind: String(body.kind), status, verified, body });
        res.writeHead(status).end();
      });
    }),
  );

  // Three miners commit through the miner CLI; the commitments are timelocked until their reveal.
  const submits = (Object.keys(CODE) as (keyof typeof CODE)[]).map((file) =>
    run(
      ["scripts/submit.ts", "submit", `${codeBase}/${file}`, "--network", net.url, "--netuid", String(NETUID), "--reveal-blocks", "4", "--block-time", String(BLOCK_MS / 1000), "--yes", "--allow-loopback"],
      { CRUSADES_HOTKEY_URI: minerUri[file] },
      join(dir, "submit.log"),
    ).done,
  );
  const codes = await Promise.all(submits);
  if (codes.some((c) => c !== 0)) throw new Error(`submit failed: ${readFileSync(join(dir, "submit.log"), "utf8")}`);
  for (let i = 0; i < 240 && (await chain.revealedCommitments(NETUID)).length < 3; i++) await Bun.sleep(250);
  expect((await chain.revealedCommitments(NETUID)).length).toBe(3);
}, 120_000);

afterAll(async () => {
  await chain?.close();
  await net?.stop();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  states: Record<string, { state: string; error: string | null; successfulRuns: number | null; runs: number }>;
  leader: string | null;
  events: string[];
}

async function outcome(db: string): Promise<Outcome & { store: Store }> {
  const store = await Store.open(db);
  const rows = store.db.prepare("SELECT id, hotkey, state, error_code, successful_runs FROM submissions ORDER BY id").all<{ id: string; hotkey: string; state: string; error_code: string | null; successful_runs: number | null }>();
  const states = Object.fromEntries(rows.map((r) => [r.hotkey, { state: r.state, error: r.error_code, successfulRuns: r.successful_runs, runs: store.runs(r.id).length }]));
  const leader = store.leader(loadHParams().leader_threshold)?.hotkey ?? null;
  const events = store.db.prepare("SELECT id FROM events ORDER BY id").all<{ id: string }>().map((e) => e.id);
  return { states, leader, events, store };
}

describe("validator end to end on the localnet", () => {
  let reference: Outcome;

  test(
    "picks up the revealed submissions, evaluates each twice, rejects the cheater, sets weights for the faster honest miner, signs every webhook",
    async () => {
      const log = join(dir, "a.log");
      const v = run(["scripts/validator.ts", "--config", writeConfig("a", "/a"), "--once"], { CRUSADES_HOTKEY_URI: "//Charlie" }, log);
      expect(await v.done).toBe(0);
      const out = readFileSync(log, "utf8");
      expect(out).toContain(`hotkey    ${net.accounts.validator.ss58}, uid 2`);
      expect(out).toContain("executor  process");

      const o = await outcome(join(dir, "a.db"));
      try {
        const [slow, fast, cheat] = (["slow.py", "fast.py", "cheat.py"] as const).map(hotkeyOf);
        expect(o.states[slow!]).toEqual({ state: "published", error: null, successfulRuns: 2, runs: 2 });
        expect(o.states[fast!]).toEqual({ state: "published", error: null, successfulRuns: 2, runs: 2 });
        expect(o.states[cheat!]).toMatchObject({ state: "published", error: "disqualified", successfulRuns: 0, runs: 2 });
        const cheatId = o.store.db.prepare("SELECT id FROM submissions WHERE hotkey = ?").get<{ id: string }>(cheat!)!.id;
        for (const r of o.store.runs(cheatId)) expect(VERIFICATION_FAILURES).toContain(r.error_code!);
        expect(o.leader).toBe(fast!);
        const scores = o.store.db.prepare("SELECT hotkey, score FROM submissions WHERE score IS NOT NULL").all<{ hotkey: string; score: number }>();
        const score = (h: string) => scores.find((s) => s.hotkey === h)!.score;
        expect(score(fast!)).toBeGreaterThan(score(slow!));

        // Progress lines an operator reads: each run with its TPS or its reason.
        expect(out).toMatch(/run 2\/2 of chain:3:\d+:\w+: [\d.]+ tok\/s/);
        expect(out).toMatch(new RegExp(`run 1/2 of ${cheatId} rejected: (${VERIFICATION_FAILURES.join("|")})`));

        // On chain: 95% to the burn uid, 5% to the faster honest miner.
        const fastUid = Object.values(miners).find((m) => m.hotkey === fast)!.uid;
        expect(await chain.weights(NETUID, 2)).toEqual([
          { uid: 1, weight: 65535 },
          { uid: fastUid, weight: 3449 },
        ]);
        expect(await chain.lastUpdate(NETUID, 2)).toBeGreaterThan(0);

        // The receiver was down for the first two deliveries; every event arrived later, signed.
        const a = hook.filter((h) => h.path === "/a");
        expect(a.every((h) => h.verified)).toBe(true);
        expect(a.filter((h) => h.status === 503)).toHaveLength(2);
        const accepted = a.filter((h) => h.status === 200);
        expect(accepted.map((h) => h.id).sort()).toEqual(o.events);
        expect(accepted.map((h) => h.kind).sort()).toEqual(["score", "score", "score", "weights"]);
        expect(accepted.find((h) => h.kind === "weights")!.body).toMatchObject({ uids: [1, fastUid], leaderSubmissionId: expect.stringContaining(fast!) });
        reference = { states: o.states, leader: o.leader, events: o.events };
      } finally {
        o.store.close();
      }
    },
    900_000,
  );

  test(
    "killed with SIGKILL at random points and restarted, it ends the same: same outcome, each run recorded once, no event lost",
    async () => {
      expect(reference).toBeDefined();
      const config = writeConfig("b", "/b");
      const log = join(dir, "b.log");
      // //Alice (the subnet owner, uid 0) has a validator permit too: a second validator with its own store.
      const env = { CRUSADES_HOTKEY_URI: "//Alice" };
      let kills = 0;
      for (let i = 0; i < 4; i++) {
        const v = run(["scripts/validator.ts", "--config", config, "--once"], env, log);
        const timer = setTimeout(() => {
          const harnesses = childrenOf(v.child.pid!);
          v.child.kill("SIGKILL");
          kills++;
          // The harness runs in its own process group and would outlive the validator; end it like a host reboot would.
          for (const pid of harnesses) {
            try {
              process.kill(-pid, "SIGKILL");
            } catch {
              // already gone
            }
          }
        }, 500 + Math.random() * 45_000);
        const code = await v.done;
        clearTimeout(timer);
        if (code === 0) break;
        expect(code).toBeNull(); // killed, not failed
      }
      expect(await run(["scripts/validator.ts", "--config", config, "--once"], env, log).done).toBe(0);

      const o = await outcome(join(dir, "b.db"));
      try {
        expect(o.states).toEqual(reference.states);
        expect(o.leader).toBe(reference.leader);
        expect(o.events).toEqual(reference.events);
        const runs = o.store.db.prepare("SELECT state, attempts, task_id FROM runs").all<{ state: string; attempts: number; task_id: string }>();
        expect(runs).toHaveLength(6);
        expect(runs.every((r) => r.state === "done")).toBe(true);
        expect(new Set(runs.map((r) => r.task_id)).size).toBe(6);
        expect(runs.reduce((n, r) => n + r.attempts - 1, 0)).toBeLessThanOrEqual(kills);

        expect(await chain.weights(NETUID, 0)).toEqual(await chain.weights(NETUID, 2));
        const b = hook.filter((h) => h.path === "/b" && h.status === 200);
        expect(b.every((h) => h.verified)).toBe(true);
        expect([...new Set(b.map((h) => h.id))].sort()).toEqual(o.events);
        expect(b.length - o.events.length).toBeLessThanOrEqual(kills);
        console.log(`validator kill test: ${kills} kill(s), ${runs.reduce((n, r) => n + r.attempts, 0)} run attempts for 6 runs, ${b.length} webhook deliveries for ${o.events.length} events`);
      } finally {
        o.store.close();
      }
    },
    1_200_000,
  );
});
