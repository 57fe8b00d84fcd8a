// Submitting one signed extrinsic and learning its fate, even across a dropped socket. The extrinsic is
// signed once with an explicit nonce and a mortal era, so its hash is known up front and re-sending the
// same bytes can never apply it twice. If the socket drops before inclusion is seen, we wait for the
// connection to return, look for the hash in the blocks produced since submission, re-send the bytes if
// it is in none of them, and keep looking until it lands or its era runs out.
import type { SubmittableExtrinsic } from "@polkadot/api/types";
import type { KeyringPair } from "@polkadot/keyring/types";
import type { EventRecord, ExtrinsicStatus, Hash } from "@polkadot/types/interfaces";
import type { Logger } from "../log.ts";
import type { Connection } from "./connection.ts";
import { ChainError, describeDispatchError, describeSubmitError } from "./errors.ts";

/** Blocks the signed extrinsic stays valid for; bounds how long an unknown outcome can stay unknown. */
export const MORTAL_PERIOD = 64;

export interface Inclusion {
  hash: string;
  block: number;
  blockHash: string;
  /** Events emitted by this extrinsic, in order. */
  events: EventRecord[];
  /** Whether the outcome was recovered after a reconnect rather than seen live. */
  recovered: boolean;
}

export interface SubmitOptions {
  log: Logger;
  /** Name for progress lines, e.g. `set_commitment`. */
  label: string;
  /** Overall limit on waiting for inclusion. */
  timeoutMs?: number;
}

type Api = Connection["api"];

class Dropped extends Error {}

async function eventsOf(api: Api, blockHash: string | Hash, index: number): Promise<EventRecord[]> {
  const at = await api.at(blockHash);
  const all = (await at.query.system!.events!()) as unknown as EventRecord[];
  return all.filter((r) => r.phase.isApplyExtrinsic && r.phase.asApplyExtrinsic.toNumber() === index);
}

/** Finds `hash` in blocks `from..to`; returns its block and index, or null. */
async function scan(api: Api, hash: string, from: number, to: number): Promise<{ block: number; blockHash: string; index: number } | null> {
  for (let n = from; n <= to; n++) {
    const blockHash = (await api.rpc.chain.getBlockHash(n)).toHex();
    const { block } = await api.rpc.chain.getBlock(blockHash);
    const index = block.extrinsics.findIndex((x) => x.hash.toHex() === hash);
    if (index >= 0) return { block: n, blockHash, index };
  }
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Throws a ChainError naming the module error when the extrinsic's events say it failed. */
export function assertSucceeded(api: Api, inc: Inclusion, label: string): void {
  const failed = inc.events.find((r) => r.event.section === "system" && r.event.method === "ExtrinsicFailed");
  if (!failed) return;
  const { name, message } = describeDispatchError(api.registry, (failed.event.data as unknown as [Parameters<typeof describeDispatchError>[1]])[0]);
  throw new ChainError(`${label} failed in block ${inc.block}: ${message}`, "dispatch", name);
}

/** Signs with the account's next nonce (or `nonce`) and a mortal era, ready for submitSigned. */
export async function signTx(
  conn: Connection,
  tx: SubmittableExtrinsic<"promise">,
  signer: KeyringPair,
  nonce?: number,
): Promise<SubmittableExtrinsic<"promise">> {
  await conn.whenConnected();
  const n = nonce ?? (await conn.api.rpc.system.accountNextIndex(signer.address)).toNumber();
  return tx.signAsync(signer, { nonce: n, era: MORTAL_PERIOD });
}

export async function submitTracked(
  conn: Connection,
  tx: SubmittableExtrinsic<"promise">,
  signer: KeyringPair,
  opts: SubmitOptions,
): Promise<Inclusion> {
  return submitSigned(conn, await signTx(conn, tx, signer), opts);
}

/** Sends an already-signed extrinsic and resolves with its inclusion, recovering across socket drops. */
export async function submitSigned(conn: Connection, tx: SubmittableExtrinsic<"promise">, opts: SubmitOptions): Promise<Inclusion> {
  const { log, label } = opts;
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  await conn.whenConnected();
  const startBlock = (await conn.api.rpc.chain.getHeader()).number.toNumber();
  const hash = tx.hash.toHex();
  const signedHex = tx.toHex();
  log.info(`submitting ${label}`, { hash, nonce: tx.nonce.toNumber(), block: startBlock });

  const live = await watchLive(conn, signedHex, hash, label, log, deadline).catch((e) => {
    if (e instanceof Dropped) return null;
    throw e;
  });
  if (live) return live;
  return recover(conn, signedHex, hash, startBlock, label, log, deadline);
}

/** Sends and follows the status subscription; rejects with Dropped if the socket goes away. */
function watchLive(conn: Connection, signedHex: string, hash: string, label: string, log: Logger, deadline: number): Promise<Inclusion> {
  const api = conn.api;
  return new Promise<Inclusion>((resolve, reject) => {
    let subscription: string | number | undefined;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      offDrop();
      if (subscription !== undefined && conn.isConnected()) {
        conn.provider.unsubscribe("author_extrinsicUpdate", "author_unwatchExtrinsic", subscription).catch(() => {});
      }
      fn();
    };
    const offDrop = conn.onDisconnect(() => finish(() => reject(new Dropped())));
    const timer = setTimeout(
      () => finish(() => reject(new ChainError(`${label} ${hash} was not included before the deadline`, "timeout"))),
      Math.max(0, deadline - Date.now()),
    );
    const onStatus = async (raw: unknown) => {
      const status = api.createType<ExtrinsicStatus>("ExtrinsicStatus", raw);
      if (status.isReady || status.isBroadcast || status.isFuture) {
        log.info(`${label}: waiting for inclusion`, { status: status.type });
      } else if (status.isInBlock || status.isFinalized) {
        const blockHash = (status.isInBlock ? status.asInBlock : status.asFinalized).toHex();
        try {
          const { block } = await api.rpc.chain.getBlock(blockHash);
          const index = block.extrinsics.findIndex((x) => x.hash.toHex() === hash);
          const events = index >= 0 ? await eventsOf(api, blockHash, index) : [];
          const number = block.header.number.toNumber();
          finish(() => resolve({ hash, block: number, blockHash, events, recovered: false }));
        } catch (e) {
          if (!conn.isConnected()) finish(() => reject(new Dropped()));
          else finish(() => reject(e));
        }
      } else if (status.isInvalid || status.isDropped || status.isUsurped || status.isFinalityTimeout) {
        finish(() => reject(new ChainError(`${label} ${hash} was ${status.type.toLowerCase()} by the node's pool`, "not_included")));
      }
    };
    // Straight to the provider rather than api.rpc: rpc-core prints every refusal to the console, and
    // a refusal here is an expected outcome that we turn into a sentence ourselves.
    conn.provider
      .subscribe("author_extrinsicUpdate", "author_submitAndWatchExtrinsic", [signedHex], (error: Error | null, raw: unknown) => {
        if (error) finish(() => reject(conn.isConnected() ? describeSubmitError(error) : new Dropped()));
        else void onStatus(raw);
      })
      .then((id) => {
        subscription = id;
        if (settled && conn.isConnected()) conn.provider.unsubscribe("author_extrinsicUpdate", "author_unwatchExtrinsic", id).catch(() => {});
      })
      .catch((e) => {
        if (!conn.isConnected()) finish(() => reject(new Dropped()));
        else finish(() => reject(describeSubmitError(e)));
      });
  });
}

async function recover(
  conn: Connection,
  signedHex: string,
  hash: string,
  startBlock: number,
  label: string,
  log: Logger,
  deadline: number,
): Promise<Inclusion> {
  const expiresAt = startBlock + MORTAL_PERIOD;
  let scanned = startBlock - 1;
  let resent = false;
  let nonceGone = false;
  log.warn(`${label}: connection lost before inclusion was seen; will find out what happened to ${hash}`);
  while (Date.now() < deadline) {
    try {
      await conn.whenConnected(Math.max(1, deadline - Date.now()));
      const api = conn.api;
      const head = (await api.rpc.chain.getHeader()).number.toNumber();
      const found = await scan(api, hash, scanned + 1, head);
      scanned = head;
      if (found) {
        const events = await eventsOf(api, found.blockHash, found.index);
        log.info(`${label}: found ${hash} in block ${found.block} after reconnecting`);
        return { hash, block: found.block, blockHash: found.blockHash, events, recovered: true };
      }
      if (nonceGone || head > expiresAt) {
        throw new ChainError(
          nonceGone
            ? `${label} ${hash} was not included: its nonce was taken by another transaction while the connection was down`
            : `${label} ${hash} was not included before its validity window (${MORTAL_PERIOD} blocks) ran out`,
          "not_included",
        );
      }
      if (!resent) {
        try {
          await conn.provider.send("author_submitExtrinsic", [signedHex]);
          log.info(`${label}: not in any block yet; re-sent the same signed bytes`);
        } catch (e) {
          const err = describeSubmitError(e);
          if (err.code === "stale_nonce") nonceGone = true; // included meanwhile, or replaced: the next scan tells
          else if (!/already imported|1013/i.test(err.message) && err.code !== "pool_conflict") throw err;
        }
        resent = true;
        continue;
      }
    } catch (e) {
      if (e instanceof ChainError && e.code !== "disconnected") throw e;
      if (conn.isConnected()) throw e;
    }
    await sleep(500);
  }
  throw new ChainError(`${label} ${hash}: outcome unknown after the connection dropped (gave up waiting)`, "timeout");
}
