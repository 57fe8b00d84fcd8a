// core/chain and the miner CLI over a real websocket to the localnet: commit, reveal, read back; weights
// in and out; the ways a submission is refused; a socket killed mid-submission.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { u8aToHex } from "@polkadot/util";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { connectChain, ChainError, type ChainClient } from "../core/chain/index.ts";
import { pairFromUri } from "../core/chain/wallet.ts";
import { assertSucceeded, signTx, submitSigned } from "../core/chain/extrinsic.ts";
import { codeHash, parseCommitment } from "../core/commitment.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { normalizeU16 } from "../core/scoring.ts";
import { runSubmitCli } from "./fixtures/submit-cli.ts";

const BLOCK_MS = 250;
const CODE = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    return None\n";
const quiet = createLogger({ level: "error" });

let net: Localnet;
let chain: ChainClient;
let http: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  net = await startLocalnet({ port: 0, blockMs: BLOCK_MS, netuid: 3, miners: 3, weightsRateLimit: 20, log: quiet });
  chain = await connectChain({ network: net.url, log: quiet, timeoutMs: 10_000 });
  http = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(CODE) });
}, 60_000);

afterAll(async () => {
  await chain?.close();
  await net?.stop();
  http?.stop(true);
}, 30_000);

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await Bun.sleep(BLOCK_MS);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const cli = runSubmitCli;

describe("reads", () => {
  test("block, subnet and the genesis registrations", async () => {
    expect(await chain.currentBlock()).toBeGreaterThanOrEqual(0);
    expect(await chain.subnetExists(3)).toBe(true);
    expect(await chain.subnetSize(3)).toBe(6);
    const miner = net.accounts.miners[0]!;
    expect(await chain.uidOf(3, miner.ss58)).toBe(miner.uid!);
    expect(await chain.hotkeyOf(3, miner.uid!)).toBe(miner.ss58);
    expect(await chain.hotkeyOf(3, 999)).toBeNull();
    expect(await chain.uidOf(3, net.accounts.others[0]!.ss58)).toBeNull();
    const beacon = await chain.drandBeaconConfig();
    expect(u8aToHex(beacon.publicKey)).toBe(net.beacon.publicKey);
    expect(await chain.weightsRateLimit(3)).toBe(20);
    expect(await chain.commitRevealEnabled(3)).toBe(false);
  });
});

describe("commitments", () => {
  test("the CLI commits, the chain reveals on schedule, and core/chain reads the plaintext back", async () => {
    const miner = net.accounts.miners[0]!;
    const url = `http://127.0.0.1:${http.port}/train.py`;
    const r = await cli(
      ["submit", url, "--allow-loopback", "--network", net.url, "--netuid", "3", "--reveal-blocks", "4", "--block-time", String(BLOCK_MS / 1000), "--yes"],
      { CRUSADES_HOTKEY_URI: miner.uri, CRUSADES_LOG_LEVEL: "warn" },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const block = Number(/committed in block (\d+)/.exec(r.stdout)?.[1]);
    const round = BigInt(/reveal round\s+(\d+)/.exec(r.stdout)?.[1] ?? "0");
    expect(block).toBeGreaterThan(0);
    expect(round).toBeGreaterThan(0n);

    // Before the reveal the chain holds only ciphertext for this hotkey.
    const pending = await chain.lastCommitment(3, miner.ss58);
    if (pending.pending) expect(pending.pending.revealRound).toBe(round);

    const revealed = await until("the reveal", async () => (await chain.revealedCommitments(3)).find((c) => c.hotkey === miner.ss58));
    expect(revealed.block).toBeGreaterThan(block);
    const parsed = parseCommitment(revealed.data);
    expect(parsed).toEqual({
      ok: true,
      commitment: { codeHash: codeHash(CODE), url, form: "hash_url" },
    });
    const status = await chain.lastCommitment(3, miner.ss58);
    expect(status).toMatchObject({ committedBlock: block, pending: null, isRevealed: true });
    expect(status.revealed?.data).toBe(revealed.data);

    // status shows the same from the CLI.
    const s = await cli(["status", "--network", net.url, "--netuid", "3"], { CRUSADES_HOTKEY_URI: miner.uri, CRUSADES_LOG_LEVEL: "warn" });
    expect(s.code).toBe(0);
    expect(s.stdout).toContain(`uid ${miner.uid}`);
    expect(s.stdout).toMatch(/revealed yet\s+yes/);
  }, 90_000);

  test("an unregistered hotkey: the CLI stops before sending, the chain refuses with the module error", async () => {
    const stranger = net.accounts.others[0]!;
    const r = await cli(
      ["submit", `http://127.0.0.1:${http.port}/train.py`, "--allow-loopback", "--network", net.url, "--netuid", "3", "--yes"],
      { CRUSADES_HOTKEY_URI: stranger.uri, CRUSADES_LOG_LEVEL: "warn" },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`hotkey ${stranger.ss58} is not registered on subnet 3`);
    expect(r.stdout).not.toContain("sending set_commitment");

    const err = await chain
      .setCommitment(await pairFromUri(stranger.uri), 3, "ab".repeat(16) + ":https://x.org/t.py", { blocksUntilReveal: 2, blockTime: 0.25 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ChainError);
    expect(err.module).toBe("Commitments.AccountNotAllowedCommit");
    expect(err.message).toContain("Commitments.AccountNotAllowedCommit");
  }, 60_000);

  test("an oversize payload is refused before signing; one forced past the client is refused by the chain", async () => {
    const miner = await pairFromUri(net.accounts.miners[1]!.uri);
    const big = "a".repeat(900);
    const local = await chain.setCommitment(miner, 3, big, { blocksUntilReveal: 2, blockTime: 0.25 }).catch((e) => e);
    expect(local).toBeInstanceOf(ChainError);
    expect(local.code).toBe("oversize");

    const api = chain.api;
    const tx = api.tx.commitments!.setCommitment!(3, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(new Uint8Array(1100)), reveal_round: 1 } }] });
    const remote = await submitSigned(chain.connection, await signTx(chain.connection, tx, miner), { log: quiet, label: "set_commitment" })
      .then((inc) => assertSucceeded(chain.api, inc, "set_commitment"))
      .catch((e) => e);
    expect(remote).toBeInstanceOf(ChainError);
    expect(remote.message).toMatch(/refused the transaction.*1024/);
  }, 60_000);

  test("a bad signature and a stale nonce come back as named errors", async () => {
    const miner = await pairFromUri(net.accounts.miners[2]!.uri);
    const api = chain.api;
    const remark = () => api.tx.system!.remark!("0x00");

    const signed = await signTx(chain.connection, remark(), miner);
    const hex = signed.toHex();
    // The sr25519 signature (R ‖ s) follows the signer's account id and a type byte; change a byte in the
    // middle of s, which leaves a well-formed signature that does not verify.
    const at = hex.indexOf(u8aToHex(miner.publicKey).slice(2)) + 64 + 2 + 2 * 40;
    const tampered = hex.slice(0, at) + (hex[at] === "0" ? "1" : "0") + hex.slice(at + 1);
    const bad = await submitSigned(chain.connection, api.tx(tampered), { log: quiet, label: "remark" }).catch((e) => e);
    expect(bad).toBeInstanceOf(ChainError);
    expect(bad.code).toBe("bad_signature");

    await submitSigned(chain.connection, await signTx(chain.connection, remark(), miner), { log: quiet, label: "remark" });
    const stale = await submitSigned(chain.connection, await signTx(chain.connection, remark(), miner, 0), { log: quiet, label: "remark" }).catch((e) => e);
    expect(stale).toBeInstanceOf(ChainError);
    expect(stale.code).toBe("stale_nonce");
    expect(stale.message).toContain("stale nonce");
  }, 60_000);
});

describe("weights", () => {
  test("land in storage normalised to u16, then the rate limit answers instead of failing", async () => {
    const validator = net.accounts.validator;
    const pair = await pairFromUri(validator.uri);
    const uids = [1, net.accounts.miners[0]!.uid!];
    const weights = [0.95, 0.05];
    const out = await chain.setWeights(pair, 3, uids, weights, 0);
    expect(out.status).toBe("ok");
    if (out.status !== "ok") return;
    expect(out.mode).toBe("set_weights");
    const expected = normalizeU16(uids, weights);
    const stored = await chain.weights(3, validator.uid!);
    expect(stored).toEqual(expected.uids.map((uid, i) => ({ uid, weight: expected.weights[i]! })));
    expect(await chain.lastUpdate(3, validator.uid!)).toBe(out.block);

    const again = await chain.setWeights(pair, 3, uids, weights, 0);
    expect(again).toEqual({ status: "rate_limited", nextBlock: out.block + 20, lastUpdate: out.block, rateLimit: 20 });
  }, 60_000);
});

describe("commit-reveal weights", () => {
  test("with commit-reveal on, weights go in as a timelocked commit and land in Weights at the reveal epoch", async () => {
    // An epoch (tempo + 1 blocks) must outlast a drand period, or the pulse can miss its reveal epoch.
    const crNet = await startLocalnet({ port: 0, blockMs: BLOCK_MS, netuid: 3, miners: 1, tempo: 20, commitReveal: true, log: quiet });
    const c = await connectChain({ network: crNet.url, log: quiet, timeoutMs: 10_000 });
    try {
      expect(await c.commitRevealEnabled(3)).toBe(true);
      const v = crNet.accounts.validator;
      const uids = [1, crNet.accounts.miners[0]!.uid!];
      const out = await c.setWeights(await pairFromUri(v.uri), 3, uids, [0.8, 0.2], 0, { blockTime: BLOCK_MS / 1000 });
      expect(out.status).toBe("ok");
      if (out.status !== "ok") return;
      expect(out.mode).toBe("commit_timelocked_weights");
      // Nothing readable in Weights: the chain holds only the ciphertext, keyed by epoch.
      expect(await c.weights(3, v.uid!)).toEqual([]);
      const api = c.api;
      const commits = async () =>
        (await api.query.subtensorModule!.timelockedWeightCommits!.entries(3)) as unknown as [unknown, [{ toU8a(): Uint8Array }, unknown, unknown, { toBigInt(): bigint }][]][];
      const queue = (await commits())[0]![1];
      const [who, , , round] = queue[0]!;
      expect(u8aToHex(who.toU8a())).toBe(v.publicKey);
      expect(round.toBigInt()).toBe(out.revealRound!);

      // The legacy epoch math (chain-spec §4.3): epoch = (block + netuid + 1) / (tempo + 1), revealed one epoch on.
      const revealEpochStart = (Math.floor((out.block + 4) / 21) + 1) * 21 - 4;
      const landed = await until("the weights reveal", async () => {
        const w = await c.weights(3, v.uid!);
        return w.length ? w : null;
      });
      const expected = normalizeU16(uids, [0.8, 0.2]);
      expect(landed).toEqual(expected.uids.map((uid, i) => ({ uid, weight: expected.weights[i]! })));
      expect(landed).toEqual([
        { uid: 1, weight: 65535 },
        { uid: crNet.accounts.miners[0]!.uid!, weight: 16384 },
      ]);
      // The reveal set LastUpdate: it happened inside the reveal epoch, not at commit time or later.
      const revealedAt = await c.lastUpdate(3, v.uid!);
      expect(revealedAt).toBeGreaterThanOrEqual(revealEpochStart);
      expect(revealedAt).toBeLessThan(revealEpochStart + 21);
      expect((await commits()).flatMap(([, q]) => q)).toEqual([]);
    } finally {
      await c.close();
      await crNet.stop();
    }
  }, 90_000);
});

describe("reconnect", () => {
  // Before the node has the extrinsic (it must be re-sent) and after the pool accepted it (it must be found).
  test.each([
    ["as it is sent", "submitting set_commitment", 1],
    ["once the pool holds it", "set_commitment: waiting for inclusion", 2],
  ])("killing the socket %s reconnects and reports the outcome", async (_when, trigger, minerIndex) => {
    const miner = net.accounts.miners[minerIndex as number]!;
    const lines: string[] = [];
    let dropped = false;
    // Drop every connection the moment the client says it is sending.
    const log: Logger = createLogger({
      level: "debug",
      write: (line) => {
        lines.push(line);
        if (!dropped && line.includes(trigger as string)) {
          dropped = true;
          net.dropConnections();
        }
      },
    });
    const c = await connectChain({ network: net.url, log, timeoutMs: 10_000 });
    try {
      const receipt = await c.setCommitment(await pairFromUri(miner.uri), 3, "cd".repeat(16) + ":https://x.org/r.py", {
        blocksUntilReveal: 3,
        blockTime: 0.25,
        timeoutMs: 60_000,
      });
      expect(dropped).toBe(true);
      expect(receipt.recovered).toBe(true);
      expect(c.connection.reconnects()).toBeGreaterThanOrEqual(1);
      expect(lines.some((l) => l.includes("reconnected"))).toBe(true);
      const status = await c.lastCommitment(3, miner.ss58);
      expect(status.committedBlock).toBe(receipt.block);
    } finally {
      await c.close();
    }
  }, 90_000);
});
