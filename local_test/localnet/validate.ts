// Transaction-pool validity, as a node answers author_submitExtrinsic: decode against the runtime's
// metadata, then CheckNonZeroSender, CheckMortality, the exact signing payload and its signature, and
// CheckNonce, with the JSON-RPC errors (1002/1010/1011) and messages a real Substrate node returns.
import type { Extrinsic } from "@polkadot/types/interfaces";
import type { Codec } from "@polkadot/types/types";
import { u8aToHex } from "@polkadot/util";
import { blake2AsU8a, ed25519Verify, sr25519Verify } from "@polkadot/util-crypto";
import { account, feeFor } from "./balances.ts";
import { commitmentBoundsError } from "./commitments.ts";
import { paysFee } from "./dispatch.ts";
import type { Runtime } from "./runtime.ts";
import type { State } from "./state.ts";
import { MAX_WEIGHTS_COMMIT_BYTES } from "./subtensor.ts";

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

const invalid = (data: string) => new RpcError(1010, "Invalid Transaction", data);
const undecodable = (why: string) => new RpcError(1002, "Verification Error: Could not decode extrinsic", why);


export interface ChainView {
  runtime: Runtime;
  state: State;
  best: number;
  genesisHash: string;
  hashAt(n: number): string | undefined;
}

export interface ValidTx {
  bytes: Uint8Array;
  hash: `0x${string}`;
  ext: Extrinsic;
  signer: `0x${string}`;
  nonce: number;
  /** "section.method" in @polkadot/api's camelCase. */
  call: string;
  fee: bigint;
  /** Last block number in which the transaction may be included (mortality). */
  deathBlock: number;
}

export function decodeExtrinsic(runtime: Runtime, bytes: Uint8Array): Extrinsic {
  let ext: Extrinsic;
  try {
    ext = runtime.registry.createType("Extrinsic", bytes);
  } catch (error) {
    throw undecodable((error as Error).message);
  }
  if (ext.encodedLength !== bytes.length) throw undecodable(`${bytes.length - ext.encodedLength} trailing bytes after the extrinsic`);
  return ext;
}

/** BoundedVec limits the runtime enforces while decoding, which @polkadot/types does not. */
function boundsError(call: string, args: Codec[]): string | null {
  if (call === "commitments.setCommitment") return commitmentBoundsError(args[1] as never);
  if (call === "subtensorModule.commitTimelockedWeights" && (args[1] as unknown as Uint8Array).length > MAX_WEIGHTS_COMMIT_BYTES) {
    return `commit is ${(args[1] as unknown as Uint8Array).length} bytes; the runtime's BoundedVec holds at most ${MAX_WEIGHTS_COMMIT_BYTES}`;
  }
  return null;
}

export function validateTransaction(chain: ChainView, bytes: Uint8Array): ValidTx {
  const { runtime, state } = chain;
  const ext = decodeExtrinsic(runtime, bytes);
  const call = `${ext.method.section}.${ext.method.method}`;
  const bounds = boundsError(call, ext.method.args);
  if (bounds) throw undecodable(bounds);
  if (!ext.isSigned) {
    throw new RpcError(1011, "Unknown Transaction Validity", "Could not find an unsigned validator for the unsigned transaction");
  }
  // MultiAddress::Id(AccountId32) is the only address a subtensor account signs with.
  const address = ext.signer as unknown as Codec & { type: string; value: Codec };
  if (address.type !== "Id") throw invalid("Invalid signing address");
  const publicKey = address.value.toU8a();
  const signer = u8aToHex(publicKey) as `0x${string}`;
  if (/^0x0+$/.test(signer)) throw invalid("Invalid signing address");

  // The block being built is best + 1; a mortal era counts from there.
  const current = chain.best + 1;
  let birthHash = chain.genesisHash;
  let deathBlock = Number.MAX_SAFE_INTEGER;
  if (ext.era.isMortalEra) {
    const era = ext.era.asMortalEra;
    const birth = era.birth(current);
    deathBlock = era.death(current) - 1;
    // System.BlockHash keeps BlockHashCount hashes; a checkpoint older than that is unknown.
    const kept = Number(runtime.decorated.consts.system?.blockHashCount?.toString() ?? 2400);
    const hash = birth <= chain.best && current - birth <= kept ? chain.hashAt(birth) : undefined;
    if (!hash) throw invalid("Transaction has an ancient birth block");
    birthHash = hash;
  }

  if (ext.mode.toNumber() !== 0) {
    // CheckMetadataHash mode 1 signs over the RFC-78 metadata digest, which this localnet does not compute.
    throw invalid("Transaction has a bad signature");
  }
  const payload = runtime.registry.createType(
    "ExtrinsicPayload",
    {
      method: ext.method.toHex(),
      era: ext.era,
      nonce: ext.nonce,
      tip: ext.tip,
      mode: ext.mode,
      specVersion: runtime.version.specVersion,
      transactionVersion: runtime.version.transactionVersion,
      genesisHash: chain.genesisHash,
      blockHash: birthHash,
      metadataHash: null,
    },
    { version: ext.type },
  );
  let message = payload.toU8a({ method: true });
  if (message.length > 256) message = blake2AsU8a(message, 256);
  const sig = (ext.inner as unknown as { signature: { multiSignature: Codec & { type: string; value: Codec } } }).signature.multiSignature;
  const sigBytes = sig.value.toU8a();
  let ok = false;
  try {
    if (sig.type === "Sr25519") ok = sr25519Verify(message, sigBytes, publicKey);
    else if (sig.type === "Ed25519") ok = ed25519Verify(message, sigBytes, publicKey);
  } catch {
    // bytes that are not even a curve point are as bad as a wrong signature
  }
  if (!ok) throw invalid("Transaction has a bad signature");

  const nonce = ext.nonce.toNumber();
  const acct = account(state, signer);
  if (nonce < acct.nonce) throw invalid("Transaction is outdated");
  const fee = paysFee(call) ? feeFor(bytes.length) : 0n;
  if (fee > acct.data.free) throw invalid("Inability to pay some fees (e.g. account balance too low)");

  if (call === "subtensorModule.commitTimelockedWeights") {
    const last = BigInt(state.must("drand", "lastStoredRound").toString());
    if (BigInt(ext.method.args[2]!.toString()) < last) throw invalid("Custom error: 15"); // InvalidRevealRound
  }
  return { bytes, hash: u8aToHex(blake2AsU8a(bytes, 256)) as `0x${string}`, ext, signer, nonce, call, fee, deathBlock };
}
