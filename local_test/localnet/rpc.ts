// The JSON-RPC 2.0 surface of a Substrate node, as much of it as @polkadot/api uses to connect, read
// storage, sign, submit and watch. Transport-free: an adapter (server.ts) feeds it text frames and
// gives it a send function per connection. Unknown methods get -32601 at once, never silence.
import { hexToU8a, isHex, u8aToHex } from "@polkadot/util";
import { blake2AsU8a, decodeAddress, encodeAddress } from "@polkadot/util-crypto";
import type { Logger } from "../../core/log.ts";
import type { Block, Chain, ChainEvents, TxStatus } from "./chain.ts";
import { SERVED_METADATA_VERSIONS } from "./metadata-versions.ts";
import { metagraph, neuronAt, neuronLiteAt, neurons, neuronsLite, subnetInfo } from "./runtime-apis.ts";
import { decodeExtrinsic, RpcError } from "./validate.ts";

type Params = unknown[];
type Result = unknown;

export interface Connection {
  send(text: string): void;
  /** subscription id → unsubscribe */
  readonly subs: Map<string, () => void>;
}

interface Request {
  jsonrpc?: string;
  id?: number | string | null;
  method?: unknown;
  params?: unknown;
}

const hexNumber = (n: number) => `0x${n.toString(16)}`;

function headerJson(block: Block) {
  const h = block.header;
  return {
    parentHash: h.parentHash.toHex(),
    number: hexNumber(block.number),
    stateRoot: h.stateRoot.toHex(),
    extrinsicsRoot: h.extrinsicsRoot.toHex(),
    digest: { logs: [] },
  };
}

function statusJson(status: TxStatus): unknown {
  return typeof status === "object" && "invalid" in status ? "invalid" : status;
}

const str = (v: unknown, what: string): string => {
  if (typeof v !== "string") throw new RpcError(-32602, `Invalid params: ${what} must be a string`);
  return v;
};
// Substrate's Bytes and hash parameters (impl-serde) take hex with or without 0x, in either case;
// keys and hashes are compared here in one form, 0x and lower case.
const hexParam = (v: unknown, what: string): string => {
  const hex = typeof v === "string" ? (/^0x/i.test(v) ? `0x${v.slice(2)}` : `0x${v}`).toLowerCase() : undefined;
  if (hex === undefined || !isHex(hex)) throw new RpcError(-32602, `Invalid params: ${what} must be hex`);
  return hex;
};
const optAt = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : hexParam(v, "block hash"));

export class RpcHandler {
  readonly #methods: Record<string, (params: Params, conn: Connection) => Result | Promise<Result>>;
  #nextSub = 1;
  readonly #connections = new Set<Connection>();

  constructor(
    readonly chain: Chain,
    readonly log: Logger,
    readonly info: { chainName: string; nodeName: string; nodeVersion: string },
  ) {
    this.#methods = this.#define();
  }

  get methods(): string[] {
    return Object.keys(this.#methods).sort();
  }

  open(send: (text: string) => void): Connection {
    const conn: Connection = { send, subs: new Map() };
    this.#connections.add(conn);
    return conn;
  }

  close(conn: Connection): void {
    for (const unsub of conn.subs.values()) unsub();
    conn.subs.clear();
    this.#connections.delete(conn);
  }

  /** Handles one text frame (a request or a batch) and sends the reply on the connection. */
  async message(conn: Connection, text: string): Promise<void> {
    const reply = await this.handleText(text, conn);
    if (reply !== undefined) conn.send(reply);
  }

  async handleText(text: string, conn: Connection): Promise<string | undefined> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
    }
    if (Array.isArray(parsed)) {
      if (!parsed.length) return JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "Invalid request" } });
      const out = (await Promise.all(parsed.map((r) => this.#one(r as Request, conn)))).filter(Boolean);
      return out.length ? JSON.stringify(out) : undefined;
    }
    const out = await this.#one(parsed as Request, conn);
    return out ? JSON.stringify(out) : undefined;
  }

  async #one(req: Request, conn: Connection): Promise<object | undefined> {
    const id = req?.id ?? null;
    if (!req || typeof req !== "object" || typeof req.method !== "string") {
      return { jsonrpc: "2.0", id, error: { code: -32600, message: "Invalid request" } };
    }
    const fn = this.#methods[req.method];
    if (!fn) return { jsonrpc: "2.0", id, error: { code: -32601, message: `Method not found: ${req.method}` } };
    const params = req.params === undefined ? [] : req.params;
    if (!Array.isArray(params)) return { jsonrpc: "2.0", id, error: { code: -32602, message: "Invalid params: expected an array" } };
    try {
      const result = await fn(params, conn);
      // A request without id is a notification: run it, answer nothing.
      return req.id === undefined ? undefined : { jsonrpc: "2.0", id, result: result === undefined ? null : result };
    } catch (error) {
      if (error instanceof RpcError) {
        return { jsonrpc: "2.0", id, error: { code: error.code, message: error.message, ...(error.data ? { data: error.data } : {}) } };
      }
      this.log.error("rpc method threw", { method: req.method, error: (error as Error).stack ?? String(error) });
      return { jsonrpc: "2.0", id, error: { code: -32603, message: `Internal error: ${(error as Error).message}` } };
    }
  }

  #subscribe(conn: Connection, method: string, start: (emit: (result: unknown) => void) => () => void): string {
    const id = `${Date.now().toString(36)}${(this.#nextSub++).toString(36)}`.padStart(16, "0");
    const emit = (result: unknown) => conn.send(JSON.stringify({ jsonrpc: "2.0", method, params: { subscription: id, result } }));
    // The reply with the id goes out first; the first notification right after it, as nodes do.
    let stop = () => {};
    queueMicrotask(() => {
      if (conn.subs.has(id)) stop = start(emit);
    });
    conn.subs.set(id, () => stop());
    return id;
  }

  #unsubscribe(params: Params, conn: Connection): boolean {
    const id = String(params[0]);
    const stop = conn.subs.get(id);
    if (!stop) return false;
    stop();
    conn.subs.delete(id);
    return true;
  }

  #listen(events: Partial<ChainEvents>): () => void {
    const l: ChainEvents = { onHead: () => {}, onFinalized: () => {}, onStorage: () => {}, ...events };
    this.chain.listeners.add(l);
    return () => this.chain.listeners.delete(l);
  }

  #blockOrNull(at: unknown): Block | undefined {
    return this.chain.block(optAt(at));
  }

  #storageValue(key: string, at?: string): string | null {
    const v = this.chain.stateAt(at).get(key);
    return v === undefined ? null : u8aToHex(v);
  }

  #keys(prefix: string, at?: string): string[] {
    const out: string[] = [];
    for (const k of this.chain.stateAt(at).keys()) if (k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  #accountNonce(address: unknown): number {
    let who: string;
    try {
      who = u8aToHex(decodeAddress(str(address, "account")));
    } catch (error) {
      throw new RpcError(-32602, `Invalid params: ${(error as Error).message}`);
    }
    return this.chain.nextNonceOnChain(who);
  }

  #define(): Record<string, (params: Params, conn: Connection) => Result | Promise<Result>> {
    const chain = this.chain;
    const runtime = chain.runtime;
    const version = () => ({ ...runtime.version, stateVersion: runtime.version.systemVersion ?? 1 });

    const heads = (method: string, pick: "onHead" | "onFinalized") => (_: Params, conn: Connection) =>
      this.#subscribe(conn, method, (emit) => {
        emit(headerJson(pick === "onHead" ? chain.head : chain.blocks[chain.finalized]!));
        return this.#listen({ [pick]: (b: Block) => emit(headerJson(b)) });
      });
    const unsub = (params: Params, conn: Connection) => this.#unsubscribe(params, conn);

    const m: Record<string, (params: Params, conn: Connection) => Result | Promise<Result>> = {
      rpc_methods: () => ({ version: 1, methods: this.methods }),

      system_chain: () => this.info.chainName,
      system_name: () => this.info.nodeName,
      system_version: () => this.info.nodeVersion,
      system_chainType: () => "Development",
      system_properties: () => ({ ss58Format: runtime.ss58Prefix, tokenDecimals: 9, tokenSymbol: "TAO" }),
      system_health: () => ({ peers: 0, isSyncing: false, shouldHavePeers: false }),
      system_syncState: () => ({ startingBlock: 0, currentBlock: chain.best, highestBlock: chain.best }),
      system_accountNextIndex: ([address]) => {
        const onChain = this.#accountNonce(address);
        return chain.nextNonce(u8aToHex(decodeAddress(address as string)), onChain);
      },

      chain_getBlockHash: ([n]) => {
        if (n === undefined || n === null) return chain.head.hash;
        // ListOrValue<NumberOrHex>: a list asks for each hash in turn.
        const one = (v: unknown) => {
          const num = typeof v === "string" && /^0x[0-9a-f]+$/i.test(v) ? Number(v) : v;
          if (typeof num !== "number" || !Number.isInteger(num) || num < 0) throw new RpcError(-32602, "Invalid params: block number");
          return chain.hashAt(num) ?? null;
        };
        return Array.isArray(n) ? n.map(one) : one(n);
      },
      chain_getHeader: ([at]) => {
        const b = this.#blockOrNull(at);
        return b ? headerJson(b) : null;
      },
      chain_getBlock: ([at]) => {
        const b = this.#blockOrNull(at);
        return b ? { block: { header: headerJson(b), extrinsics: b.extrinsics }, justifications: null } : null;
      },
      chain_getFinalizedHead: () => chain.blocks[chain.finalized]!.hash,
      chain_subscribeNewHeads: heads("chain_newHead", "onHead"),
      chain_unsubscribeNewHeads: unsub,
      chain_subscribeAllHeads: heads("chain_allHead", "onHead"),
      chain_unsubscribeAllHeads: unsub,
      chain_subscribeFinalizedHeads: heads("chain_finalizedHead", "onFinalized"),
      chain_unsubscribeFinalizedHeads: unsub,

      state_getRuntimeVersion: () => version(),
      state_subscribeRuntimeVersion: (_, conn) =>
        this.#subscribe(conn, "state_runtimeVersion", (emit) => {
          emit(version());
          return () => {};
        }),
      state_unsubscribeRuntimeVersion: unsub,
      // FRAME's metadata() always returns V14 (clients that know newer versions ask for them by number).
      state_getMetadata: ([at]) => {
        chain.stateAt(optAt(at));
        return u8aToHex(runtime.legacyMetadata(14));
      },
      state_getStorage: ([key, at]) => this.#storageValue(hexParam(key, "key"), optAt(at)),
      state_getStorageHash: ([key, at]) => {
        const v = this.#storageValue(hexParam(key, "key"), optAt(at));
        return v === null ? null : u8aToHex(blake2AsU8a(hexToU8a(v), 256));
      },
      state_getStorageSize: ([key, at]) => {
        const v = this.#storageValue(hexParam(key, "key"), optAt(at));
        return v === null ? null : (v.length - 2) / 2;
      },
      state_queryStorageAt: ([keys, at]) => {
        if (!Array.isArray(keys)) throw new RpcError(-32602, "Invalid params: keys must be an array");
        const block = chain.block(optAt(at));
        if (!block) throw new RpcError(4003, `Client error: UnknownBlock: ${at}`);
        return [{ block: block.hash, changes: keys.map((k) => [hexParam(k, "key"), this.#storageValue(hexParam(k, "key"), block.hash)]) }];
      },
      state_getKeys: ([prefix, at]) => this.#keys(hexParam(prefix, "prefix"), optAt(at)),
      state_getKeysPaged: ([prefix, count, startKey, at]) => {
        if (typeof count !== "number" || count < 0 || count > 1000) throw new RpcError(-32602, "Invalid params: count must be 0..1000");
        const all = this.#keys(hexParam(prefix ?? "0x", "prefix"), optAt(at));
        const start = startKey ? hexParam(startKey, "start key") : undefined;
        return (start ? all.filter((k) => k > start) : all).slice(0, count);
      },
      state_getPairs: ([prefix, at]) => {
        const s = chain.stateAt(optAt(at));
        return this.#keys(hexParam(prefix, "prefix"), optAt(at)).map((k) => [k, u8aToHex(s.get(k)!)]);
      },
      state_subscribeStorage: ([keys], conn) => {
        if (keys !== undefined && keys !== null && !Array.isArray(keys)) throw new RpcError(-32602, "Invalid params: keys must be an array");
        const watched = keys ? new Set((keys as unknown[]).map((k) => hexParam(k, "key"))) : null;
        return this.#subscribe(conn, "state_storage", (emit) => {
          if (watched) emit({ block: chain.head.hash, changes: [...watched].map((k) => [k, this.#storageValue(k)]) });
          return this.#listen({
            onStorage: (block, changed) => {
              const hits = watched ? changed.filter((k) => watched.has(k)) : changed;
              if (!hits.length) return;
              emit({ block: block.hash, changes: hits.map((k) => [k, this.#storageValue(k, block.hash)]) });
            },
          });
        });
      },
      state_unsubscribeStorage: unsub,
      state_call: ([method, data, at]) => this.#stateCall(str(method, "method"), hexParam(data ?? "0x", "data"), optAt(at)),

      author_submitExtrinsic: ([hex]) => chain.submit(hexToU8a(hexParam(hex, "extrinsic"))),
      author_submitAndWatchExtrinsic: ([hex], conn) => {
        const bytes = hexToU8a(hexParam(hex, "extrinsic"));
        // Validate before answering, so a bad transaction is an error reply, not a subscription.
        let emitLater: (result: unknown) => void = () => {};
        const backlog: unknown[] = [];
        const hash = chain.submit(bytes, (status) => {
          if (typeof status === "object" && "invalid" in status) this.log.info("watched tx invalid", { reason: status.invalid });
          backlog.push(statusJson(status));
          emitLater(statusJson(status));
        });
        return this.#subscribe(conn, "author_extrinsicUpdate", (emit) => {
          for (const s of backlog.splice(0)) emit(s);
          emitLater = emit;
          return () => chain.unwatch(hash);
        });
      },
      author_unwatchExtrinsic: unsub,
      author_pendingExtrinsics: () => chain.pending(),

      // Localnet only (a node drops these silently and has no such method): why each timelocked commitment
      // was dropped at its reveal, so a validator or miner can show it. Clients look for it in rpc_methods.
      localnet_droppedCommitments: ([netuid]) => {
        if (netuid !== undefined && netuid !== null && (typeof netuid !== "number" || !Number.isInteger(netuid))) {
          throw new RpcError(-32602, "Invalid params: netuid must be an integer");
        }
        return chain.droppedCommitments
          .filter((d) => netuid === undefined || netuid === null || d.netuid === netuid)
          .map((d) => ({ netuid: d.netuid, hotkey: encodeAddress(d.who, runtime.ss58Prefix), block: d.block, revealRound: Number(d.revealRound), reason: d.reason }));
      },

      payment_queryInfo: ([hex]) => {
        const bytes = hexToU8a(hexParam(hex, "extrinsic"));
        const info = chain.queryInfo(bytes, decodeExtrinsic(runtime, bytes));
        return { weight: info.weight, class: "normal", partialFee: info.partialFee.toString() };
      },
    };
    // The aliases Substrate registers for the same handlers.
    const aliases: Record<string, string> = {
      chain_getHead: "chain_getBlockHash",
      account_nextIndex: "system_accountNextIndex",
      state_getStorageHashAt: "state_getStorageHash",
      state_getStorageSizeAt: "state_getStorageSize",
      chain_subscribeNewHead: "chain_subscribeNewHeads",
      chain_unsubscribeNewHead: "chain_unsubscribeNewHeads",
      subscribe_newHead: "chain_subscribeNewHeads",
      unsubscribe_newHead: "chain_unsubscribeNewHeads",
      chain_subscribeFinalisedHeads: "chain_subscribeFinalizedHeads",
      chain_unsubscribeFinalisedHeads: "chain_unsubscribeFinalizedHeads",
      chain_getFinalisedHead: "chain_getFinalizedHead",
      chain_getRuntimeVersion: "state_getRuntimeVersion",
      chain_subscribeRuntimeVersion: "state_subscribeRuntimeVersion",
      chain_unsubscribeRuntimeVersion: "state_unsubscribeRuntimeVersion",
      state_getStorageAt: "state_getStorage",
      state_getKeysPagedAt: "state_getKeysPaged",
      state_callAt: "state_call",
    };
    for (const [alias, target] of Object.entries(aliases)) m[alias] = m[target]!;
    return m;
  }

  #stateCall(method: string, data: string, at?: string): string {
    const chain = this.chain;
    const runtime = chain.runtime;
    const api = runtime.runtimeApi(method);
    if (!api) throw new RpcError(4003, `Client error: Execution failed: Other: Exported method ${method} is not found`);
    const view = chain.stateAt(at);
    const blockNumber = chain.block(at)!.number;
    const input = hexToU8a(data);
    const args: import("@polkadot/types/types").Codec[] = [];
    let offset = 0;
    try {
      for (const type of api.inputs) {
        const arg = runtime.registry.createType(type, input.subarray(offset));
        offset += arg.encodedLength;
        args.push(arg);
      }
    } catch (error) {
      throw new RpcError(4003, `Client error: Execution failed: Could not decode input of ${method}: ${(error as Error).message}`);
    }
    const out = (value: unknown) => u8aToHex(runtime.registry.createType(api.output, value).toU8a());
    switch (method) {
      case "Core_version":
        return out(runtime.version);
      case "Metadata_metadata":
        return out(u8aToHex(runtime.legacyMetadata(14)));
      case "Metadata_metadata_versions":
        return out(SERVED_METADATA_VERSIONS);
      case "Metadata_metadata_at_version": {
        const v = Number(args[0]!.toString());
        if (v === 16) return out(runtime.metadataHex);
        // Hex, not bytes: a Uint8Array would be read as already length-prefixed.
        return out(v === 14 || v === 15 ? u8aToHex(runtime.legacyMetadata(v)) : null);
      }
      case "AccountNonceApi_account_nonce": {
        const key = u8aToHex(runtime.key("system", "account", u8aToHex(args[0]!.toU8a())));
        const info = runtime.decode("system", "account", view.get(key)) as unknown as { nonce: unknown };
        return out(info.nonce);
      }
      case "TransactionPaymentApi_query_info": {
        // The metadata types uxt as an opaque extrinsic; read it as the real one it is.
        const bytes = args[0]!.toU8a();
        return out(chain.queryInfo(bytes, decodeExtrinsic(runtime, bytes)));
      }
      case "NeuronInfoRuntimeApi_get_neurons_lite":
        return out(neuronsLite(runtime, view, Number(args[0]!.toString())));
      case "NeuronInfoRuntimeApi_get_neuron_lite":
        return out(neuronLiteAt(runtime, view, Number(args[0]!.toString()), Number(args[1]!.toString())));
      case "NeuronInfoRuntimeApi_get_neurons":
        return out(neurons(runtime, view, Number(args[0]!.toString())));
      case "NeuronInfoRuntimeApi_get_neuron":
        return out(neuronAt(runtime, view, Number(args[0]!.toString()), Number(args[1]!.toString())));
      case "SubnetInfoRuntimeApi_get_metagraph":
        return out(metagraph(runtime, view, Number(args[0]!.toString()), blockNumber));
      case "SubnetInfoRuntimeApi_get_subnet_info":
        return out(subnetInfo(runtime, view, Number(args[0]!.toString()), blockNumber));
      default:
        throw new RpcError(4003, `Client error: Execution failed: Other: ${method} is not implemented by the localnet`);
    }
  }

  /** Every open connection, for tests that simulate a dropped socket. */
  get connections(): ReadonlySet<Connection> {
    return this.#connections;
  }
}
