// The only runtime-specific storage code: bun:sqlite on Bun, node:sqlite on Deno (and Node ≥ 22.5).
// Everything above it speaks this small interface with positional `?` parameters.
import { statSync } from "node:fs";

export type SqlValue = string | number | bigint | null | Uint8Array;
export type Row = Record<string, SqlValue>;

export interface Statement {
  run(...params: SqlValue[]): { changes: number; lastInsertRowid: number };
  get<T = Row>(...params: SqlValue[]): T | undefined;
  all<T = Row>(...params: SqlValue[]): T[];
}

export interface Database {
  exec(sql: string): void;
  prepare(sql: string): Statement;
  /** Runs fn in BEGIN IMMEDIATE … COMMIT; rolls back on throw. Nested calls join the outer transaction. */
  transaction<T>(fn: () => T): T;
  close(): void;
  readonly path: string;
  /**
   * Null while `path` still names the file this connection opened; otherwise what became of it (deleted,
   * replaced). SQLite goes on reading and writing an unlinked file, so nobody else would ever see it.
   */
  lost(): string | null;
}

/** The store cannot be used any more (gone, or writes failing past their retries): the process must stop. */
export class StoreFailure extends Error {
  override name = "StoreFailure";
}

interface Driver {
  exec(sql: string): void;
  prepare(sql: string): {
    run(...p: SqlValue[]): { changes: number | bigint; lastInsertRowid: number | bigint };
    get(...p: SqlValue[]): unknown;
    all(...p: SqlValue[]): unknown[];
    /** bun:sqlite only; node:sqlite finalizes a connection's statements when it closes. */
    finalize?(): void;
  };
  close(): void;
}

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

async function openDriver(path: string, readonly: boolean): Promise<Driver> {
  if (isBun) {
    const { Database } = await import("bun:sqlite");
    return new Database(path, readonly ? { readonly: true } : { create: true }) as unknown as Driver;
  }
  const { DatabaseSync } = await import("node:sqlite");
  return new DatabaseSync(path, { readOnly: readonly }) as unknown as Driver;
}

/**
 * SQLite's primary result code (SQLITE_BUSY = 5, SQLITE_CORRUPT = 11, SQLITE_NOTADB = 26, …) of an error
 * thrown by either driver, or null when the error did not come from SQLite.
 */
export function sqliteErrorCode(e: unknown): number | null {
  const err = e as { name?: unknown; errno?: unknown; errcode?: unknown; code?: unknown; message?: unknown } | null;
  const code = err?.errcode ?? (err?.name === "SQLiteError" ? err.errno : undefined);
  if (typeof code === "number") return code & 0xff;
  // Deno's node:sqlite gives only the message; SQLite's own text for a code (sqlite3_errstr) names it.
  if (err?.code === "ERR_SQLITE_ERROR" && typeof err.message === "string") return ERRSTR.find(([re]) => re.test(err.message as string))?.[1] ?? null;
  return null;
}

const ERRSTR: [RegExp, number][] = [
  [/^database is locked/, 5],
  [/^database table is locked/, 6],
  [/^attempt to write a readonly database/, 8],
  [/^disk I\/O error/, 10],
  [/^database disk image is malformed/, 11],
  [/^database or disk is full/, 13],
  [/^unable to open database file/, 14],
  [/^file is not a database/, 26],
];

// Uint8Array out of node:sqlite, Uint8Array (Buffer-like) out of bun: both already fine; rows from
// node:sqlite have a null prototype, which breaks nothing but toEqual in tests, so copy them.
const plain = (row: unknown) => (row == null ? undefined : { ...(row as object) });

export interface OpenOptions {
  /**
   * Opens without write access and sets no pragma that writes (journal_mode would): for readers such as
   * the API, which may run as a user that can read the store but not write it or its directory.
   */
  readonly?: boolean;
  /** SQLite's rollback journal instead of WAL: no -wal and -shm files beside it (the writer lock's file). */
  rollbackJournal?: boolean;
}

const identity = (path: string) => {
  const st = statSync(path);
  return `${st.dev}:${st.ino}`;
};

export async function openDatabase(path: string, opts: OpenOptions = {}): Promise<Database> {
  const driver = await openDriver(path, opts.readonly ?? false);
  const opened = identity(path);
  if (!opts.readonly && !opts.rollbackJournal) {
    driver.exec("PRAGMA journal_mode = WAL");
    driver.exec("PRAGMA synchronous = NORMAL");
  }
  driver.exec("PRAGMA foreign_keys = ON");
  driver.exec("PRAGMA busy_timeout = 5000");
  const cache = new Map<string, ReturnType<Driver["prepare"]>>();
  let depth = 0;
  const db: Database = {
    path,
    lost() {
      try {
        return identity(path) === opened ? null : `${path} was replaced by another file after it was opened`;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return code === "ENOENT" ? `${path} was deleted after it was opened` : `${path} cannot be looked at any more (${(e as Error).message})`;
      }
    },
    exec: (sql) => driver.exec(sql),
    prepare(sql) {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = driver.prepare(sql);
        cache.set(sql, stmt);
      }
      const s = stmt;
      return {
        run: (...p) => {
          const r = s.run(...p);
          return { changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
        },
        get: <T>(...p: SqlValue[]) => plain(s.get(...p)) as T | undefined,
        all: <T>(...p: SqlValue[]) => s.all(...p).map(plain) as T[],
      };
    },
    transaction(fn) {
      if (depth > 0) return fn();
      driver.exec("BEGIN IMMEDIATE");
      depth++;
      try {
        const out = fn();
        driver.exec("COMMIT");
        return out;
      } catch (e) {
        try {
          driver.exec("ROLLBACK");
        } catch {
          // SQLite already rolled back by itself (SQLITE_FULL, an I/O error, BUSY on COMMIT): keep the error that says why.
        }
        throw e;
      } finally {
        depth--;
      }
    },
    close: () => {
      // bun:sqlite closes a connection with live statements lazily (sqlite3_close_v2), so the last writer
      // would neither checkpoint nor remove its -wal and -shm until the statements were collected.
      for (const stmt of cache.values()) stmt.finalize?.();
      cache.clear();
      driver.close();
    },
  };
  return db;
}
