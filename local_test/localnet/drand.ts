// The localnet's drand beacon and its pallet_drand stand-in. The beacon has its own BLS key but keeps
// quicknet's clock (genesis 1692803367, 3 s rounds), so the reveal round a client computes from wall
// time with bittensor-drand's formula is published when the real one would be. Pulses reach storage the
// way the chain's off-chain worker puts them there: contiguous rounds from LastStoredRound + 1, at most
// 50 per block, each BLS-signed and stored with randomness = sha256(signature).
import { sha256 } from "@noble/hashes/sha2.js";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { QUICKNET, signRound } from "../../core/timelock/index.ts";
import type { BlockContext } from "./context.ts";

const MAX_PULSES_PER_BLOCK = 50;

export interface BeaconKey {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/** The quicknet round published at or before `nowMs`: round 1 at genesis, one every period. */
export function roundAt(nowMs: number): bigint {
  const elapsed = Math.floor((nowMs / 1000 - QUICKNET.genesisTime) / QUICKNET.period);
  return BigInt(Math.max(0, elapsed) + 1);
}

/** `Drand.BeaconConfig` for the local key: quicknet's parameters with this beacon's public key. */
export function beaconConfig(publicKey: Uint8Array) {
  // Bytes fields take hex: a Uint8Array would be read as already length-prefixed SCALE.
  const ascii = (s: string) => u8aToHex(new TextEncoder().encode(s));
  return {
    publicKey: u8aToHex(publicKey),
    period: QUICKNET.period,
    genesisTime: QUICKNET.genesisTime,
    hash: `0x${QUICKNET.chainHash}`,
    groupHash: "0xf477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e",
    schemeId: ascii("bls-unchained-g1-rfc9380"),
    metadata: { beaconId: ascii("quicknet") },
  };
}

function pulse(key: BeaconKey, round: bigint) {
  const signature = signRound(key.secretKey, round);
  return { round, randomness: u8aToHex(sha256(signature)), signature: u8aToHex(signature) };
}

/**
 * Rounds the chain is behind at genesis. Clients compute reveal rounds that can lie a round or two in
 * the past (bittensor-drand floors the time); a live chain holds days of pulses, so those reveal at
 * once there. Starting LastStoredRound this far back makes the first block catch up the same way.
 */
const GENESIS_BACKLOG = 10n;

/** pallet_drand's MAX_KEPT_PULSES: a live chain holds this many rounds (about 7.5 days) behind its last. */
export const MAX_KEPT_PULSES = 216_000n;

/**
 * Genesis: the beacon config and one pulse, GENESIS_BACKLOG rounds before "now". OldestStoredRound is
 * set where a live chain's would be, MAX_KEPT_PULSES back: the pulses in between are signed when a
 * reveal first needs one (`pulseSignature`), so a commitment to a past round reveals at the next block
 * as it does on the chain, without signing 216,000 rounds at start.
 */
export function drandGenesis(ctx: BlockContext, key: BeaconKey, nowMs: number): void {
  const round = roundAt(nowMs) - GENESIS_BACKLOG;
  const oldest = round > MAX_KEPT_PULSES ? round - MAX_KEPT_PULSES + 1n : 1n;
  ctx.state.put("drand", "beaconConfig", [], beaconConfig(key.publicKey));
  ctx.state.put("drand", "pulses", [round], pulse(key, round));
  ctx.state.put("drand", "lastStoredRound", [], round);
  ctx.state.put("drand", "oldestStoredRound", [], oldest);
}

/** What the off-chain worker's write_pulse transactions do in one block. */
export function ingestPulses(ctx: BlockContext, key: BeaconKey, nowMs: number): bigint[] {
  const last = BigInt(ctx.state.must("drand", "lastStoredRound").toString());
  const upTo = roundAt(nowMs);
  const rounds: bigint[] = [];
  for (let r = last + 1n; r <= upTo && rounds.length < MAX_PULSES_PER_BLOCK; r++) {
    ctx.state.put("drand", "pulses", [r], pulse(key, r));
    rounds.push(r);
  }
  if (rounds.length) {
    ctx.state.put("drand", "lastStoredRound", [], rounds[rounds.length - 1]);
    ctx.deposit("Drand", "NewPulse", [rounds]);
  }
  return rounds;
}

/**
 * The stored signature for `round`, or undefined while the pulse has not reached the chain. A round
 * between OldestStoredRound and LastStoredRound is on a live chain; one the localnet has not stored yet
 * (it predates the localnet's genesis) is signed and stored now, so reading it afterwards finds it too.
 */
export function pulseSignature(ctx: BlockContext, key: BeaconKey, round: bigint): Uint8Array | undefined {
  const p = ctx.state.get<import("@polkadot/types/types").Codec & { signature: { toU8a(bare: true): Uint8Array } }>(
    "drand",
    "pulses",
    round,
  );
  if (p) return p.signature.toU8a(true);
  const oldest = BigInt(ctx.state.must("drand", "oldestStoredRound").toString());
  const last = BigInt(ctx.state.must("drand", "lastStoredRound").toString());
  if (round < oldest || round > last) return undefined;
  const stored = pulse(key, round);
  ctx.state.put("drand", "pulses", [round], stored);
  return hexToU8a(stored.signature);
}
