// Older metadata versions derived from the V16 blob, as a node serves them to clients that predate V16
// (the Python SDK asks for V15 and reads only V14/V15). V16 → V15 drops only what V16 added (deprecation
// info, associated types, view functions, extension versions, runtime-API versions); V15 → V14 further
// drops the runtime APIs, outer enums and custom map. The type registry is shared unchanged, so every
// type id means the same in all three.
import type { Metadata, TypeRegistry } from "@polkadot/types";
import type { MetadataV16 } from "@polkadot/types/interfaces";
import { objectSpread, u8aConcat } from "@polkadot/util";

export const SERVED_METADATA_VERSIONS = [14, 15, 16] as const;
const MAGIC = new Uint8Array([0x6d, 0x65, 0x74, 0x61]); // "meta"

/** Looks up a type id by its full path, e.g. `sp_runtime::generic::unchecked_extrinsic::UncheckedExtrinsic`. */
function typeIdByPath(v16: MetadataV16, path: string): number {
  const hit = v16.lookup.types.find((t) => t.type.path.map(String).join("::") === path);
  if (!hit) throw new Error(`metadata has no type ${path}, needed to serve an older metadata version`);
  return hit.id.toNumber();
}

/** The runtime's `Runtime` struct, which V14/V15 name in their `type` field (V16 dropped it). */
function runtimeTypeId(v16: MetadataV16): number {
  const hit = v16.lookup.types.find((t) => t.type.path.length === 2 && t.type.path[1]!.toString() === "Runtime");
  if (!hit) throw new Error("metadata has no <runtime>::Runtime type, needed to serve an older metadata version");
  return hit.id.toNumber();
}

function pallets(registry: TypeRegistry, v16: MetadataV16, version: 14 | 15) {
  const drop = <T extends { entries(): IterableIterator<[string, unknown]> }>(codec: T) => {
    const plain = objectSpread<Record<string, unknown>>({}, codec);
    delete plain.deprecationInfo;
    return plain;
  };
  return v16.pallets.map((p) => {
    const pallet: Record<string, unknown> = {
      name: p.name,
      storage: p.storage.isSome
        ? { prefix: p.storage.unwrap().prefix, items: p.storage.unwrap().items.map((item) => drop(item)) }
        : null,
      calls: p.calls.isSome ? { type: p.calls.unwrap().type } : null,
      events: p.events.isSome ? { type: p.events.unwrap().type } : null,
      constants: p.constants.map((c) => drop(c)),
      errors: p.errors.isSome ? { type: p.errors.unwrap().type } : null,
      index: p.index,
    };
    if (version === 15) pallet.docs = p.docs;
    return registry.createType(version === 15 ? "PalletMetadataV15" : "PalletMetadataV14", pallet);
  });
}

/**
 * Signed extensions as V14/V15 list them: those of extrinsic version 4, the version those formats
 * describe. V16 keys them by extension version, 0 for v4 extrinsics (@polkadot's own V15 → V16 upgrade
 * keys them by 4, so both are read). The `Extra` tuple is a type parameter of the UncheckedExtrinsic.
 */
function extrinsic(v16: MetadataV16) {
  const ext = v16.extrinsic;
  const v4 = [...ext.transactionExtensionsByVersion.entries()].find(([v]) => v.toNumber() === 0 || v.toNumber() === 4);
  const order = v4 ? v4[1].map((i) => i.toNumber()) : ext.transactionExtensions.map((_, i) => i);
  const signedExtensions = order.map((i) => {
    const e = ext.transactionExtensions[i]!;
    return { identifier: e.identifier, type: e.type, additionalSigned: e.implicit };
  });
  const unchecked = typeIdByPath(v16, "sp_runtime::generic::unchecked_extrinsic::UncheckedExtrinsic");
  const params = v16.lookup.getSiType(unchecked).params;
  const param = (name: string) => {
    const hit = params.find((p) => p.name.toString() === name);
    if (!hit || hit.type.isNone) throw new Error(`UncheckedExtrinsic has no ${name} type parameter`);
    return hit.type.unwrap().toNumber();
  };
  return { unchecked, signedExtensions, addressType: param("Address"), callType: param("Call"), signatureType: param("Signature"), extraType: param("Extra") };
}

/** The SCALE bytes of `RuntimeMetadataPrefixed` (magic, version byte, body) at V14 or V15. */
export function legacyMetadata(registry: TypeRegistry, metadata: Metadata, version: 14 | 15): Uint8Array {
  const v16 = metadata.asV16;
  const ext = extrinsic(v16);
  const body =
    version === 15
      ? registry.createType("MetadataV15", {
          lookup: v16.lookup,
          pallets: pallets(registry, v16, 15),
          extrinsic: {
            version: 4,
            addressType: ext.addressType,
            callType: ext.callType,
            signatureType: ext.signatureType,
            extraType: ext.extraType,
            signedExtensions: ext.signedExtensions,
          },
          type: runtimeTypeId(v16),
          apis: v16.apis.map((api) => ({
            name: api.name,
            methods: api.methods.map((m) => ({ name: m.name, inputs: m.inputs, output: m.output, docs: m.docs })),
            docs: api.docs,
          })),
          outerEnums: v16.outerEnums,
          custom: v16.custom,
        })
      : registry.createType("MetadataV14", {
          lookup: v16.lookup,
          pallets: pallets(registry, v16, 14),
          extrinsic: { type: ext.unchecked, version: 4, signedExtensions: ext.signedExtensions },
          type: runtimeTypeId(v16),
        });
  return u8aConcat(MAGIC, new Uint8Array([version]), body.toU8a());
}
