// Accounts, nonces, fees and transfers: the System/Balances/TransactionPayment behaviour a signed
// transaction relies on.
import type { Codec } from "@polkadot/types/types";
import type { BlockContext } from "./context.ts";
import type { State } from "./state.ts";

export interface AccountData {
  nonce: number;
  consumers: number;
  providers: number;
  sufficients: number;
  data: { free: bigint; reserved: bigint; frozen: bigint; flags: bigint };
}

export function account(state: State, who: string): AccountData {
  const a = state.must<Codec & Record<string, Codec & Record<string, Codec>>>("system", "account", who);
  const d = a.data!;
  return {
    nonce: Number(a.nonce!.toString()),
    consumers: Number(a.consumers!.toString()),
    providers: Number(a.providers!.toString()),
    sufficients: Number(a.sufficients!.toString()),
    data: { free: BigInt(d.free!.toString()), reserved: BigInt(d.reserved!.toString()), frozen: BigInt(d.frozen!.toString()), flags: BigInt(d.flags!.toString()) },
  };
}

function writeAccount(state: State, who: string, a: AccountData | undefined): void {
  state.put("system", "account", [who], a);
}

export function existentialDeposit(ctx: { runtime: BlockContext["runtime"] }): bigint {
  return BigInt(ctx.runtime.decorated.consts.balances?.existentialDeposit?.toString() ?? 500);
}

/** A fixed base plus a per-byte part: what payment_queryInfo reports and Pays::Yes calls are charged. */
export function feeFor(encodedLength: number): bigint {
  return 1_000_000n + BigInt(encodedLength) * 1_000n;
}

export function incrementNonce(state: State, who: string): void {
  const a = account(state, who);
  writeAccount(state, who, { ...a, nonce: a.nonce + 1 });
}

export function endow(ctx: BlockContext, who: string, amount: bigint): void {
  const a = account(ctx.state, who);
  const fresh = a.providers === 0;
  writeAccount(ctx.state, who, { ...a, providers: Math.max(1, a.providers), data: { ...a.data, free: a.data.free + amount } });
  if (fresh) {
    ctx.deposit("System", "NewAccount", [who]);
    ctx.deposit("Balances", "Endowed", [who, amount]);
  }
}

/** Withdraws a transaction fee before dispatch (the caller has checked the account can pay). */
export function chargeFee(ctx: BlockContext, who: string, fee: bigint): void {
  const a = account(ctx.state, who);
  writeAccount(ctx.state, who, { ...a, data: { ...a.data, free: a.data.free - fee } });
  ctx.deposit("Balances", "Withdraw", [who, fee]);
  ctx.deposit("TransactionPayment", "TransactionFeePaid", [who, fee, 0]);
}

export function transfer(ctx: BlockContext, from: string, to: string, value: bigint, keepAlive: boolean): void {
  const ed = existentialDeposit(ctx);
  const src = account(ctx.state, from);
  if (src.data.free < value) ctx.fail("Balances", "InsufficientBalance", `free ${src.data.free} < ${value}`);
  const left = src.data.free - value;
  if (keepAlive && left < ed) ctx.fail("Balances", "Expendability", `transfer would leave ${left} < existential deposit ${ed}`);
  const dst = account(ctx.state, to);
  if (dst.providers === 0 && value < ed) ctx.fail("Balances", "ExistentialDeposit", `${value} < existential deposit ${ed} for a new account`);
  if (from === to) return;
  if (left < ed) {
    writeAccount(ctx.state, from, undefined);
    ctx.deposit("System", "KilledAccount", [from]);
  } else {
    writeAccount(ctx.state, from, { ...src, data: { ...src.data, free: left } });
  }
  endow(ctx, to, value);
  ctx.deposit("Balances", "Transfer", [from, to, value]);
}
