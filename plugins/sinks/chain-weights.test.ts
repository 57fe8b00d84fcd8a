import { describe, expect, test } from "bun:test";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { WeightsOutcome } from "../../core/chain/index.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import type { SinkEvent, WeightsEvent } from "../../core/plugin.ts";
import { QUICKNET } from "../../core/timelock/index.ts";
import { normalizeU16 } from "../../core/scoring.ts";
import type { ChainPort } from "../chain-binding.ts";
import { chainWeights } from "./chain-weights.ts";

const hparams = { ...loadHParams(), netuid: 3, set_weights_interval_blocks: 50, weights_version_key: 7 };
const signer = { address: "validator-hotkey" } as KeyringPair;

/** Just enough subtensor: LastUpdate, Weights and the rate limit, as the chain applies them. */
class FakeChain {
  block = 100;
  rateLimit = 10;
  commitReveal = false;
  registered = true;
  last = 0;
  stored: { uid: number; weight: number }[] = [];
  sent: { uids: number[]; weights: number[]; versionKey: number }[] = [];

  port(): ChainPort {
    return {
      currentBlock: async () => this.block,
      uidOf: async (_n: number, hotkey: string) => (this.registered && hotkey === signer.address ? 2 : null),
      lastUpdate: async () => this.last,
      weights: async () => this.stored.map((w) => ({ ...w })),
      commitRevealEnabled: async () => this.commitReveal,
      setWeights: async (_s: KeyringPair, _n: number, uids: number[], weights: number[], versionKey: number): Promise<WeightsOutcome> => {
        if (this.last > 0 && this.block - this.last < this.rateLimit) return { status: "rate_limited", nextBlock: this.last + this.rateLimit, lastUpdate: this.last, rateLimit: this.rateLimit };
        this.sent.push({ uids, weights, versionKey });
        const n = normalizeU16(uids, weights);
        this.block += 1;
        this.last = this.block;
        if (!this.commitReveal) this.stored = n.uids.map((uid, i) => ({ uid, weight: n.weights[i]! }));
        return { status: "ok", mode: this.commitReveal ? "commit_timelocked_weights" : "set_weights", block: this.block, hash: "0x00", uids: n.uids, weights: n.weights, recovered: false };
      },
      revealedCommitments: async () => [],
      revealedCommitmentsOf: async () => [],
      pendingCommitments: async () => [],
      pendingCommitmentOf: async () => null,
      commitmentActivity: async () => new Set<string>(),
      commitOrigin: async () => null,
      blockTimestamp: async () => 0,
      drandBeaconConfig: async () => QUICKNET,
      droppedCommitments: async () => [],
    } as ChainPort;
  }
}

function setup(options: Parameters<typeof chainWeights>[0] = {}) {
  const chain = new FakeChain();
  const sink = chainWeights(options);
  sink.bindChain({ chain: chain.port(), netuid: 3, hparams, signer, uid: 2 });
  const log = memoryLogger();
  return { chain, sink, log, ctx: { log, signal: new AbortController().signal } };
}

const weightsEvent = (decisionId: number, block: number | null, uids: number[], weights: number[]): SinkEvent<WeightsEvent> => ({
  id: `weights:${decisionId}`,
  createdAt: 0,
  payload: { kind: "weights", decisionId, block, uids, weights, reason: "test", leaderSubmissionId: null },
});

describe("chain-weights sink", () => {
  test("sets the decided weights with the version key, and ignores score events", async () => {
    const { chain, sink, ctx } = setup();
    await sink.deliver({ id: "score:x", createdAt: 0, payload: { kind: "score" } as never }, ctx);
    expect(chain.sent).toEqual([]);
    await sink.deliver(weightsEvent(1, 99, [1, 4], [0.95, 0.05]), ctx);
    expect(chain.sent).toEqual([{ uids: [1, 4], weights: [0.95, 0.05], versionKey: 7 }]);
    expect(chain.stored).toEqual([
      { uid: 1, weight: 65535 },
      { uid: 4, weight: 3449 },
    ]);
  });

  test("redelivering a decision already on chain (killed before it was marked delivered) sends nothing", async () => {
    const { chain, sink, ctx, log } = setup();
    const e = weightsEvent(1, 99, [1, 4], [0.95, 0.05]);
    await sink.deliver(e, ctx);
    chain.block += 30; // past the rate limit: a second send would go through
    await sink.deliver(e, ctx);
    expect(chain.sent).toHaveLength(1);
    expect(log.lines.join("\n")).toContain("already on chain");
  });

  test("inside the rate limit, different weights wait for the outbox's retry; the same weights count as delivered", async () => {
    const { chain, sink, ctx } = setup();
    await sink.deliver(weightsEvent(1, 99, [1, 4], [0.95, 0.05]), ctx);
    chain.block += 2;
    await expect(sink.deliver(weightsEvent(2, 100, [1, 5], [0.95, 0.05]), ctx)).rejects.toThrow(/rate limited: .* next at block 111/);
    await sink.deliver(weightsEvent(3, 100, [1, 4], [0.95, 0.05]), ctx);
    expect(chain.sent).toHaveLength(1);
    chain.block += 10;
    await sink.deliver(weightsEvent(2, 100, [1, 5], [0.95, 0.05]), ctx);
    expect(chain.sent.map((s) => s.uids)).toEqual([
      [1, 4],
      [1, 5],
    ]);
  });

  test("a decision older than staleAfterBlocks is skipped (a newer one follows in the outbox)", async () => {
    const { chain, sink, ctx, log } = setup({ staleAfterBlocks: 20 });
    await sink.deliver(weightsEvent(1, 70, [1], [1]), ctx);
    expect(chain.sent).toEqual([]);
    expect(log.lines.join("\n")).toContain("30 blocks old");
    await sink.deliver(weightsEvent(2, 85, [1], [1]), ctx);
    expect(chain.sent).toHaveLength(1);
  });

  test("under commit-reveal a commit after the decision counts as applied", async () => {
    const { chain, sink, ctx } = setup();
    chain.commitReveal = true;
    const e = weightsEvent(1, 99, [1, 4], [0.95, 0.05]);
    await sink.deliver(e, ctx);
    chain.block += 30;
    await sink.deliver(e, ctx);
    expect(chain.sent).toHaveLength(1);
  });

  test("a validator hotkey that deregistered is an error, not a silent skip", async () => {
    const { chain, sink, ctx } = setup();
    chain.registered = false;
    await expect(sink.deliver(weightsEvent(1, 99, [1], [1]), ctx)).rejects.toThrow(/no longer registered on subnet 3/);
  });

  test("unbound, it says what is missing", async () => {
    await expect(chainWeights().deliver(weightsEvent(1, 1, [1], [1]), { log: memoryLogger(), signal: new AbortController().signal })).rejects.toThrow(/not bound to a chain/);
  });
});
