// Source: miners' timelocked commitments once the chain has revealed them (Commitments.RevealedCommitments).
// Rules, applied in reveal order (block, then hotkey):
//   - a payload that does not parse (malformed, oversize, not an http(s) URL) is rejected with its reason;
//   - a hotkey not registered on the subnet is rejected;
//   - first committer wins: a URL or code hash first revealed by another hotkey is rejected, even when
//     that first commitment was itself rate-limited (otherwise a copier could take it over);
//   - the same hotkey re-committing code it already had accepted is rejected as already submitted;
//   - one accepted submission per hotkey per `min_blocks_between_commits`, by reveal block.
// Decisions are remembered in plugin state keyed by submission id, so re-reading the same reveals (every
// poll, or after a kill before the store took the submissions) yields the same answer and no duplicates.
import { z } from "zod";
import type { Submission } from "../../core/contracts.ts";
import { parseCommitment } from "../../core/commitment.ts";
import { defineSource, type Factory, type Source, type SourceContext } from "../../core/plugin.ts";
import { normalizeCodeUrl } from "../../core/urls.ts";
import { bindingSlot, type ChainBinding, type ChainBound } from "../chain-binding.ts";

export const ChainRevealsOptions = z
  .object({
    minBlocksBetweenCommits: z.number().int().nonnegative().optional().describe("Overrides hparams `min_blocks_between_commits` (one accepted submission per hotkey per this many blocks)."),
  })
  .strict();

interface Claim {
  hotkey: string;
  id: string;
  block: number;
  accepted: boolean;
}

interface RevealState {
  urls: Record<string, Claim>;
  hashes: Record<string, Claim>;
  lastAccepted: Record<string, { block: number; id: string }>;
  rejected: Record<string, true>;
}

const emptyState = (): RevealState => ({ urls: {}, hashes: {}, lastAccepted: {}, rejected: {} });

export const submissionId = (netuid: number, block: number, hotkey: string) => `chain:${netuid}:${block}:${hotkey}`;

const factory = defineSource("chain-reveals", ChainRevealsOptions, (opts) => {
  const slot = bindingSlot("source chain-reveals");

  async function poll(ctx: SourceContext): Promise<Submission[]> {
    const { chain, netuid, hparams, genesisHash } = slot.get();
    const minBlocks = opts.minBlocksBetweenCommits ?? hparams.min_blocks_between_commits;
    const reveals = await chain.revealedCommitments(netuid);
    reveals.sort((a, b) => a.block - b.block || (a.hotkey < b.hotkey ? -1 : a.hotkey > b.hotkey ? 1 : 0));
    // Claims and rate limits hold on one chain: keyed by its genesis hash, a reset chain or another
    // network starts clean. The unkeyed entry is what a store written before the keying holds.
    const key = genesisHash ? `decisions:${genesisHash}` : "decisions";
    const st = { ...emptyState(), ...(ctx.state.get<RevealState>(key) ?? ctx.state.get<RevealState>("decisions")) };
    const out: Submission[] = [];
    const uids = new Map<string, number | null>();
    let changed = false;

    for (const r of reveals) {
      const id = submissionId(netuid, r.block, r.hotkey);
      if (st.rejected[id] || ctx.known(id)) continue;
      changed = true;
      const reject = (reason: string, detail: string) => {
        st.rejected[id] = true;
        ctx.reject({ hotkey: r.hotkey, reason, detail, raw: r.data, block: r.block });
      };

      const parsed = parseCommitment(r.data);
      if (!parsed.ok) {
        reject(parsed.reason, parsed.message);
        continue;
      }
      if (!uids.has(r.hotkey)) uids.set(r.hotkey, await chain.uidOf(netuid, r.hotkey));
      const uid = uids.get(r.hotkey)!;
      if (uid === null) {
        reject("unregistered", `hotkey ${r.hotkey} is not registered on subnet ${netuid}`);
        continue;
      }

      const { url, codeHash } = parsed.commitment;
      const urlKey = normalizeCodeUrl(url);
      const urlOwner = st.urls[urlKey];
      const hashOwner = codeHash ? st.hashes[codeHash] : undefined;
      if (urlOwner && urlOwner.hotkey !== r.hotkey) {
        reject("url_taken", `${url} was first committed by ${urlOwner.hotkey} (revealed at block ${urlOwner.block}); first committer wins`);
        continue;
      }
      if (hashOwner && hashOwner.hotkey !== r.hotkey) {
        reject("code_taken", `code ${codeHash} was first committed by ${hashOwner.hotkey} (revealed at block ${hashOwner.block}); first committer wins`);
        continue;
      }
      // With a hash, the same URL may serve new code; without one (legacy JSON) the URL is all we know.
      const own = codeHash ? hashOwner : urlOwner;
      if (own?.accepted && own.id !== id) {
        reject("already_submitted", `this hotkey already submitted ${codeHash ? `code ${codeHash}` : url} as ${own.id}`);
        continue;
      }

      const last = st.lastAccepted[r.hotkey];
      const accepted = !(last && last.id !== id && r.block - last.block < minBlocks);
      // A rate-limited commitment still claims its URL and hash for this hotkey, unless an accepted one holds them.
      const claim: Claim = { hotkey: r.hotkey, id, block: r.block, accepted };
      if (accepted || !urlOwner?.accepted) st.urls[urlKey] = claim;
      if (codeHash && (accepted || !hashOwner?.accepted)) st.hashes[codeHash] = claim;
      if (!accepted) {
        reject("rate_limited", `one submission per ${minBlocks} blocks: ${last!.id} was accepted at block ${last!.block}, the next is accepted from block ${last!.block + minBlocks}`);
        continue;
      }
      st.lastAccepted[r.hotkey] = { block: r.block, id };
      out.push({ id, hotkey: r.hotkey, uid, url, ...(codeHash ? { committedHash: codeHash } : {}), revealBlock: r.block, source: "chain-reveals" });
    }
    // A localnet names the timelocked commitments it dropped at the reveal (a real chain drops them
    // silently and names none): each is a rejection, so the miner sees why it never arrived.
    for (const d of await chain.droppedCommitments(netuid)) {
      const id = `${submissionId(netuid, d.block, d.hotkey)}:dropped`;
      if (st.rejected[id]) continue;
      st.rejected[id] = true;
      changed = true;
      ctx.reject({
        hotkey: d.hotkey,
        reason: "undecryptable",
        detail: `the chain dropped this hotkey's timelocked commitment (drand round ${d.revealRound}) at its reveal: ${d.reason}`,
        raw: "",
        block: d.block,
      });
    }
    if (changed) {
      ctx.state.set(key, st);
      if (key !== "decisions" && ctx.state.get("decisions")) ctx.state.set("decisions", null);
    }
    return out;
  }

  const plugin = { poll, bindChain: (b: ChainBinding) => slot.set(b) };
  return plugin;
});

/** Like every factory, with the `bindChain` the validator calls at start. */
export const chainReveals = factory as Factory<Source & ChainBound, typeof ChainRevealsOptions>;
