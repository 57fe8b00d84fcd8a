// `--state FILE`: the head state, the block headers and the genesis settings in SQLite, written once per
// block in one transaction, so a restarted localnet continues the same chain (same genesis hash,
// same beacon key, same nonces). Older blocks' states are not kept, as on a pruning node.
import { openDatabase, type Database } from "../../core/storage/sqlite.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS storage (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, header BLOB NOT NULL, extrinsics TEXT NOT NULL);
`;

export interface SavedChain {
  meta: Record<string, string>;
  storage: [string, Uint8Array][];
  blocks: { number: number; hash: string; header: Uint8Array; extrinsics: string[] }[];
}

export class StateFile {
  private constructor(readonly db: Database) {}

  static async open(path: string): Promise<StateFile> {
    const db = await openDatabase(path);
    db.exec(SCHEMA);
    return new StateFile(db);
  }

  /** The saved chain, or null for a new file. */
  load(): SavedChain | null {
    const blocks = this.db.prepare("SELECT number, hash, header, extrinsics FROM blocks ORDER BY number").all<{
      number: number;
      hash: string;
      header: Uint8Array;
      extrinsics: string;
    }>();
    if (!blocks.length) return null;
    blocks.forEach((b, i) => {
      if (Number(b.number) !== i) throw new Error(`${this.db.path}: block ${i} is missing; the state file is damaged`);
    });
    const meta = Object.fromEntries(this.db.prepare("SELECT k, v FROM meta").all<{ k: string; v: string }>().map((r) => [r.k, r.v]));
    const storage = this.db
      .prepare("SELECT key, value FROM storage")
      .all<{ key: string; value: Uint8Array }>()
      .map((r) => [r.key, new Uint8Array(r.value)] as [string, Uint8Array]);
    return {
      meta,
      storage,
      blocks: blocks.map((b) => ({ number: Number(b.number), hash: b.hash, header: new Uint8Array(b.header), extrinsics: JSON.parse(b.extrinsics) })),
    };
  }

  saveMeta(meta: Record<string, string>): void {
    this.db.transaction(() => {
      for (const [k, v] of Object.entries(meta)) this.db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)").run(k, v);
    });
  }

  saveBlock(block: { number: number; hash: string; header: Uint8Array; extrinsics: string[] }, changed: [string, Uint8Array | undefined][]): void {
    this.db.transaction(() => {
      for (const [key, value] of changed) {
        if (value === undefined) this.db.prepare("DELETE FROM storage WHERE key = ?").run(key);
        else this.db.prepare("INSERT OR REPLACE INTO storage (key, value) VALUES (?, ?)").run(key, value);
      }
      this.db
        .prepare("INSERT INTO blocks (number, hash, header, extrinsics) VALUES (?, ?, ?, ?)")
        .run(block.number, block.hash, block.header, JSON.stringify(block.extrinsics));
    });
  }

  close(): void {
    this.db.close();
  }
}
