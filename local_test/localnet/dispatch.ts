// Routes a signed call to the pallet code that implements it. A call the localnet does not implement
// fails like a call the runtime's filter blocks (System.CallFiltered): a module error, never a hang.
import type { Codec } from "@polkadot/types/types";
import { u8aToHex } from "@polkadot/util";
import { transfer } from "./balances.ts";
import { setCommitment } from "./commitments.ts";
import type { BlockContext } from "./context.ts";
import { adminSet, commitTimelockedWeights, setWeights } from "./subtensor.ts";

const n = (c: Codec | undefined) => Number(c!.toString());
const list = (c: Codec | undefined) => [...(c as unknown as Iterable<Codec>)].map(n);

function accountOf(ctx: BlockContext, dest: Codec): string {
  const addr = dest as Codec & { type: string; value: Codec };
  if (addr.type !== "Id") ctx.fail("System", "CallFiltered", "only MultiAddress::Id destinations are supported");
  return u8aToHex(addr.value.toU8a());
}

type Handler = (ctx: BlockContext, who: string, args: Codec[]) => void;

const HANDLERS: Record<string, Handler> = {
  "commitments.setCommitment": (ctx, who, [netuid, info]) => setCommitment(ctx, who, n(netuid), info as never),
  "subtensorModule.setWeights": (ctx, who, [netuid, dests, weights, key]) =>
    setWeights(ctx, who, n(netuid), list(dests), list(weights), BigInt(key!.toString())),
  "subtensorModule.commitTimelockedWeights": (ctx, who, [netuid, commit, round, version]) =>
    commitTimelockedWeights(ctx, who, n(netuid), commit!.toU8a(true), BigInt(round!.toString()), n(version)),
  "balances.transferKeepAlive": (ctx, who, [dest, value]) => transfer(ctx, who, accountOf(ctx, dest!), BigInt(value!.toString()), true),
  "balances.transferAllowDeath": (ctx, who, [dest, value]) => transfer(ctx, who, accountOf(ctx, dest!), BigInt(value!.toString()), false),
  "adminUtils.sudoSetCommitRevealWeightsEnabled": (ctx, who, [netuid, enabled]) =>
    adminSet(ctx, who, "sudo_set_commit_reveal_weights_enabled", n(netuid), enabled!),
  "adminUtils.sudoSetWeightsVersionKey": (ctx, who, [netuid, key]) => adminSet(ctx, who, "sudo_set_weights_version_key", n(netuid), key!),
};

export const SUPPORTED_CALLS = Object.keys(HANDLERS);

export function dispatch(ctx: BlockContext, who: string, call: { section: string; method: string; args: Codec[] }): void {
  const name = `${call.section}.${call.method}`;
  const handler = HANDLERS[name];
  if (!handler) ctx.fail("System", "CallFiltered", `${name} is not implemented by the localnet (supported: ${SUPPORTED_CALLS.join(", ")})`);
  handler(ctx, who, call.args);
}

/** Subtensor annotates these `Pays::No`: no fee, so an unfunded hotkey may send them. */
export function paysFee(name: string): boolean {
  return !["commitments.setCommitment", "subtensorModule.setWeights", "subtensorModule.commitTimelockedWeights"].includes(name);
}
