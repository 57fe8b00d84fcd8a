// The V14/V15 metadata the localnet derives from its V16 blob must describe the same runtime: every
// pallet, storage entry, call/event/error type, constant, signed extension and runtime API, with the
// type registry intact (rpc-compat.test.ts checks that `state_call` serves them).
import { describe, expect, test } from "bun:test";
import { Metadata, TypeRegistry } from "@polkadot/types";
import { legacyMetadata } from "./metadata-versions.ts";
import { METADATA, Runtime } from "./runtime.ts";

/** What both versions must agree on, per pallet, with V16-only fields left out. */
function palletShape(md: Metadata) {
  const v = md.asLatest;
  return v.pallets.map((p) => ({
    name: p.name.toString(),
    index: p.index.toNumber(),
    storage: p.storage.isSome
      ? p.storage.unwrap().items.map((i) => [i.name.toString(), i.modifier.toString(), i.type.toJSON(), i.fallback.toHex()])
      : null,
    calls: p.calls.isSome ? p.calls.unwrap().type.toNumber() : null,
    events: p.events.isSome ? p.events.unwrap().type.toNumber() : null,
    errors: p.errors.isSome ? p.errors.unwrap().type.toNumber() : null,
    constants: p.constants.map((c) => [c.name.toString(), c.type.toNumber(), c.value.toHex()]),
  }));
}

for (const [spec, path] of Object.entries(METADATA)) {
  describe(`legacy metadata from ${spec}`, () => {
    const runtime = new Runtime(path);
    for (const version of [14, 15] as const) {
      test(`V${version} decodes as V${version} and describes the same runtime`, () => {
        const bytes = legacyMetadata(runtime.registry, runtime.metadata, version);
        const md = new Metadata(new TypeRegistry(), bytes);
        expect(md.version).toBe(version);
        expect(md.toU8a()).toEqual(bytes);
        expect(palletShape(md)).toEqual(palletShape(runtime.metadata));
        const latest = md.asLatest;
        expect(latest.lookup.types.length).toBe(runtime.metadata.asLatest.lookup.types.length);
        expect(latest.lookup.toHex()).toBe(runtime.metadata.asLatest.lookup.toHex());
        const derived = (version === 15 ? md.asV15 : md.asV14).extrinsic.signedExtensions;
        expect(derived.map((e) => [e.identifier.toString(), e.type.toNumber(), e.additionalSigned.toNumber()])).toEqual(
          runtime.metadata.asV16.extrinsic.transactionExtensions.map((e) => [e.identifier.toString(), e.type.toNumber(), e.implicit.toNumber()]),
        );
        // A registry built from the derived metadata decodes storage and calls like the original.
        const registry = new TypeRegistry();
        registry.setMetadata(md);
        expect(registry.findMetaCall(new Uint8Array([runtime.palletIndex("Commitments"), 0])).method).toBe("setCommitment");
      });
    }

    test("V15 keeps the runtime APIs with their types; V15's extrinsic names the real Extra tuple", () => {
      const md15 = new Metadata(new TypeRegistry(), legacyMetadata(runtime.registry, runtime.metadata, 15));
      const apis = (m: Metadata) => m.asLatest.apis.map((a) => [a.name.toString(), a.methods.map((x) => [x.name.toString(), x.inputs.toJSON(), x.output.toNumber()])]);
      expect(apis(md15)).toEqual(apis(runtime.metadata));
      const v15 = md15.asV15;
      expect(v15.extrinsic.version.toNumber()).toBe(4);
      const extra = runtime.metadata.asLatest.lookup.getSiType(v15.extrinsic.extraType).def;
      expect(extra.isTuple).toBe(true);
      // One tuple element per extension (an element may be a wrapper struct around the extension's type).
      expect(extra.asTuple.length).toBe(v15.extrinsic.signedExtensions.length);
      expect(runtime.metadata.asLatest.lookup.getSiType(v15.type).path.map(String).pop()).toBe("Runtime");
    });
  });
}
