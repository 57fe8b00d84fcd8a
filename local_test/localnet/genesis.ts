// Genesis: funded dev accounts and one subnet with its owner, a burn uid, a validator and N miners
// registered, plus the chain-wide items (Sudo, MaxSpace, the drand beacon) Crusades reads.
import { u8aToHex } from "@polkadot/util";
import { encodeAddress, keyExtractPath, keyFromPath, mnemonicToMiniSecret, sr25519PairFromSeed } from "@polkadot/util-crypto";
import type { BlockContext } from "./context.ts";
import { endow } from "./balances.ts";
import { drandGenesis, type BeaconKey } from "./drand.ts";

/** Substrate's well-known development mnemonic; `//Alice` is short for `<DEV_PHRASE>//Alice`. */
export const DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
const TAO = 1_000_000_000n;

export interface DevAccount {
  uri: string;
  ss58: string;
  publicKey: `0x${string}`;
  /** The uid on the localnet's subnet, when registered there. */
  uid?: number;
}

export interface GenesisOptions {
  netuid: number;
  miners: number;
  tempo: number;
  weightsRateLimit: number;
  commitReveal: boolean;
  weightsVersionKey: bigint;
  /** Stake a hotkey needs to set weights (StakeThreshold, rao). */
  stakeThreshold: bigint;
}

export interface GenesisAccounts {
  owner: DevAccount;
  burn: DevAccount;
  validator: DevAccount;
  miners: DevAccount[];
  /** Funded, registered nowhere: for transfers and for "unregistered hotkey" checks. */
  others: DevAccount[];
}

export function devAccounts(miners: number, ss58Format: number): GenesisAccounts {
  // One mnemonic-to-seed (PBKDF2, the slow part) for all accounts, then a hard derivation each.
  const root = sr25519PairFromSeed(mnemonicToMiniSecret(DEV_PHRASE));
  const make = (uri: string, uid?: number): DevAccount => {
    const pair = keyFromPath(root, keyExtractPath(uri).path, "sr25519");
    return { uri, ss58: encodeAddress(pair.publicKey, ss58Format), publicKey: u8aToHex(pair.publicKey) as `0x${string}`, ...(uid === undefined ? {} : { uid }) };
  };
  return {
    owner: make("//Alice", 0),
    burn: make("//Bob", 1),
    validator: make("//Charlie", 2),
    miners: Array.from({ length: miners }, (_, i) => make(`//Miner${i + 1}`, 3 + i)),
    others: ["//Dave", "//Eve", "//Ferdie"].map((u) => make(u)),
  };
}

export function buildGenesis(ctx: BlockContext, opts: GenesisOptions, accounts: GenesisAccounts, beacon: BeaconKey): void {
  const s = ctx.state;
  const { netuid } = opts;
  const registered = [accounts.owner, accounts.burn, accounts.validator, ...accounts.miners];
  const funded = [...registered, ...accounts.others];
  for (const a of funded) endow(ctx, a.publicKey, 1_000_000n * TAO);
  s.put("balances", "totalIssuance", [], BigInt(funded.length) * 1_000_000n * TAO);
  s.put("sudo", "key", [], accounts.owner.publicKey);

  s.put("subtensorModule", "totalNetworks", [], 1);
  s.put("subtensorModule", "networksAdded", [netuid], true);
  s.put("subtensorModule", "subnetOwner", [netuid], accounts.owner.publicKey);
  s.put("subtensorModule", "subnetOwnerHotkey", [netuid], accounts.owner.publicKey);
  s.put("subtensorModule", "subnetworkN", [netuid], registered.length);
  s.put("subtensorModule", "tempo", [netuid], opts.tempo);
  s.put("subtensorModule", "weightsSetRateLimit", [netuid], opts.weightsRateLimit);
  s.put("subtensorModule", "weightsVersionKey", [netuid], opts.weightsVersionKey);
  s.put("subtensorModule", "commitRevealWeightsEnabled", [netuid], opts.commitReveal);
  s.put("subtensorModule", "commitRevealWeightsVersion", [], 4);
  s.put("subtensorModule", "revealPeriodEpochs", [netuid], 1);
  s.put("subtensorModule", "minAllowedWeights", [netuid], 1);
  s.put("subtensorModule", "maxWeightsLimit", [netuid], 65535);
  s.put("subtensorModule", "stakeThreshold", [], opts.stakeThreshold);
  s.put("subtensorModule", "lastUpdate", [netuid], registered.map(() => 0));
  s.put("subtensorModule", "validatorPermit", [netuid], registered.map((a) => a === accounts.owner || a === accounts.validator));
  for (const a of registered) {
    s.put("subtensorModule", "keys", [netuid, a.uid], a.publicKey);
    s.put("subtensorModule", "uids", [netuid, a.publicKey], a.uid);
    s.put("subtensorModule", "owner", [a.publicKey], a.publicKey);
    s.put("subtensorModule", "blockAtRegistration", [netuid, a.uid], 0);
  }
  for (const a of [accounts.owner, accounts.validator]) {
    s.put("subtensorModule", "totalHotkeyAlpha", [a.publicKey, netuid], 1000n * TAO);
  }

  s.put("commitments", "maxSpace", [], 3100);
  drandGenesis(ctx, beacon, ctx.nowMs);
  s.put("timestamp", "now", [], ctx.nowMs);
}
