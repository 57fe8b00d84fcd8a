/**
 * Why a timelock operation failed: `bad_input` for malformed keys, rounds or ciphertexts,
 * `wrong_signature` when a well-formed signature is not the one this ciphertext was locked to.
 */
export class TimelockError extends Error {
  constructor(readonly reason: "bad_input" | "wrong_signature", message: string) {
    super(`timelock: ${message}`);
    this.name = "TimelockError";
  }
}
