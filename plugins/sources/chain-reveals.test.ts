import { describe, expect, test } from "bun:test";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { DroppedCommitment, RevealedCommitment } from "../../core/chain/index.ts";
import { buildCommitment, codeHash } from "../../core/commitment.ts";
import type { Submission } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import type { Rejection, SourceContext } from "../../core/plugin.ts";
import type { ChainPort } from "../chain-binding.ts";
import { chainReveals } from "./chain-reveals.ts";

const hparams = { ...loadHParams(), netuid: 3, min_blocks_between_commits: 100 };
const code = (n: number) => `# version ${n}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;
const commit = (n: number, url: string) => buildCommitment(code(n), url);

function stubChain(reveals: RevealedCommitment[], registered: Record<string, number>, dropped: DroppedCommitment[] = []): ChainPort {
  const unused = () => {
    throw new Error("not used by the source");
  };
  return {
    revealedCommitments: async (netuid: number) => (netuid === 3 ? reveals.map((r) => ({ ...r })) : []),
    uidOf: async (_netuid: number, hotkey: string) => registered[hotkey] ?? null,
    droppedCommitments: async (netuid: number) => (netuid === 3 ? dropped.map((d) => ({ ...d })) : []),
    currentBlock: unused,
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
  };
  return { ctx, stored, rejections, take: (subs: Submission[]) => subs.forEach((s) => stored.add(s.id)) };
}

function source(reveals: RevealedCommitment[], registered: Record<string, number> = { alice: 4, bob: 5, carol: 6 }) {
  const s = chainReveals();
  s.bindChain({ chain: stubChain(reveals, registered), netuid: 3, hparams, signer: {} as KeyringPair, uid: 2 });
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
      { id: "chain:3:20:alice", hotkey: "alice", uid: 4, url: "https://code.example/a.py", committedHash: codeHash(code(1)), revealBlock: 20, source: "chain-reveals" },
      { id: "chain:3:21:bob", hotkey: "bob", uid: 5, url: "https://code.example/b.py", revealBlock: 21, source: "chain-reveals" },
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

  test("first committer of a URL or a code hash wins, by reveal block", async () => {
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

  test("an unbound source fails with a message saying what to do", async () => {
    const { ctx } = context();
    await expect(chainReveals().poll(ctx)).rejects.toThrow(/not bound to a chain/);
  });

  test("the options override hparams and are checked", () => {
    expect(() => chainReveals({ minBlocksBetweenCommits: -1 } as never)).toThrow(/source "chain-reveals": options.minBlocksBetweenCommits/);
    expect(() => chainReveals({ netuid: 3 } as never)).toThrow(/chain-reveals/);
  });
});
