// The miner CLI as a miner runs it: a subprocess, against code hosted on a real loopback HTTP server.
// Most chain-touching paths are in tests/chain.test.ts; the timelock round's clock is checked here.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { ApiPromise, WsProvider } from "@polkadot/api";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "../core/chain/extensions.ts";
import { createLogger } from "../core/log.ts";
import { revealSlackSeconds } from "../core/commitment.ts";
import { QUICKNET } from "../core/timelock/index.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { runSubmitCli } from "./fixtures/submit-cli.ts";

const GOOD = "import torch\n\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    return None\n";

let server: ReturnType<typeof Bun.serve>;
let base: string;

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/train.py" || path.startsWith("/long/")) return new Response(GOOD);
      if (path === "/nothing.py") return new Response("print('hello')\n");
      if (path === "/page") return new Response("<!doctype html><html><body>def inner_steps</body></html>", { headers: { "content-type": "text/html" } });
      return new Response("not found", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(() => server.stop(true));

const runCli = runSubmitCli;

describe("usage", () => {
  test("no command prints help and exits 2; --help exits 0 for each command", async () => {
    const none = await runCli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain("Commands:");
    for (const cmd of ["submit", "validate", "status"]) {
      const r = await runCli([cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`usage: submit.ts ${cmd}`);
    }
  }, 60_000);

  test("bad usage exits 2 with the reason and the command's help", async () => {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command "frobnicate"/],
      [["submit"], /exactly one URL/],
      [["validate", "a", "b"], /exactly one URL/],
      [["submit", "https://x.org/t.py", "--wallet.nam", "w"], /Unknown option '--wallet.nam'/],
      [["validate", "https://x.org/t.py", "--yes"], /validate does not take --yes/],
      [["submit", "https://x.org/t.py", "--netuid", "three"], /--netuid must be a non-negative integer/],
      [["status", "--network", "http://example.com"], /ws:\/\/ or wss:\/\//],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
    }
  }, 60_000);
});

describe("validate", () => {
  test("accepts good code and prints the submit line; notes a missing python3 instead of failing", async () => {
    // Only bun's own directory on PATH: python3 cannot be found.
    const r = await runCli(["validate", `${base}/train.py`, "--allow-loopback"], { PATH: dirname(process.execPath) });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`✓ fetched ${GOOD.length} bytes`);
    expect(r.stdout).toContain(createHash("sha256").update(GOOD).digest("hex").slice(0, 16));
    expect(r.stdout).toContain("python3 not found; skipped");
    expect(r.stdout).toContain(`submit.ts submit ${base}/train.py`);
  }, 60_000);

  test("rejects code validators would reject, with their reason, and exits 1", async () => {
    const cases: [string, RegExp][] = [
      ["/nothing.py", /inner_steps/],
      ["/page", /HTML|html/],
      ["/missing.py", /404/],
    ];
    for (const [path, message] of cases) {
      const r = await runCli(["validate", `${base}${path}`, "--allow-loopback", "--no-verify"]);
      expect({ path, code: r.code }).toEqual({ path, code: 1 });
      expect(r.stderr).toMatch(message);
    }
  }, 60_000);

  test("without --allow-loopback a loopback URL is refused as validators refuse it", async () => {
    const r = await runCli(["validate", `${base}/train.py`, "--no-verify"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/loopback|127\.0\.0\.1/);
  }, 60_000);
});

describe("submit before the chain", () => {
  test("a missing wallet fails before connecting, naming the key file", async () => {
    const r = await runCli(["submit", `${base}/train.py`, "--allow-loopback", "--wallet.name", "ghost", "--wallet.hotkey", "hk", "--network", "ws://127.0.0.1:9", "--yes"], {
      HOME: "/nonexistent-home",
      CRUSADES_HOTKEY_URI: "",
      BT_WALLET_PATH: "",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("/nonexistent-home/.bittensor/wallets/ghost/hotkeys/hk");
    expect(r.stdout).not.toContain("connecting");
  }, 60_000);

  test("a hotkey path that is a directory is named, one line, no stack", async () => {
    const wallets = mkdtempSync(join(tmpdir(), "crusades-submit-wallets-"));
    try {
      const key = join(wallets, "w", "hotkeys", "hk");
      mkdirSync(key, { recursive: true });
      const r = await runCli(["submit", `${base}/train.py`, "--allow-loopback", "--wallet.path", wallets, "--wallet.name", "w", "--wallet.hotkey", "hk", "--network", "ws://127.0.0.1:9", "--yes"], {
        CRUSADES_HOTKEY_URI: "",
      });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining(`error: hotkey file ${key} is a directory, not a hotkey file`)]);
      expect(r.stdout).not.toContain("connecting");
    } finally {
      rmSync(wallets, { recursive: true, force: true });
    }
  }, 60_000);

  test("a URL too long to commit is refused before the wallet or the chain are touched", async () => {
    const r = await runCli(["submit", `${base}/long/${"a".repeat(800)}.py`, "--allow-loopback", "--network", "ws://127.0.0.1:9", "--yes"], { CRUSADES_HOTKEY_URI: "//Alice" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/over the chain's limit of 778/);
    expect(r.stdout).not.toContain("hotkey");
  }, 60_000);

  test("without --yes and without a terminal, submit stops at once as a usage error", async () => {
    const r = await runCli(["submit", `${base}/train.py`, "--allow-loopback", "--network", "ws://127.0.0.1:9"], { CRUSADES_HOTKEY_URI: "//Alice" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("pass --yes");
    expect(r.stdout).not.toContain("fetching");
  }, 60_000);

  test("bad code fails before the wallet or the chain are touched", async () => {
    const r = await runCli(["submit", `${base}/nothing.py`, "--allow-loopback", "--network", "ws://127.0.0.1:9", "--yes"], { CRUSADES_HOTKEY_URI: "//Alice" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/inner_steps/);
    expect(r.stdout).not.toContain("hotkey");
  }, 60_000);
});

describe("submit on a localnet: the timelock round comes from chain time, not this machine's clock", () => {
  const BLOCK_MS = 250;
  let net: Localnet;
  let api: ApiPromise;

  beforeAll(async () => {
    net = await startLocalnet({ port: 0, blockMs: BLOCK_MS, netuid: 3, miners: 3, log: createLogger({ level: "error" }) });
    api = await ApiPromise.create({ provider: new WsProvider(net.url), signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true });
  }, 60_000);
  afterAll(async () => {
    await api?.disconnect();
    await net?.stop();
  }, 30_000);

  // Issue 21 #2: at −1 h and +1 h the CLI exited 0 with "reveal block ≈ 20" both times, its rounds
  // 2,400 apart; at −1 h the round was already past, so the commitment revealed at the next block.
  for (const [offset, miner] of [[-3600, 0], [3600, 1]] as const) {
    test(`a clock ${offset > 0 ? "+" : "−"}1 h off: the round still opens reveal_blocks × block_time after the commit block, and the CLI says the clock is off`, async () => {
      const m = net.accounts.miners[miner]!;
      const r = await runCli(
        ["submit", `${base}/train.py`, "--allow-loopback", "--network", net.url, "--netuid", "3", "--reveal-blocks", "4", "--block-time", "3", "--yes"],
        { CRUSADES_HOTKEY_URI: m.uri, CRUSADES_LOG_LEVEL: "warn", CRUSADES_CLOCK_OFFSET_SECONDS: String(offset) },
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const block = Number(/committed in block (\d+)/.exec(r.stdout)?.[1]);
      const round = Number(/reveal round\s+(\d+)/.exec(r.stdout)?.[1]);
      const committedAt = Number(((await api.query.timestamp!.now!.at(await api.rpc.chain.getBlockHash(block))) as unknown as { toString(): string }).toString()) / 1000;
      // Round R is published at genesis + (R − 1)·3 s: it must open 4 × 3 s after the commit block's
      // time, within validators' slack, and no later than the CLI's aim plus one round of rounding.
      const opensAfter = QUICKNET.genesisTime + (round - 1) * QUICKNET.period - committedAt;
      const slack = revealSlackSeconds({ blockTime: 3 }, QUICKNET);
      expect(opensAfter).toBeGreaterThanOrEqual(12 - slack);
      expect(opensAfter).toBeLessThanOrEqual(12 + slack / 2 + QUICKNET.period);
      expect(r.stdout).toMatch(new RegExp(`this machine's clock is ${offset > 0 ? "ahead of" : "behind"} the chain's by about 1 h`));
      expect(r.stdout).toContain("first commitment of those bytes wins");
    }, 60_000);
  }
});
