// The chain plugins (chain-reveals, chain-weights) need the validator's chain connection, subnet, hotkey
// and hparams. The config states those once, at the top; rather than repeat them in each plugin's
// options, the validator binds these plugins at start to what it resolved (one shared websocket), and
// tests bind them to a stub client.
import type { KeyringPair } from "@polkadot/keyring/types";
import type { ChainClient } from "../core/chain/index.ts";
import type { HParams } from "../core/hparams.ts";

/** The part of the chain client the plugins use: small enough to stub in unit tests. */
export type ChainPort = Pick<
  ChainClient,
  | "currentBlock"
  | "uidOf"
  | "revealedCommitments"
  | "revealedCommitmentsOf"
  | "pendingCommitments"
  | "pendingCommitmentOf"
  | "commitmentActivity"
  | "commitOrigin"
  | "blockTimestamp"
  | "drandBeaconConfig"
  | "droppedCommitments"
  | "lastUpdate"
  | "weights"
  | "commitRevealEnabled"
  | "setWeights"
>;

export interface ChainBinding {
  chain: ChainPort;
  netuid: number;
  hparams: HParams;
  /** The validator's hotkey: signs weights. */
  signer: KeyringPair;
  /** The validator's uid on `netuid`, checked at start. */
  uid: number;
  /** The chain's genesis hash, so state a plugin keeps is kept per chain (a reset chain starts clean). */
  genesisHash?: string;
}

export interface ChainBound {
  bindChain(binding: ChainBinding): void;
}

export function needsChain(plugin: object): plugin is ChainBound {
  return typeof (plugin as Partial<ChainBound>).bindChain === "function";
}

/** Holds one plugin's binding; using it unbound is a clear error, not an undefined property. */
export function bindingSlot(plugin: string) {
  let binding: ChainBinding | null = null;
  return {
    set(b: ChainBinding) {
      binding = b;
    },
    get(): ChainBinding {
      if (!binding) throw new Error(`${plugin} is not bound to a chain: the validator binds it at start (call bindChain in tests)`);
      return binding;
    },
  };
}
