import { describe, expect, test } from "bun:test";
import { bytesToHex, hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { QUICKNET, TimelockError, beaconKeygen, decrypt, encrypt, roundAfterBlocks, signRound, verifyRound } from "./index.ts";
import { roundIdentity, roundMessage } from "./beacon.ts";
import vectors from "./testdata/tle-vectors.json";

describe("quicknet", () => {
  test("constants match the published chain info", () => {
    const info = vectors.drand_quicknet;
    expect(bytesToHex(QUICKNET.publicKey)).toBe(info.public_key_g2_hex);
    expect(QUICKNET.genesisTime).toBe(info.genesis_time);
    expect(QUICKNET.period).toBe(info.period_seconds);
    expect(QUICKNET.chainHash).toBe(info.chain_hash);
  });

  test.each(vectors.drand_rounds)("round $round: identity message and point, and the real signature verifies", (r) => {
    const round = BigInt(r.round);
    expect(bytesToHex(roundMessage(round))).toBe(r.identity_message_hex);
    expect(bytesToHex(roundIdentity(round).toBytes(true))).toBe(r.identity_point_g1_compressed_hex);
    const signature = hexToBytes(r.signature_g1_compressed_hex);
    expect(verifyRound(QUICKNET.publicKey, round, signature)).toBe(true);
    expect(verifyRound(QUICKNET.publicKey, round + 1n, signature)).toBe(false);
  });

  test("a malformed signature does not verify; a malformed public key is an error", () => {
    const signature = hexToBytes(vectors.drand_rounds[0]!.signature_g1_compressed_hex);
    expect(verifyRound(QUICKNET.publicKey, 1000n, signature.subarray(1))).toBe(false);
    expect(verifyRound(QUICKNET.publicKey, 1000n, new Uint8Array(48))).toBe(false);
    expect(() => verifyRound(QUICKNET.publicKey.subarray(1), 1000n, signature)).toThrow(TimelockError);
  });
});

describe("local beacon", () => {
  test("a seeded key is deterministic; different seeds and unseeded keys differ", () => {
    const seed = utf8ToBytes("localnet beacon seed: 32+ bytes long");
    const a = beaconKeygen(seed);
    const b = beaconKeygen(seed);
    expect(bytesToHex(a.secretKey)).toBe(bytesToHex(b.secretKey));
    expect(a.publicKey.length).toBe(96);
    expect(a.secretKey.length).toBe(32);
    expect(bytesToHex(beaconKeygen(utf8ToBytes("another localnet beacon seed, 32+ bytes")).publicKey)).not.toBe(bytesToHex(a.publicKey));
    expect(bytesToHex(beaconKeygen().publicKey)).not.toBe(bytesToHex(beaconKeygen().publicKey));
    expect(() => beaconKeygen(new Uint8Array(16))).toThrow(/at least 32 bytes/);
  });

  test("signRound gives a 48-byte signature that verifies for its round and key only, and opens that round's ciphertexts", () => {
    const beacon = beaconKeygen(new Uint8Array(32).fill(7));
    const other = beaconKeygen(new Uint8Array(32).fill(8));
    const signature = signRound(beacon.secretKey, 123n);
    expect(signature.length).toBe(48);
    expect(verifyRound(beacon.publicKey, 123n, signature)).toBe(true);
    expect(verifyRound(beacon.publicKey, 124n, signature)).toBe(false);
    expect(verifyRound(other.publicKey, 123n, signature)).toBe(false);
    // Unchained: the signature depends only on the key and the round.
    expect(bytesToHex(signRound(beacon.secretKey, 123n))).toBe(bytesToHex(signature));

    const message = utf8ToBytes("revealed by the localnet");
    const ciphertext = encrypt(message, 123n, beacon.publicKey);
    expect(decrypt(ciphertext, signature)).toEqual(message);
    expect(() => decrypt(ciphertext, signRound(beacon.secretKey, 122n))).toThrow(/does not open/);
    expect(() => signRound(beacon.secretKey.subarray(1), 1n)).toThrow(/secret key must be 32 bytes/);
  });
});

describe("roundAfterBlocks", () => {
  test("matches the chain-spec example: 20 blocks of 12 s at t=1750000000", () => {
    expect(roundAfterBlocks(20, 12, 1750000000)).toBe(19065624n);
  });

  test("takes fractional seconds and rounds the delay half away from zero, as bittensor-drand does", () => {
    // (1750000001 - 1692803367) / 3 = 19065544.67
    expect(roundAfterBlocks(0, 12, 1750000001.99)).toBe(19065544n);
    // now - genesis = 57196632; a 2.5 s delay rounds to 3 s: 57196635 / 3 = 19065545, while 2 s would give 19065544
    expect(roundAfterBlocks(1, 2.5, 1749999999)).toBe(19065545n);
    expect(roundAfterBlocks(1, 2.4, 1749999999)).toBe(19065544n);
  });

  test("the target round is published no later than now + delay", () => {
    const now = 1_760_000_000;
    for (const blocks of [0, 1, 20, 360]) {
      const round = roundAfterBlocks(blocks, 12, now);
      const publishedAt = QUICKNET.genesisTime + Number(round - 1n) * QUICKNET.period;
      expect(publishedAt).toBeLessThanOrEqual(now + blocks * 12);
      expect(publishedAt).toBeGreaterThan(now + blocks * 12 - 2 * QUICKNET.period);
    }
  });

  test("uses the current time by default and another beacon when given", () => {
    const before = roundAfterBlocks(10, 12, Date.now() / 1000);
    const now = roundAfterBlocks(10, 12);
    expect(now - before).toBeGreaterThanOrEqual(0n);
    expect(now - before).toBeLessThanOrEqual(1n);
    expect(roundAfterBlocks(2, 1, 1010, { genesisTime: 1000, period: 2 })).toBe(6n);
  });

  test("rejects negative or non-finite inputs and times before genesis", () => {
    expect(() => roundAfterBlocks(-1, 12, 1750000000)).toThrow(/blocks must be a finite number >= 0/);
    expect(() => roundAfterBlocks(1, Number.NaN, 1750000000)).toThrow(/blockTimeSeconds/);
    expect(() => roundAfterBlocks(1, 12, 1000)).toThrow(/before the beacon's genesis/);
    expect(() => roundAfterBlocks(1, 12, 1010, { genesisTime: 1000, period: 0 })).toThrow(/period must be a positive integer/);
  });
});
