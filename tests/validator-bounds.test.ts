// The validator's waits are bounded and its clock is checked (issue 21 #8): `--once` stops waiting for
// sinks that keep failing and says what is left; a receiver that never answers does not hold intake back;
// SIGTERM while the node is frozen stops within the grace and names what it abandoned; a clock hours off
// the chain's is named at start. Real processes, localnets and HTTP receivers on loopback.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectChain } from "../core/chain/index.ts";
import { pairFromUri } from "../core/chain/wallet.ts";
import { buildCommitment } from "../core/commitment.ts";
import { repoRoot } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { spawnValidator, writeValidatorConfig } from "./fixtures/validator-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-bounds-"));
const quiet = createLogger({ level: "error" });
const children: ChildProcess[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  // SIGKILL ends a stopped (frozen) process too.
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function localnet(): Promise<Localnet> {
  const net = await startLocalnet({ port: 0, blockMs: 200, netuid: 3, miners: 1, log: quiet });
  cleanups.push(() => net.stop());
  return net;
}

/** A REST receiver on loopback: `answer` null holds every request open until the test ends. */
function receiver(answer: number | null) {
  const open: Request[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    fetch(req) {
      open.push(req);
      return answer === null ? new Promise<Response>(() => {}) : new Response("receiver down", { status: answer });
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}/hook`, requests: () => open };
}

function validator(configPath: string, args: string[] = [], env: Record<string, string> = {}) {
  const v = spawnValidator(["--config", configPath, ...args], { CRUSADES_HOTKEY_URI: "//Charlie", CRUSADES_LOG_LEVEL: "info", ...env }, children);
  return { child: v.child, done: v.done, output: () => v.stdout() + v.stderr() };
}

async function until(what: string, check: () => boolean, ms = 60_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

const rest = (url: string, timeoutMs = 10_000) => ({ use: "rest", options: { urls: [url], secret: "s".repeat(32), timeoutMs } });

describe("bounded waits", () => {
  test("--once with a receiver that always answers 500 stops after --drain-seconds, names what is left, and keeps it queued", async () => {
    const net = await localnet();
    const hook = receiver(500);
    const path = writeValidatorConfig(dir, "once-500", net.url, { sinks: [{ use: "chain-weights" }, rest(hook.url)] });
    const v = validator(path, ["--once", "--drain-seconds", "2"]);
    expect(await v.done).toBe(1);
    expect(hook.requests().length).toBeGreaterThanOrEqual(1);
    expect(v.output()).toMatch(/1 event deliveries still not taken after waiting 2 s for the sinks \(rest: 1, last error: POST http:\/\/127\.0\.0\.1:\d+\/hook: HTTP 500: receiver down\); they stay queued for the next start/);
    // A clock that agrees with the chain's is not mentioned.
    expect(v.output()).not.toContain("this machine's clock");
    const store = await Store.open(join(dir, "once-500.db"));
    try {
      const rows = store.db.prepare("SELECT sink, state FROM deliveries ORDER BY sink").all();
      expect(rows).toEqual([
        { sink: "chain-weights", state: "delivered" },
        { sink: "rest", state: "pending" },
      ]);
    } finally {
      store.close();
    }
  }, 90_000);

  test("a receiver that never answers does not hold intake back", async () => {
    const net = await localnet();
    const hook = receiver(null);
    const path = writeValidatorConfig(dir, "hanging", net.url, {
      sources: [{ use: "chain-reveals", options: { revealBlocks: 4, blockTime: 0.2 } }],
      sinks: [{ use: "chain-weights" }, rest(hook.url, 120_000)],
    });
    const v = validator(path);
    await until("the weights event to reach the receiver", () => hook.requests().length > 0);

    const chain = await connectChain({ network: net.url, log: quiet });
    cleanups.push(() => chain.close());
    const miner = net.accounts.miners[0]!;
    const receipt = await chain.setCommitment(await pairFromUri(miner.uri), 3, buildCommitment("print(1)\n", "https://example.org/train.py"), {
      blocksUntilReveal: 4,
      blockTime: 0.2,
    });
    await until("the revealed commitment to be received", () => v.output().includes(`received chain:3:`) && v.output().includes(miner.ss58));
    // Still waiting on the receiver: the submission came in beside the hanging delivery, not after it.
    expect(hook.requests().length).toBe(1);
    expect(hook.requests()[0]!.signal.aborted).toBe(false);
    expect(receipt.block).toBeGreaterThan(0);
    v.child.kill("SIGTERM");
    expect(await v.done).toBe(0);
  }, 120_000);

  test("SIGTERM while the node is frozen stops within the grace and names what it abandoned", async () => {
    const node = spawn(process.execPath, [join(repoRoot, "scripts/localnet.ts"), "--port", "0", "--block-ms", "200", "--miners", "1", "--json"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(node);
    let first = "";
    node.stdout!.on("data", (c) => (first += c));
    await until("the localnet to start", () => first.includes("\n"));
    const { url } = JSON.parse(first.split("\n")[0]!) as { url: string };

    const v = validator(writeValidatorConfig(dir, "frozen", url));
    await until("the validator to run", () => v.output().includes("running; polling every"));
    node.kill("SIGSTOP");
    // Long enough for a poll (every second) to be waiting on the node.
    await Bun.sleep(2500);
    v.child.kill("SIGTERM");
    expect(await v.done).toBe(0);
    const lines = v.output().split("\n").filter((l) => l.includes("stopped without waiting longer than 5 s for:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/intake \(polling sources\)|weights \(reading the chain\)/);
  }, 120_000);

  test("a clock two hours off the chain's is named at start", async () => {
    const net = await localnet();
    const path = writeValidatorConfig(dir, "clock", net.url, { sinks: [] });
    const v = validator(path, ["--once"], { CRUSADES_CLOCK_OFFSET_SECONDS: "7200" });
    expect(await v.done).toBe(0);
    const lines = v.output().split("\n").filter((l) => l.includes("this machine's clock"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("ahead of the chain's by about 2 h");
    const behind = validator(writeValidatorConfig(dir, "clock-behind", net.url, { sinks: [] }), ["--once"], { CRUSADES_CLOCK_OFFSET_SECONDS: "-7200" });
    expect(await behind.done).toBe(0);
    expect(behind.output()).toContain("this machine's clock is behind the chain's by about 2 h");
  }, 90_000);
});
