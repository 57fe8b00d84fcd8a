// Sink: puts each weights decision on chain. The decision itself (winner takes all, burn share, burn when
// the leader deregistered) is made and stored by the pipeline; this sink only does the chain I/O.
// Redelivery is safe: before sending, it asks the chain whether this hotkey already set these weights
// after the decision was made (a validator killed between "sent" and "marked delivered" does not send
// twice), and a rate-limited send is retried by the core's outbox, not here.
import { z } from "zod";
import { normalizeU16 } from "../../core/scoring.ts";
import { defineSink, type Factory, type Sink, type SinkEvent, type SinkContext, type WeightsEvent } from "../../core/plugin.ts";
import { bindingSlot, type ChainBinding, type ChainBound } from "../chain-binding.ts";

export const ChainWeightsOptions = z
  .object({
    versionKey: z.number().int().nonnegative().optional().describe("Overrides hparams `weights_version_key`."),
    staleAfterBlocks: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("A decision still undelivered this many blocks after it was made is skipped (a newer one follows); defaults to hparams `set_weights_interval_blocks`."),
    timeoutMs: z.number().int().positive().default(120_000).describe("Per extrinsic, from submission to inclusion."),
  })
  .strict();

const factory = defineSink("chain-weights", ChainWeightsOptions, (opts) => {
  const slot = bindingSlot("sink chain-weights");

  /** Whether the chain already holds this decision, set by this hotkey after the decision's block. */
  async function applied(b: ChainBinding, own: number, d: WeightsEvent): Promise<boolean> {
    if (d.block === null) return false;
    const last = await b.chain.lastUpdate(b.netuid, own);
    if (last <= d.block) return false;
    // Under commit-reveal the weights stay hidden until the reveal: a commit after the decision is all we can see.
    if (await b.chain.commitRevealEnabled(b.netuid)) return true;
    const want = normalizeU16(d.uids, d.weights);
    const have = (await b.chain.weights(b.netuid, own)).slice().sort((x, y) => x.uid - y.uid);
    const wanted = want.uids.map((uid, i) => ({ uid, weight: want.weights[i]! })).sort((x, y) => x.uid - y.uid);
    return have.length === wanted.length && have.every((h, i) => h.uid === wanted[i]!.uid && h.weight === wanted[i]!.weight);
  }

  async function deliver(event: SinkEvent, ctx: SinkContext): Promise<void> {
    if (event.payload.kind !== "weights") return;
    const d = event.payload;
    const b = slot.get();
    const { chain, netuid, hparams, signer } = b;
    const own = await chain.uidOf(netuid, signer.address);
    if (own === null) throw new Error(`validator hotkey ${signer.address} is no longer registered on subnet ${netuid}; weights cannot be set`);

    const block = await chain.currentBlock();
    const staleAfter = opts.staleAfterBlocks ?? hparams.set_weights_interval_blocks;
    if (d.block !== null && block - d.block > staleAfter) {
      ctx.log.warn(`weights decision #${d.decisionId} from block ${d.block} is ${block - d.block} blocks old (over ${staleAfter}); skipped, a newer decision follows`);
      return;
    }
    if (await applied(b, own, d)) {
      ctx.log.info(`weights decision #${d.decisionId} is already on chain; nothing sent`);
      return;
    }
    const outcome = await chain.setWeights(signer, netuid, d.uids, d.weights, opts.versionKey ?? hparams.weights_version_key, {
      blockTime: hparams.block_time,
      timeoutMs: opts.timeoutMs,
    });
    if (outcome.status === "rate_limited") {
      if (await applied(b, own, d)) return;
      throw new Error(`rate limited: this hotkey set weights at block ${outcome.lastUpdate}; the chain accepts the next at block ${outcome.nextBlock} (now ${block})`);
    }
    ctx.log.info(`weights decision #${d.decisionId} set at block ${outcome.block} (${outcome.mode}${outcome.recovered ? ", recovered after a reconnect" : ""})`, {
      uids: outcome.uids,
      weights: outcome.weights,
      reason: d.reason,
    });
  }

  const plugin = { deliver, bindChain: (binding: ChainBinding) => slot.set(binding) };
  return plugin;
});

/** Like every factory, with the `bindChain` the validator calls at start. */
export const chainWeights = factory as Factory<Sink & ChainBound, typeof ChainWeightsOptions>;
