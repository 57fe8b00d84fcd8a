// Boneh-Franklin IBE with the Fujisaki-Okamoto transform, as ideal-labs `tle` (the crate subtensor
// and bittensor-drand pin) builds it over drand quicknet, plus AES-256-GCM for the message body.
// Every hash and byte order here must match the Rust code, not the IBE papers: see chain-spec.md §2.4.
import { bls12_381 } from "@noble/curves/bls12-381.js";
import { gcm } from "@noble/ciphers/aes.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToNumberBE } from "@noble/curves/utils.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { G1, G2, decodePoint, roundIdentity } from "./beacon.ts";
import { CIPHER_SUITE, parseCiphertext, serializeCiphertext } from "./ciphertext.ts";
import { TimelockError } from "./error.ts";

type Fp12 = ReturnType<typeof bls12_381.pairing>;
const FR_ORDER = bls12_381.fields.Fr.ORDER;

/** arkworks' CanonicalSerialize of an Fp12: the 12 base-field coefficients in tower order, each 48 bytes LE. */
function arkSerializeFp12(x: Fp12): Uint8Array {
  const out = new Uint8Array(576);
  let at = 0;
  for (const fp6 of [x.c0, x.c1]) {
    for (const fp2 of [fp6.c0, fp6.c1, fp6.c2]) {
      for (let n of [fp2.c0, fp2.c1]) {
        for (let i = 0; i < 48; i++, n >>= 8n) out[at + i] = Number(n & 0xffn);
        at += 48;
      }
    }
  }
  return out;
}

function xor32(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** tle's H3: no domain tag and no rejection sampling, just SHA-256(sigma‖esk) reduced mod r. */
function fiatShamirScalar(sigma: Uint8Array, esk: Uint8Array): bigint {
  const buf = new Uint8Array(64);
  buf.set(sigma);
  buf.set(esk, 32);
  return bytesToNumberBE(sha256(buf)) % FR_ORDER;
}

function checkRng(rng: (n: number) => Uint8Array, n: number): Uint8Array {
  const bytes = rng(n);
  if (!(bytes instanceof Uint8Array) || bytes.length !== n) {
    throw new TimelockError("bad_input", `rng returned ${bytes?.length ?? typeof bytes} bytes, expected ${n}`);
  }
  return bytes;
}

/**
 * Locks `plaintext` to drand `round` of the beacon with `beaconPublicKey` (96-byte G2). The output
 * is what `Data::TimelockEncrypted.encrypted` carries on chain. `rng` is drawn three times, in order:
 * the 32-byte AES key, the 32-byte sigma, the 12-byte nonce (pass one only for test vectors).
 */
export function encrypt(
  plaintext: Uint8Array,
  round: bigint,
  beaconPublicKey: Uint8Array,
  rng: (n: number) => Uint8Array = randomBytes,
): Uint8Array {
  if (!(plaintext instanceof Uint8Array)) throw new TimelockError("bad_input", `plaintext must be a Uint8Array, got ${typeof plaintext}`);
  const pk = decodePoint(G2, beaconPublicKey, "beacon public key");
  const identity = roundIdentity(round);
  const esk = checkRng(rng, 32);
  const sigma = checkRng(rng, 32);
  const nonce = checkRng(rng, 12);
  const r = fiatShamirScalar(sigma, esk);
  if (r === 0n) throw new TimelockError("bad_input", "rng produced a zero IBE scalar; draw again");
  const gid = bls12_381.pairing(identity, pk.multiply(r));
  return serializeCiphertext({
    u: G2.BASE.multiply(r).toBytes(true),
    v: xor32(sigma, sha256(arkSerializeFp12(gid))),
    w: xor32(esk, sha256(sigma)),
    sealed: gcm(esk, nonce).encrypt(plaintext),
    nonce,
    cipherSuite: CIPHER_SUITE,
  });
}

/**
 * Opens a ciphertext with the 48-byte G1 signature of the round it was locked to (the pulse's
 * `signature`). Throws TimelockError: `bad_input` when bytes are malformed, `wrong_signature` when
 * the signature belongs to another round or beacon.
 */
export function decrypt(ciphertext: Uint8Array, roundSignature: Uint8Array): Uint8Array {
  const ct = parseCiphertext(ciphertext);
  const signature = decodePoint(G1, roundSignature, "round signature");
  const u = decodePoint(G2, ct.u, "ciphertext U");
  const sigma = xor32(ct.v, sha256(arkSerializeFp12(bls12_381.pairing(signature, u))));
  const esk = xor32(ct.w, sha256(sigma));
  const r = fiatShamirScalar(sigma, esk);
  if (r === 0n || !G2.BASE.multiply(r).equals(u)) {
    throw new TimelockError("wrong_signature", "the signature does not open this ciphertext (it is for another round or another beacon, or the ciphertext header was altered)");
  }
  try {
    return gcm(esk, ct.nonce).decrypt(ct.sealed);
  } catch {
    throw new TimelockError("bad_input", "AES-GCM authentication failed: the ciphertext body was altered");
  }
}
