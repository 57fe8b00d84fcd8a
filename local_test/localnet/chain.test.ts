// Block-by-block semantics, without a socket: blocks are sealed by hand at chosen times, so the reveal
// rules of chain-spec §1.6 and the pool's nonce handling can be pinned to exact blocks.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Keyring } from "@polkadot/keyring";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { Codec } from "@polkadot/types/types";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { memoryLogger } from "../../core/log.ts";
import { encrypt } from "../../core/timelock/index.ts";
import type { Block } from "./chain.ts";
import { roundAt } from "./drand.ts";
import { startLocalnet, type Localnet } from "./localnet.ts";

const keyring = new Keyring({ type: "sr25519", ss58Format: 42 });

let net: Localnet;
let log: ReturnType<typeof memoryLogger>;
let now: number;
let miner: KeyringPair;

beforeEach(async () => {
  log = memoryLogger();
  net = await startLocalnet({ blockMs: 0, tempo: 360, log });
  now = Date.now();
  miner = keyring.addFromUri(net.accounts.miners[0]!.uri);
}, 30_000);
afterEach(async () => {
  await net.stop();
});

const runtime = () => net.chain.runtime;
const state = () => net.chain.state;
const hex = (pair: KeyringPair) => u8aToHex(pair.publicKey);

/** A signed extrinsic built with the served registry, as a client would send it. */
function signed(pair: KeyringPair, call: (tx: Record<string, Record<string, (...a: unknown[]) => Codec>>) => Codec, nonce: number, era?: { current: number; period: number }) {
  const r = runtime();
  const ext = r.registry.createType("Extrinsic", call(r.decorated.tx as never));
  ext.sign(pair, {
    // A mortal era's checkpoint is its birth block, which for {current, period} is `current`.
    blockHash: era ? net.chain.hashAt(era.current)! : net.genesisHash,
    genesisHash: net.genesisHash,
    nonce,
    era: era ? r.registry.createType("ExtrinsicEra", era) : undefined,
    runtimeVersion: { specVersion: r.version.specVersion, transactionVersion: r.version.transactionVersion } as never,
    signedExtensions: r.registry.signedExtensions,
  } as never);
  return ext.toU8a();
}

function block(atMs = now): Block {
  now = atMs;
  return net.chain.produceBlock(atMs);
}

function events(b: Block): string[] {
  const raw = net.chain.stateAt(b.hash).get(u8aToHex(runtime().key("system", "events")));
  const list = runtime().registry.createType(runtime().valueType("system", "events"), raw) as unknown as { event: { section: string; method: string } }[];
  return list.map((e) => `${e.event.section}.${e.event.method}`);
}

const commitTimelocked = (pair: KeyringPair, nonce: number, round: bigint, plaintext: Uint8Array, beacon = net.beacon.publicKey) =>
  signed(
    pair,
    (tx) => tx.commitments!.setCommitment!(net.netuid, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypt(plaintext, round, hexToU8a(beacon))), reveal_round: round } }] }),
    nonce,
  );

const revealed = () => state().get("commitments", "revealedCommitments", net.netuid, hex(miner)) as (Codec & Iterable<[Codec, Codec]>) | undefined;

describe("timelocked commitments (chain-spec §1.6)", () => {
  test("nothing is revealed before the pulse; the block after the pulse lands reveals it", () => {
    const round = roundAt(now) + 4n; // about 12 s ahead
    net.chain.submit(commitTimelocked(miner, 0, round, new TextEncoder().encode("hello")));
    const committed = block();
    expect(events(committed)).toContain("commitments.TimelockCommitment");
    block(now + 1000);
    expect(revealed()).toBeUndefined();
    const pulsed = block(now + 12_000);
    expect(events(pulsed)).toContain("drand.NewPulse");
    expect(state().has("drand", "pulses", round)).toBe(true);
    expect(revealed()).toBeUndefined(); // on_initialize ran before the pulse arrived in this block
    const next = block(now + 100);
    expect(events(next)).toContain("commitments.CommitmentRevealed");
    const list = [...revealed()!];
    expect(list).toHaveLength(1);
    const [bytes, at] = list[0]!;
    expect(new TextDecoder().decode(bytes.toU8a(true))).toBe("hello");
    expect(Number(at.toString())).toBe(next.number);
    expect(state().has("commitments", "commitmentOf", net.netuid, hex(miner))).toBe(false);
    expect(state().get("commitments", "lastCommitment", net.netuid, hex(miner))?.toString()).toBe(String(committed.number));
  }, 30_000);

  test("a newer commitment replaces a pending ciphertext, which then never reveals", () => {
    const round = roundAt(now) + 2n;
    net.chain.submit(commitTimelocked(miner, 0, round, new TextEncoder().encode("first")));
    block();
    net.chain.submit(signed(miner, (tx) => tx.commitments!.setCommitment!(net.netuid, { fields: [{ Raw3: "0x616263" }] }), 1));
    expect(events(block())).toContain("commitments.Commitment");
    expect(state().must("commitments", "timelockedIndex").toJSON()).toEqual([]);
    block(now + 10_000);
    block(now + 100);
    expect(revealed()).toBeUndefined();
  }, 30_000);

  test("a ciphertext for another beacon key is dropped, as the chain does; the localnet logs and records the cause", () => {
    const round = roundAt(now) + 1n;
    const otherBeacon = "0x83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
    net.chain.submit(commitTimelocked(miner, 0, round, new TextEncoder().encode("quicknet, not ours"), otherBeacon));
    block();
    block(now + 6000);
    const b = block(now + 100);
    expect(events(b)).not.toContain("commitments.CommitmentRevealed");
    expect(revealed()).toBeUndefined();
    expect(state().has("commitments", "commitmentOf", net.netuid, hex(miner))).toBe(false);
    expect(state().must("commitments", "timelockedIndex").toJSON()).toEqual([]);
    const warned = log.lines.filter((l) => / warn +timelocked commitment dropped at the reveal/.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain("encrypted to another beacon key");
    expect(net.chain.droppedCommitments).toEqual([{ netuid: net.netuid, who: hex(miner), block: b.number, revealRound: round, reason: expect.stringContaining("quicknet") }]);
  }, 30_000);

  test("RevealedCommitments keeps the last 10 reveals, oldest first", () => {
    for (let i = 0; i < 11; i++) {
      net.chain.submit(commitTimelocked(miner, i, roundAt(now), new TextEncoder().encode(`reveal ${i}`)));
      block(now + 3000);
      block(now + 100);
    }
    const list = [...revealed()!].map(([b]) => new TextDecoder().decode(b.toU8a(true)));
    expect(list).toHaveLength(10);
    expect(list[0]).toBe("reveal 1");
    expect(list[9]).toBe("reveal 10");
  }, 30_000);
});

describe("commit-reveal weights (chain-spec §4.3)", () => {
  // Tempo 4 on netuid 3: epoch(b) = floor((b + 4) / 5), so block 1 is in epoch 1 and epoch 2 starts at block 6.
  let validator: KeyringPair;
  beforeEach(() => {
    validator = keyring.addFromUri(net.accounts.validator.uri);
    state().put("subtensorModule", "tempo", [net.netuid], 4);
    state().put("subtensorModule", "commitRevealWeightsEnabled", [net.netuid], true);
  });

  const payload = (hotkey: Uint8Array, uids: number[], values: number[]) =>
    runtime().registry.createType("(Bytes, Vec<u16>, Vec<u16>, u64)", [u8aToHex(hotkey), uids, values, 0]).toU8a();
  const commitWeights = (round: bigint, plaintext: Uint8Array) =>
    signed(validator, (tx) => tx.subtensorModule!.commitTimelockedWeights!(net.netuid, u8aToHex(encrypt(plaintext, round, hexToU8a(net.beacon.publicKey))), round, 4), 0);
  const weights = () => state().get("subtensorModule", "weights", net.netuid, net.accounts.validator.uid!)!.toJSON();
  const commits = () => state().get("subtensorModule", "timelockedWeightCommits", net.netuid, 1)!.toJSON() as unknown[];
  const logged = (what: string) => log.lines.filter((l) => l.includes(what));

  /** Commits in block 1 (epoch 1), then seals blocks 2..6 without letting the clock reach `round`. */
  function commitAndReachRevealEpoch(round: bigint, plaintext: Uint8Array): Block {
    net.chain.submit(commitWeights(round, plaintext));
    expect(events(block())).toContain("subtensorModule.TimelockedWeightsCommitted");
    expect(commits()).toHaveLength(1);
    let b = block();
    while (b.number < 6) b = block();
    return b;
  }

  test("the reveal epoch waits for the pulse, then the committed weights land upscaled in Weights", () => {
    const round = roundAt(now) + 2n;
    const first = commitAndReachRevealEpoch(round, payload(validator.publicKey, [1, 3], [40000, 10000]));
    expect(events(first)).not.toContain("subtensorModule.TimelockedWeightsRevealed");
    expect(commits()).toHaveLength(1); // no pulse yet: kept and retried next block
    block(now + 6000); // the pulse lands after this block's reveal step
    expect(weights()).toEqual([]);
    const revealed = block(now + 100);
    expect(events(revealed)).toContain("subtensorModule.TimelockedWeightsRevealed");
    expect(weights()).toEqual([
      [1, 65535],
      [3, 16384],
    ]);
    expect(commits()).toEqual([]);
  }, 30_000);

  test("a payload naming another hotkey is dropped, and the debug log says why", () => {
    const round = roundAt(now) + 1n;
    commitAndReachRevealEpoch(round, payload(miner.publicKey, [1], [65535]));
    block(now + 3000);
    block(now + 100);
    expect(commits()).toEqual([]);
    expect(weights()).toEqual([]);
    expect(logged("weights commit dropped").join("\n")).toContain(`names hotkey ${hex(miner)}, not the committer`);
  }, 30_000);

  test("a plaintext that is no weights payload is dropped, and the debug log says why", () => {
    commitAndReachRevealEpoch(roundAt(now) + 1n, new TextEncoder().encode("not a payload"));
    block(now + 3000);
    block(now + 100);
    expect(commits()).toEqual([]);
    expect(weights()).toEqual([]);
    expect(logged("weights commit dropped").join("\n")).toContain("13-byte plaintext is neither WeightsTlockPayload nor the legacy layout");
  }, 30_000);

  test("a commit whose pulse never comes in its reveal epoch is discarded at the next one, with a debug line", () => {
    const round = roundAt(now) + 1000n;
    commitAndReachRevealEpoch(round, payload(validator.publicKey, [1], [65535]));
    while (net.chain.best < 10) block();
    expect(commits()).toHaveLength(1);
    block(); // block 11: epoch 3
    expect(commits()).toEqual([]);
    expect(weights()).toEqual([]);
    expect(logged("its reveal epoch ended before the pulse arrived").join("\n")).toContain(`revealRound=${round}`);
  }, 30_000);
});

describe("the pool", () => {
  test("a future nonce waits for its predecessor, then both land in order", () => {
    const dave = keyring.addFromUri("//Dave");
    const to = net.accounts.others[1]!.ss58;
    net.chain.submit(signed(dave, (tx) => tx.balances!.transferKeepAlive!(to, 1_000_000_000n), 1));
    const first = block();
    expect(first.extrinsics).toHaveLength(1); // only the timestamp inherent
    expect(net.chain.pending()).toHaveLength(1);
    net.chain.submit(signed(dave, (tx) => tx.balances!.transferKeepAlive!(to, 1_000_000_000n), 0));
    const second = block();
    expect(second.extrinsics).toHaveLength(3);
    expect(net.chain.nextNonceOnChain(hex(dave))).toBe(2);
  }, 30_000);

  test("the same sender and nonce twice is refused with 1014; the same bytes twice with 1013", () => {
    const dave = keyring.addFromUri("//Dave");
    const a = signed(dave, (tx) => tx.balances!.transferKeepAlive!(net.accounts.others[1]!.ss58, 1_000_000_000n), 0);
    const b = signed(dave, (tx) => tx.balances!.transferKeepAlive!(net.accounts.others[1]!.ss58, 2_000_000_000n), 0);
    net.chain.submit(a);
    expect(() => net.chain.submit(a)).toThrow(/Already Imported/);
    expect(() => net.chain.submit(b)).toThrow(/Priority is too low/);
  }, 30_000);

  test("a mortal transaction that expires in the pool is dropped as invalid", () => {
    const dave = keyring.addFromUri("//Dave");
    block();
    const statuses: unknown[] = [];
    // Nonce 1 cannot land before nonce 0, so it sits in the pool while its 4-block era runs out.
    net.chain.submit(signed(dave, (tx) => tx.balances!.transferKeepAlive!(net.accounts.others[1]!.ss58, 1_000_000_000n), 1, { current: 1, period: 4 }), (s) =>
      statuses.push(s),
    );
    for (let i = 0; i < 5; i++) block();
    net.chain.submit(signed(dave, (tx) => tx.balances!.transferKeepAlive!(net.accounts.others[1]!.ss58, 1_000_000_000n), 0));
    block();
    expect(statuses).toEqual(["future", { invalid: "Transaction has an ancient birth block" }]);
    expect(net.chain.nextNonceOnChain(hex(dave))).toBe(1);
  }, 30_000);
});
