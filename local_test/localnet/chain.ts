// Block production: a pool of validated transactions and a timer-driven block builder that runs the
// pallets' on_initialize, applies the pool in order, stores System.Events, hashes a real SCALE header
// and finalizes one block behind the head. Listeners (RPC subscriptions) hear about heads, finality,
// storage changes and each watched transaction's status.
import type { Header } from "@polkadot/types/interfaces";
import { u8aConcat, u8aToHex } from "@polkadot/util";
import { blake2AsU8a } from "@polkadot/util-crypto";
import type { Logger } from "../../core/log.ts";
import { account, chargeFee, feeFor, incrementNonce } from "./balances.ts";
import { revealTimelockedCommitments } from "./commitments.ts";
import { BlockContext, DispatchFailure, type DroppedCommitment } from "./context.ts";
import { dispatch, paysFee } from "./dispatch.ts";
import { ingestPulses, type BeaconKey } from "./drand.ts";
import type { Runtime } from "./runtime.ts";
import { StateHistory, type StateView } from "./history.ts";
import { State, type Hex } from "./state.ts";
import { revealTimelockedWeights } from "./subtensor.ts";
import { RpcError, validateTransaction, type ChainView, type ValidTx } from "./validate.ts";

/** Blocks whose state stays queryable; older ones answer like a pruning node. */
const KEPT_STATES = 512;
/** Dropped commitments remembered for `localnet_droppedCommitments`. */
const KEPT_DROPPED = 1000;
/** How often (in blocks) old state versions are pruned. */
const PRUNE_EVERY = 64;

export interface Block {
  number: number;
  hash: Hex;
  header: Header;
  extrinsics: Hex[];
}

export type TxStatus = "ready" | "future" | { inBlock: Hex } | { finalized: Hex } | { invalid: string } | "dropped";

export interface ChainEvents {
  onHead(block: Block): void;
  onFinalized(block: Block): void;
  onStorage(block: Block, changed: string[]): void;
}

/** What a block leaves behind for `--state`: the new block and the keys it changed. */
export type Persist = (block: Block, changed: [string, Uint8Array | undefined][]) => void;

export class Chain implements ChainView {
  readonly blocks: Block[] = [];
  readonly byHash = new Map<string, Block>();
  finalized = 0;
  readonly listeners = new Set<ChainEvents>();
  readonly #pool: ValidTx[] = [];
  readonly #watchers = new Map<string, (status: TxStatus) => void>();
  /** tx hash → block number it landed in, until that block is finalized. */
  readonly #landed = new Map<string, number>();
  #history = new StateHistory(0, []);
  /** Timelocked commitments the reveal dropped (newest last), for `localnet_droppedCommitments`. */
  readonly droppedCommitments: DroppedCommitment[] = [];

  constructor(
    readonly runtime: Runtime,
    readonly state: State,
    readonly beacon: BeaconKey,
    readonly log: Logger,
    readonly persist?: Persist,
  ) {}

  get #blockHashCount(): number {
    return Number(this.runtime.decorated.consts.system?.blockHashCount?.toString() ?? 2400);
  }

  get best(): number {
    return this.blocks.length - 1;
  }

  get head(): Block {
    return this.blocks[this.best]!;
  }

  get genesisHash(): Hex {
    return this.blocks[0]!.hash;
  }

  hashAt(n: number): Hex | undefined {
    return this.blocks[n]?.hash;
  }

  /** A block by hash or number; `undefined` means the head. */
  block(at?: string | number | null): Block | undefined {
    if (at === undefined || at === null) return this.head;
    if (typeof at === "number") return this.blocks[at];
    return this.byHash.get(at.toLowerCase());
  }

  /** Storage as of a block; throws the error a pruning node gives for a discarded state. */
  stateAt(at?: string | null): StateView {
    const block = this.block(at);
    if (!block) throw new RpcError(4003, `Client error: UnknownBlock: header not found in db: ${at}`);
    if (!this.#history.has(block.number)) throw new RpcError(4003, `Client error: State already discarded for ${block.hash}`);
    return this.#history.at(block.number);
  }

  /** Adopts blocks restored from a state file; the head keeps its state (the live `State`). */
  restore(blocks: Omit<Block, "state">[]): void {
    for (const b of blocks) {
      this.blocks.push(b);
      this.byHash.set(b.hash, b);
    }
    this.#history = new StateHistory(this.best, this.state.entries());
    this.finalized = Math.max(0, this.best - 1);
  }

  /** Seals genesis: block 0 with the state built so far and no extrinsics. */
  sealGenesis(): Block {
    return this.#seal(0, `0x${"00".repeat(32)}`, [], []);
  }

  /** Pool admission; returns the tx hash. Future nonces wait in the pool like on a real node. */
  submit(bytes: Uint8Array, watch?: (status: TxStatus) => void): Hex {
    const tx = validateTransaction(this, bytes);
    if (this.#pool.some((p) => p.hash === tx.hash) || this.#landed.has(tx.hash)) {
      throw new RpcError(1013, "Transaction Already Imported", "Transaction Already Imported");
    }
    if (this.#pool.some((p) => p.signer === tx.signer && p.nonce === tx.nonce)) {
      throw new RpcError(1014, "Priority is too low: (0 vs 0)", "The transaction has too low priority to replace another transaction already in the pool.");
    }
    this.#pool.push(tx);
    if (watch) {
      this.#watchers.set(tx.hash, watch);
      watch(this.#isReady(tx) ? "ready" : "future");
    }
    this.log.debug("tx accepted", { hash: tx.hash, call: tx.call, nonce: tx.nonce });
    return tx.hash;
  }

  unwatch(hash: string): void {
    this.#watchers.delete(hash);
  }

  /** The next nonce for an account, counting its transactions already waiting in the pool. */
  nextNonce(who: string, chainNonce: number): number {
    let next = chainNonce;
    const mine = this.#pool.filter((t) => t.signer === who).map((t) => t.nonce);
    while (mine.includes(next)) next++;
    return next;
  }

  pending(): Hex[] {
    return this.#pool.map((t) => u8aToHex(t.bytes) as Hex);
  }

  #isReady(tx: ValidTx): boolean {
    return tx.nonce === this.nextNonceOnChain(tx.signer);
  }

  nextNonceOnChain(who: string): number {
    return Number((this.state.must("system", "account", who) as unknown as { nonce: { toString(): string } }).nonce.toString());
  }

  #status(hash: string, status: TxStatus): void {
    this.#watchers.get(hash)?.(status);
  }

  /** Builds, seals and announces the next block. */
  produceBlock(nowMs = Date.now()): Block {
    const number = this.best + 1;
    const parent = this.head;
    const ctx = new BlockContext(
      this.runtime,
      this.state,
      number,
      nowMs,
      (msg, fields) => this.log.debug(msg, { block: number, ...fields }),
      (dropped) => {
        this.log.warn(`timelocked commitment dropped at the reveal: ${dropped.reason}`, { block: number, netuid: dropped.netuid, who: dropped.who, revealRound: String(dropped.revealRound) });
        this.droppedCommitments.push(dropped);
        this.droppedCommitments.splice(0, this.droppedCommitments.length - KEPT_DROPPED);
      },
    );
    const s = this.state;
    s.put("system", "number", [], number);
    s.put("system", "parentHash", [], parent.hash);
    s.put("system", "blockHash", [number - 1], parent.hash);
    // frame_system keeps BlockHashCount hashes and drops the one that falls out of the window.
    const stale = number - this.#blockHashCount - 1;
    if (stale > 0) s.put("system", "blockHash", [stale], undefined);

    revealTimelockedCommitments(ctx, this.beacon);
    revealTimelockedWeights(ctx, this.beacon);
    ingestPulses(ctx, this.beacon, nowMs);

    const extrinsics: Uint8Array[] = [];
    const included: ValidTx[] = [];
    // Inherent 0: timestamp.set, as every Aura block carries.
    ctx.phase = { ApplyExtrinsic: 0 };
    const inherent = this.runtime.registry.createType("Extrinsic", this.runtime.decorated.tx.timestamp!.set!(nowMs));
    s.put("timestamp", "now", [], nowMs);
    ctx.deposit("System", "ExtrinsicSuccess", [dispatchInfo(true, false)]);
    extrinsics.push(inherent.toU8a());

    // Passes over the pool until one includes nothing, so a nonce that became ready in this block
    // (its predecessor just landed) lands here too, as a node's ready queue would have it.
    for (let progress = true; progress; ) {
      progress = false;
      for (const tx of [...this.#pool]) {
        const nonce = this.nextNonceOnChain(tx.signer);
        if (tx.nonce > nonce && number <= tx.deathBlock) continue; // future: waits for its predecessor
        this.#pool.splice(this.#pool.indexOf(tx), 1);
        if (tx.nonce < nonce || number > tx.deathBlock) {
          this.#status(tx.hash, { invalid: number > tx.deathBlock ? "Transaction has an ancient birth block" : "Transaction is outdated" });
          this.#watchers.delete(tx.hash);
          continue;
        }
        if (!this.#apply(ctx, tx, extrinsics.length)) continue;
        progress = true;
        extrinsics.push(tx.bytes);
        included.push(tx);
      }
    }

    s.setRaw(u8aToHex(this.runtime.key("system", "events")), ctx.encodedEvents());
    s.put("system", "eventCount", [], ctx.eventCount);
    const block = this.#seal(number, parent.hash, extrinsics, included);
    return block;
  }

  /**
   * Pre-dispatch (nonce, fee) always sticks; the call itself is all-or-nothing with its events.
   * False when the fee can no longer be paid: the transaction is invalid and not included.
   */
  #apply(ctx: BlockContext, tx: ValidTx, index: number): boolean {
    const s = this.state;
    if (account(s, tx.signer).data.free < tx.fee) {
      this.#status(tx.hash, { invalid: "Inability to pay some fees (e.g. account balance too low)" });
      this.#watchers.delete(tx.hash);
      return false;
    }
    ctx.phase = { ApplyExtrinsic: index };
    incrementNonce(s, tx.signer);
    if (tx.fee > 0n) chargeFee(ctx, tx.signer, tx.fee);
    const mark = ctx.eventCount;
    const pays = paysFee(tx.call);
    try {
      s.transaction(() => dispatch(ctx, tx.signer, tx.ext.method));
      ctx.deposit("System", "ExtrinsicSuccess", [dispatchInfo(false, pays)]);
    } catch (error) {
      ctx.truncateEvents(mark);
      const failure =
        error instanceof DispatchFailure ? error : new DispatchFailure({ Other: null }, `localnet bug: ${(error as Error).stack ?? error}`);
      if (!(error instanceof DispatchFailure)) this.log.error("dispatch threw", { call: tx.call, error: failure.message });
      const errType = this.runtime.eventFieldType("System", "ExtrinsicFailed", 0);
      ctx.deposit("System", "ExtrinsicFailed", [this.runtime.registry.createType(errType, failure.error), dispatchInfo(false, pays)]);
      this.log.info("extrinsic failed", { call: tx.call, error: failure.message });
    }
    return true;
  }

  #seal(number: number, parentHash: Hex, extrinsics: Uint8Array[], included: ValidTx[]): Block {
    const changedKeys = this.state.takeChanges();
    const stateRoot = blake2AsU8a(u8aConcat(...[...this.state.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).flatMap(([k, v]) => [new TextEncoder().encode(k), v])));
    const header: Header = this.runtime.registry.createType("Header", {
      parentHash,
      number,
      stateRoot,
      extrinsicsRoot: blake2AsU8a(u8aConcat(...extrinsics)),
      digest: { logs: [] },
    });
    const block: Block = {
      number,
      hash: header.hash.toHex() as Hex,
      header,
      extrinsics: extrinsics.map((e) => u8aToHex(e) as Hex),
    };
    this.blocks.push(block);
    this.byHash.set(block.hash, block);
    const changed = changedKeys.map((k): [string, Uint8Array | undefined] => [k, this.state.getRaw(k)]);
    this.#history.record(number, changed);
    if (number % PRUNE_EVERY === 0) this.#history.prune(number - KEPT_STATES);
    this.persist?.(block, changed);

    for (const l of this.listeners) l.onHead(block);
    for (const l of this.listeners) l.onStorage(block, changedKeys);
    for (const tx of included) {
      this.#landed.set(tx.hash, number);
      this.#status(tx.hash, { inBlock: block.hash });
    }
    for (const tx of this.#pool) if (this.#isReady(tx)) this.#status(tx.hash, "ready");
    if (number > 0) this.#finalize(number - 1);
    return block;
  }

  #finalize(number: number): void {
    if (number <= this.finalized && number !== 0) return;
    this.finalized = number;
    const block = this.blocks[number]!;
    for (const l of this.listeners) l.onFinalized(block);
    for (const [hash, n] of this.#landed) {
      if (n > number) continue;
      this.#status(hash, { finalized: block.hash });
      this.#watchers.delete(hash);
      this.#landed.delete(hash);
    }
  }

  /** payment_queryInfo / TransactionPaymentApi_query_info for an encoded extrinsic. */
  queryInfo(bytes: Uint8Array, ext: { method: { section: string; method: string } }) {
    const pays = paysFee(`${ext.method.section}.${ext.method.method}`);
    return { weight: WEIGHT, class: "Normal", partialFee: pays ? feeFor(bytes.length) : 0n };
  }
}

const WEIGHT = { refTime: 100_000_000, proofSize: 4_096 };

function dispatchInfo(mandatory: boolean, pays: boolean) {
  return { weight: WEIGHT, class: mandatory ? "Mandatory" : "Normal", paysFee: pays ? "Yes" : "No" };
}
