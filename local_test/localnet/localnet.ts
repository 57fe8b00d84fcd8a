// startLocalnet: a subtensor stand-in that @polkadot/api connects to unchanged. Builds (or restores)
// the chain, serves JSON-RPC on loopback and produces a block every `blockMs`.
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { cryptoWaitReady } from "@polkadot/util-crypto";
import { z } from "zod";
import { beaconKeygen } from "../../core/timelock/index.ts";
import { formatZodError, UserError } from "../../core/errors.ts";
import { createLogger, type Logger } from "../../core/log.ts";
import { Chain, type Block } from "./chain.ts";
import { BlockContext } from "./context.ts";
import { buildGenesis, devAccounts, type DevAccount, type GenesisAccounts } from "./genesis.ts";
import { StateFile } from "./persist.ts";
import { RpcHandler } from "./rpc.ts";
import { DEFAULT_METADATA, Runtime } from "./runtime.ts";
import { listen } from "./server.ts";
import { State } from "./state.ts";

export const LocalnetOptions = z.object({
  port: z.number().int().min(0).max(65535).default(0),
  hostname: z.string().default("127.0.0.1"),
  /** Milliseconds between blocks; 0 produces blocks only when `produceBlock()` is called. */
  blockMs: z.number().int().min(0).default(1000),
  netuid: z.number().int().min(1).max(65535).default(3),
  miners: z.number().int().min(0).max(200).default(3),
  tempo: z.number().int().min(1).max(65535).default(10),
  weightsRateLimit: z.number().int().min(0).default(20),
  commitReveal: z.boolean().default(false),
  weightsVersionKey: z.bigint().min(0n).default(0n),
  stakeThreshold: z.bigint().min(0n).default(1_000_000_000n),
  statePath: z.string().optional(),
  metadataPath: z.string().default(DEFAULT_METADATA),
  /** ≥ 32 bytes: a deterministic beacon key; otherwise a fresh random one per genesis. */
  beaconSeed: z.instanceof(Uint8Array).optional(),
  log: z.custom<Logger>().optional(),
});
export type LocalnetOptions = z.input<typeof LocalnetOptions>;

export interface Localnet {
  url: string;
  port: number;
  genesisHash: string;
  accounts: GenesisAccounts;
  beacon: { publicKey: `0x${string}` };
  netuid: number;
  /** The best block number. */
  block(): number;
  /** Seals a block now (also while the timer runs). */
  produceBlock(): Block;
  /** The chain itself, for tests that inspect state directly. */
  chain: Chain;
  dropConnections(): void;
  stop(): Promise<void>;
}

const GENESIS_KEYS = ["netuid", "miners", "tempo", "weightsRateLimit", "commitReveal", "weightsVersionKey", "stakeThreshold"] as const;

export async function startLocalnet(input: LocalnetOptions = {}): Promise<Localnet> {
  const parsed = LocalnetOptions.safeParse(input);
  if (!parsed.success) throw new UserError(`localnet options: ${formatZodError(parsed.error)}`);
  const opts = parsed.data;
  const log = opts.log ?? createLogger().child({ component: "localnet" });
  await cryptoWaitReady();

  const runtime = new Runtime(opts.metadataPath);
  const file = opts.statePath ? await StateFile.open(opts.statePath) : undefined;
  const saved = file?.load() ?? null;

  let genesis = Object.fromEntries(GENESIS_KEYS.map((k) => [k, opts[k]])) as Pick<typeof opts, (typeof GENESIS_KEYS)[number]>;
  let beacon: { secretKey: Uint8Array; publicKey: Uint8Array };
  if (saved) {
    if (saved.meta.specVersion !== String(runtime.version.specVersion)) {
      throw new UserError(`${opts.statePath} was made with runtime spec ${saved.meta.specVersion}, this metadata is spec ${runtime.version.specVersion}`);
    }
    const g = JSON.parse(saved.meta.genesis!);
    genesis = { ...g, weightsVersionKey: BigInt(g.weightsVersionKey), stakeThreshold: BigInt(g.stakeThreshold) };
    const sk = hexToU8a(saved.meta.beaconSecret);
    beacon = { secretKey: sk, publicKey: hexToU8a(saved.meta.beaconPublic) };
  } else {
    beacon = beaconKeygen(opts.beaconSeed);
  }

  const accounts = devAccounts(genesis.miners, runtime.ss58Prefix);
  const state = new State(runtime, saved?.storage);
  const persist = file
    ? (block: Block, changed: [string, Uint8Array | undefined][]) =>
        file.saveBlock({ number: block.number, hash: block.hash, header: block.header.toU8a(), extrinsics: block.extrinsics }, changed)
    : undefined;
  const chain = new Chain(runtime, state, beacon, log, persist);

  if (saved) {
    chain.restore(
      saved.blocks.map((b) => ({
        number: b.number,
        hash: b.hash as `0x${string}`,
        header: runtime.registry.createType("Header", b.header),
        extrinsics: b.extrinsics as `0x${string}`[],
      })),
    );
    log.info("localnet restored", { state: opts.statePath, best: chain.best });
  } else {
    buildGenesis(new BlockContext(runtime, state, 0, Date.now()), genesis, accounts, beacon);
    file?.saveMeta({
      specVersion: String(runtime.version.specVersion),
      genesis: JSON.stringify(genesis, (_, v) => (typeof v === "bigint" ? v.toString() : v)),
      beaconSecret: u8aToHex(beacon.secretKey),
      beaconPublic: u8aToHex(beacon.publicKey),
    });
    chain.sealGenesis();
  }

  const rpc = new RpcHandler(chain, log, { chainName: "Crusades Localnet", nodeName: "crusades-localnet", nodeVersion: "0.1.0" });
  const server = await listen(rpc, opts.port, opts.hostname);

  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    try {
      chain.produceBlock();
    } catch (error) {
      log.error("block production failed", { error: (error as Error).stack ?? String(error) });
    }
    timer = setTimeout(tick, opts.blockMs);
  };
  if (opts.blockMs > 0) timer = setTimeout(tick, opts.blockMs);

  const url = `ws://${opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname}:${server.port}`;
  return {
    url,
    port: server.port,
    genesisHash: chain.genesisHash,
    accounts,
    beacon: { publicKey: u8aToHex(beacon.publicKey) as `0x${string}` },
    netuid: genesis.netuid,
    block: () => chain.best,
    produceBlock: () => chain.produceBlock(),
    chain,
    dropConnections: () => server.dropConnections(),
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await server.stop();
      file?.close();
    },
  };
}

export type { DevAccount, GenesisAccounts };
