// The subtensor client Crusades needs: metagraph and commitment reads, timelocked commitments, weights.
// Everything goes through @polkadot/api with metadata taken from the node, so call and storage
// encodings follow whatever runtime the node runs.
import type { QueryableStorageEntry, SubmittableExtrinsicFunction } from "@polkadot/api/types";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { Option, Vec, u16, u32, u64, bool, Bytes } from "@polkadot/types";
import type { Codec, ITuple, Registry } from "@polkadot/types/types";
import { compactFromU8a, compactToU8a, u8aConcat, u8aToHex } from "@polkadot/util";
import { encodeAddress } from "@polkadot/util-crypto";
import { createLogger, type Logger } from "../log.ts";
import { normalizeU16 } from "../scoring.ts";
import { encrypt, type BeaconInfo } from "../timelock/index.ts";
import { MAX_TIMELOCK_CIPHERTEXT_BYTES, aimSeconds, firstRoundFrom, roundPublishedAt } from "../commitment.ts";
import { openConnection, type Connection } from "./connection.ts";
import { ChainError } from "./errors.ts";
import { assertSucceeded, submitTracked, type Inclusion } from "./extrinsic.ts";
import { resolveEndpoint } from "./networks.ts";
import { SS58_FORMAT } from "./wallet.ts";

export interface ChainOptions {
  network: string;
  log?: Logger;
  timeoutMs?: number;
  /** Keep redialling a node that refuses the first connection until `timeoutMs` (see ConnectionOptions). */
  retryRefused?: boolean;
}

export interface RevealedCommitment {
  hotkey: string;
  /** The block whose initialisation revealed it (not the commit block). */
  block: number;
  data: string;
}

/** A timelocked commitment a localnet could not reveal (see `droppedCommitments`). */
export interface DroppedCommitment {
  netuid: number;
  hotkey: string;
  /** The block whose reveal dropped it. */
  block: number;
  revealRound: number;
  reason: string;
}

export interface CommitmentStatus {
  /** Block of the hotkey's last set_commitment, if any. */
  committedBlock: number | null;
  /** A timelocked commitment still waiting for its drand round. */
  pending: { block: number; revealRound: bigint } | null;
  /** The newest revealed commitment. */
  revealed: { block: number; data: string } | null;
  /** True when the last commitment has been revealed (nothing pending, and a reveal at or after it). */
  isRevealed: boolean;
}

export interface CommitmentReceipt {
  block: number;
  hash: string;
  revealRound: bigint;
  estimatedRevealBlock: number;
  recovered: boolean;
  /** Seconds from the commit block's timestamp to the reveal round's publication. */
  sealedSeconds: number;
  /** The local clock minus the chain's (the head's timestamp when the round was chosen), in seconds. */
  clockOffsetSeconds: number;
  /** The head whose timestamp the round was taken from. */
  chainTimeBlock: number;
}

/** A timelocked commitment still sealed (`CommitmentOf` holds it). */
export interface PendingCommitment {
  hotkey: string;
  block: number;
  /** The earliest drand round among its timelocked fields. */
  revealRound: bigint;
}

/** Where a revealed commitment came from, as the chain recorded it. */
export interface CommitOrigin {
  commitBlock: number;
  /** Timestamp.Now of the commit block, ms. */
  commitTimeMs: number;
  /** The drand round it was timelocked to; null when the node no longer holds the state that said. */
  revealRound: bigint | null;
  /** Timestamp.Now of the reveal block, ms. */
  revealTimeMs: number;
}

export type WeightsOutcome =
  | {
      status: "ok";
      mode: "set_weights" | "commit_timelocked_weights";
      block: number;
      hash: string;
      uids: number[];
      weights: number[];
      revealRound?: bigint;
      recovered: boolean;
    }
  | { status: "rate_limited"; nextBlock: number; lastUpdate: number; rateLimit: number };

const DEFAULT_BLOCK_TIME = 12;

// The shapes of the subtensor types read here; @polkadot/api ships no augmentation for subtensor.
interface RegistrationCodec {
  block: u32;
  info: { fields: { isTimelockEncrypted: boolean; asTimelockEncrypted: { revealRound: u64 } }[] };
}
interface BeaconConfigCodec {
  publicKey: Bytes;
  genesisTime: u32;
  period: u32;
  hash: Codec;
}

/** The SCALE `String` encoding: what bittensor's commitment tools timelock and what the chain reveals. */
export function encodeScaleText(text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  return u8aConcat(compactToU8a(body.length), body);
}

/**
 * Revealed bytes back to text. They should be a SCALE string; bytes whose length prefix does not match
 * are decoded whole, so a miner using another tool is still read (and then judged by parseCommitment).
 */
export function decodeRevealedText(bytes: Uint8Array): string {
  try {
    const [offset, len] = compactFromU8a(bytes);
    if (offset + len.toNumber() === bytes.length) return new TextDecoder().decode(bytes.subarray(offset));
  } catch {
    // fall through to the whole buffer
  }
  return new TextDecoder().decode(bytes);
}

/**
 * The plaintext of a timelocked weights commit: SCALE `WeightsTlockPayload { hotkey: Vec<u8>, uids:
 * Vec<u16>, values: Vec<u16>, version_key: u64 }`; the chain checks `hotkey` against the committer.
 */
export function weightsCommitPayload(registry: Registry, hotkey: Uint8Array, uids: number[], values: number[], versionKey: number): Uint8Array {
  return registry.createType("(Bytes, Vec<u16>, Vec<u16>, u64)", [u8aToHex(hotkey), uids, values, versionKey]).toU8a();
}

/** The earliest drand round among a registration's timelocked fields; null when it has none. */
function earliestRound(reg: RegistrationCodec): bigint | null {
  let round: bigint | null = null;
  for (const field of reg.info.fields) {
    if (!field.isTimelockEncrypted) continue;
    const r = field.asTimelockEncrypted.revealRound.toBigInt();
    if (round === null || r < round) round = r;
  }
  return round;
}

function revealedOf(hotkey: string, value: Codec): RevealedCommitment[] {
  const list = (value as Option<Vec<ITuple<[Bytes, u64]>>>).unwrapOr([]);
  return [...list].map(([bytes, block]) => ({ hotkey, block: block.toNumber(), data: decodeRevealedText(bytes.toU8a(true)) }));
}

function pendingOf(hotkey: string, value: Codec): PendingCommitment | null {
  const reg = (value as unknown as Option<RegistrationCodec & Codec>).unwrapOr(null);
  const round = reg && earliestRound(reg);
  return reg && round !== null ? { hotkey, block: reg.block.toNumber(), revealRound: round } : null;
}

export async function connectChain(opts: ChainOptions) {
  const log = opts.log ?? createLogger();
  const url = resolveEndpoint(opts.network);
  log.info(`connecting to ${url}`);
  const conn: Connection = await openConnection(url, { log, timeoutMs: opts.timeoutMs, retryRefused: opts.retryRefused });
  const api = conn.api;
  // A node without these items is not a subtensor node (or an incompatible one): say so by name. Reads
  // wait for a dropped socket to come back (the connection logs the outage once) instead of failing at
  // once on every poll, and their errors lose the provider's request dump.
  const storage = (pallet: string, item: string) => {
    const entry: QueryableStorageEntry<"promise"> | undefined = api.query[pallet]?.[item];
    if (!entry) throw new ChainError(`the node's runtime has no ${pallet}.${item} storage; is ${url} a subtensor node?`, "invalid");
    const read = async <T>(fn: () => Promise<T>): Promise<T> => {
      await conn.whenConnected();
      return fn().catch((e: Error) => {
        throw new ChainError(`reading ${pallet}.${item} from ${url}: ${e.message.split("\nFailed WS Request")[0]}`, conn.isConnected() ? "invalid" : "disconnected");
      });
    };
    return Object.assign((...args: unknown[]) => read(() => entry(...args)), {
      entries: (...args: unknown[]) => read(() => entry.entries(...args)),
      at: (hash: string, ...args: unknown[]) => read(() => entry.at(hash, ...args)),
    });
  };
  const call = (pallet: string, method: string): SubmittableExtrinsicFunction<"promise"> => {
    const fn = api.tx[pallet]?.[method];
    if (!fn) throw new ChainError(`the node's runtime has no ${pallet}.${method} call; is ${url} a subtensor node?`, "invalid");
    return fn;
  };
  const ss58 = (account: Uint8Array | string) => encodeAddress(account, SS58_FORMAT);

  const client = {
    url,
    /** The underlying API, for reads this client does not wrap. */
    api,
    connection: conn,

    async currentBlock(): Promise<number> {
      await conn.whenConnected();
      return (await api.rpc.chain.getHeader()).number.toNumber();
    },

    /** The head's number and its Timestamp.Now (ms): the chain's clock. */
    async chainTime(): Promise<{ block: number; ms: number }> {
      await conn.whenConnected();
      const head = await api.rpc.chain.getHeader();
      const now = (await storage("timestamp", "now").at(head.hash.toHex())) as u64;
      return { block: head.number.toNumber(), ms: now.toNumber() };
    },

    /**
     * Timestamp.Now of block `n`, ms: from its state, or, where a pruning node no longer holds that, from
     * the block's own `timestamp.set` inherent (block bodies are kept).
     */
    async blockTimestamp(n: number): Promise<number> {
      await conn.whenConnected();
      const hash = (await api.rpc.chain.getBlockHash(n)).toHex();
      try {
        const ms = ((await storage("timestamp", "now").at(hash)) as u64).toNumber();
        if (ms > 0) return ms;
      } catch (e) {
        if ((e as ChainError).code === "disconnected") throw e;
      }
      const block = await api.rpc.chain.getBlock(hash);
      for (const ex of block.block.extrinsics) {
        if (ex.method.section === "timestamp" && ex.method.method === "set") return Number(ex.method.args[0]!.toString());
      }
      throw new ChainError(`block ${n} has no timestamp.set inherent`, "invalid");
    },

    async uidOf(netuid: number, hotkey: string): Promise<number | null> {
      const uid = (await storage("subtensorModule", "uids")(netuid, hotkey)) as Option<u16>;
      return uid.isSome ? uid.unwrap().toNumber() : null;
    },

    async hotkeyOf(netuid: number, uid: number): Promise<string | null> {
      // Keys defaults to the zero account for an unused uid, so bound it by the subnet size.
      if (uid >= (await client.subnetSize(netuid))) return null;
      return ss58((await storage("subtensorModule", "keys")(netuid, uid)).toU8a());
    },

    async subnetSize(netuid: number): Promise<number> {
      return ((await storage("subtensorModule", "subnetworkN")(netuid)) as u16).toNumber();
    },

    async subnetExists(netuid: number): Promise<boolean> {
      return ((await storage("subtensorModule", "networksAdded")(netuid)) as bool).isTrue;
    },

    /** Every hotkey's revealed commitments on `netuid`, oldest first per hotkey. */
    async revealedCommitments(netuid: number): Promise<RevealedCommitment[]> {
      const entries = await storage("commitments", "revealedCommitments").entries(netuid);
      return entries.flatMap(([key, value]) => revealedOf(ss58(key.args[1]!.toU8a()), value));
    },

    /** One hotkey's revealed commitments on `netuid`, oldest first. */
    async revealedCommitmentsOf(netuid: number, hotkey: string): Promise<RevealedCommitment[]> {
      return revealedOf(hotkey, await storage("commitments", "revealedCommitments")(netuid, hotkey));
    },

    /** Every timelocked commitment on `netuid` still sealed, with its commit block and round. */
    async pendingCommitments(netuid: number): Promise<PendingCommitment[]> {
      const entries = await storage("commitments", "commitmentOf").entries(netuid);
      return entries.flatMap(([key, value]) => pendingOf(ss58(key.args[1]!.toU8a()), value) ?? []);
    },

    /** One hotkey's timelocked commitment on `netuid` still sealed, or null. */
    async pendingCommitmentOf(netuid: number, hotkey: string): Promise<PendingCommitment | null> {
      return pendingOf(hotkey, await storage("commitments", "commitmentOf")(netuid, hotkey));
    },

    /**
     * The hotkeys whose commitments on `netuid` changed in blocks `from`..`to` (a commit, a timelocked
     * commit, a reveal: the Commitments pallet's events), so a poll re-reads only theirs. Two requests per
     * block, whatever the history.
     */
    async commitmentActivity(netuid: number, from: number, to: number): Promise<Set<string>> {
      await conn.whenConnected();
      const touched = new Set<string>();
      for (let n = from; n <= to; n++) {
        const hash = (await api.rpc.chain.getBlockHash(n)).toHex();
        const records = (await storage("system", "events").at(hash)) as unknown as Vec<Codec & { event: Codec & { section: string; data: Codec[] } }>;
        for (const { event } of records) {
          if (event.section !== "commitments") continue;
          const [eventNetuid, who] = event.data;
          if (eventNetuid && who && Number(eventNetuid.toString()) === netuid) touched.add(ss58(who.toU8a()));
        }
      }
      return touched;
    },

    /**
     * The commit block and round of what `hotkey` revealed at `revealBlock`: its registration as it stood
     * in the block before (the reveal removes it); where the node has pruned that state, the hotkey's
     * LastCommitment when it precedes the reveal (a later commit replaces a sealed one, so the last one
     * before a reveal is what revealed), with the round unknown. Null when neither says.
     */
    async commitOrigin(netuid: number, hotkey: string, revealBlock: number): Promise<CommitOrigin | null> {
      if (!Number.isInteger(revealBlock) || revealBlock < 1) return null;
      await conn.whenConnected();
      const before = (await api.rpc.chain.getBlockHash(revealBlock - 1)).toHex();
      let commitBlock: number | null = null;
      let revealRound: bigint | null = null;
      let pruned = false;
      try {
        const reg = ((await storage("commitments", "commitmentOf").at(before, netuid, hotkey)) as unknown as Option<RegistrationCodec & Codec>).unwrapOr(null);
        revealRound = reg && earliestRound(reg);
        if (reg && revealRound !== null) commitBlock = reg.block.toNumber();
      } catch (e) {
        if ((e as ChainError).code === "disconnected") throw e;
        pruned = true;
      }
      if (pruned) {
        const last = ((await storage("commitments", "lastCommitment")(netuid, hotkey)) as Option<u32>).unwrapOr(null);
        if (last && last.toNumber() < revealBlock) commitBlock = last.toNumber();
      }
      if (commitBlock === null || commitBlock >= revealBlock) return null;
      const [commitTimeMs, revealTimeMs] = await Promise.all([client.blockTimestamp(commitBlock), client.blockTimestamp(revealBlock)]);
      return { commitBlock, commitTimeMs, revealRound, revealTimeMs };
    },

    /**
     * Timelocked commitments the localnet dropped at their reveal, with the reason (e.g. encrypted to
     * another beacon's key). A real node drops them silently and has no such method: there, always [].
     */
    async droppedCommitments(netuid: number): Promise<DroppedCommitment[]> {
      await conn.whenConnected();
      const { methods } = (await conn.provider.send("rpc_methods", [])) as { methods: string[] };
      if (!methods.includes("localnet_droppedCommitments")) return [];
      return (await conn.provider.send("localnet_droppedCommitments", [netuid])) as DroppedCommitment[];
    },

    async lastCommitment(netuid: number, hotkey: string): Promise<CommitmentStatus> {
      const [of, revealed, last] = await Promise.all([
        storage("commitments", "commitmentOf")(netuid, hotkey),
        storage("commitments", "revealedCommitments")(netuid, hotkey),
        storage("commitments", "lastCommitment")(netuid, hotkey),
      ]);
      const lastOpt = last as Option<u32>;
      const committedBlock = lastOpt.isSome ? lastOpt.unwrap().toNumber() : null;
      let pending: CommitmentStatus["pending"] = null;
      const reg = (of as unknown as Option<RegistrationCodec & Codec>).unwrapOr(null);
      if (reg) {
        for (const field of reg.info.fields) {
          if (field.isTimelockEncrypted) {
            pending = { block: reg.block.toNumber(), revealRound: field.asTimelockEncrypted.revealRound.toBigInt() };
            break;
          }
        }
      }
      let newest: CommitmentStatus["revealed"] = null;
      for (const [bytes, block] of (revealed as Option<Vec<ITuple<[Bytes, u64]>>>).unwrapOr([])) {
        if (!newest || block.toNumber() >= newest.block) newest = { block: block.toNumber(), data: decodeRevealedText(bytes.toU8a(true)) };
      }
      const isRevealed = !pending && newest !== null && (committedBlock === null || newest.block >= committedBlock);
      return { committedBlock, pending, revealed: newest, isRevealed };
    },

    async weightsRateLimit(netuid: number): Promise<number> {
      return ((await storage("subtensorModule", "weightsSetRateLimit")(netuid)) as u64).toNumber();
    },

    async lastUpdate(netuid: number, uid: number): Promise<number> {
      const list = (await storage("subtensorModule", "lastUpdate")(netuid)) as Vec<u64>;
      return list[uid]?.toNumber() ?? 0;
    },

    async commitRevealEnabled(netuid: number): Promise<boolean> {
      return ((await storage("subtensorModule", "commitRevealWeightsEnabled")(netuid)) as bool).isTrue;
    },

    async weightsVersionKey(netuid: number): Promise<number> {
      return ((await storage("subtensorModule", "weightsVersionKey")(netuid)) as u64).toNumber();
    },

    /** The weights `uid` has set on `netuid`, as stored: [target uid, u16 value] pairs. */
    async weights(netuid: number, uid: number): Promise<{ uid: number; weight: number }[]> {
      const list = (await storage("subtensorModule", "weights")(netuid, uid)) as Vec<ITuple<[u16, u16]>>;
      return list.map(([u, w]) => ({ uid: u.toNumber(), weight: w.toNumber() }));
    },

    async drandBeaconConfig(): Promise<BeaconInfo> {
      const c = (await storage("drand", "beaconConfig")()) as unknown as BeaconConfigCodec;
      return {
        publicKey: c.publicKey.toU8a(true),
        genesisTime: c.genesisTime.toNumber(),
        period: c.period.toNumber(),
        chainHash: u8aToHex(c.hash.toU8a(true), -1, false),
      };
    },

    /**
     * Timelocks `data` to the drand round `blocksUntilReveal` blocks from now and commits it, signed by
     * the hotkey. Resolves once included (even across a dropped socket); a chain-side failure throws a
     * ChainError naming the module error.
     */
    async setCommitment(
      signer: KeyringPair,
      netuid: number,
      data: string,
      opts: { blocksUntilReveal: number; blockTime: number; timeoutMs?: number; clock?: () => number },
    ): Promise<CommitmentReceipt> {
      const [beacon, head] = await Promise.all([client.drandBeaconConfig(), client.chainTime()]);
      const clockOffsetSeconds = ((opts.clock ?? Date.now)() - head.ms) / 1000;
      // Chain time, never the local clock: validators measure the delay from the commit block's
      // timestamp, which comes some blocks after this head (see aimSeconds).
      const revealRound = firstRoundFrom(head.ms / 1000 + aimSeconds(opts.blocksUntilReveal, opts, beacon), beacon);
      const encrypted = encrypt(encodeScaleText(data), revealRound, beacon.publicKey);
      if (encrypted.length > MAX_TIMELOCK_CIPHERTEXT_BYTES) {
        throw new ChainError(
          `the commitment encrypts to ${encrypted.length} bytes, over the chain's ${MAX_TIMELOCK_CIPHERTEXT_BYTES}-byte bound`,
          "oversize",
        );
      }
      const tx = call("commitments", "setCommitment")(netuid, {
        // Hex, not a Uint8Array: polkadot-js reads a Uint8Array for Bytes as already length-prefixed.
        fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypted), reveal_round: revealRound } }],
      });
      const inc = await submitTracked(conn, tx, signer, { log, label: "set_commitment", timeoutMs: opts.timeoutMs });
      assertSucceeded(api, inc, "set_commitment");
      // The chain ingests the round's pulse in the block after its publication and reveals in the next.
      const sealedSeconds = roundPublishedAt(revealRound, beacon) - (await client.blockTimestamp(inc.block)) / 1000;
      return {
        block: inc.block,
        hash: inc.hash,
        revealRound,
        estimatedRevealBlock: inc.block + Math.max(0, Math.ceil(sealedSeconds / opts.blockTime)) + 2,
        recovered: inc.recovered,
        sealedSeconds,
        clockOffsetSeconds,
        chainTimeBlock: head.block,
      };
    },

    /**
     * Sets `weights` (any non-negative floats) for `uids`, normalised to u16 as the chain expects. Uses
     * the timelocked commit when the subnet has commit-reveal on. Inside the rate limit it returns
     * `rate_limited` with the first block that will be accepted instead of sending.
     */
    async setWeights(
      signer: KeyringPair,
      netuid: number,
      uids: number[],
      weights: number[],
      versionKey: number,
      opts: { blockTime?: number; timeoutMs?: number } = {},
    ): Promise<WeightsOutcome> {
      const own = await client.uidOf(netuid, signer.address);
      if (own === null) throw new ChainError(`hotkey ${signer.address} is not registered on subnet ${netuid}`, "not_registered");
      const limited = async (): Promise<WeightsOutcome | null> => {
        const [rateLimit, last, block] = await Promise.all([client.weightsRateLimit(netuid), client.lastUpdate(netuid, own), client.currentBlock()]);
        if (last > 0 && block - last < rateLimit) return { status: "rate_limited", nextBlock: last + rateLimit, lastUpdate: last, rateLimit };
        return null;
      };
      const early = await limited();
      if (early) return early;

      const norm = normalizeU16(uids, weights);
      if (norm.uids.length === 0) throw new ChainError("every weight is zero; nothing to set", "invalid");
      const commitReveal = await client.commitRevealEnabled(netuid);
      let tx;
      let revealRound: bigint | undefined;
      if (commitReveal) {
        revealRound = await weightsRevealRound(netuid, opts.blockTime ?? DEFAULT_BLOCK_TIME);
        const payload = weightsCommitPayload(api.registry, signer.publicKey, norm.uids, norm.weights, versionKey);
        const beacon = await client.drandBeaconConfig();
        const version = ((await storage("subtensorModule", "commitRevealWeightsVersion")()) as u16).toNumber();
        const commit = u8aToHex(encrypt(payload, revealRound, beacon.publicKey));
        tx = call("subtensorModule", "commitTimelockedWeights")(netuid, commit, revealRound, version);
      } else {
        tx = call("subtensorModule", "setWeights")(netuid, norm.uids, norm.weights, versionKey);
      }
      const label = commitReveal ? "commit_timelocked_weights" : "set_weights";
      let inc: Inclusion;
      try {
        inc = await submitTracked(conn, tx, signer, { log, label, timeoutMs: opts.timeoutMs });
        assertSucceeded(api, inc, label);
      } catch (e) {
        // Another weight setter for this hotkey may have landed between our check and our block.
        if (e instanceof ChainError && e.module === "SubtensorModule.SettingWeightsTooFast") {
          const late = await limited();
          if (late) return late;
        }
        throw e;
      }
      return {
        status: "ok",
        mode: label,
        block: inc.block,
        hash: inc.hash,
        uids: norm.uids,
        weights: norm.weights,
        revealRound,
        recovered: inc.recovered,
      };
    },

    async close(): Promise<void> {
      await conn.close();
    },
  };

  /**
   * The drand round for a weights commit, as bittensor-drand's generate_commit picks it: a few blocks
   * into the epoch in which the chain will reveal (chain-spec §4.3), never below the last stored pulse.
   */
  async function weightsRevealRound(netuid: number, blockTime: number): Promise<bigint> {
    const [block, tempoC, periodC, beacon, lastStored] = await Promise.all([
      client.currentBlock(),
      storage("subtensorModule", "tempo")(netuid),
      storage("subtensorModule", "revealPeriodEpochs")(netuid),
      client.drandBeaconConfig(),
      storage("drand", "lastStoredRound")(),
    ]);
    const tempo = (tempoC as u16).toNumber();
    const revealPeriod = (periodC as u64).toNumber();
    const epoch = Math.floor((block + netuid + 1) / (tempo + 1));
    const firstRevealBlock = (epoch + revealPeriod) * (tempo + 1) - (netuid + 1);
    const seconds = (firstRevealBlock + 3 - block) * blockTime;
    const round = BigInt(Math.max(1, Math.floor((Date.now() / 1000 + seconds - beacon.genesisTime) / beacon.period)));
    const floor = (lastStored as u64).toBigInt();
    return round > floor ? round : floor + 1n;
  }

  return client;
}

export type ChainClient = Awaited<ReturnType<typeof connectChain>>;
