// The runtime the localnet impersonates: real subtensor metadata, the type registry built from it, and
// every index, storage key and type the pallets need, read from that metadata rather than hard-coded.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expandMetadata, Metadata, TypeRegistry } from "@polkadot/types";
import type { Codec } from "@polkadot/types/types";
import { compactAddLength, compactStripLength, u8aConcat, u8aToHex } from "@polkadot/util";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "../../core/chain/extensions.ts";
import { legacyMetadata } from "./metadata-versions.ts";

/**
 * Real subtensor devnet metadata (V16), copied from research/ (chain-spec §6): spec 381 is the newest
 * public one and the default; spec 346 is kept to check the localnet against an older runtime.
 */
export const METADATA = {
  spec381: fileURLToPath(new URL("./metadata/subtensor-spec381.scale", import.meta.url)),
  spec346: fileURLToPath(new URL("./metadata/subtensor-spec346.scale", import.meta.url)),
};
export const DEFAULT_METADATA = METADATA.spec381;

export interface RuntimeVersionJson {
  specName: string;
  implName: string;
  authoringVersion: number;
  specVersion: number;
  implVersion: number;
  apis: [string, number][];
  transactionVersion: number;
  systemVersion?: number;
  stateVersion?: number;
}

type StorageFn = ReturnType<typeof expandMetadata>["query"][string][string];
type Variant = { name: string; index: number; fields: { name: string | null; type: number }[] };

export type DispatchErrorJson =
  | { Module: { index: number; error: `0x${string}` } }
  | { BadOrigin: null }
  | { Other: null };

export class Runtime {
  readonly registry = new TypeRegistry();
  readonly metadata: Metadata;
  readonly decorated: ReturnType<typeof expandMetadata>;
  readonly version: RuntimeVersionJson;
  readonly metadataHex: `0x${string}`;
  readonly metadataBytes: Uint8Array;

  constructor(readonly metadataPath: string = DEFAULT_METADATA) {
    this.metadataBytes = new Uint8Array(readFileSync(metadataPath));
    this.metadata = new Metadata(this.registry, this.metadataBytes);
    // The same extension map clients pass to ApiPromise.create, so decoding and signing payloads agree.
    this.registry.setMetadata(this.metadata, undefined, SUBTENSOR_SIGNED_EXTENSIONS);
    this.decorated = expandMetadata(this.registry, this.metadata);
    this.metadataHex = u8aToHex(this.metadataBytes) as `0x${string}`;
    const version = this.decorated.consts.system?.version;
    if (!version) throw new Error(`${metadataPath}: metadata has no System.Version constant`);
    this.version = version.toJSON() as unknown as RuntimeVersionJson;
  }

  get ss58Prefix(): number {
    return Number(this.decorated.consts.system?.ss58Prefix?.toString() ?? 42);
  }

  entry(section: string, item: string): StorageFn {
    const fn = this.decorated.query[section]?.[item];
    if (!fn) throw new Error(`runtime has no storage ${section}.${item}`);
    return fn;
  }

  /** The full storage key (no SCALE length prefix) for `section.item(...args)`. */
  key(section: string, item: string, ...args: unknown[]): Uint8Array {
    const fn = this.entry(section, item);
    const prefixed = fn(...args);
    return compactStripLength(prefixed)[1];
  }

  /** The iteration prefix for a map, optionally narrowed by its first keys (e.g. a netuid). */
  prefix(section: string, item: string, ...args: unknown[]): Uint8Array {
    const fn = this.entry(section, item);
    return (fn as unknown as { keyPrefix(...a: unknown[]): Uint8Array }).keyPrefix(...args);
  }

  valueType(section: string, item: string): string {
    const type = this.entry(section, item).meta.type;
    return this.registry.createLookupType(type.isPlain ? type.asPlain : type.asMap.value);
  }

  encode(section: string, item: string, value: unknown): Uint8Array {
    return this.registry.createType(this.valueType(section, item), value).toU8a();
  }

  decode(section: string, item: string, bytes: Uint8Array | undefined): Codec | undefined {
    const meta = this.entry(section, item).meta;
    if (bytes === undefined) {
      if (meta.modifier.isOptional) return undefined;
      bytes = meta.fallback.toU8a(true);
    }
    return this.registry.createType(this.valueType(section, item), bytes);
  }

  palletIndex(pallet: string): number {
    const p = this.metadata.asLatest.pallets.find((x) => x.name.toString() === pallet);
    if (!p) throw new Error(`runtime has no pallet ${pallet}`);
    return p.index.toNumber();
  }

  #variants(pallet: string, kind: "events" | "errors"): Variant[] {
    const p = this.metadata.asLatest.pallets.find((x) => x.name.toString() === pallet);
    const opt = p?.[kind];
    if (!opt || opt.isNone) throw new Error(`runtime pallet ${pallet} has no ${kind}`);
    return this.registry.lookup.getSiType(opt.unwrap().type).def.asVariant.variants.map((v) => ({
      name: v.name.toString(),
      index: v.index.toNumber(),
      fields: v.fields.map((f) => ({ name: f.name.isSome ? f.name.unwrap().toString() : null, type: f.type.toNumber() })),
    }));
  }

  #variant(pallet: string, kind: "events" | "errors", name: string): Variant {
    const v = this.#variants(pallet, kind).find((x) => x.name === name);
    if (!v) throw new Error(`runtime pallet ${pallet} has no ${kind === "events" ? "event" : "error"} ${name}`);
    return v;
  }

  /** SCALE bytes of `RuntimeEvent::<pallet>(<name>{fields…})`, fields given in declaration order. */
  event(pallet: string, name: string, fields: unknown[] = []): Uint8Array {
    const v = this.#variant(pallet, "events", name);
    if (fields.length !== v.fields.length) {
      throw new Error(`${pallet}.${name} takes ${v.fields.length} fields, got ${fields.length}`);
    }
    const parts = v.fields.map((f, i) => this.registry.createType(this.registry.createLookupType(f.type), fields[i]).toU8a());
    return u8aConcat(new Uint8Array([this.palletIndex(pallet), v.index]), ...parts);
  }

  /** `DispatchError::Module` for a named pallet error, in the `[u8; 4]` layout current runtimes use. */
  moduleError(pallet: string, name: string): DispatchErrorJson {
    const v = this.#variant(pallet, "errors", name);
    const error = `0x${v.index.toString(16).padStart(2, "0")}000000` as const;
    return { Module: { index: this.palletIndex(pallet), error } };
  }

  /** The lookup type of a field of a pallet event, e.g. System.ExtrinsicFailed's DispatchError. */
  eventFieldType(pallet: string, name: string, field: number): string {
    const f = this.#variant(pallet, "events", name).fields[field];
    if (!f) throw new Error(`${pallet}.${name} has no field ${field}`);
    return this.registry.createLookupType(f.type);
  }

  /** A runtime API method as declared in the metadata (V15+), for `state_call`. */
  runtimeApi(method: string): { inputs: string[]; output: string } | undefined {
    for (const api of this.metadata.asLatest.apis) {
      for (const m of api.methods) {
        if (`${api.name.toString()}_${m.name.toString()}` === method) {
          return {
            inputs: m.inputs.map((i) => this.registry.createLookupType(i.type)),
            output: this.registry.createLookupType(m.output),
          };
        }
      }
    }
    return undefined;
  }

  readonly #legacy = new Map<14 | 15, Uint8Array>();

  /** The V14 or V15 form of the served metadata, derived once and kept. */
  legacyMetadata(version: 14 | 15): Uint8Array {
    let bytes = this.#legacy.get(version);
    if (!bytes) this.#legacy.set(version, (bytes = legacyMetadata(this.registry, this.metadata, version)));
    return bytes;
  }

  /** Length-prefixed metadata, as `Metadata_metadata_at_version` returns it inside an Option. */
  opaqueMetadata(): Uint8Array {
    return compactAddLength(this.metadataBytes);
  }
}
