// The serialized TLECiphertext<TinyBLS381> of ideal-labs `tle` as arkworks writes it "compressed":
// every Vec<u8> carries a u64 little-endian length, and the AES output is itself a nested Vec.
// Layout and offsets: research/chain-spec.md §2.4. Total size = plaintext length + 244.
import { TimelockError } from "./error.ts";

export type TleCiphertext = {
  /** r·G2, 96 bytes compressed. */
  u: Uint8Array;
  /** sigma XOR H(e(Q_id, r·PK)), 32 bytes. */
  v: Uint8Array;
  /** esk XOR H(sigma), 32 bytes. */
  w: Uint8Array;
  /** AES-256-GCM ciphertext followed by its 16-byte tag. */
  sealed: Uint8Array;
  nonce: Uint8Array;
  cipherSuite: Uint8Array;
};

export const CIPHER_SUITE = new TextEncoder().encode("AES_GCM_");
/** Ciphertext length minus plaintext length: U, V, W, nonce, tag, suite name and six length prefixes. */
export const OVERHEAD_BYTES = 244;

function u64le(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const vec = (bytes: Uint8Array) => [u64le(bytes.length), bytes];

export function serializeCiphertext(ct: TleCiphertext): Uint8Array {
  const body = concat([...vec(ct.sealed), ...vec(ct.nonce)]);
  return concat([ct.u, ...vec(ct.v), ...vec(ct.w), ...vec(body), ...vec(ct.cipherSuite)]);
}

/**
 * Every length must fit what is left and fixed-size fields must have their size. Bytes after the
 * cipher suite, or after the nonce inside the AES output, are ignored: arkworks reads from a slice
 * and stops, so the chain (and the reference wasm) open such ciphertexts, and so must we.
 */
export function parseCiphertext(bytes: Uint8Array): TleCiphertext {
  if (!(bytes instanceof Uint8Array)) throw new TimelockError("bad_input", `ciphertext must be a Uint8Array, got ${typeof bytes}`);
  const reader = (buf: Uint8Array, where: string) => {
    let at = 0;
    const take = (n: number, field: string) => {
      if (at + n > buf.length) {
        throw new TimelockError("bad_input", `ciphertext truncated in ${where}${field}: needs ${n} bytes at offset ${at}, ${buf.length - at} left`);
      }
      const out = buf.subarray(at, at + n);
      at += n;
      return out;
    };
    const takeVec = (field: string, exact?: number) => {
      const prefix = take(8, `${field} length`);
      const len = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
      if (exact !== undefined && len !== BigInt(exact)) {
        throw new TimelockError("bad_input", `ciphertext field ${where}${field} has length ${len}, expected ${exact}`);
      }
      if (len > BigInt(buf.length - at)) {
        throw new TimelockError("bad_input", `ciphertext field ${where}${field} claims ${len} bytes, only ${buf.length - at} left`);
      }
      return take(Number(len), field);
    };
    return { take, takeVec };
  };
  const outer = reader(bytes, "");
  const u = outer.take(96, "u");
  const v = outer.takeVec("v", 32);
  const w = outer.takeVec("w", 32);
  const body = outer.takeVec("aes output");
  // tld never reads the suite name and decrypts with AES-GCM whatever it says, so neither do we.
  const cipherSuite = outer.takeVec("cipher suite");
  const inner = reader(body, "aes output.");
  const sealed = inner.takeVec("ciphertext");
  const nonce = inner.takeVec("nonce", 12);
  if (sealed.length < 16) throw new TimelockError("bad_input", `AES-GCM output is ${sealed.length} bytes, shorter than its 16-byte tag`);
  return { u, v, w, sealed, nonce, cipherSuite };
}
