// Source: miners' timelocked commitments once the chain has revealed them (Commitments.RevealedCommitments).
// Rules:
//   - a payload that does not parse (malformed, oversize, not an http(s) URL) is rejected with its reason;
//   - a hotkey not registered on the subnet is rejected;
//   - the commit block and drand round come from the chain (the registration in the block before the
//     reveal); a timelock opening sooner than `reveal_blocks × block_time` after the commit block's
//     timestamp is rejected (reveal_too_soon), and one longer than `maxRevealBlocks` too (reveal_too_late);
//   - first committer wins, by commit block (then hotkey): a URL or code hash committed earlier by another
//     hotkey is rejected, even when that first commitment was itself rate-limited (otherwise a copier
//     could take it over). A revealed commitment waits while an earlier one is still sealed, so a copy
//     that reveals first cannot take the original's code;
//   - the same hotkey re-committing code it already had accepted is rejected as already submitted;
//   - one accepted submission per hotkey per `min_blocks_between_commits`, by reveal block.
// Decisions are remembered in plugin state keyed by submission id, so re-reading the same reveals (a
// hotkey's whole list when it reveals again, or everything after a kill before the store took the
// submissions) yields the same answer and no duplicates. Each poll reads only what changed since the last
// (the Commitments events of the new blocks), so an idle validator's work does not grow with history.
import { z } from "zod";
import type { CommitOrigin, PendingCommitment, RevealedCommitment } from "../../core/chain/index.ts";
import type { Submission } from "../../core/contracts.ts";
import { judgeRevealDelay, parseCommitment, roundPublishedAt, type Commitment, type RevealRule } from "../../core/commitment.ts";
import { defineSource, type Factory, type Source, type SourceContext } from "../../core/plugin.ts";
import { normalizeCodeUrl } from "../../core/urls.ts";
import { bindingSlot, type ChainBinding, type ChainBound, type ChainPort } from "../chain-binding.ts";

export const ChainRevealsOptions = z
  .object({
    minBlocksBetweenCommits: z.number().int().nonnegative().optional().describe("Overrides hparams `min_blocks_between_commits` (one accepted submission per hotkey per this many blocks)."),
    revealBlocks: z.number().int().positive().optional().describe("Overrides hparams `reveal_blocks` for the reveal-delay rule (a localnet practice round)."),
    blockTime: z.number().positive().optional().describe("Overrides hparams `block_time` for the reveal-delay rule (a localnet's block interval in seconds)."),
    maxRevealBlocks: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("Longest accepted timelock, in blocks (default 4 × hparams `reveal_blocks`). A revealed commitment waits for every earlier one still sealed, so this bounds that wait."),
  })
  .strict();

interface Claim {
  hotkey: string;
  id: string;
  /** The commit block (reveal block in claims made before priority went by commit block). */
  block: number;
  accepted: boolean;
}

interface Candidate {
  id: string;
  hotkey: string;
  revealBlock: number;
  commitBlock: number;
  uid: number;
  commitment: Commitment;
  data: string;
}

/** Commit order: block, then hotkey (the chain gives no cheaper order within a block). */
const before = (a: { block: number; hotkey: string }, b: { block: number; hotkey: string }) => a.block < b.block || (a.block === b.block && a.hotkey < b.hotkey);

interface RevealState {
  urls: Record<string, Claim>;
  hashes: Record<string, Claim>;
  lastAccepted: Record<string, { block: number; id: string }>;
  rejected: Record<string, true>;
}

const emptyState = (): RevealState => ({ urls: {}, hashes: {}, lastAccepted: {}, rejected: {} });

export const submissionId = (netuid: number, block: number, hotkey: string) => `chain:${netuid}:${block}:${hotkey}`;

/** A head further than this past the last poll's is read afresh, not block by block (a node keeps events only so long). */
const MAX_SCAN_BLOCKS = 64;

const factory = defineSource("chain-reveals", ChainRevealsOptions, (opts) => {
  const slot = bindingSlot("source chain-reveals");
  // What the chain said about reveals still waiting and about sealed commitments' blocks: fixed facts,
  // so asked once; entries go once their reveal is decided or their commitment is no longer sealed.
  const origins = new Map<string, CommitOrigin>();
  const blockTimes = new Map<number, number>();
  // The chain's commitments as of block `viewBlock`: read whole at the first poll, then kept up to date
  // from the Commitments events of the blocks since, re-reading only the hotkeys they name. An idle poll
  // reads the head and nothing more, however many reveals the chain holds.
  let viewBlock: number | null = null;
  /** Reveals not yet decided (neither rejected nor taken by the store), by submission id. */
  const open = new Map<string, RevealedCommitment>();
  /** Timelocked commitments still sealed, by hotkey. */
  const sealed = new Map<string, PendingCommitment>();
  /** Dropped commitments (a localnet's) already recorded. */
  const droppedSeen = new Set<string>();

  async function refresh(chain: ChainPort, netuid: number) {
    const head = await chain.currentBlock();
    if (head === viewBlock) return;
    const add = (r: RevealedCommitment) => open.set(submissionId(netuid, r.block, r.hotkey), r);
    // Sealed commitments first: one that reveals between the two reads is seen in both (and holds the
    // others back one poll longer), never in neither. The reads see the chain at `head` or later, so the
    // next poll's events cover whatever changed after them.
    const scan = viewBlock !== null && head > viewBlock && head - viewBlock <= MAX_SCAN_BLOCKS;
    // A node that no longer holds those blocks' state (restarted, pruned) cannot say: read it all again.
    const touched = scan
      ? await chain.commitmentActivity(netuid, viewBlock! + 1, head).catch((e: { code?: unknown }) => {
          if (e.code === "disconnected") throw e;
          return null;
        })
      : null;
    if (touched) {
      for (const hotkey of touched) {
        const p = await chain.pendingCommitmentOf(netuid, hotkey);
        if (p) sealed.set(hotkey, p);
        else sealed.delete(hotkey);
        (await chain.revealedCommitmentsOf(netuid, hotkey)).forEach(add);
      }
    } else {
      const pending = await chain.pendingCommitments(netuid);
      const reveals = await chain.revealedCommitments(netuid);
      sealed.clear();
      for (const p of pending) sealed.set(p.hotkey, p);
      open.clear();
      reveals.forEach(add);
    }
    viewBlock = head;
  }

  async function poll(ctx: SourceContext): Promise<Submission[]> {
    const { chain, netuid, hparams, genesisHash } = slot.get();
    const minBlocks = opts.minBlocksBetweenCommits ?? hparams.min_blocks_between_commits;
    const revealBlocks = opts.revealBlocks ?? hparams.reveal_blocks;
    const rule: RevealRule = { revealBlocks, maxRevealBlocks: opts.maxRevealBlocks ?? 4 * revealBlocks, blockTime: opts.blockTime ?? hparams.block_time };
    await refresh(chain, netuid);
    for (const id of open.keys()) if (ctx.known(id)) open.delete(id);
    // A localnet names the timelocked commitments it dropped at the reveal (a real chain drops them
    // silently and names none): each is a rejection, so the miner sees why it never arrived.
    const dropped = (await chain.droppedCommitments(netuid)).filter((d) => !droppedSeen.has(`${submissionId(netuid, d.block, d.hotkey)}:dropped`));
    if (!open.size && !dropped.length) return [];

    let beacon: Awaited<ReturnType<typeof chain.drandBeaconConfig>> | null = null;
    const beaconClock = async () => (beacon ??= await chain.drandBeaconConfig());
    // Claims and rate limits hold on one chain: keyed by its genesis hash, a reset chain or another
    // network starts clean. The unkeyed entry is what a store written before the keying holds.
    const key = genesisHash ? `decisions:${genesisHash}` : "decisions";
    const st = { ...emptyState(), ...(ctx.state.get<RevealState>(key) ?? ctx.state.get<RevealState>("decisions")) };
    const out: Submission[] = [];
    const uids = new Map<string, number | null>();
    let changed = false;
    const candidates: Candidate[] = [];

    const reveals = [...open.values()].sort((a, b) => a.block - b.block || (a.hotkey < b.hotkey ? -1 : a.hotkey > b.hotkey ? 1 : 0));
    for (const r of reveals) {
      const id = submissionId(netuid, r.block, r.hotkey);
      if (st.rejected[id]) {
        open.delete(id);
        continue;
      }
      const reject = (reason: string, detail: string) => {
        changed = true;
        st.rejected[id] = true;
        open.delete(id);
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

      const origin = origins.get(id) ?? (await chain.commitOrigin(netuid, r.hotkey, r.block));
      if (!origin) {
        reject(
          "commit_unknown",
          `the node no longer holds the state that says when this commitment (revealed at block ${r.block}) was made, so its priority cannot be judged; a validator offline for longer than its node keeps state needs an archive node`,
        );
        continue;
      }
      const clock = await beaconClock();
      const sealed = origin.revealRound !== null ? roundPublishedAt(origin.revealRound, clock) - origin.commitTimeMs / 1000 : (origin.revealTimeMs - origin.commitTimeMs) / 1000;
      const bad = judgeRevealDelay(sealed, rule, clock);
      if (bad) {
        origins.delete(id);
        reject(bad.reason, `committed at block ${origin.commitBlock}${origin.revealRound !== null ? ` to drand round ${origin.revealRound}` : ""}, ${bad.message}`);
        continue;
      }
      origins.set(id, origin);
      candidates.push({ id, hotkey: r.hotkey, revealBlock: r.block, commitBlock: origin.commitBlock, uid, commitment: parsed.commitment, data: r.data });
    }

    // The earliest commitment still sealed that will be accepted when it opens: nothing committed at or
    // after it is decided before it reveals, as it may carry the same code.
    let hold: { block: number; hotkey: string } | null = null;
    const sealedBlocks = new Set<number>();
    for (const p of sealed.values()) {
      sealedBlocks.add(p.block);
      if (hold && !before(p, hold)) continue;
      const clock = await beaconClock();
      const at = blockTimes.get(p.block) ?? (await chain.blockTimestamp(p.block));
      blockTimes.set(p.block, at);
      if (!judgeRevealDelay(roundPublishedAt(p.revealRound, clock) - at / 1000, rule, clock)) hold = p;
    }
    for (const b of blockTimes.keys()) if (!sealedBlocks.has(b)) blockTimes.delete(b);

    candidates.sort((a, b) => a.commitBlock - b.commitBlock || (a.hotkey < b.hotkey ? -1 : a.hotkey > b.hotkey ? 1 : 0) || a.revealBlock - b.revealBlock);
    for (const c of candidates) {
      if (hold && !before({ block: c.commitBlock, hotkey: c.hotkey }, hold)) {
        ctx.log.debug(`${c.id} waits: ${hold.hotkey} committed at block ${hold.block} and has not revealed yet`);
        break;
      }
      const { id } = c;
      const r = { hotkey: c.hotkey, block: c.revealBlock };
      origins.delete(id);
      changed = true;
      const reject = (reason: string, detail: string) => {
        st.rejected[id] = true;
        open.delete(id);
        ctx.reject({ hotkey: r.hotkey, reason, detail, raw: c.data, block: r.block });
      };
      const { url, codeHash } = c.commitment;
      const urlKey = normalizeCodeUrl(url);
      const urlOwner = st.urls[urlKey];
      const hashOwner = codeHash ? st.hashes[codeHash] : undefined;
      if (urlOwner && urlOwner.hotkey !== r.hotkey) {
        reject("url_taken", `${url} was first committed by ${urlOwner.hotkey} at block ${urlOwner.block}; the first commitment wins (this one: block ${c.commitBlock})`);
        continue;
      }
      if (hashOwner && hashOwner.hotkey !== r.hotkey) {
        reject("code_taken", `code ${codeHash} was first committed by ${hashOwner.hotkey} at block ${hashOwner.block}; the first commitment of those bytes wins wherever they are hosted (this one: block ${c.commitBlock})`);
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
      const claim: Claim = { hotkey: r.hotkey, id, block: c.commitBlock, accepted };
      if (accepted || !urlOwner?.accepted) st.urls[urlKey] = claim;
      if (codeHash && (accepted || !hashOwner?.accepted)) st.hashes[codeHash] = claim;
      if (!accepted) {
        reject("rate_limited", `one submission per ${minBlocks} blocks: ${last!.id} was accepted at block ${last!.block}, the next is accepted from block ${last!.block + minBlocks}`);
        continue;
      }
      st.lastAccepted[r.hotkey] = { block: r.block, id };
      out.push({ id, hotkey: r.hotkey, uid: c.uid, url, ...(codeHash ? { committedHash: codeHash } : {}), revealBlock: r.block, commitBlock: c.commitBlock, source: "chain-reveals" });
    }
    for (const d of dropped) {
      const id = `${submissionId(netuid, d.block, d.hotkey)}:dropped`;
      droppedSeen.add(id);
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
