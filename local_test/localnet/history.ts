// Storage as of past blocks, for queries `at` a block hash. Each key keeps the values it took and the
// block that wrote them, so memory grows with changes, not with blocks × state size; versions older
// than the kept window are pruned, and blocks before it answer like a pruning node.

export interface StateView {
  get(key: string): Uint8Array | undefined;
  keys(): Iterable<string>;
}

type Version = { block: number; value: Uint8Array | undefined };

export class StateHistory {
  readonly #versions = new Map<string, Version[]>();
  /** Blocks below this have no state any more. */
  #oldest: number;

  constructor(firstBlock: number, entries: Iterable<[string, Uint8Array]>) {
    this.#oldest = firstBlock;
    for (const [key, value] of entries) this.#versions.set(key, [{ block: firstBlock, value }]);
  }

  record(block: number, changed: Iterable<[string, Uint8Array | undefined]>): void {
    for (const [key, value] of changed) {
      const list = this.#versions.get(key);
      if (!list) this.#versions.set(key, [{ block, value }]);
      else if (list[list.length - 1]!.block === block) list[list.length - 1]!.value = value;
      else list.push({ block, value });
    }
  }

  has(block: number): boolean {
    return block >= this.#oldest;
  }

  /** The state after `block` was sealed. */
  at(block: number): StateView {
    const valueAt = (list: Version[] | undefined) => {
      if (!list) return undefined;
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.block <= block) return list[i]!.value;
      return undefined;
    };
    const versions = this.#versions;
    return {
      get: (key) => valueAt(versions.get(key)),
      *keys() {
        for (const [key, list] of versions) if (valueAt(list) !== undefined) yield key;
      },
    };
  }

  /** Forgets everything only blocks before `oldest` could see. */
  prune(oldest: number): void {
    if (oldest <= this.#oldest) return;
    this.#oldest = oldest;
    for (const [key, list] of this.#versions) {
      let keepFrom = 0;
      for (let i = 0; i < list.length; i++) if (list[i]!.block <= oldest) keepFrom = i;
      if (keepFrom > 0) list.splice(0, keepFrom);
      if (list.length === 1 && list[0]!.value === undefined) this.#versions.delete(key);
    }
  }
}
