// The ideal-labs reference implementation (the Rust `tle` crate compiled to wasm, a dev dependency),
// loaded only by tests and benchmarks to check interoperability in both directions.
import { readFileSync } from "node:fs";
import { initSync, tld, tle } from "@ideallabs/timelock_wasm_wrapper";
import { randomBytes } from "@noble/hashes/utils.js";
import { roundMessage } from "./beacon.ts";

let loaded = false;
function load() {
  if (loaded) return;
  const wasmUrl = new URL("timelock_wasm_wrapper_bg.wasm", import.meta.resolve("@ideallabs/timelock_wasm_wrapper"));
  initSync({ module: readFileSync(wasmUrl) });
  loaded = true;
}

/** Reference encryption; the caller of tle supplies the AES key, the crate draws sigma and nonce. */
export function referenceEncrypt(plaintext: Uint8Array, round: bigint, beaconPublicKey: Uint8Array, esk = randomBytes(32)): Uint8Array {
  load();
  return Uint8Array.from(tle(roundMessage(round), plaintext, esk, beaconPublicKey, "bls12_381"));
}

/** Reference decryption; throws the crate's error (e.g. "decryption has failed InvalidSignature"). */
export function referenceDecrypt(ciphertext: Uint8Array, roundSignature: Uint8Array): Uint8Array {
  load();
  return Uint8Array.from(tld(ciphertext, roundSignature, "bls12_381"));
}
