// The validator and the miner CLI when the node is not there: refused at start, gone for a while, or
// replaced by a fresh chain. Real localnets on loopback ports, real processes, real SQLite files.
import { afterAll, describe, expect, test } from "bun:test";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../core/log.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { runSubmitCli } from "./fixtures/submit-cli.ts";
import { spawnValidator, writeValidatorConfig } from "./fixtures/validator-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-chain-"));
const quiet = createLogger({ level: "error" });
const nets: Localnet[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const n of nets) await n.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/** A loopback port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function localnet(port: number, statePath?: string): Promise<Localnet> {
  const net = await startLocalnet({ port, blockMs: 200, netuid: 3, miners: 1, statePath, log: quiet });
  nets.push(net);
  return net;
}

function validator(configPath: string, once = false) {
  const v = spawnValidator(["--config", configPath, ...(once ? ["--once"] : [])], { CRUSADES_HOTKEY_URI: "//Charlie", CRUSADES_LOG_LEVEL: "info" }, children);
  return { child: v.child, done: v.done, output: () => v.stdout() + v.stderr() };
}

const config = (name: string, network: string, extra: Record<string, unknown> = {}) => writeValidatorConfig(dir, name, network, extra);

async function until(what: string, check: () => boolean, ms = 60_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

const RAW_POLKADOT = /RPC-CORE|API-WS|Failed WS Request|ErrorEvent|Unhandled|ECONNREFUSED/;

describe("a node that refuses connections", () => {
  test("submit.ts status and submit say so in one line and exit 1", async () => {
    const port = await freePort();
    const code = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n") });
    try {
      const url = `ws://127.0.0.1:${port}`;
      const status = await runSubmitCli(["status", "--network", url]);
      expect(status.code).toBe(1);
      expect(status.stderr.trim()).toBe(`error: cannot reach a subtensor node at ${url}: connection refused`);
      const submit = await runSubmitCli(["submit", `http://127.0.0.1:${code.port}/train.py`, "--network", url, "--allow-loopback", "--yes"], { CRUSADES_HOTKEY_URI: "//Miner1" });
      expect(submit.code).toBe(1);
      expect(submit.stderr.trim()).toBe(`error: cannot reach a subtensor node at ${url}: connection refused`);
      expect(status.stdout + submit.stdout).not.toMatch(RAW_POLKADOT);
    } finally {
      code.stop(true);
    }
  }, 60_000);

  test("the validator redials with backoff, one line per attempt, and starts once the node is up", async () => {
    const port = await freePort();
    const v = validator(config("late-node", `ws://127.0.0.1:${port}`));
    await until("two refused attempts", () => (v.output().match(/connection refused; attempt \d+ in \d+\.\d s/g) ?? []).length >= 2);
    await localnet(port);
    await until("the validator to start", () => v.output().includes("running; polling every"));
    v.child.kill("SIGTERM");
    expect(await v.done).toBe(0);
    expect(v.output()).not.toMatch(RAW_POLKADOT);
    expect(v.output()).toContain("hotkey    ");
  }, 90_000);
});

describe("an outage while running", () => {
  test("one line when it drops, one per redial with its delay, one when it is back; no polkadot noise", async () => {
    const port = await freePort();
    const statePath = join(dir, "outage-chain.db");
    let net = await localnet(port, statePath);
    const v = validator(config("outage", net.url));
    await until("the validator to start", () => v.output().includes("running; polling every"));
    await Bun.sleep(1500);
    const before = v.output().length;
    await net.stop();
    await until("a few redials", () => (v.output().slice(before).match(/redialling .*; attempt \d+ in \d+\.\d s/g) ?? []).length >= 3, 30_000);
    await Bun.sleep(3000);
    net = await localnet(port, statePath);
    await until("the reconnect", () => v.output().slice(before).includes("reconnected to"), 30_000);
    await Bun.sleep(1500);
    const during = v.output().slice(before).split("\n").filter(Boolean);
    v.child.kill("SIGTERM");
    expect(await v.done).toBe(0);
    expect(during.join("\n")).not.toMatch(RAW_POLKADOT);
    expect(during.filter((l) => l.includes("lost"))).toHaveLength(1);
    expect(during.filter((l) => l.includes("reconnected to"))).toHaveLength(1);
    const other = during.filter((l) => !/lost|redialling|reconnected to/.test(l));
    expect(other).toEqual([]);
  }, 120_000);
});

describe("a chain reset", () => {
  test("a store from another chain is named, and weights are set on the new one at once", async () => {
    const db = { database: join(dir, "reset.db") };
    const old = await localnet(0);
    for (let i = 0; i < 120; i++) old.produceBlock();
    const first = validator(config("reset-a", old.url, db));
    await until("weights on the first chain", () => first.output().includes("weights decision #1"));
    first.child.kill("SIGTERM");
    expect(await first.done).toBe(0);
    await old.stop();
    const store = await Store.open(db.database);
    const decidedAt = store.db.prepare("SELECT block FROM weight_decisions WHERE id = 1").get<{ block: number }>()!.block;
    store.close();
    expect(decidedAt).toBeGreaterThanOrEqual(120);

    const fresh = await localnet(0);
    expect(fresh.genesisHash).not.toBe(old.genesisHash);
    const second = validator(config("reset-b", fresh.url, db));
    await until("a weights decision on the fresh chain", () => second.output().includes("weights decision #2"));
    expect(fresh.block()).toBeLessThan(decidedAt);
    second.child.kill("SIGTERM");
    expect(await second.done).toBe(0);
    expect(second.output()).toContain(`was last used on the chain with genesis ${old.genesisHash.slice(0, 10)}…, but ${fresh.url} serves genesis ${fresh.genesisHash.slice(0, 10)}…`);
  }, 120_000);
});
