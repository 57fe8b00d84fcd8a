import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { KeyringPair } from "@polkadot/keyring/types";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { connectChain, encodeScaleText, type ChainClient, type CommitOrigin, type DroppedCommitment, type PendingCommitment, type RevealedCommitment } from "../../core/chain/index.ts";
import { pairFromUri } from "../../core/chain/wallet.ts";
import { buildCommitment, codeHash, firstRoundFrom } from "../../core/commitment.ts";
import { createLogger } from "../../core/log.ts";
import { encrypt, QUICKNET } from "../../core/timelock/index.ts";
import { startLocalnet, type Localnet } from "../../local_test/localnet/localnet.ts";
import type { Submission } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import type { Rejection, SourceContext } from "../../core/plugin.ts";
import type { ChainPort } from "../chain-binding.ts";
import { chainReveals } from "./chain-reveals.ts";

const hparams = { ...loadHParams(), netuid: 3, min_blocks_between_commits: 100 };
const code = (n: number) => `# version ${n}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;
const commit = (n: number, url: string) => buildCommitment(code(n), url);

/** Block n's timestamp in the stubs: a 12 s chain. */
const stubTime = (block: number) => 1_750_000_000_000 + block * hparams.block_time * 1000;

/**
 * A chain where, unless `origins` says otherwise, each reveal was committed in the block before it, sealed
 * for exactly the required delay (the stub's block times are not evenly spaced), and nothing is still
 * sealed unless `pending` says so. Its head moves one block per poll, and every hotkey counts as active in
 * every block, so each poll sees what the test changed since the last.
 */
function stubChain(
  reveals: RevealedCommitment[],
  registered: Record<string, number>,
  dropped: DroppedCommitment[] = [],
  more: { origins?: Record<string, CommitOrigin | null>; pending?: PendingCommitment[] } = {},
): ChainPort {
  const unused = () => {
    throw new Error("not used by the source");
  };
  let head = 0;
  const revealedCommitments = async (netuid: number) => (netuid === 3 ? reveals.map((r) => ({ ...r })) : []);
  const pendingCommitments = async (netuid: number) => (netuid === 3 ? (more.pending ?? []).map((p) => ({ ...p })) : []);
  return {
    currentBlock: async () => ++head,
    revealedCommitments,
    pendingCommitments,
    revealedCommitmentsOf: async (netuid: number, hotkey: string) => (await revealedCommitments(netuid)).filter((r) => r.hotkey === hotkey),
    pendingCommitmentOf: async (netuid: number, hotkey: string) => (await pendingCommitments(netuid)).find((p) => p.hotkey === hotkey) ?? null,
    commitmentActivity: async (netuid: number) => new Set([...(await revealedCommitments(netuid)), ...(await pendingCommitments(netuid))].map((c) => c.hotkey)),
    commitOrigin: async (_netuid: number, hotkey: string, block: number) => {
      const key = `${hotkey}@${block}`;
      if (more.origins && key in more.origins) return more.origins[key]!;
      return { commitBlock: block - 1, commitTimeMs: stubTime(block) - hparams.reveal_blocks * hparams.block_time * 1000, revealRound: null, revealTimeMs: stubTime(block) };
    },
    blockTimestamp: async (block: number) => stubTime(block),
    drandBeaconConfig: async () => QUICKNET,
    uidOf: async (_netuid: number, hotkey: string) => registered[hotkey] ?? null,
    droppedCommitments: async (netuid: number) => (netuid === 3 ? dropped.map((d) => ({ ...d })) : []),
    lastUpdate: unused,
    weights: unused,
    commitRevealEnabled: unused,
    setWeights: unused,
  } as unknown as ChainPort;
}

/** A context like the pipeline's: state in a map, `known` from what the "store" took. */
function context() {
  const state = new Map<string, unknown>();
  const stored = new Set<string>();
  const rejections: Rejection[] = [];
  const ctx: SourceContext = {
    state: { get: <T>(k: string) => structuredClone(state.get(k)) as T | undefined, set: (k, v) => state.set(k, structuredClone(v)) },
    log: memoryLogger(),
    signal: new AbortController().signal,
    reject: (r) => rejections.push(r),
    known: (id) => stored.has(id),
    submit: (s) => stored.add(s.id),
  };
  return { ctx, stored, rejections, take: (subs: Submission[]) => subs.forEach((s) => stored.add(s.id)) };
}

function source(
  reveals: RevealedCommitment[],
  registered: Record<string, number> = { alice: 4, bob: 5, carol: 6 },
  more: Parameters<typeof stubChain>[3] = {},
) {
  const s = chainReveals();
  s.bindChain({ chain: stubChain(reveals, registered, [], more), netuid: 3, hparams, signer: {} as KeyringPair, uid: 2 });
  return s;
}

describe("chain-reveals", () => {
  test("parses both commitment forms into submissions with the uid and committed hash", async () => {
    const { ctx } = context();
    const subs = await source([
      { hotkey: "alice", block: 20, data: commit(1, "https://code.example/a.py") },
      { hotkey: "bob", block: 21, data: JSON.stringify({ code_url: "https://code.example/b.py" }) },
    ]).poll(ctx);
    expect(subs).toEqual([
      { id: "chain:3:20:alice", hotkey: "alice", uid: 4, url: "https://code.example/a.py", committedHash: codeHash(code(1)), revealBlock: 20, commitBlock: 19, source: "chain-reveals" },
      { id: "chain:3:21:bob", hotkey: "bob", uid: 5, url: "https://code.example/b.py", revealBlock: 21, commitBlock: 20, source: "chain-reveals" },
    ]);
  });

  test("bad payloads and unregistered hotkeys are rejected with their reason, and the rest still goes through", async () => {
    const { ctx, rejections } = context();
    const subs = await source([
      { hotkey: "alice", block: 10, data: "not a commitment" },
      { hotkey: "bob", block: 10, data: "x".repeat(5000) },
      { hotkey: "carol", block: 11, data: `${codeHash(code(1))}:ftp://code.example/c.py` },
      { hotkey: "mallory", block: 12, data: commit(2, "https://code.example/m.py") },
      { hotkey: "carol", block: 13, data: commit(3, "https://code.example/c.py") },
    ]).poll(ctx);
    expect(subs.map((s) => s.id)).toEqual(["chain:3:13:carol"]);
    expect(rejections.map((r) => [r.hotkey, r.reason, r.block])).toEqual([
      ["alice", "malformed", 10],
      ["bob", "oversize", 10],
      ["carol", "bad_url", 11],
      ["mallory", "unregistered", 12],
    ]);
    expect(rejections[3]!.detail).toContain("not registered on subnet 3");
    expect(rejections[0]!.raw).toBe("not a commitment");
  });

  test("first committer of a URL or a code hash wins", async () => {
    const { ctx, rejections } = context();
    const subs = await source([
      // Listed out of order on purpose: the rules follow reveal blocks, not storage order.
      { hotkey: "bob", block: 31, data: commit(1, "https://code.example/a.py") },
      { hotkey: "alice", block: 30, data: commit(1, "https://code.example/a.py") },
      { hotkey: "carol", block: 32, data: commit(1, "https://mirror.example/copy.py") },
    ]).poll(ctx);
    expect(subs.map((s) => s.id)).toEqual(["chain:3:30:alice"]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([
      ["bob", "url_taken"],
      ["carol", "code_taken"],
    ]);
    expect(rejections[0]!.detail).toContain("first committed by alice");
  });

  test("one accepted submission per hotkey per min_blocks_between_commits; a rate-limited URL stays its committer's", async () => {
    const { ctx, rejections } = context();
    const subs = await source([
      { hotkey: "alice", block: 100, data: commit(1, "https://code.example/a1.py") },
      { hotkey: "alice", block: 199, data: commit(2, "https://code.example/a2.py") },
      { hotkey: "bob", block: 210, data: commit(2, "https://code.example/a2.py") },
      { hotkey: "alice", block: 200, data: commit(3, "https://code.example/a3.py") },
      { hotkey: "alice", block: 400, data: commit(2, "https://code.example/a2.py") },
    ]).poll(ctx);
    expect(subs.map((s) => s.id)).toEqual(["chain:3:100:alice", "chain:3:200:alice", "chain:3:400:alice"]);
    expect(rejections.map((r) => [r.hotkey, r.block, r.reason])).toEqual([
      ["alice", 199, "rate_limited"],
      ["bob", 210, "url_taken"],
    ]);
    expect(rejections[0]!.detail).toContain("from block 200");
  });

  test("re-committing code already accepted is rejected as already submitted", async () => {
    const { ctx, rejections } = context();
    const subs = await source([
      { hotkey: "alice", block: 100, data: commit(1, "https://code.example/a.py") },
      { hotkey: "alice", block: 300, data: commit(1, "https://code.example/a.py") },
      // The same URL serving new code is a new submission.
      { hotkey: "alice", block: 500, data: commit(2, "https://code.example/a.py") },
    ]).poll(ctx);
    expect(subs.map((s) => s.id)).toEqual(["chain:3:100:alice", "chain:3:500:alice"]);
    expect(rejections.map((r) => [r.block, r.reason])).toEqual([[300, "already_submitted"]]);
  });

  test("polling again yields nothing new and records no rejection twice", async () => {
    const reveals: RevealedCommitment[] = [
      { hotkey: "alice", block: 10, data: commit(1, "https://code.example/a.py") },
      { hotkey: "bob", block: 11, data: "garbage" },
    ];
    const src = source(reveals);
    const { ctx, rejections, take } = context();
    take(await src.poll(ctx));
    expect(await src.poll(ctx)).toEqual([]);
    expect(rejections).toHaveLength(1);
    reveals.push({ hotkey: "bob", block: 12, data: commit(2, "https://code.example/b.py") });
    expect((await src.poll(ctx)).map((s) => s.id)).toEqual(["chain:3:12:bob"]);
    expect(rejections).toHaveLength(1);
  });

  test("submissions the store never took (killed before saving) come back unchanged on the next poll", async () => {
    const reveals: RevealedCommitment[] = [
      { hotkey: "alice", block: 100, data: commit(1, "https://code.example/a1.py") },
      { hotkey: "alice", block: 150, data: commit(2, "https://code.example/a2.py") },
    ];
    const { ctx, rejections } = context();
    const first = await source(reveals).poll(ctx);
    // A fresh plugin instance, as after a restart, with the same persisted state and nothing stored.
    const second = await source(reveals).poll(ctx);
    expect(second).toEqual(first);
    expect(first.map((s) => s.id)).toEqual(["chain:3:100:alice"]);
    expect(rejections.map((r) => r.reason)).toEqual(["rate_limited"]);
  });

  test("a commitment the chain dropped at its reveal (as a localnet reports) is rejected once, with the chain's reason", async () => {
    const { ctx, rejections } = context();
    const dropped = [{ netuid: 3, hotkey: "alice", block: 40, revealRound: 123, reason: "encrypted to another beacon key: …" }];
    const s = chainReveals();
    s.bindChain({ chain: stubChain([], { alice: 4 }, dropped), netuid: 3, hparams, signer: {} as KeyringPair, uid: 2 });
    expect(await s.poll(ctx)).toEqual([]);
    expect(await s.poll(ctx)).toEqual([]);
    expect(rejections).toEqual([
      { hotkey: "alice", reason: "undecryptable", detail: expect.stringContaining("encrypted to another beacon key"), raw: "", block: 40 },
    ]);
    expect(rejections[0]!.detail).toContain("drand round 123");
  });

  test("a reveal waits while an earlier commitment is still sealed, unless that one's timelock is over the maximum", async () => {
    const reveals: RevealedCommitment[] = [{ hotkey: "bob", block: 200, data: commit(1, "https://code.example/b.py") }];
    const sealedFor = (block: number, seconds: number) => ({ hotkey: "carol", block, revealRound: firstRoundFrom(stubTime(block) / 1000 + seconds, QUICKNET) });
    // Bob committed at block 199; carol, still sealed, at block 90.
    const held = context();
    expect(await source(reveals, undefined, { pending: [sealedFor(90, 1200)] }).poll(held.ctx)).toEqual([]);
    expect(held.rejections).toEqual([]);
    // A sealed commitment made after bob's holds nothing back.
    const later = context();
    expect((await source(reveals, undefined, { pending: [sealedFor(250, 1200)] }).poll(later.ctx)).map((s) => s.id)).toEqual(["chain:3:200:bob"]);
    // Nor does one timelocked past the maximum (4 × reveal_blocks): it is rejected when it opens.
    const tooLong = context();
    expect((await source(reveals, undefined, { pending: [sealedFor(90, 4 * 1200 + 600)] }).poll(tooLong.ctx)).map((s) => s.id)).toEqual(["chain:3:200:bob"]);
  });

  test("a timelock too short or too long for its commit block is rejected with the delay; one whose commit block is unknown too", async () => {
    const { ctx, rejections } = context();
    const subs = await source(
      [
        { hotkey: "alice", block: 50, data: commit(1, "https://code.example/a.py") },
        { hotkey: "bob", block: 60, data: commit(2, "https://code.example/b.py") },
        { hotkey: "carol", block: 2000, data: commit(3, "https://code.example/c.py") },
      ],
      undefined,
      {
        origins: {
          // The node pruned the state: only the timestamps of the commit and reveal blocks are known.
          "alice@50": { commitBlock: 45, commitTimeMs: stubTime(45), revealRound: null, revealTimeMs: stubTime(50) },
          "bob@60": null,
          "carol@2000": { commitBlock: 10, commitTimeMs: stubTime(10), revealRound: firstRoundFrom(stubTime(2000) / 1000, QUICKNET), revealTimeMs: stubTime(2000) },
        },
      },
    ).poll(ctx);
    expect(subs).toEqual([]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([
      ["alice", "reveal_too_soon"],
      ["bob", "commit_unknown"],
      ["carol", "reveal_too_late"],
    ]);
    expect(rejections[0]!.detail).toContain("timelocked to open 60 s after its commit block");
    expect(rejections[0]!.detail).toContain("100 × 12 s = 1200 s");
    expect(rejections[1]!.detail).toContain("archive node");
    expect(rejections[2]!.detail).toMatch(/committed at block 10 to drand round \d+/);
  });

  test("revealBlocks and blockTime override hparams for the delay rule (a localnet's practice round)", async () => {
    const reveals = [{ hotkey: "alice", block: 50, data: commit(1, "https://code.example/a.py") }];
    const origins = { "alice@50": { commitBlock: 45, commitTimeMs: stubTime(45), revealRound: null, revealTimeMs: stubTime(45) + 5000 } };
    const local = chainReveals({ revealBlocks: 3, blockTime: 1 });
    local.bindChain({ chain: stubChain(reveals, { alice: 4 }, [], { origins }), netuid: 3, hparams, signer: {} as KeyringPair, uid: 2 });
    expect((await local.poll(context().ctx)).map((s) => s.id)).toEqual(["chain:3:50:alice"]);
    const production = context();
    expect(await source(reveals, { alice: 4 }, { origins }).poll(production.ctx)).toEqual([]);
    expect(production.rejections.map((r) => r.reason)).toEqual(["reveal_too_soon"]);
  });

  test("an unbound source fails with a message saying what to do", async () => {
    const { ctx } = context();
    await expect(chainReveals().poll(ctx)).rejects.toThrow(/not bound to a chain/);
  });

  test("the options override hparams and are checked", () => {
    expect(() => chainReveals({ minBlocksBetweenCommits: -1 } as never)).toThrow(/source "chain-reveals": options.minBlocksBetweenCommits/);
    expect(() => chainReveals({ blockTime: 0 } as never)).toThrow(/options.blockTime/);
    expect(() => chainReveals({ netuid: 3 } as never)).toThrow(/chain-reveals/);
  });
});

describe("chain-reveals on a localnet: priority by commit block", () => {
  // Blocks are sealed by hand on a clock the test drives (12 s per block), so a 20-block timelock
  // takes milliseconds. The source reads the chain through the real client over a websocket.
  const BLOCK_S = 12;
  const rule = { ...loadHParams(), netuid: 3, reveal_blocks: 20, block_time: BLOCK_S, min_blocks_between_commits: 0 };
  let net: Localnet;
  let chain: ChainClient;
  let t0: number;
  const timeOf = (block: number) => t0 + block * BLOCK_S * 1000;

  beforeAll(async () => {
    net = await startLocalnet({ port: 0, blockMs: 0, netuid: 3, miners: 4, log: createLogger({ level: "error" }) });
    t0 = Date.now();
    chain = await connectChain({ network: net.url, log: createLogger({ level: "error" }), timeoutMs: 10_000 });
  }, 60_000);
  afterAll(async () => {
    await chain?.close();
    await net?.stop();
  }, 30_000);

  const sealUntil = (block: number) => {
    while (net.block() < block) net.chain.produceBlock(timeOf(net.block() + 1));
  };

  /** Commits `text` from miner `i` in the next block, timelocked `delayBlocks` blocks of chain time. */
  async function commitAt(block: number, i: number, text: string, delayBlocks: number) {
    sealUntil(block - 1);
    const pair = await pairFromUri(net.accounts.miners[i]!.uri);
    const round = firstRoundFrom(timeOf(block) / 1000 + delayBlocks * BLOCK_S, QUICKNET);
    const encrypted = encrypt(encodeScaleText(text), round, hexToU8a(net.beacon.publicKey));
    const tx = chain.api.tx.commitments!.setCommitment!(3, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypted), reveal_round: round } }] });
    await chain.api.rpc.author.submitExtrinsic(await tx.signAsync(pair));
    sealUntil(block);
    return { hotkey: pair.address, round };
  }

  async function revealBlockOf(hotkey: string, after: number) {
    for (let n = net.block(); n < after + 200; n++) {
      const r = (await chain.revealedCommitments(3)).find((c) => c.hotkey === hotkey && c.block > after);
      if (r) return r.block;
      sealUntil(n + 1);
    }
    throw new Error(`${hotkey} never revealed`);
  }

  test("a copy committed later with a shorter timelock is rejected; the original scores (issue 21 #1)", async () => {
    const s = chainReveals();
    s.bindChain({ chain, netuid: 3, hparams: rule, signer: {} as KeyringPair, uid: 2 });
    const { ctx, take, rejections } = context();
    // A commits at block 2 with a 20-block timelock; B copies the public file, hosts it elsewhere and
    // commits at block 8 with a 2-block timelock, so it reveals first.
    const a = await commitAt(2, 0, commit(1, "https://gist.example/a/train.py"), 20);
    const b = await commitAt(8, 1, commit(1, "https://copies.example/train.py"), 2);
    const bRevealed = await revealBlockOf(b.hotkey, 8);
    expect(bRevealed).toBeLessThan(15);
    take(await s.poll(ctx));
    const aRevealed = await revealBlockOf(a.hotkey, 2);
    const subs = await s.poll(ctx);
    expect(subs.map((x) => x.hotkey)).toEqual([a.hotkey]);
    expect(subs[0]!.id).toBe(`chain:3:${aRevealed}:${a.hotkey}`);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([[b.hotkey, "reveal_too_soon"]]);
    expect(rejections[0]!.detail).toContain("20 × 12 s = 240 s");
  }, 60_000);

  test("a copy with a full timelock that reveals first waits for the earlier commitment, then loses to it", async () => {
    const s = chainReveals();
    s.bindChain({ chain, netuid: 3, hparams: rule, signer: {} as KeyringPair, uid: 2 });
    const { ctx, take, rejections } = context();
    take(await s.poll(ctx)); // what the test before left on the chain
    rejections.length = 0;
    const start = net.block() + 1;
    // C commits first with a 30-block timelock; D copies three blocks later with the minimum 20.
    const c = await commitAt(start, 2, commit(2, "https://gist.example/c/train.py"), 30);
    const d = await commitAt(start + 3, 3, commit(2, "https://copies.example/c.py"), 20);
    await revealBlockOf(d.hotkey, start + 3);
    expect(await s.poll(ctx)).toEqual([]);
    expect(rejections).toEqual([]);
    await revealBlockOf(c.hotkey, start);
    const subs = await s.poll(ctx);
    take(subs);
    expect(subs.map((x) => x.hotkey)).toEqual([c.hotkey]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([[d.hotkey, "code_taken"]]);
    expect(rejections[0]!.detail).toContain(`first committed by ${c.hotkey} at block ${start}`);
  }, 60_000);

  test("once the node has pruned the state before a reveal, the commit block comes from LastCommitment and the times from block bodies", async () => {
    const e = await commitAt(net.block() + 1, 0, commit(3, "https://gist.example/e/train.py"), 20);
    const committedAt = net.block();
    const revealedAt = await revealBlockOf(e.hotkey, committedAt);
    const fresh = await chain.commitOrigin(3, e.hotkey, revealedAt);
    expect(fresh).toEqual({ commitBlock: committedAt, commitTimeMs: timeOf(committedAt), revealRound: e.round, revealTimeMs: timeOf(revealedAt) });
    // 600 more blocks (the localnet keeps 512 states), a millisecond apart so no pulses are due.
    const last = timeOf(net.block());
    for (let i = 1; i <= 600; i++) net.chain.produceBlock(last + i);
    // A new connection: @polkadot/api caches what it read at a block hash.
    const later = await connectChain({ network: net.url, log: createLogger({ level: "error" }), timeoutMs: 10_000 });
    try {
      expect(await later.commitOrigin(3, e.hotkey, revealedAt)).toEqual({ ...fresh!, revealRound: null });
      // Committing again moves LastCommitment past the reveal: nothing on a pruning node says any more.
      await commitAt(net.block() + 1, 0, commit(4, "https://gist.example/e/v2.py"), 20);
      expect(await later.commitOrigin(3, e.hotkey, revealedAt)).toBeNull();
    } finally {
      await later.close();
    }
  }, 60_000);

  /** The client, counting what each read returned (commitments, hotkeys), per method. */
  function counting(client: ChainClient) {
    const reads: { method: string; items: number; args: unknown[] }[] = [];
    const port = new Proxy(client, {
      get(target, prop) {
        const v = Reflect.get(target, prop) as unknown;
        if (typeof v !== "function") return v;
        return async (...args: unknown[]) => {
          const r = (await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args)) as unknown;
          reads.push({ method: String(prop), items: Array.isArray(r) ? r.length : r instanceof Set ? r.size : r === null ? 0 : 1, args });
          return r;
        };
      },
    });
    return { port: port as unknown as ChainPort, reads };
  }
  const commitmentReads = (reads: { method: string; items: number; args: unknown[] }[]) => reads.filter((r) => /ommitment/.test(r.method) && r.method !== "droppedCommitments");

  test("an idle poll reads no commitment, however many the chain holds; a new reveal reads only its hotkey's (issue 21 #8)", async () => {
    const { port, reads } = counting(chain);
    const s = chainReveals();
    s.bindChain({ chain: port, netuid: 3, hparams: rule, signer: {} as KeyringPair, uid: 2 });
    const { ctx, take } = context();
    // Whatever the tests before left sealed reveals first, so that the idle polls below are idle.
    for (let n = 0; n < 200 && (await chain.pendingCommitments(3)).length; n++) sealUntil(net.block() + 1);
    take(await s.poll(ctx)); // the first poll reads everything the tests before left
    const history = commitmentReads(reads).reduce((n, r) => n + r.items, 0);
    expect(history).toBeGreaterThanOrEqual(3);

    reads.length = 0;
    expect(await s.poll(ctx)).toEqual([]); // same head
    sealUntil(net.block() + 5);
    expect(await s.poll(ctx)).toEqual([]); // five new blocks, no commitment in them
    expect(commitmentReads(reads).map((r) => [r.method, r.items])).toEqual([["commitmentActivity", 0]]);

    const f = await commitAt(net.block() + 1, 2, commit(5, "https://gist.example/f/train.py"), 20);
    const revealedAt = await revealBlockOf(f.hotkey, net.block());
    reads.length = 0;
    const subs = await s.poll(ctx);
    expect(subs.map((x) => x.id)).toEqual([`chain:3:${revealedAt}:${f.hotkey}`]);
    const perHotkey = commitmentReads(reads).filter((r) => r.method !== "commitmentActivity" && r.method !== "commitOrigin");
    expect(perHotkey.map((r) => [r.method, r.args[1]])).toEqual([
      ["pendingCommitmentOf", f.hotkey],
      ["revealedCommitmentsOf", f.hotkey],
    ]);
  }, 60_000);
});
