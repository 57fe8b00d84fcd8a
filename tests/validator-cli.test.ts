// scripts/validator.ts as an operator meets it: exit codes and one-line errors for bad usage, a bad
// config and an unregistered hotkey; the startup summary; a running validator on the localnet that sets
// its first weights (all to burn: nothing scored yet) and stops cleanly on SIGTERM.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectChain, type ChainClient } from "../core/chain/index.ts";
import { createLogger } from "../core/log.ts";
import type { ValidatorStatus } from "../core/pipeline.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { spawnValidator, writeValidatorConfig } from "./fixtures/validator-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-cli-"));
const quiet = createLogger({ level: "error" });
let net: Localnet;
let chain: ChainClient;

beforeAll(async () => {
  net = await startLocalnet({ port: 0, blockMs: 200, netuid: 3, miners: 1, log: quiet });
  chain = await connectChain({ network: net.url, log: quiet });
});
afterAll(async () => {
  await chain?.close();
  await net?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function validator(args: string[], env: Record<string, string> = {}) {
  const v = spawnValidator(args, env);
  const done = v.done.then((code) => ({ code, stdout: v.stdout(), stderr: v.stderr() }));
  return { child: v.child, done, output: () => v.stdout() + v.stderr() };
}

const config = (name: string, extra: Record<string, unknown> = {}) => writeValidatorConfig(dir, name, net.url, extra);

describe("scripts/validator.ts", () => {
  test("bad usage and a bad config print one line and exit 2", async () => {
    const none = await validator([]).done;
    expect(none.code).toBe(2);
    expect(none.stderr.trim()).toBe("validator: --config FILE is required (see --help)");

    const missing = await validator(["--config", join(dir, "nope.json")]).done;
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("config file not found");

    const typo = await validator(["--config", config("typo", { sinks: [{ use: "chain-weigths" }] })]).done;
    expect(typo.code).toBe(2);
    expect(typo.stderr.trim().split("\n")).toEqual([expect.stringContaining('sinks.0.use: unknown sink "chain-weigths" (known: chain-weights, rest)')]);

    const option = await validator(["--config", config("opt", { sources: [{ use: "chain-reveals", options: { minBlocksBetweenCommits: -5 } }] })]).done;
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("sources.0: source \"chain-reveals\": options.minBlocksBetweenCommits");
  }, 60_000);

  test("a hotkey that is not registered on the subnet is named, and the validator exits 1", async () => {
    const r = await validator(["--config", config("unregistered"), "--once"], { CRUSADES_HOTKEY_URI: "//Dave" }).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`hotkey ${net.accounts.others[0]!.ss58} ($CRUSADES_HOTKEY_URI) is not registered on subnet 3`);
  }, 60_000);

  test("running: summary, first weights to burn, status for the API, clean stop on SIGTERM", async () => {
    const v = validator(["--config", config("running")], { CRUSADES_HOTKEY_URI: "//Charlie" });
    for (let i = 0; i < 200 && (await chain.lastUpdate(3, 2)) === 0; i++) await Bun.sleep(100);
    expect(await chain.weights(3, 2)).toEqual([{ uid: 1, weight: 65535 }]);
    expect(v.output()).toContain(`hotkey    ${net.accounts.validator.ss58}, uid 2`);
    expect(v.output()).toMatch(/limits {4}\d+ run\(s\) per submission, profile tiny/);

    const store = await Store.open(join(dir, "running.db"));
    try {
      const live = store.getState<ValidatorStatus>("validator:status")!;
      expect(live).toMatchObject({ hotkey: net.accounts.validator.ss58, uid: 2, netuid: 3, pid: v.child.pid });
      expect(live.state).not.toBe("stopped");
      v.child.kill("SIGTERM");
      const r = await v.done;
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("SIGTERM: stopping");
      expect(store.getState<ValidatorStatus>("validator:status")!.state).toBe("stopped");
      expect(store.db.prepare("SELECT COUNT(*) AS n FROM weight_decisions").get<{ n: number }>()!.n).toBe(1);
    } finally {
      store.close();
    }
  }, 60_000);
});
