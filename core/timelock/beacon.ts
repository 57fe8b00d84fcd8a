// drand "quicknet"-style beacon: unchained BLS on BLS12-381 with signatures in G1 and the public key
// in G2 (scheme bls-unchained-g1-rfc9380). The round's signature is also the IBE secret key for that
// round, so the same identity point serves signing, verification and timelock encryption.
import { bls12_381 } from "@noble/curves/bls12-381.js";
import { mapHashToField } from "@noble/curves/abstract/modular.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { hexToBytes } from "@noble/hashes/utils.js";
import { TimelockError } from "./error.ts";

export type BeaconInfo = {
  /** G2 point, 96 bytes compressed. */
  publicKey: Uint8Array;
  /** Unix seconds of round 1. */
  genesisTime: number;
  /** Seconds between rounds. */
  period: number;
  /** drand chain hash, hex; identifies the beacon in drand's HTTP API. */
  chainHash: string;
};

export const QUICKNET: BeaconInfo = Object.freeze({
  publicKey: hexToBytes(
    "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a",
  ),
  genesisTime: 1692803367,
  period: 3,
  chainHash: "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971",
});

const DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";
const U64_MAX = (1n << 64n) - 1n;
const bls = bls12_381.shortSignatures;
export const G1 = bls12_381.G1.Point;
export const G2 = bls12_381.G2.Point;
export type G1Point = InstanceType<typeof G1>;
export type G2Point = InstanceType<typeof G2>;

/** Unchained drand signs SHA-256 of the round as a big-endian u64, and nothing else. */
export function roundMessage(round: bigint): Uint8Array {
  if (typeof round !== "bigint" || round < 0n || round > U64_MAX) {
    throw new TimelockError("bad_input", `round must be a u64 bigint, got ${String(round)}`);
  }
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, round, false);
  return sha256(bytes);
}

/** The round's identity point Q_id = H_G1(SHA-256(round)): drand's signed point and the IBE identity. */
export function roundIdentity(round: bigint): G1Point {
  return bls.hash(roundMessage(round), DST);
}

/** Parses a compressed point; noble checks the curve equation and subgroup membership, as arkworks does. */
export function decodePoint<P extends typeof G1 | typeof G2>(
  Point: P,
  bytes: Uint8Array,
  what: string,
): InstanceType<P> {
  const size = Point === G1 ? 48 : 96;
  if (!(bytes instanceof Uint8Array) || bytes.length !== size) {
    throw new TimelockError("bad_input", `${what} must be ${size} bytes (compressed ${Point === G1 ? "G1" : "G2"}), got ${bytes?.length ?? typeof bytes}`);
  }
  let point: InstanceType<P>;
  try {
    point = Point.fromBytes(bytes) as InstanceType<P>;
  } catch (error) {
    throw new TimelockError("bad_input", `${what} is not a valid compressed ${Point === G1 ? "G1" : "G2"} point: ${(error as Error).message}`);
  }
  if (point.is0()) throw new TimelockError("bad_input", `${what} is the point at infinity`);
  return point;
}

/**
 * A beacon key pair for a local drand stand-in. With a seed (at least 32 bytes) the key is
 * deterministic, so a localnet can restart with the same beacon.
 */
export function beaconKeygen(seed?: Uint8Array): { secretKey: Uint8Array; publicKey: Uint8Array } {
  if (seed !== undefined && (!(seed instanceof Uint8Array) || seed.length < 32)) {
    throw new TimelockError("bad_input", `beacon seed must be at least 32 bytes, got ${seed?.length ?? typeof seed}`);
  }
  // SHA-512 widens any seed to the 48+ bytes noble needs for an unbiased scalar.
  const secretKey = seed === undefined ? bls12_381.utils.randomSecretKey() : mapHashToField(sha512(seed), bls12_381.fields.Fr.ORDER);
  return { secretKey, publicKey: bls.getPublicKey(secretKey).toBytes(true) };
}

/** The 48-byte compressed G1 signature a quicknet pulse carries for `round`. */
export function signRound(secretKey: Uint8Array, round: bigint): Uint8Array {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) {
    throw new TimelockError("bad_input", `beacon secret key must be 32 bytes, got ${secretKey?.length ?? typeof secretKey}`);
  }
  return bls.sign(roundIdentity(round), secretKey).toBytes(true);
}

/** e(sig, G2) == e(Q_id, PK). A malformed signature is simply not valid; a malformed key throws. */
export function verifyRound(publicKey: Uint8Array, round: bigint, signature: Uint8Array): boolean {
  const pk = decodePoint(G2, publicKey, "beacon public key");
  let sig: G1Point;
  try {
    sig = decodePoint(G1, signature, "round signature");
  } catch {
    return false;
  }
  return bls.verify(sig, roundIdentity(round), pk);
}

/**
 * The reveal round for "`blocks` blocks from now", as bittensor-drand's encrypt_commitment computes
 * it: floor((now - genesis + round(blocks * blockTime)) / period), with `now` in whole seconds.
 */
export function roundAfterBlocks(
  blocks: number,
  blockTimeSeconds: number,
  nowSeconds: number = Date.now() / 1000,
  beacon: Pick<BeaconInfo, "genesisTime" | "period"> = QUICKNET,
): bigint {
  for (const [name, value] of [["blocks", blocks], ["blockTimeSeconds", blockTimeSeconds], ["nowSeconds", nowSeconds]] as const) {
    if (!Number.isFinite(value) || value < 0) throw new TimelockError("bad_input", `${name} must be a finite number >= 0, got ${value}`);
  }
  if (!Number.isInteger(beacon.period) || beacon.period <= 0) {
    throw new TimelockError("bad_input", `beacon period must be a positive integer, got ${beacon.period}`);
  }
  const now = Math.floor(nowSeconds);
  if (now < beacon.genesisTime) {
    throw new TimelockError("bad_input", `time ${now} is before the beacon's genesis ${beacon.genesisTime}`);
  }
  // Rust's f64::round rounds halves away from zero; for the non-negative delay that is Math.round.
  const delay = Math.round(blocks * blockTimeSeconds);
  return BigInt(Math.floor((now - beacon.genesisTime + delay) / beacon.period));
}
