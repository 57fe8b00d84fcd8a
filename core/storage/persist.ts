// A result that exists is stored, or the process stops loudly. A write that fails for a while (the store
// locked by another connection past the busy timeout, the disk full, an I/O error) is retried with
// backoff, each failure logged; one that cannot succeed, or is still failing at the deadline, becomes a
// StoreFailure, which stops the validator so that its supervisor restarts it and the restart re-queues the
// run. Never a dropped result beside a run left `running`.
import type { Logger } from "../log.ts";
import { sqliteErrorCode, StoreFailure, type Database } from "./sqlite.ts";

/** SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL: another try may get through. */
const TRANSIENT = new Set([5, 6, 10, 13]);

export interface PersistOptions {
  log: Logger;
  signal?: AbortSignal;
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** How long a write may keep failing before the process stops (default 5 minutes). */
  giveUpMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** Runs `write` (one transaction) until it succeeds; throws StoreFailure when it cannot. */
export async function persist<T>(db: Database, what: string, write: () => T, o: PersistOptions): Promise<T> {
  const started = Date.now();
  const giveUpMs = o.giveUpMs ?? 300_000;
  for (let attempt = 1; ; attempt++) {
    const lost = db.lost();
    if (lost) throw new StoreFailure(`the store is gone: ${lost}; ${what} could not be stored`);
    try {
      return write();
    } catch (e) {
      const code = sqliteErrorCode(e);
      if (code === null) throw e;
      const message = (e as Error).message;
      if (!TRANSIENT.has(code)) throw new StoreFailure(`cannot store ${what}: ${message} (SQLite code ${code})`);
      const waited = Date.now() - started;
      if (waited >= giveUpMs || o.signal?.aborted) {
        throw new StoreFailure(
          `could not store ${what} after ${attempt} attempts over ${Math.round(waited / 1000)} s: ${message}${o.signal?.aborted ? " (shutting down)" : ""}`,
        );
      }
      const delay = Math.min(o.maxDelayMs ?? 30_000, (o.firstDelayMs ?? 500) * 2 ** (attempt - 1), giveUpMs - waited);
      o.log.warn(`storing ${what} failed (attempt ${attempt}): ${message}; retrying in ${(delay / 1000).toFixed(1)} s, giving up ${Math.round((giveUpMs - waited) / 1000)} s from now`);
      await sleep(delay, o.signal);
    }
  }
}
