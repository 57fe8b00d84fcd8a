// The localnet over a real websocket with an unchanged @polkadot/api client: connect, read storage,
// sign and submit, watch statuses, and see each failure come back the way a subtensor node reports it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiPromise, Keyring, WsProvider } from "@polkadot/api";
import type { SubmittableExtrinsic } from "@polkadot/api/types";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { Codec } from "@polkadot/types/types";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { sr25519Verify } from "@polkadot/util-crypto";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "../core/chain/extensions.ts";
import { memoryLogger } from "../core/log.ts";
import { encrypt, roundAfterBlocks } from "../core/timelock/index.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { METADATA } from "../local_test/localnet/runtime.ts";

// Subtensor has no api-augment package: @polkadot/api decorates storage and calls from the metadata
// the node serves, at runtime, so the tests reach them untyped.
// biome-ignore lint/suspicious/noExplicitAny: metadata-decorated, see above
type Untyped = any;
const q = (api: ApiPromise): Untyped => api.query;
const calls = (api: ApiPromise): Untyped => api.tx;

const keyring = new Keyring({ type: "sr25519", ss58Format: 42 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where `needle` first occurs in `haystack`: to find a signature or key inside encoded extrinsic bytes. */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  for (let i = 0; i + needle.length <= haystack.length; i++) if (needle.every((b, j) => haystack[i + j] === b)) return i;
  throw new Error("not found");
}

async function connect(url: string): Promise<ApiPromise> {
  return ApiPromise.create({ provider: new WsProvider(url), signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true });
}

interface Outcome {
  blockHash: string;
  blockNumber: number;
  events: string[];
  /** "Pallet.Error" from the DispatchError, decoded through the metadata; null on success. */
  error: string | null;
}

/**
 * signAndSend until the block that includes it; a pool rejection rejects with the node's RPC error.
 * With 100 ms blocks, Finalized can overtake InBlock inside @polkadot/api (it switchMaps to the
 * latest status while fetching events), so either one ends the wait.
 */
function send(api: ApiPromise, tx: SubmittableExtrinsic<"promise">, pair: KeyringPair, options: Record<string, unknown> = {}): Promise<Outcome> {
  let done = false;
  return new Promise((resolve, reject) => {
    tx.signAndSend(pair, options, (result) => {
      if (done || !(result.status.isInBlock || result.status.isFinalized)) return;
      done = true;
      let error: string | null = null;
      if (result.dispatchError) {
        if (result.dispatchError.isModule) {
          const meta = api.registry.findMetaError(result.dispatchError.asModule);
          error = `${meta.section}.${meta.name}`;
        } else error = result.dispatchError.type;
      }
      const blockHash = (result.status.isInBlock ? result.status.asInBlock : result.status.asFinalized).toHex();
      api.rpc.chain.getHeader(blockHash).then((h) =>
        resolve({ blockHash, blockNumber: h.number.toNumber(), events: result.events.map((e) => `${e.event.section}.${e.event.method}`), error }),
      );
    }).catch(reject);
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The Crusades commitment text, SCALE-encoded as bittensor-drand encrypts it (chain-spec §2.3). */
const commitmentText = (api: ApiPromise, s: string) => api.createType("Text", s).toU8a();

describe("localnet over a real websocket", () => {
  let net: Localnet;
  let api: ApiPromise;
  let startMs: number;
  const log = memoryLogger();

  beforeAll(async () => {
    const t0 = performance.now();
    net = await startLocalnet({ blockMs: 100, tempo: 1000, weightsRateLimit: 5, log });
    startMs = performance.now() - t0;
    console.log(`localnet started in ${startMs.toFixed(0)} ms at ${net.url}`);
    api = await connect(net.url);
  }, 60_000);

  afterAll(async () => {
    await api?.disconnect();
    await net?.stop();
  }, 30_000);

  test("@polkadot/api connects and reads metadata-derived storage", async () => {
    expect(api.runtimeVersion.specVersion.toNumber()).toBe(381);
    expect(api.genesisHash.toHex() as string).toBe(net.genesisHash);
    const netuid = net.netuid;
    const { owner, burn, validator, miners } = net.accounts;
    expect((await q(api).subtensorModule.networksAdded(netuid)).toJSON()).toBe(true);
    expect((await q(api).subtensorModule.subnetworkN(netuid)).toNumber()).toBe(3 + miners.length);
    for (const a of [owner, burn, validator, ...miners]) {
      expect((await q(api).subtensorModule.uids(netuid, a.ss58)).toJSON()).toBe(a.uid!);
    }
    const keys = await q(api).subtensorModule.keys.entries(netuid);
    const byUid = new Map(keys.map(([k, v]: [Untyped, Codec]) => [Number(k.args[1]!.toString()), v.toString()]));
    expect(byUid.get(1)).toBe(burn.ss58);
    expect(byUid.get(validator.uid!)).toBe(validator.ss58);
    expect((await q(api).subtensorModule.validatorPermit(netuid)).toJSON()).toEqual([true, false, true, false, false, false]);
    expect((await q(api).subtensorModule.weightsSetRateLimit(netuid)).toNumber()).toBe(5);
    expect((await q(api).subtensorModule.commitRevealWeightsEnabled(netuid)).toJSON()).toBe(false);
    expect((await q(api).commitments.maxSpace()).toNumber()).toBe(3100);
    const beacon = await q(api).drand.beaconConfig();
    expect(beacon.publicKey.toHex()).toBe(net.beacon.publicKey);
    expect(beacon.genesisTime.toNumber()).toBe(1692803367);
    const alice = (await q(api).system.account(owner.ss58)) as Codec & { data: { free: Codec } };
    expect(BigInt(alice.data.free.toString())).toBeGreaterThan(0n);
    // Blocks keep coming, with real header hashes.
    const before = (await api.rpc.chain.getHeader()).number.toNumber();
    const head = await until("two more blocks", async () => {
      const h = await api.rpc.chain.getHeader();
      return h.number.toNumber() >= before + 2 ? h : undefined;
    });
    expect(head.hash.toHex()).toBe((await api.rpc.chain.getBlockHash(head.number.toNumber())).toHex());
    expect((await q(api).system.number()).toNumber()).toBeGreaterThanOrEqual(head.number.toNumber());
  }, 30_000);

  test("raw JSON-RPC: unknown methods and bad frames get errors at once, batches work", async () => {
    const ws = new WebSocket(net.url);
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    const replies: unknown[] = [];
    ws.onmessage = (e) => replies.push(JSON.parse(String(e.data)));
    ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subtensor_nothingHere", params: [] }));
    ws.send("{not json");
    ws.send(JSON.stringify([{ jsonrpc: "2.0", id: 2, method: "system_chain" }, { jsonrpc: "2.0", id: 3, method: "chain_getBlockHash", params: [0] }]));
    await until("three replies", async () => (replies.length >= 3 ? true : undefined), 5000);
    ws.close();
    expect(replies[0]).toEqual({ jsonrpc: "2.0", id: 1, error: { code: -32601, message: "Method not found: subtensor_nothingHere" } });
    expect(replies[1]).toMatchObject({ id: null, error: { code: -32700 } });
    expect(replies[2]).toEqual([
      { jsonrpc: "2.0", id: 2, result: "Crusades Localnet" },
      { jsonrpc: "2.0", id: 3, result: net.genesisHash },
    ]);
  }, 30_000);

  test("set_commitment with a timelocked payload is revealed into RevealedCommitments", async () => {
    const miner = keyring.addFromUri(net.accounts.miners[0]!.uri);
    const text = "0123456789abcdef0123456789abcdef:https://gist.githubusercontent.com/m/abc/raw/train.py";
    const round = roundAfterBlocks(1, 1); // a round a few seconds out
    const encrypted = encrypt(commitmentText(api, text), round, hexToU8a(net.beacon.publicKey));
    const out = await send(api, calls(api).commitments.setCommitment(net.netuid, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypted), reveal_round: round } }] }), miner);
    expect(out.error).toBeNull();
    expect(out.events).toContain("commitments.TimelockCommitment");
    const reg = (await q(api).commitments.commitmentOf.at(out.blockHash, net.netuid, miner.address)) as Codec & { isSome: boolean };
    expect(reg.isSome).toBe(true);
    expect((await q(api).commitments.timelockedIndex.at(out.blockHash)).toJSON()).toEqual([[net.netuid, miner.address]]);
    expect(((await q(api).commitments.revealedCommitments.at(out.blockHash, net.netuid, miner.address)) as Codec & { isNone: boolean }).isNone).toBe(true);

    const revealed = await until("the reveal", async () => {
      const v = (await q(api).commitments.revealedCommitments(net.netuid, miner.address)) as Codec & { isSome: boolean; unwrap(): Codec };
      return v.isSome ? (v.unwrap() as unknown as [Codec, Codec][]) : undefined;
    });
    expect(revealed).toHaveLength(1);
    const [bytes, block] = revealed[0]!;
    expect(api.createType("Text", bytes.toU8a(true)).toString()).toBe(text);
    expect(Number(block.toString())).toBeGreaterThan(out.blockNumber);
    // The pulse that unlocked it is on chain and verifiable against the published beacon key.
    const pulse = (await q(api).drand.pulses(round)) as Codec & { isSome: boolean };
    expect(pulse.isSome).toBe(true);
    expect(((await q(api).commitments.commitmentOf(net.netuid, miner.address)) as Codec & { isNone: boolean }).isNone).toBe(true);
    expect((await q(api).commitments.timelockedIndex()).toJSON()).toEqual([]);
    // CommitmentRevealed is among the events of the reveal block.
    const revealHash = await api.rpc.chain.getBlockHash(Number(block.toString()));
    const events = (await q(api).system.events.at(revealHash)) as unknown as { event: { section: string; method: string } }[];
    expect(events.map((e) => `${e.event.section}.${e.event.method}`)).toContain("commitments.CommitmentRevealed");
  }, 30_000);

  test("a commitment timelocked to a round already past reveals at the next block, as the chain's stored pulses make it", async () => {
    // A miner whose clock runs an hour slow timelocks to a round 1,200 rounds old: a real chain holds
    // ~7.5 days of pulses, so it reveals in the very next block (issue 21 #2).
    const miner = keyring.addFromUri(net.accounts.miners[2]!.uri);
    const text = "fedcba9876543210fedcba9876543210:https://gist.githubusercontent.com/m/old/raw/train.py";
    const round = roundAfterBlocks(0, 0, Date.now() / 1000 - 3600);
    const encrypted = encrypt(commitmentText(api, text), round, hexToU8a(net.beacon.publicKey));
    const out = await send(api, calls(api).commitments.setCommitment(net.netuid, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypted), reveal_round: round } }] }), miner);
    expect(out.error).toBeNull();
    const oldest = BigInt((await q(api).drand.oldestStoredRound()).toString());
    expect(oldest).toBeLessThanOrEqual(round);
    const revealed = await until("the reveal", async () => {
      const v = (await q(api).commitments.revealedCommitments(net.netuid, miner.address)) as Codec & { isSome: boolean; unwrap(): Codec };
      return v.isSome ? (v.unwrap() as unknown as [Codec, Codec][]) : undefined;
    }, 5_000);
    expect(api.createType("Text", revealed[0]![0].toU8a(true)).toString()).toBe(text);
    expect(Number(revealed[0]![1].toString())).toBe(out.blockNumber + 1);
    // The pulse that opened it is readable like any other.
    expect(((await q(api).drand.pulses(round)) as Codec & { isSome: boolean }).isSome).toBe(true);
  }, 30_000);

  test("set_weights lands in Weights and LastUpdate, and the rate limit holds", async () => {
    const validator = keyring.addFromUri(net.accounts.validator.uri);
    const uid = net.accounts.validator.uid!;
    const out = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [1, 3], [65535, 21845], 9010001), validator);
    expect(out.error).toBeNull();
    expect(out.events).toContain("subtensorModule.WeightsSet");
    expect((await q(api).subtensorModule.weights.at(out.blockHash, net.netuid, uid)).toJSON()).toEqual([
      [1, 65535],
      [3, 21845],
    ]);
    const last = (await q(api).subtensorModule.lastUpdate.at(out.blockHash, net.netuid)).toJSON() as number[];
    expect(last[uid]).toBe(out.blockNumber);
    // Values are max-upscaled like the chain does: only ratios matter.
    const again = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [1], [7], 0), validator);
    expect(again.error).toBe("subtensorModule.SettingWeightsTooFast");
    await until("the rate limit to pass", async () => (net.block() >= out.blockNumber + 5 ? true : undefined));
    const later = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [1], [7], 0), validator);
    expect(later.error).toBeNull();
    expect((await q(api).subtensorModule.weights.at(later.blockHash, net.netuid, uid)).toJSON()).toEqual([[1, 65535]]);
  }, 30_000);

  test("a bad signature is refused by the pool with 1010", async () => {
    const dave = keyring.addFromUri("//Dave");
    const eve = keyring.addFromUri("//Eve");
    const tx = calls(api).balances.transferKeepAlive(net.accounts.others[1]!.ss58, 1_000_000_000n);
    await tx.signAsync(dave);
    const signed = hexToU8a(tx.toHex());
    const at = (needle: Uint8Array) => indexOf(signed, needle);
    // A flipped bit in the signature.
    const flipped = signed.slice();
    flipped[at(tx.signature.toU8a()) + 5]! ^= 0x01;
    await expect(api.rpc.author.submitExtrinsic(u8aToHex(flipped))).rejects.toThrow(/1010: Invalid Transaction: Transaction has a bad signature/);
    // Dave's signature presented as Eve's.
    const claimed = signed.slice();
    claimed.set(eve.publicKey, at(dave.publicKey));
    await expect(api.rpc.author.submitExtrinsic(u8aToHex(claimed))).rejects.toThrow(/1010: Invalid Transaction: Transaction has a bad signature/);
    // The untouched transaction is fine.
    expect((await api.rpc.author.submitExtrinsic(tx.toHex())).toHex()).toBe(tx.hash.toHex());
  }, 30_000);

  test("a malformed signature or signer key (not a ristretto255 point) is a bad signature, not an internal error", async () => {
    const dave = keyring.addFromUri("//Dave");
    const tx = calls(api).balances.transferKeepAlive(net.accounts.others[1]!.ss58, 1_000_000_000n);
    await tx.signAsync(dave);
    const signed = hexToU8a(tx.toHex());
    const sigAt = indexOf(signed, tx.signature.toU8a());
    const keyAt = indexOf(signed, dave.publicKey);
    const malformed: [number, Uint8Array, RegExp][] = [
      // R (the signature's first 32 bytes) that decodes to no ristretto255 point.
      [sigAt, new Uint8Array(32).fill(0xff), /ristretto255/],
      // s with the schnorrkel marker bit (the top bit of the last byte) cleared.
      [sigAt + 63, new Uint8Array([tx.signature.toU8a()[63]! & 0x7f]), /marker/],
      // A signer AccountId that is no point: any 32 bytes are a valid address.
      [keyAt, new Uint8Array(32).fill(0xff), /ristretto255/],
    ];
    for (const [at, bytes, verifyError] of malformed) {
      const bad = signed.slice();
      bad.set(bytes, at);
      const sig = bad.subarray(sigAt, sigAt + 64);
      // The bytes really are malformed: schnorrkel verification throws rather than answering false.
      expect(() => sr25519Verify(new Uint8Array(1), sig, bad.subarray(keyAt, keyAt + 32))).toThrow(verifyError);
      await expect(api.rpc.author.submitExtrinsic(u8aToHex(bad))).rejects.toThrow(/^1010: Invalid Transaction: Transaction has a bad signature/);
    }
  }, 30_000);

  test("a stale nonce is refused as outdated", async () => {
    const ferdie = keyring.addFromUri("//Ferdie");
    const first = await send(api, calls(api).balances.transferKeepAlive(net.accounts.others[0]!.ss58, 2_000_000_000n), ferdie);
    expect(first.error).toBeNull();
    await expect(calls(api).balances.transferKeepAlive(net.accounts.others[0]!.ss58, 1_000_000_000n).signAndSend(ferdie, { nonce: 0 })).rejects.toThrow(
      /1010: Invalid Transaction: Transaction is outdated/,
    );
  }, 30_000);

  test("an unregistered hotkey gets the pallets' real errors", async () => {
    const dave = keyring.addFromUri("//Dave");
    const c = await send(api, calls(api).commitments.setCommitment(net.netuid, { fields: [{ Raw10: "0x00112233445566778899" }] }), dave);
    expect(c.error).toBe("commitments.AccountNotAllowedCommit");
    expect(c.events).toContain("system.ExtrinsicFailed");
    const w = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [1], [65535], 0), dave);
    expect(w.error).toBe("subtensorModule.HotKeyNotRegisteredInSubNet");
  }, 30_000);

  test("oversize commitments: the 1024-byte bound at decode, then MaxSpace per epoch", async () => {
    const miner = keyring.addFromUri(net.accounts.miners[1]!.uri);
    const tooBig = calls(api).commitments.setCommitment(net.netuid, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(new Uint8Array(1025)), reveal_round: 1 } }] });
    await expect(send(api, tooBig, miner)).rejects.toThrow(/1002: Verification Error: Could not decode extrinsic: .*1025 bytes.*at most 1024/);
    // Four 1000-byte commitments in one block: the fourth passes MaxSpace (3100) and fails on chain.
    const base = (await api.rpc.system.accountNextIndex(miner.address)).toNumber();
    const outcomes = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        send(api, calls(api).commitments.setCommitment(net.netuid, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(new Uint8Array(1000).fill(i)), reveal_round: 1 } }] }), miner, { nonce: base + i }),
      ),
    );
    expect(outcomes.map((o) => o.error)).toEqual([null, null, null, "commitments.SpaceLimitExceeded"]);
  }, 30_000);

  test("calls the localnet does not implement fail with a module error, not a hang", async () => {
    const eve = keyring.addFromUri("//Eve");
    const out = await send(api, calls(api).system.remark("0x01"), eve);
    expect(out.error).toBe("system.CallFiltered");
  }, 30_000);

  test("a transfer moves funds, charges a fee and emits Transfer", async () => {
    const eve = keyring.addFromUri("//Eve");
    const to = keyring.addFromUri("//Transfer//Target");
    const before = (await q(api).system.account(eve.address)) as Codec & { data: { free: Codec } };
    const out = await send(api, calls(api).balances.transferAllowDeath(to.address, 5_000_000_000n), eve);
    expect(out.error).toBeNull();
    expect(out.events).toEqual(expect.arrayContaining(["balances.Transfer", "balances.Endowed", "system.NewAccount", "transactionPayment.TransactionFeePaid"]));
    const dest = (await q(api).system.account.at(out.blockHash, to.address)) as Codec & { data: { free: Codec } };
    expect(BigInt(dest.data.free.toString())).toBe(5_000_000_000n);
    const after = (await q(api).system.account.at(out.blockHash, eve.address)) as Codec & { data: { free: Codec } };
    const spent = BigInt(before.data.free.toString()) - BigInt(after.data.free.toString());
    const info = await calls(api).balances.transferAllowDeath(to.address, 5_000_000_000n).paymentInfo(eve);
    expect(spent).toBeGreaterThan(5_000_000_000n);
    expect(info.partialFee.toBigInt()).toBeGreaterThan(0n);
  }, 30_000);

  test("mortality: a transaction whose era has lapsed no longer verifies", async () => {
    const eve = keyring.addFromUri("//Eve");
    const birth = net.block();
    const blockHash = (await api.rpc.chain.getBlockHash(birth)).toHex();
    const signed = () => {
      const tx = calls(api).balances.transferKeepAlive(net.accounts.others[0]!.ss58, 1_000_000_000n);
      return tx.signAsync(eve, { blockHash, era: api.createType("ExtrinsicEra", { current: birth, period: 4 }) });
    };
    const early = await signed();
    const late = await signed(); // same bytes; kept for after the era
    await until("the era to lapse", async () => (net.block() > birth + 8 ? true : undefined));
    // As on a real node: the era now resolves to a later block of the same phase, whose hash was not signed.
    await expect(api.rpc.author.submitExtrinsic(late.toHex())).rejects.toThrow(/1010: Invalid Transaction: Transaction has a bad signature/);
    expect(early.era.isMortalEra).toBe(true);
  }, 30_000);

  test("submitAndWatch reports ready, inBlock, finalized", async () => {
    const eve = keyring.addFromUri("//Eve");
    const seen: string[] = [];
    await new Promise<void>((resolve, reject) => {
      calls(api).balances
        .transferKeepAlive(net.accounts.others[0]!.ss58, 1_000_000_000n)
        .signAndSend(eve, (r: Untyped) => {
          seen.push(r.status.type);
          if (r.status.isFinalized) resolve();
        })
        .catch(reject);
    });
    expect(seen.filter((s) => s !== "Future")).toEqual(["Ready", "InBlock", "Finalized"]);
  }, 30_000);

  test("a dropped socket: the client reconnects and keeps reading", async () => {
    let reconnected = false;
    api.once("disconnected", () => api.once("connected", () => (reconnected = true)));
    net.dropConnections();
    await until("the reconnect", async () => (reconnected ? true : undefined), 15_000);
    await api.isReady;
    const n = await until("a read after reconnect", async () => {
      try {
        return (await q(api).system.number()).toNumber();
      } catch {
        return undefined;
      }
    });
    expect(n).toBeGreaterThan(0);
  }, 30_000);
});

describe("commit-reveal weights", () => {
  test("commit_timelocked_weights is revealed from the drand pulse into Weights", async () => {
    const net = await startLocalnet({ blockMs: 100, tempo: 4, weightsRateLimit: 0, log: memoryLogger() });
    const api = await connect(net.url);
    try {
      const owner = keyring.addFromUri(net.accounts.owner.uri);
      const validator = keyring.addFromUri(net.accounts.validator.uri);
      const enable = await send(api, calls(api).adminUtils.sudoSetCommitRevealWeightsEnabled(net.netuid, true), owner);
      expect(enable.error).toBeNull();
      const direct = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [1], [65535], 0), validator);
      expect(direct.error).toBe("subtensorModule.CommitRevealEnabled");
      // A non-owner may not flip it.
      expect((await send(api, calls(api).adminUtils.sudoSetCommitRevealWeightsEnabled(net.netuid, false), validator)).error).toBe("BadOrigin");

      const payload = api
        .createType('{"hotkey":"Bytes","uids":"Vec<u16>","values":"Vec<u16>","versionKey":"u64"}', {
          hotkey: u8aToHex(validator.publicKey),
          uids: [1, 4],
          values: [65535, 32768],
          versionKey: 9010001,
        })
        .toU8a();
      const round = roundAfterBlocks(0, 0) + 1n;
      const commit = encrypt(payload, round, hexToU8a(net.beacon.publicKey));
      const out = await send(api, calls(api).subtensorModule.commitTimelockedWeights(net.netuid, u8aToHex(commit), round, 4), validator);
      expect(out.error).toBeNull();
      expect(out.events).toContain("subtensorModule.TimelockedWeightsCommitted");
      const uid = net.accounts.validator.uid!;
      expect((await q(api).subtensorModule.weights.at(out.blockHash, net.netuid, uid)).toJSON()).toEqual([]);
      const weights = await until("the weights reveal", async () => {
        const w = (await q(api).subtensorModule.weights(net.netuid, uid)).toJSON() as [number, number][];
        return w.length ? w : undefined;
      });
      expect(weights).toEqual([
        [1, 65535],
        [4, 32768],
      ]);
      // A wrong commit-reveal version is the real module error.
      const wrong = await send(api, calls(api).subtensorModule.commitTimelockedWeights(net.netuid, u8aToHex(commit), round + 100n, 3), validator);
      expect(wrong.error).toBe("subtensorModule.IncorrectCommitRevealVersion");
    } finally {
      await api.disconnect();
      await net.stop();
    }
  }, 60_000);
});

describe("--state", () => {
  test("a restarted localnet continues the same chain from its SQLite file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "localnet-state-"));
    const statePath = join(dir, "chain.db");
    try {
      const first = await startLocalnet({ blockMs: 0, statePath, log: memoryLogger() });
      const miner = keyring.addFromUri(first.accounts.miners[0]!.uri);
      const api = await connect(first.url);
      const done = send(api, calls(api).commitments.setCommitment(first.netuid, { fields: [{ Raw4: "0xdeadbeef" }] }), miner);
      await until("the pool", async () => (first.chain.pending().length ? true : undefined));
      first.produceBlock();
      first.produceBlock();
      const out = await done;
      expect(out.error).toBeNull();
      await api.disconnect();
      const { genesisHash } = first;
      const best = first.block();
      await first.stop();

      const second = await startLocalnet({ blockMs: 0, statePath, log: memoryLogger() });
      try {
        expect(second.genesisHash).toBe(genesisHash);
        expect(second.block()).toBe(best);
        expect(second.beacon.publicKey).toBe(first.beacon.publicKey);
        second.produceBlock();
        const api2 = await connect(second.url);
        const reg = (await q(api2).commitments.commitmentOf(second.netuid, miner.address)) as Codec & { isSome: boolean };
        expect(reg.isSome).toBe(true);
        expect((await api2.rpc.system.accountNextIndex(miner.address)).toNumber()).toBe(1);
        expect((await api2.rpc.chain.getHeader()).number.toNumber()).toBe(best + 1);
        expect((await api2.rpc.chain.getBlockHash(out.blockNumber)).toHex() as string).toBe(out.blockHash);
        await api2.disconnect();
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("the older runtime (spec 346)", () => {
  test("serves spec 346 metadata; its extension set signs and dispatches", async () => {
    const net = await startLocalnet({ blockMs: 100, metadataPath: METADATA.spec346, log: memoryLogger() });
    const api = await connect(net.url);
    try {
      expect(api.runtimeVersion.specVersion.toNumber()).toBe(346);
      expect(api.registry.signedExtensions).not.toContain("SudoTransactionExtension");
      const miner = keyring.addFromUri(net.accounts.miners[0]!.uri);
      const out = await send(api, calls(api).commitments.setCommitment(net.netuid, { fields: [{ Raw4: "0x01020304" }] }), miner);
      expect(out.error).toBeNull();
      expect(out.events).toContain("commitments.Commitment");
      const validator = keyring.addFromUri(net.accounts.validator.uri);
      const w = await send(api, calls(api).subtensorModule.setWeights(net.netuid, [9], [1], 0), validator);
      // Module error indices differ between runtimes; both sides read them from the metadata.
      expect(w.error).toBe("subtensorModule.UidVecContainInvalidOne");
    } finally {
      await api.disconnect();
      await net.stop();
    }
  }, 60_000);
});
