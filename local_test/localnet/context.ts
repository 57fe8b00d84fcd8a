// What a pallet function sees while a block is built: the state, the block number and time, and a way
// to deposit events in the phase being executed. A dispatch that fails throws DispatchFailure.
import { compactToU8a, u8aConcat } from "@polkadot/util";
import type { DispatchErrorJson, Runtime } from "./runtime.ts";
import type { State } from "./state.ts";

export interface DroppedCommitment {
  netuid: number;
  /** The committer's account, hex. */
  who: string;
  /** The block whose reveal dropped it. */
  block: number;
  revealRound: bigint;
  reason: string;
}

export type Phase = { ApplyExtrinsic: number } | "Finalization" | "Initialization";

export class DispatchFailure extends Error {
  constructor(
    readonly error: DispatchErrorJson,
    message: string,
  ) {
    super(message);
    this.name = "DispatchFailure";
  }
}

export class BlockContext {
  phase: Phase = "Initialization";
  readonly #events: Uint8Array[] = [];

  constructor(
    readonly runtime: Runtime,
    readonly state: State,
    readonly block: number,
    readonly nowMs: number,
    /** What the runtime would log::trace: why a reveal was dropped, for whoever runs the localnet. */
    readonly trace: (msg: string, fields?: Record<string, unknown>) => void = () => {},
    /** A timelocked commitment the reveal dropped, with why: the chain says nothing, a miner needs to know. */
    readonly dropCommitment: (dropped: DroppedCommitment) => void = () => {},
  ) {}

  deposit(pallet: string, name: string, fields: unknown[] = []): void {
    const phase =
      this.phase === "Initialization"
        ? new Uint8Array([2])
        : this.phase === "Finalization"
          ? new Uint8Array([1])
          : u8aConcat(new Uint8Array([0]), this.runtime.registry.createType("u32", this.phase.ApplyExtrinsic).toU8a());
    // EventRecord { phase, event, topics: Vec<H256> = [] }
    this.#events.push(u8aConcat(phase, this.runtime.event(pallet, name, fields), new Uint8Array([0])));
  }

  /** A pallet error by its metadata name: the DispatchError::Module a real node reports. */
  fail(pallet: string, error: string, detail?: string): never {
    throw new DispatchFailure(this.runtime.moduleError(pallet, error), `${pallet}.${error}${detail ? `: ${detail}` : ""}`);
  }

  badOrigin(detail: string): never {
    throw new DispatchFailure({ BadOrigin: null }, `BadOrigin: ${detail}`);
  }

  /** SCALE `Vec<EventRecord>` of everything deposited so far, for System.Events. */
  encodedEvents(): Uint8Array {
    return u8aConcat(compactToU8a(this.#events.length), ...this.#events);
  }

  /** Drops events deposited after `count`: a failed dispatch leaves none of its own. */
  truncateEvents(count: number): void {
    this.#events.length = count;
  }

  get eventCount(): number {
    return this.#events.length;
  }
}
