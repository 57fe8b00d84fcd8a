// Chain state as a real node sees it: raw storage keys to SCALE values, read and written through the
// runtime's metadata so every key and encoding is the one a client computes.
import type { Codec } from "@polkadot/types/types";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import type { Runtime } from "./runtime.ts";

export type Hex = `0x${string}`;

export class State {
  readonly #map: Map<string, Uint8Array>;
  #journal: [string, Uint8Array | undefined][] | null = null;
  /** Keys written since the last `takeChanges()`: what storage subscribers and `--state` need. */
  #changed = new Set<string>();

  constructor(
    readonly runtime: Runtime,
    entries?: Iterable<[string, Uint8Array]>,
  ) {
    this.#map = new Map(entries);
  }

  getRaw(key: string): Uint8Array | undefined {
    return this.#map.get(key);
  }

  setRaw(key: string, value: Uint8Array | undefined): void {
    if (this.#journal) this.#journal.push([key, this.#map.get(key)]);
    if (value === undefined) this.#map.delete(key);
    else this.#map.set(key, value);
    this.#changed.add(key);
  }

  /** The decoded value of `section.item(...args)`, or the metadata default; undefined for an absent Option. */
  get<T extends Codec = Codec>(section: string, item: string, ...args: unknown[]): T | undefined {
    const raw = this.#map.get(u8aToHex(this.runtime.key(section, item, ...args)));
    return this.runtime.decode(section, item, raw) as T | undefined;
  }

  /** Like `get`, for items whose query kind is Default (always a value). */
  must<T extends Codec = Codec>(section: string, item: string, ...args: unknown[]): T {
    const value = this.get<T>(section, item, ...args);
    if (value === undefined) throw new Error(`${section}.${item} is an Option storage item; use get()`);
    return value;
  }

  has(section: string, item: string, ...args: unknown[]): boolean {
    return this.#map.has(u8aToHex(this.runtime.key(section, item, ...args)));
  }

  /** Writes `value` (anything `createType` accepts for the item's type); `undefined` removes the entry. */
  put(section: string, item: string, args: unknown[], value: unknown): void {
    const key = u8aToHex(this.runtime.key(section, item, ...args));
    this.setRaw(key, value === undefined ? undefined : this.runtime.encode(section, item, value));
  }

  /** Sorted keys under a hex prefix, as `state_getKeys*` return them. */
  keys(prefix: string): string[] {
    const out: string[] = [];
    for (const k of this.#map.keys()) if (k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  /** Runs fn; if it throws, every write it made is undone (a failed dispatch changes nothing). */
  transaction<T>(fn: () => T): T {
    if (this.#journal) return fn();
    const journal: [string, Uint8Array | undefined][] = [];
    this.#journal = journal;
    try {
      const out = fn();
      this.#journal = null;
      return out;
    } catch (error) {
      this.#journal = null;
      for (let i = journal.length - 1; i >= 0; i--) {
        const [key, old] = journal[i]!;
        if (old === undefined) this.#map.delete(key);
        else this.#map.set(key, old);
      }
      throw error;
    }
  }

  takeChanges(): string[] {
    const out = [...this.#changed];
    this.#changed.clear();
    return out;
  }

  entries(): IterableIterator<[string, Uint8Array]> {
    return this.#map.entries();
  }
}

export const toHex = (u8a: Uint8Array): Hex => u8aToHex(u8a) as Hex;
export const fromHex = (hex: string): Uint8Array => hexToU8a(hex);
