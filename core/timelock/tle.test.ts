import { describe, expect, test } from "bun:test";
import { bytesToHex, hexToBytes, randomBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { QUICKNET, TimelockError, beaconKeygen, decrypt, encrypt, signRound } from "./index.ts";
import { OVERHEAD_BYTES, parseCiphertext } from "./ciphertext.ts";
import { referenceDecrypt, referenceEncrypt } from "./reference-wasm.ts";
import vectors from "./testdata/tle-vectors.json";

const signatures = new Map(vectors.drand_rounds.map((r) => [BigInt(r.round), hexToBytes(r.signature_g1_compressed_hex)]));
const sig1000 = signatures.get(1000n)!;
const sig2000 = signatures.get(2000n)!;

/** An rng that hands out the given byte strings in order, as encrypt draws them (esk, sigma, nonce). */
function scripted(...draws: string[]) {
  const queue = draws.map(hexToBytes);
  return (n: number) => {
    const next = queue.shift();
    if (!next || next.length !== n) throw new Error(`unexpected draw of ${n} bytes`);
    return next;
  };
}

function expectTimelockError(fn: () => unknown, reason: TimelockError["reason"], message: RegExp) {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TimelockError);
  expect((caught as TimelockError).reason).toBe(reason);
  expect((caught as Error).message).toMatch(message);
}

describe("reference vectors", () => {
  test.each(vectors.tle_reference_ciphertexts)("decrypts the reference ciphertext for round $round with the real quicknet signature", (v) => {
    const plaintext = decrypt(hexToBytes(v.ciphertext_hex), hexToBytes(v.signature_hex));
    expect(bytesToHex(plaintext)).toBe(v.plaintext_hex);
    expect(new TextDecoder().decode(plaintext)).toBe(v.plaintext_utf8);
  });

  test.each(vectors.tle_deterministic)("reproduces the deterministic vector for round $round byte for byte", (v) => {
    const ciphertext = encrypt(hexToBytes(v.plaintext_hex), BigInt(v.round), QUICKNET.publicKey, scripted(v.aes_key_esk_hex, v.sigma_hex, v.nonce_hex));
    const parts = parseCiphertext(ciphertext);
    expect(bytesToHex(parts.u)).toBe(v.intermediate.U_g2_compressed_hex);
    expect(bytesToHex(parts.v)).toBe(v.intermediate.V_hex);
    expect(bytesToHex(parts.w)).toBe(v.intermediate.W_hex);
    expect(bytesToHex(parts.sealed)).toBe(v.intermediate.aes_gcm_ciphertext_and_tag_hex);
    expect(ciphertext.length).toBe(v.ciphertext_len);
    expect(bytesToHex(ciphertext)).toBe(v.ciphertext_hex);
    expect(bytesToHex(decrypt(ciphertext, hexToBytes(v.signature_hex)))).toBe(v.plaintext_hex);
  });

  test("the bittensor commitment example is the SCALE string the chain reveals", () => {
    const example = vectors.bittensor_commitment_example;
    const det = vectors.tle_deterministic.find((v) => v.plaintext_hex === example.scale_encoded_plaintext_hex)!;
    const plaintext = decrypt(hexToBytes(det.ciphertext_hex), signatures.get(BigInt(example.reveal_round))!);
    // compact(72) = 0x2101, then the UTF-8 text
    expect(bytesToHex(plaintext.subarray(0, 2))).toBe("2101");
    expect(new TextDecoder().decode(plaintext.subarray(2))).toBe(example.data_string);
  });
});

describe("interop with the reference implementation (@ideallabs/timelock_wasm_wrapper)", () => {
  const messages = [new Uint8Array(0), utf8ToBytes("x"), utf8ToBytes("cf4817d9793e92a0b1c2d3e4f5061728:https://gist.github.com/a/b"), randomBytes(780)];

  test.each(messages.map((m) => [m.length, m] as const))("ours encrypt -> reference decrypt, %d-byte message", (_, message) => {
    const ciphertext = encrypt(message, 2000n, QUICKNET.publicKey);
    expect(ciphertext.length).toBe(message.length + OVERHEAD_BYTES);
    expect(OVERHEAD_BYTES).toBe(244);
    expect(bytesToHex(referenceDecrypt(ciphertext, sig2000))).toBe(bytesToHex(message));
    expect(() => referenceDecrypt(ciphertext, sig1000)).toThrow(/InvalidSignature/);
  });

  test.each(messages.map((m) => [m.length, m] as const))("reference encrypt -> ours decrypt, %d-byte message", (_, message) => {
    const ciphertext = referenceEncrypt(message, 1000n, QUICKNET.publicKey);
    expect(bytesToHex(decrypt(ciphertext, sig1000))).toBe(bytesToHex(message));
    expectTimelockError(() => decrypt(ciphertext, sig2000), "wrong_signature", /does not open this ciphertext/);
  });

  test("with a local beacon: reference encrypts to our key, our signRound opens it in both implementations", () => {
    const beacon = beaconKeygen(utf8ToBytes("crusades localnet beacon seed, test only"));
    const message = utf8ToBytes("local beacon");
    const signature = signRound(beacon.secretKey, 77n);
    expect(decrypt(referenceEncrypt(message, 77n, beacon.publicKey), signature)).toEqual(message);
    expect(referenceDecrypt(encrypt(message, 77n, beacon.publicKey), signature)).toEqual(message);
  });

  test("trailing bytes after the cipher suite are ignored, as the reference (and the chain) ignore them", () => {
    const ciphertext = encrypt(utf8ToBytes("tail"), 1000n, QUICKNET.publicKey);
    const padded = new Uint8Array(ciphertext.length + 5);
    padded.set(ciphertext);
    expect(referenceDecrypt(padded, sig1000)).toEqual(utf8ToBytes("tail"));
    expect(decrypt(padded, sig1000)).toEqual(utf8ToBytes("tail"));
  });
});

describe("encrypt", () => {
  test("is randomised: the same message twice gives different ciphertexts that both open", () => {
    const message = utf8ToBytes("same");
    const a = encrypt(message, 1000n, QUICKNET.publicKey);
    const b = encrypt(message, 1000n, QUICKNET.publicKey);
    expect(bytesToHex(a)).not.toBe(bytesToHex(b));
    expect(decrypt(a, sig1000)).toEqual(message);
    expect(decrypt(b, sig1000)).toEqual(message);
  });

  test("rejects a bad beacon key, round or rng with a clear error", () => {
    const msg = utf8ToBytes("m");
    expectTimelockError(() => encrypt(msg, 1n, QUICKNET.publicKey.subarray(0, 95)), "bad_input", /beacon public key must be 96 bytes/);
    const offCurve = QUICKNET.publicKey.slice();
    offCurve[50]! ^= 0xff;
    expectTimelockError(() => encrypt(msg, 1n, offCurve), "bad_input", /beacon public key is not a valid compressed G2 point/);
    expectTimelockError(() => encrypt(msg, -1n, QUICKNET.publicKey), "bad_input", /round must be a u64/);
    expectTimelockError(() => encrypt(msg, 1n << 64n, QUICKNET.publicKey), "bad_input", /round must be a u64/);
    expectTimelockError(() => encrypt(msg, 1n, QUICKNET.publicKey, () => new Uint8Array(3)), "bad_input", /rng returned 3 bytes, expected 32/);
  });
});

describe("decrypt rejects bad input with a clear error", () => {
  const plaintext = utf8ToBytes("cf4817d9793e92a0b1c2d3e4f5061728:https://example.com/train.py");
  const good = encrypt(plaintext, 1000n, QUICKNET.publicKey);
  const altered = (at: number, mask = 0x01) => {
    const copy = good.slice();
    copy[at]! ^= mask;
    return copy;
  };

  test("a real signature for another round", () => {
    expectTimelockError(() => decrypt(good, sig2000), "wrong_signature", /another round or another beacon/);
  });

  test("a signature from another beacon for the same round", () => {
    const other = beaconKeygen(new Uint8Array(32).fill(9));
    expectTimelockError(() => decrypt(good, signRound(other.secretKey, 1000n)), "wrong_signature", /another round or another beacon/);
  });

  test("a malformed signature", () => {
    expectTimelockError(() => decrypt(good, sig1000.subarray(0, 47)), "bad_input", /round signature must be 48 bytes/);
    const bad = sig1000.slice();
    bad[20]! ^= 0xff;
    expectTimelockError(() => decrypt(good, bad), "bad_input", /round signature is not a valid compressed G1 point/);
  });

  test("truncated, mis-sized or altered ciphertexts", () => {
    expectTimelockError(() => decrypt(good.subarray(0, 50), sig1000), "bad_input", /truncated in u/);
    expectTimelockError(() => decrypt(good.subarray(0, good.length - 3), sig1000), "bad_input", /cipher suite/);
    expectTimelockError(() => decrypt(altered(96, 0x02), sig1000), "bad_input", /field v has length 34, expected 32/);
    expectTimelockError(() => decrypt(altered(176 + 7, 0x80), sig1000), "bad_input", /aes output claims \d+ bytes/);
    expectTimelockError(() => decrypt(altered(1, 0xff), sig1000), "bad_input", /ciphertext U is not a valid compressed G2 point/);
    expectTimelockError(() => decrypt(altered(110), sig1000), "wrong_signature", /header was altered/);
    expectTimelockError(() => decrypt(altered(200), sig1000), "bad_input", /AES-GCM authentication failed/);
    expect(() => decrypt(altered(200), sig1000)).toThrow(/^timelock: /);
  });
});
