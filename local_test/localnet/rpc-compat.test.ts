// What clients other than @polkadot/api rely on: Substrate's method aliases, its hex rules (Bytes and
// hashes with or without 0x, any case), list-or-value block numbers, and the metadata versions a
// node lists, and the subnet runtime APIs SDKs read. Each request goes over HTTP POST to a real localnet, as a Python client's would.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Metadata, TypeRegistry } from "@polkadot/types";
import { hexToU8a, u8aConcat, u8aToHex } from "@polkadot/util";
import { memoryLogger } from "../../core/log.ts";
import { startLocalnet, type Localnet } from "./localnet.ts";

let net: Localnet;
beforeAll(async () => {
  net = await startLocalnet({ blockMs: 0, log: memoryLogger() });
  net.produceBlock();
  net.produceBlock();
});
afterAll(async () => {
  await net.stop();
});

async function rpc(method: string, params: unknown[] = []): Promise<{ result?: unknown; error?: { code: number; message: string } }> {
  const res = await fetch(net.url.replace("ws://", "http://"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  return (await res.json()) as { result?: unknown; error?: { code: number; message: string } };
}
async function result(method: string, params: unknown[] = []): Promise<unknown> {
  const body = await rpc(method, params);
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

// Substrate's aliases (sc-rpc-api's `aliases = [...]` and frame-system-rpc's account_nextIndex).
const ALIASES: Record<string, string> = {
  chain_getHead: "chain_getBlockHash",
  chain_getFinalisedHead: "chain_getFinalizedHead",
  chain_subscribeNewHead: "chain_subscribeNewHeads",
  subscribe_newHead: "chain_subscribeNewHeads",
  chain_unsubscribeNewHead: "chain_unsubscribeNewHeads",
  unsubscribe_newHead: "chain_unsubscribeNewHeads",
  chain_subscribeFinalisedHeads: "chain_subscribeFinalizedHeads",
  chain_unsubscribeFinalisedHeads: "chain_unsubscribeFinalizedHeads",
  chain_getRuntimeVersion: "state_getRuntimeVersion",
  chain_subscribeRuntimeVersion: "state_subscribeRuntimeVersion",
  chain_unsubscribeRuntimeVersion: "state_unsubscribeRuntimeVersion",
  state_callAt: "state_call",
  state_getKeysPagedAt: "state_getKeysPaged",
  state_getStorageAt: "state_getStorage",
  state_getStorageHashAt: "state_getStorageHash",
  state_getStorageSizeAt: "state_getStorageSize",
  account_nextIndex: "system_accountNextIndex",
};

describe("Substrate RPC aliases", () => {
  test("every alias is listed by rpc_methods and answers as its target", async () => {
    const { methods } = (await result("rpc_methods")) as { methods: string[] };
    for (const [alias, target] of Object.entries(ALIASES)) {
      expect(methods).toContain(alias);
      expect(methods).toContain(target);
    }
    const alice = net.accounts.owner;
    const numberKey = "0x26aa394eea5630e07c48ae0c9558cef702a5c1b19ab7a04f536c519aca4983ac";
    const same: [string, unknown[]][] = [
      ["chain_getHead", []],
      ["chain_getHead", [1]],
      ["chain_getFinalisedHead", []],
      ["chain_getRuntimeVersion", []],
      ["account_nextIndex", [alice.ss58]],
      ["state_getStorageAt", [numberKey]],
      ["state_getStorageHashAt", [numberKey]],
      ["state_getStorageSizeAt", [numberKey]],
      ["state_callAt", ["Core_version", "0x"]],
    ];
    for (const [alias, params] of same) expect(await result(alias, params)).toEqual(await result(ALIASES[alias]!, params));
    expect(await result("chain_getHead", [1])).toBe(net.chain.hashAt(1)!);
  });
});

describe("hex parameters", () => {
  test("Bytes and hashes are accepted with or without 0x and in either case", async () => {
    const numberKey = "26aa394eea5630e07c48ae0c9558cef702a5c1b19ab7a04f536c519aca4983ac";
    const value = await result("state_getStorage", [`0x${numberKey}`]);
    expect(value).not.toBeNull();
    expect(await result("state_getStorage", [numberKey])).toEqual(value);
    expect(await result("state_getStorage", [`0x${numberKey.toUpperCase()}`])).toEqual(value);
    const hash = net.chain.hashAt(1)!;
    expect(await result("state_getStorage", [numberKey, hash.slice(2)])).toEqual(await result("state_getStorage", [numberKey, hash]));
    expect(((await result("chain_getHeader", [hash.slice(2).toUpperCase()])) as { number: string }).number).toBe("0x1");
    const version = await result("state_call", ["Core_version", "0x"]);
    expect(await result("state_call", ["Core_version", ""])).toEqual(version);
    const nonce = await result("state_call", ["AccountNonceApi_account_nonce", net.accounts.owner.publicKey]);
    expect(await result("state_call", ["AccountNonceApi_account_nonce", net.accounts.owner.publicKey.slice(2)])).toEqual(nonce);
  });

  test("what is not hex is refused as invalid params", async () => {
    for (const bad of ["0xzz", "zz", "0x123", 12]) {
      const reply = await rpc("state_getStorage", [bad]);
      expect(reply.error?.code).toBe(-32602);
    }
  });

  test("chain_getBlockHash takes a number, a hex number, or a list of them", async () => {
    const [h0, h1, h2] = [0, 1, 2].map((n) => net.chain.hashAt(n)!);
    expect(await result("chain_getBlockHash", [1])).toBe(h1);
    expect(await result("chain_getBlockHash", ["0x2"])).toBe(h2);
    expect(await result("chain_getBlockHash", [[0, "0x1", 2, 10_000]])).toEqual([h0, h1, h2, null]);
  });
});

describe("Metadata runtime API over state_call", () => {
  test("lists 14, 15 and 16 and serves each; other versions are None", async () => {
    const registry = net.chain.runtime.registry;
    const call = async (method: string, data: string) => hexToU8a((await result("state_call", [method, data])) as string);
    expect(registry.createType("Vec<u32>", await call("Metadata_metadata_versions", "0x")).toJSON()).toEqual([14, 15, 16]);
    for (const v of [14, 15, 16] as const) {
      const out = registry.createType("Option<Bytes>", await call("Metadata_metadata_at_version", u8aToHex(registry.createType("u32", v).toU8a())));
      expect(out.isSome).toBe(true);
      expect(new Metadata(new TypeRegistry(), out.unwrap().toU8a(true)).version).toBe(v);
    }
    const none = await call("Metadata_metadata_at_version", u8aToHex(registry.createType("u32", 13).toU8a()));
    expect(registry.createType("Option<Bytes>", none).isNone).toBe(true);
  });

  test("state_getMetadata and Metadata_metadata answer V14, as FRAME's metadata() does; newer versions are asked for by number", async () => {
    const registry = net.chain.runtime.registry;
    expect(new Metadata(new TypeRegistry(), hexToU8a((await result("state_getMetadata")) as string)).version).toBe(14);
    const opaque = registry.createType("Bytes", hexToU8a((await result("state_call", ["Metadata_metadata", "0x"])) as string));
    expect(new Metadata(new TypeRegistry(), opaque.toU8a(true)).version).toBe(14);
  });
});

describe("subnet runtime APIs", () => {
  /** Calls a runtime API with its inputs encoded, and decodes the output, by the metadata's types. */
  const decode = async (method: string, args: number[]) => {
    const runtime = net.chain.runtime;
    const api = runtime.runtimeApi(method)!;
    const data = u8aToHex(u8aConcat(...args.map((value, i) => runtime.registry.createType(api.inputs[i]!, value).toU8a())));
    return runtime.registry.createType(api.output, hexToU8a((await result("state_call", [method, data])) as string)).toJSON() as never;
  };

  test("neurons(_lite), neuron(_lite), metagraph and subnet info report the subnet's storage", async () => {
    const netuid = net.netuid;
    // Values the chain would have written: a weight set at block 7 by the validator, and its stake.
    const state = net.chain.state;
    const validatorUid = net.accounts.validator.uid!;
    const n = [net.accounts.owner, net.accounts.burn, net.accounts.validator, ...net.accounts.miners].length;
    state.put("subtensorModule", "lastUpdate", [netuid], Array.from({ length: n }, (_, uid) => (uid === validatorUid ? 7 : 0)));
    state.put("subtensorModule", "weights", [netuid, validatorUid], [[0, 65535], [3, 1200]]);
    const block = net.produceBlock();

    const neurons = (await decode("NeuronInfoRuntimeApi_get_neurons_lite", [netuid])) as Record<string, unknown>[];
    expect(neurons.map((x) => x.uid)).toEqual(Array.from({ length: n }, (_, i) => i));
    const keys = [net.accounts.owner, net.accounts.burn, net.accounts.validator, ...net.accounts.miners];
    expect(neurons.map((x) => x.hotkey)).toEqual(keys.map((a) => a.ss58));
    expect(neurons.map((x) => x.coldkey)).toEqual(keys.map((a) => a.ss58));
    expect(neurons.map((x) => x.validatorPermit)).toEqual(keys.map((a) => a === net.accounts.owner || a === net.accounts.validator));
    expect(neurons.map((x) => x.lastUpdate)).toEqual(keys.map((_, uid) => (uid === validatorUid ? 7 : 0)));
    const validator = neurons[validatorUid] as { stake: [string, number][] };
    expect(validator.stake).toEqual([[net.accounts.validator.ss58, 1000 * 1e9]]);

    expect(await decode("NeuronInfoRuntimeApi_get_neuron_lite", [netuid, validatorUid])).toEqual(neurons[validatorUid] as never);
    expect(await decode("NeuronInfoRuntimeApi_get_neuron_lite", [netuid, n])).toBeNull();
    expect(await decode("NeuronInfoRuntimeApi_get_neurons_lite", [netuid + 1])).toEqual([] as never);

    // The full NeuronInfo: the lite fields plus each neuron's Weights and Bonds rows.
    const full = (await decode("NeuronInfoRuntimeApi_get_neurons", [netuid])) as Record<string, unknown>[];
    expect(full.map(({ weights, bonds, ...lite }) => lite)).toEqual(neurons);
    expect(full.map((x) => x.weights)).toEqual(keys.map((_, uid) => (uid === validatorUid ? [[0, 65535], [3, 1200]] : [])));
    expect(full.map((x) => x.bonds)).toEqual(keys.map(() => []));
    expect(await decode("NeuronInfoRuntimeApi_get_neuron", [netuid, validatorUid])).toEqual(full[validatorUid] as never);

    const graph = (await decode("SubnetInfoRuntimeApi_get_metagraph", [netuid])) as Record<string, unknown>;
    expect(graph.netuid).toBe(netuid);
    expect(graph.block).toBe(block.number);
    expect(graph.numUids).toBe(n);
    expect(graph.hotkeys).toEqual(keys.map((a) => a.ss58));
    expect(graph.lastUpdate).toEqual(neurons.map((x) => x.lastUpdate));
    expect(graph.validatorPermit).toEqual(neurons.map((x) => x.validatorPermit));
    expect(graph.alphaStake).toEqual(neurons.map((x) => (x.stake as [string, number][])[0]![1]));
    expect(graph.ownerHotkey).toBe(net.accounts.owner.ss58);
    expect(graph.tempo).toBe(Number(state.must("subtensorModule", "tempo", netuid).toString()));
    expect(graph.weightsRateLimit).toBe(Number(state.must("subtensorModule", "weightsSetRateLimit", netuid).toString()));
    expect(await decode("SubnetInfoRuntimeApi_get_metagraph", [netuid + 1])).toBeNull();

    const info = (await decode("SubnetInfoRuntimeApi_get_subnet_info", [netuid])) as Record<string, unknown>;
    expect(info.subnetworkN).toBe(n);
    expect(info.owner).toBe(net.accounts.owner.ss58);
  });
});
