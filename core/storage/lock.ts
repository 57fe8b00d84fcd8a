// One writer per store: a validator holds a write transaction open on a small SQLite file beside its store
// (`<store>.lock`) for as long as it runs. SQLite takes that lock with fcntl, so the kernel drops it when the
// process dies however it dies, and it works the same through bun:sqlite and node:sqlite. The holder's pid,
// host and start time sit in that file, readable by the process that is refused.
import { hostname } from "node:os";
import { UserError } from "../errors.ts";
import { openDatabase, sqliteErrorCode, type Database } from "./sqlite.ts";

const SQLITE_BUSY = 5;

export interface WriterLock {
  readonly path: string;
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
  since: number;
}

const busy = (e: unknown) => sqliteErrorCode(e) === SQLITE_BUSY;

function refusal(storePath: string, lockPath: string, db: Database): UserError {
  let holder: Holder | undefined;
  try {
    holder = db.prepare("SELECT pid, host, since FROM holder WHERE id = 1").get<Holder>();
  } catch {
    // the holder has not written itself down yet
  }
  const who = holder ? `pid ${holder.pid} on ${holder.host}, since ${new Date(holder.since).toISOString()}` : "a process that has not said who it is yet";
  return new UserError(
    `another validator is writing ${storePath} (${who}; lock ${lockPath}): stop it first, or give this one a database of its own`,
    "store_locked",
  );
}

/** Takes the store's writer lock or throws a UserError (code `store_locked`) naming the process that holds it. */
export async function lockStore(storePath: string): Promise<WriterLock> {
  const path = `${storePath}.lock`;
  const db = await openDatabase(path, { rollbackJournal: true });
  try {
    // A refused process answers at once instead of queueing behind a lock that is held for days.
    db.exec("PRAGMA busy_timeout = 0");
    db.exec("CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, since INTEGER NOT NULL)");
    db.exec("BEGIN IMMEDIATE");
    db.prepare("INSERT OR REPLACE INTO holder (id, pid, host, since) VALUES (1, ?, ?, ?)").run(process.pid, hostname(), Date.now());
    db.exec("COMMIT");
    // Held from here until release or death. Another process slipping in between COMMIT and this BEGIN
    // wins the lock instead, and this one is refused in its name: still one writer.
    db.exec("BEGIN IMMEDIATE");
  } catch (e) {
    if (busy(e)) {
      const refused = refusal(storePath, path, db);
      db.close();
      throw refused;
    }
    db.close();
    throw new UserError(`cannot lock the database ${storePath} for writing (${path}): ${(e as Error).message}`, "bad_database");
  }
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      try {
        db.exec("ROLLBACK");
      } finally {
        db.close();
      }
    },
  };
}
