// The slice of pallet_subtensor Crusades touches: registration lookups, set_weights with the checks of
// chain-spec §4.1 in the chain's order, and commit-reveal weights (commit_timelocked_weights, revealed
// from the drand pulse at the start of epoch commit_epoch + RevealPeriodEpochs, §4.3). Owner-level
// AdminUtils setters let tests flip commit-reveal and the version key as a subnet owner would.
import type { Codec } from "@polkadot/types/types";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { blake2AsU8a } from "@polkadot/util-crypto";
import { decrypt } from "../../core/timelock/index.ts";
import type { BlockContext } from "./context.ts";
import { pulseSignature, type BeaconKey } from "./drand.ts";

const U16_MAX = 65535;
const MAX_UNREVEALED_COMMITS = 10;
export const MAX_WEIGHTS_COMMIT_BYTES = 5000;

const num = (c: Codec | undefined) => Number(c?.toString() ?? 0);
const isTrue = (c: Codec | undefined) => (c as (Codec & { isTrue: boolean }) | undefined)?.isTrue === true;
const big = (c: Codec | undefined) => BigInt(c?.toString() ?? 0);

/** The legacy epoch counter (specs before 424, which includes the served metadata): (block+netuid+1)/(tempo+1). */
export function epochIndex(ctx: BlockContext, netuid: number, block: number): bigint {
  const tempo = num(ctx.state.must("subtensorModule", "tempo", netuid));
  return BigInt(Math.floor((block + netuid + 1) / (tempo + 1)));
}

export function uidOf(ctx: BlockContext, netuid: number, hotkey: string): number | undefined {
  const uid = ctx.state.get("subtensorModule", "uids", netuid, hotkey);
  return uid === undefined ? undefined : num(uid);
}

export function isRegistered(ctx: BlockContext, netuid: number, hotkey: string): boolean {
  return uidOf(ctx, netuid, hotkey) !== undefined;
}

function vec(ctx: BlockContext, item: string, netuid: number): Codec[] {
  return [...(ctx.state.must<Codec & Iterable<Codec>>("subtensorModule", item, netuid) as Iterable<Codec>)];
}

/** vec_u16_max_upscale_to_u16: scale so the largest weight is u16::MAX (ratios are what matter). */
function maxUpscale(values: number[]): number[] {
  const max = Math.max(0, ...values);
  if (max === 0 || max === U16_MAX) return values;
  return values.map((v) => Math.round((v * U16_MAX) / max));
}

/** do_set_weights minus the commit-reveal gate; `checkRateLimit` is false for a timelocked reveal. */
function applyWeights(ctx: BlockContext, who: string, netuid: number, uids: number[], values: number[], versionKey: bigint, checkRateLimit: boolean): void {
  const fail: (name: string, detail?: string) => never = (name, detail) => ctx.fail("SubtensorModule", name, detail);
  if (netuid === 0) fail("CanNotSetRootNetworkWeights");
  if (uids.length !== values.length) fail("WeightVecNotEqualSize", `${uids.length} uids, ${values.length} weights`);
  if (!isTrue(ctx.state.must("subtensorModule", "networksAdded", netuid))) fail("MechanismDoesNotExist", `netuid ${netuid} does not exist`);
  const n = num(ctx.state.must("subtensorModule", "subnetworkN", netuid));
  if (uids.length > n) fail("UidsLengthExceedUidsInSubNet", `${uids.length} uids, subnet has ${n}`);
  const uid = uidOf(ctx, netuid, who);
  if (uid === undefined) fail("HotKeyNotRegisteredInSubNet", `hotkey is not registered on netuid ${netuid}`);
  const stake = big(ctx.state.must("subtensorModule", "totalHotkeyAlpha", who, netuid));
  const threshold = big(ctx.state.must("subtensorModule", "stakeThreshold"));
  if (stake < threshold) fail("NotEnoughStakeToSetWeights", `stake ${stake} < ${threshold}`);
  const requiredKey = big(ctx.state.must("subtensorModule", "weightsVersionKey", netuid));
  if (requiredKey !== 0n && versionKey < requiredKey) fail("IncorrectWeightVersionKey", `version_key ${versionKey} < ${requiredKey}`);
  const lastUpdate = vec(ctx, "lastUpdate", netuid).map(big);
  const last = lastUpdate[uid] ?? 0n;
  const limit = big(ctx.state.must("subtensorModule", "weightsSetRateLimit", netuid));
  if (checkRateLimit && last !== 0n && BigInt(ctx.block) - last < limit) {
    fail("SettingWeightsTooFast", `last set at block ${last}, rate limit ${limit} blocks, now ${ctx.block}`);
  }
  const selfWeight = uids.length === 1 && uids[0] === uid;
  const owner = u8aToHex(ctx.state.must("subtensorModule", "subnetOwnerHotkey", netuid).toU8a()) === who;
  const permit = isTrue(vec(ctx, "validatorPermit", netuid)[uid]);
  if (!selfWeight && !owner && !permit) fail("NeuronNoValidatorPermit", `uid ${uid} has no validator permit`);
  if (new Set(uids).size !== uids.length) fail("DuplicateUids");
  if (uids.some((u) => u >= n)) fail("UidVecContainInvalidOne", `subnet has uids 0..${n - 1}`);
  const minWeights = Math.min(num(ctx.state.must("subtensorModule", "minAllowedWeights", netuid)), n);
  if (!selfWeight && uids.length < minWeights) fail("WeightVecLengthIsLow", `${uids.length} weights, at least ${minWeights}`);
  const scaled = maxUpscale(values);
  const maxLimit = num(ctx.state.must("subtensorModule", "maxWeightsLimit", netuid));
  const sum = scaled.reduce((a, b) => a + b, 0);
  if (maxLimit !== U16_MAX && sum > 0 && !selfWeight && scaled.some((v) => (v * U16_MAX) / sum > maxLimit)) fail("MaxWeightExceeded");

  ctx.state.put("subtensorModule", "weights", [netuid, uid], uids.map((u, i) => [u, scaled[i]]));
  lastUpdate[uid] = BigInt(ctx.block);
  ctx.state.put("subtensorModule", "lastUpdate", [netuid], lastUpdate);
  ctx.deposit("SubtensorModule", "WeightsSet", [netuid, uid]);
}

export function setWeights(ctx: BlockContext, who: string, netuid: number, uids: number[], values: number[], versionKey: bigint): void {
  if (isTrue(ctx.state.must("subtensorModule", "commitRevealWeightsEnabled", netuid))) {
    ctx.fail("SubtensorModule", "CommitRevealEnabled", "this subnet takes weights through commit_timelocked_weights");
  }
  applyWeights(ctx, who, netuid, uids, values, versionKey, true);
}

export function commitTimelockedWeights(ctx: BlockContext, who: string, netuid: number, commit: Uint8Array, revealRound: bigint, version: number): void {
  const fail: (name: string, detail?: string) => never = (name, detail) => ctx.fail("SubtensorModule", name, detail);
  const expected = num(ctx.state.must("subtensorModule", "commitRevealWeightsVersion"));
  if (version !== expected) fail("IncorrectCommitRevealVersion", `version ${version}, the chain expects ${expected}`);
  if (!isTrue(ctx.state.must("subtensorModule", "commitRevealWeightsEnabled", netuid))) fail("CommitRevealDisabled");
  const uid = uidOf(ctx, netuid, who);
  if (uid === undefined) fail("HotKeyNotRegisteredInSubNet", `hotkey is not registered on netuid ${netuid}`);
  const lastUpdate = vec(ctx, "lastUpdate", netuid).map(big);
  const last = lastUpdate[uid] ?? 0n;
  const limit = big(ctx.state.must("subtensorModule", "weightsSetRateLimit", netuid));
  if (last !== 0n && BigInt(ctx.block) - last < limit) {
    fail("CommittingWeightsTooFast", `last commit at block ${last}, rate limit ${limit} blocks, now ${ctx.block}`);
  }
  const epoch = epochIndex(ctx, netuid, ctx.block);
  const queue = commitsAt(ctx, netuid, epoch);
  if (queue.filter((c) => c[0] === who).length >= MAX_UNREVEALED_COMMITS) fail("TooManyUnrevealedCommits");
  queue.push([who, BigInt(ctx.block), u8aToHex(commit), revealRound]);
  ctx.state.put("subtensorModule", "timelockedWeightCommits", [netuid, epoch], queue);
  lastUpdate[uid] = BigInt(ctx.block);
  ctx.state.put("subtensorModule", "lastUpdate", [netuid], lastUpdate);
  ctx.deposit("SubtensorModule", "TimelockedWeightsCommitted", [who, netuid, blake2AsU8a(commit), revealRound]);
}

/** (who, commit block, ciphertext as hex, reveal round): hex because Bytes reads a Uint8Array as SCALE. */
type Commit = [string, bigint, string, bigint];

function commitsAt(ctx: BlockContext, netuid: number, epoch: bigint): Commit[] {
  const q = ctx.state.must<Codec & Iterable<Codec & Codec[]>>("subtensorModule", "timelockedWeightCommits", netuid, epoch);
  return [...q].map(([w, b, c, r]) => [u8aToHex(w!.toU8a()), big(b), u8aToHex(c!.toU8a(true)), big(r)]);
}

type Payload = { uids: number[]; values: number[]; versionKey: bigint };

/**
 * WeightsTlockPayload {hotkey, uids, values, version_key}, or the legacy layout without hotkey; a string
 * says why the plaintext is dropped. Only the SCALE decode may fail over to the legacy layout: a failure
 * while reading fields is a localnet bug and must surface, not pass for "another layout" (it once
 * dropped every reveal silently that way).
 */
function decodePayload(ctx: BlockContext, who: string, bytes: Uint8Array): Payload | string {
  const reg = ctx.runtime.registry;
  // A Struct is a Map: `values` would be Map.prototype.values, so fields are read with get().
  type Fields = Codec & { get(name: string): (Codec & Iterable<Codec>) | undefined };
  const exact = (type: string): Fields | null => {
    try {
      const v = reg.createType(type, bytes) as Fields;
      return v.encodedLength === bytes.length ? v : null;
    } catch {
      return null;
    }
  };
  const read = (v: Fields): Payload => ({ uids: [...v.get("uids")!].map(num), values: [...v.get("values")!].map(num), versionKey: big(v.get("versionKey")) });
  const current = exact('{"hotkey":"Bytes","uids":"Vec<u16>","values":"Vec<u16>","versionKey":"u64"}');
  if (current) {
    const hotkey = u8aToHex(current.get("hotkey")!.toU8a(true));
    return hotkey === who ? read(current) : `the payload names hotkey ${hotkey}, not the committer`;
  }
  const legacy = exact('{"uids":"Vec<u16>","values":"Vec<u16>","versionKey":"u64"}');
  return legacy ? read(legacy) : `the ${bytes.length}-byte plaintext is neither WeightsTlockPayload nor the legacy layout`;
}

/** block_step's reveal: commits of epoch cur − RevealPeriodEpochs, retried each block until their pulse lands. */
export function revealTimelockedWeights(ctx: BlockContext, key: BeaconKey): void {
  for (const netuid of netuids(ctx)) {
    const period = big(ctx.state.must("subtensorModule", "revealPeriodEpochs", netuid));
    const cur = epochIndex(ctx, netuid, ctx.block);
    const revealEpoch = cur - period;
    for (const key of ctx.state.keys(u8aToHex(ctx.runtime.prefix("subtensorModule", "timelockedWeightCommits", netuid)))) {
      const epoch = epochFromKey(key);
      if (epoch >= revealEpoch) continue;
      for (const [who, , , round] of commitsAt(ctx, netuid, epoch)) {
        ctx.trace("weights commit dropped: its reveal epoch ended before the pulse arrived", { netuid, who, epoch: String(epoch), revealRound: String(round) });
      }
      ctx.state.setRaw(key, undefined);
    }
    if (revealEpoch < 0n) continue;
    const queue = commitsAt(ctx, netuid, revealEpoch);
    if (!queue.length) continue;
    const unrevealed: Commit[] = [];
    for (const commit of queue) {
      const [who, , ciphertext, round] = commit;
      const signature = pulseSignature(ctx, key, round);
      if (!signature) {
        unrevealed.push(commit);
        continue;
      }
      let plaintext: Uint8Array;
      try {
        plaintext = decrypt(hexToU8a(ciphertext), signature);
      } catch (error) {
        ctx.trace("weights commit dropped: cannot decrypt", { netuid, who, revealRound: String(round), error: (error as Error).message });
        continue;
      }
      const payload = decodePayload(ctx, who, plaintext);
      if (typeof payload === "string") {
        ctx.trace("weights commit dropped", { netuid, who, reason: payload });
        continue;
      }
      try {
        ctx.state.transaction(() => applyWeights(ctx, who, netuid, payload.uids, payload.values, payload.versionKey, false));
        ctx.deposit("SubtensorModule", "TimelockedWeightsRevealed", [netuid, who]);
      } catch (error) {
        // A reveal that fails the weight checks is dropped, as on chain.
        ctx.trace("weights reveal rejected", { netuid, who, error: (error as Error).message });
      }
    }
    ctx.state.put("subtensorModule", "timelockedWeightCommits", [netuid, revealEpoch], unrevealed.length ? unrevealed : undefined);
  }
}

/** The epoch is the key's last 8 bytes (Identity hasher over u64 LE). */
function epochFromKey(key: string): bigint {
  const hex = key.slice(-16);
  let out = 0n;
  for (let i = 7; i >= 0; i--) out = (out << 8n) | BigInt(parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  return out;
}

/** Every netuid in NetworksAdded; the key ends in the Identity-hashed u16 LE. */
function netuids(ctx: BlockContext): number[] {
  const out: number[] = [];
  for (const key of ctx.state.keys(u8aToHex(ctx.runtime.prefix("subtensorModule", "networksAdded")))) {
    const hex = key.slice(-4);
    out.push(parseInt(hex.slice(2, 4) + hex.slice(0, 2), 16));
  }
  return out;
}

/** AdminUtils setters a subnet owner may call; anything else there is root-only on the real chain. */
export function adminSet(ctx: BlockContext, who: string, call: string, netuid: number, value: Codec): void {
  const owner = u8aToHex(ctx.state.must("subtensorModule", "subnetOwner", netuid).toU8a());
  if (!isTrue(ctx.state.must("subtensorModule", "networksAdded", netuid))) ctx.fail("AdminUtils", "SubnetDoesNotExist");
  if (owner !== who) ctx.badOrigin(`only the owner of netuid ${netuid} may call AdminUtils.${call}`);
  if (call === "sudo_set_commit_reveal_weights_enabled") {
    ctx.state.put("subtensorModule", "commitRevealWeightsEnabled", [netuid], value);
  } else if (call === "sudo_set_weights_version_key") {
    ctx.state.put("subtensorModule", "weightsVersionKey", [netuid], value);
    ctx.deposit("SubtensorModule", "WeightsVersionKeySet", [netuid, value]);
  }
}
