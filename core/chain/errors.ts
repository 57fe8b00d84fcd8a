// Turning what the chain says into sentences: module errors through the runtime's own metadata (their
// indices shift between runtimes), and transaction-pool rejections by their RPC code and reason.
import type { Registry } from "@polkadot/types/types";
import type { DispatchError } from "@polkadot/types/interfaces";
import { stringPascalCase } from "@polkadot/util";
import { UserError } from "../errors.ts";

export type ChainErrorCode =
  | "connect"
  | "disconnected"
  | "bad_signature"
  | "stale_nonce"
  | "future_nonce"
  | "pool_conflict"
  | "expired"
  | "invalid"
  | "dispatch"
  | "not_included"
  | "not_registered"
  | "oversize"
  | "timeout";

export class ChainError extends UserError {
  constructor(
    message: string,
    override readonly code: ChainErrorCode,
    /** `Pallet.Error` for dispatch errors, so callers can branch on a name rather than on prose. */
    readonly module?: string,
  ) {
    super(message, code);
    this.name = "ChainError";
  }
}

/** `Commitments.AccountNotAllowedCommit: <docs>` for module errors; the variant path for the rest. */
export function describeDispatchError(registry: Registry, err: DispatchError): { name: string; message: string } {
  if (err.isModule) {
    try {
      const meta = registry.findMetaError(err.asModule);
      // findMetaError gives the camelCase section; errors read better with the pallet's own name.
      const name = `${stringPascalCase(meta.section)}.${meta.name}`;
      const docs = meta.docs.join(" ").replace(/\s+/g, " ").trim();
      return { name, message: docs ? `${name}: ${docs}` : name };
    } catch {
      const { index, error } = err.asModule;
      return { name: "Module", message: `module error ${index.toString()}/${error.toHex()} (not in this runtime's metadata)` };
    }
  }
  const inner = (err as unknown as { value?: { type?: string; isEmpty?: boolean } }).value;
  const name = inner?.type && !inner.isEmpty ? `${err.type}.${inner.type}` : err.type;
  return { name, message: name };
}

/** A node's refusal of a submitted extrinsic (JSON-RPC author_* errors) as a ChainError. */
export function describeSubmitError(e: unknown): ChainError {
  const raw = e instanceof Error ? e.message : String(e);
  const says = (re: RegExp) => re.test(raw);
  if (says(/bad signature|BadProof/i)) {
    return new ChainError(
      `the node rejected the signature (${raw}): the extrinsic was not signed by the key it names, or was signed for another chain or runtime`,
      "bad_signature",
    );
  }
  if (says(/outdated|Stale/i)) {
    return new ChainError(`stale nonce (${raw}): another transaction from this key used the nonce first; resubmit to sign with the current one`, "stale_nonce");
  }
  if (says(/valid in the future|Future/i)) {
    return new ChainError(`nonce too high (${raw}): an earlier transaction from this key has not landed`, "future_nonce");
  }
  if (says(/Priority is too low|1014|temporarily banned|1012/i)) {
    return new ChainError(`a transaction with the same nonce is already pending (${raw})`, "pool_conflict");
  }
  if (says(/ancient birth block|AncientBirthBlock/i)) {
    return new ChainError(`the transaction's mortality window has passed (${raw})`, "expired");
  }
  if (says(/Custom error: ?(\d+)/i)) {
    return new ChainError(
      `subtensor's transaction extension refused the call (${raw}); for weights this usually means the hotkey's stake is below the threshold or the reveal round is already past`,
      "invalid",
    );
  }
  if (says(/disconnected|WebSocket is not connected|Abnormal Closure|socket/i)) {
    return new ChainError(`lost the connection while submitting (${raw})`, "disconnected");
  }
  return new ChainError(`the node refused the transaction: ${raw}`, "invalid");
}
