// pallet_commitments as chain-spec §1 describes it: set_commitment with the per-epoch space budget, and
// the on_initialize reveal of TimelockEncrypted fields once their drand pulse is on chain (§1.6).
import type { Codec } from "@polkadot/types/types";
import { u8aToHex } from "@polkadot/util";
import { decrypt, TimelockError } from "../../core/timelock/index.ts";
import type { BlockContext } from "./context.ts";
import { pulseSignature, type BeaconKey } from "./drand.ts";
import { epochIndex, isRegistered } from "./subtensor.ts";

const MAX_REVEALS = 10;
export const MAX_TIMELOCK_BYTES = 1024;
export const MAX_BIGRAW_BYTES = 512;

type DataField = Codec & { type: string; value: Codec & { encrypted?: Codec & { length: number; toU8a(bare: true): Uint8Array }; revealRound?: Codec } };
type Info = Codec & { fields: DataField[] & Codec };

/** Bytes a field counts against the space budget (len_for_rate_limit). */
function fieldLength(field: DataField): number {
  if (field.type === "None" || field.type === "ResetBondsFlag") return 0;
  if (field.type.startsWith("Raw")) return Number(field.type.slice(3));
  if (field.type === "TimelockEncrypted") return field.value.encrypted!.length;
  if (field.type === "BigRaw") return (field.value as unknown as Uint8Array).length;
  return 32; // the hash variants
}

/**
 * The BoundedVec limits a real runtime enforces while decoding the call; @polkadot/types decodes
 * BoundedVec as an unbounded Vec, so the transaction validator asks here. Returns a message or null.
 */
export function commitmentBoundsError(info: Info): string | null {
  for (const field of info.fields) {
    if (field.type === "TimelockEncrypted" && field.value.encrypted!.length > MAX_TIMELOCK_BYTES) {
      return `Data::TimelockEncrypted.encrypted is ${field.value.encrypted!.length} bytes; the runtime's BoundedVec holds at most ${MAX_TIMELOCK_BYTES}`;
    }
    if (field.type === "BigRaw" && (field.value as unknown as Uint8Array).length > MAX_BIGRAW_BYTES) {
      return `Data::BigRaw is ${(field.value as unknown as Uint8Array).length} bytes; the runtime's BoundedVec holds at most ${MAX_BIGRAW_BYTES}`;
    }
  }
  return null;
}

const indexEntry = (netuid: number, who: string) => `${netuid}:${who}`;

function readIndex(ctx: BlockContext): [number, string][] {
  const set = ctx.state.must<Codec & Iterable<Codec & [Codec, Codec]>>("commitments", "timelockedIndex");
  return [...set].map(([n, w]) => [Number(n.toString()), u8aToHex(w.toU8a())]);
}

function writeIndex(ctx: BlockContext, entries: [number, string][]): void {
  // BTreeSet order: by netuid, then by account bytes.
  const sorted = [...new Map(entries.map((e) => [indexEntry(...e), e])).values()].sort((a, b) =>
    a[0] !== b[0] ? a[0] - b[0] : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0,
  );
  ctx.state.put("commitments", "timelockedIndex", [], sorted);
}

export function setCommitment(ctx: BlockContext, who: string, netuid: number, info: Info): void {
  if (!isRegistered(ctx, netuid, who)) ctx.fail("Commitments", "AccountNotAllowedCommit", `hotkey is not registered on netuid ${netuid}`);
  const maxFields = Number(ctx.runtime.decorated.consts.commitments?.maxFields?.toString() ?? 3);
  if (info.fields.length > maxFields) {
    ctx.fail("Commitments", "TooManyFieldsInCommitmentInfo", `${info.fields.length} fields, at most ${maxFields}`);
  }

  const required = BigInt(Math.max(100, info.fields.reduce((n, f) => n + fieldLength(f), 0)));
  const epoch = epochIndex(ctx, netuid, ctx.block);
  const usage = ctx.state.get<Codec & { lastEpoch: Codec; usedSpace: Codec }>("commitments", "usedSpaceOf", netuid, who);
  const used = usage && BigInt(usage.lastEpoch.toString()) === epoch ? BigInt(usage.usedSpace.toString()) : 0n;
  const maxSpace = BigInt(ctx.state.must("commitments", "maxSpace").toString());
  if (used + required > maxSpace) {
    ctx.fail("Commitments", "SpaceLimitExceeded", `${used} bytes used this epoch, ${required} more would pass MaxSpace ${maxSpace}`);
  }
  ctx.state.put("commitments", "usedSpaceOf", [netuid, who], { lastEpoch: epoch, usedSpace: used + required });

  ctx.state.put("commitments", "commitmentOf", [netuid, who], { deposit: 0, block: ctx.block, info });
  ctx.state.put("commitments", "lastCommitment", [netuid, who], ctx.block);

  const timelocked = info.fields.find((f) => f.type === "TimelockEncrypted");
  const index = readIndex(ctx).filter(([n, w]) => !(n === netuid && w === who));
  if (timelocked) {
    ctx.deposit("Commitments", "TimelockCommitment", [netuid, who, timelocked.value.revealRound!]);
    writeIndex(ctx, [...index, [netuid, who]]);
  } else {
    ctx.deposit("Commitments", "Commitment", [netuid, who]);
    writeIndex(ctx, index);
  }
}

/** on_initialize: reveal every timelocked field whose pulse has arrived (chain-spec §1.6). */
export function revealTimelockedCommitments(ctx: BlockContext, key: BeaconKey): void {
  const index = readIndex(ctx);
  const keep: [number, string][] = [];
  for (const [netuid, who] of index) {
    const reg = ctx.state.get<Codec & { deposit: Codec; block: Codec; info: Info }>("commitments", "commitmentOf", netuid, who);
    if (!reg) continue;
    let processed = false;
    const reveals: Uint8Array[] = [];
    const remaining: DataField[] = [];
    for (const field of reg.info.fields) {
      if (field.type !== "TimelockEncrypted") {
        remaining.push(field);
        continue;
      }
      const signature = pulseSignature(ctx, key, BigInt(field.value.revealRound!.toString()));
      if (!signature) {
        remaining.push(field);
        continue;
      }
      processed = true;
      const revealRound = BigInt(field.value.revealRound!.toString());
      // The chain drops a field it cannot decrypt, silently (chain-spec §8.6); the localnet says why.
      const drop = (reason: string) => ctx.dropCommitment({ netuid, who, block: ctx.block, revealRound, reason });
      try {
        const plain = decrypt(field.value.encrypted!.toU8a(true), signature);
        if (plain.length) reveals.push(plain);
        else drop("it decrypts to no bytes");
      } catch (error) {
        drop(
          error instanceof TimelockError && error.reason === "wrong_signature"
            ? `encrypted to another beacon key: the localnet beacon's signature for round ${revealRound} does not open it. ` +
                "bittensor-drand, bittensor-core and the bittensor SDK encrypt to drand quicknet's key, whose rounds only " +
                "drand can sign; commit with Crusades' CLI, or encrypt to this chain's Drand.BeaconConfig public key"
            : `it cannot be decrypted: ${(error as Error).message}`,
        );
      }
    }
    if (!processed) {
      keep.push([netuid, who]);
      continue;
    }
    if (reveals.length) {
      const existing = ctx.state.get<Codec & Iterable<Codec & [Codec, Codec]>>("commitments", "revealedCommitments", netuid, who);
      const list: [string, bigint][] = existing ? [...existing].map(([b, n]) => [u8aToHex(b.toU8a(true)), BigInt(n.toString())]) : [];
      for (const plain of reveals) {
        list.push([u8aToHex(plain), BigInt(ctx.block)]);
        ctx.deposit("Commitments", "CommitmentRevealed", [netuid, who]);
      }
      ctx.state.put("commitments", "revealedCommitments", [netuid, who], list.slice(-MAX_REVEALS));
    }
    if (remaining.length === 0) {
      ctx.state.put("commitments", "commitmentOf", [netuid, who], undefined);
      continue;
    }
    ctx.state.put("commitments", "commitmentOf", [netuid, who], { deposit: reg.deposit, block: reg.block, info: { fields: remaining } });
    if (remaining.some((f) => f.type === "TimelockEncrypted")) keep.push([netuid, who]);
  }
  if (keep.length !== index.length) writeIndex(ctx, keep);
}
