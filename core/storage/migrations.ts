// Numbered migrations, applied in order inside one transaction each; `PRAGMA user_version` records
// the last one applied. Append new entries; never edit one that has shipped.
import type { Database } from "./sqlite.ts";

export const migrations: string[] = [
  // 1: the validator's store
  `
  CREATE TABLE code_blobs (
    sha256      TEXT PRIMARY KEY,
    bytes       BLOB NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
  );

  -- received → fetched → evaluating → scored | failed → published
  CREATE TABLE submissions (
    id              TEXT PRIMARY KEY,
    hotkey          TEXT NOT NULL,
    uid             INTEGER,
    url             TEXT NOT NULL,
    committed_hash  TEXT,
    reveal_block    INTEGER NOT NULL,
    source          TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('received','fetched','evaluating','scored','failed','published')),
    code_sha256     TEXT REFERENCES code_blobs(sha256),
    runs_planned    INTEGER,
    score           REAL,
    successful_runs INTEGER,
    error_code      TEXT,
    error_message   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    scored_at       INTEGER
  );
  CREATE INDEX submissions_state ON submissions(state, created_at);
  CREATE INDEX submissions_hotkey ON submissions(hotkey, reveal_block);
  CREATE INDEX submissions_created ON submissions(created_at);
  CREATE INDEX submissions_score ON submissions(score);

  -- pending → running → done; a run found 'running' at start was interrupted and runs again
  CREATE TABLE runs (
    submission_id     TEXT NOT NULL REFERENCES submissions(id),
    run_index         INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending','running','done')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    task_id           TEXT,
    seed              TEXT,
    success           INTEGER,
    tps               REAL,
    mfu               REAL,
    wall_time_seconds REAL,
    total_time_seconds REAL,
    error_code        TEXT,
    error_message     TEXT,
    result_json       TEXT,
    started_at        INTEGER,
    finished_at       INTEGER,
    PRIMARY KEY (submission_id, run_index)
  );
  CREATE INDEX runs_state ON runs(state);
  CREATE INDEX runs_finished ON runs(finished_at);

  CREATE TABLE leader_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    hotkey        TEXT NOT NULL,
    score         REAL NOT NULL,
    previous_submission_id TEXT,
    at            INTEGER NOT NULL
  );

  CREATE TABLE weight_decisions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    block         INTEGER,
    uids_json     TEXT NOT NULL,
    weights_json  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    leader_submission_id TEXT,
    at            INTEGER NOT NULL
  );

  -- transactional outbox: an event is written in the same transaction as the change it reports,
  -- and each sink's delivery is tracked separately
  CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE deliveries (
    event_id    TEXT NOT NULL REFERENCES events(id),
    sink        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending','delivered')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    delivered_at INTEGER,
    PRIMARY KEY (event_id, sink)
  );
  CREATE INDEX deliveries_pending ON deliveries(state, next_at);

  CREATE TABLE rejections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    hotkey      TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    raw         TEXT NOT NULL,
    block       INTEGER,
    at          INTEGER NOT NULL
  );
  CREATE INDEX rejections_at ON rejections(at);

  CREATE TABLE validator_state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
  );
  `,
  // 2: weight decisions belong to one chain, named by its genesis hash (NULL: recorded before this, adopted
  // by the first chain the validator meets), so a reset chain or another network starts its own clock
  `
  ALTER TABLE weight_decisions ADD COLUMN genesis_hash TEXT;
  CREATE INDEX weight_decisions_chain ON weight_decisions(genesis_hash, block);
  `,
  // 3: the block a chain submission was committed in (NULL where the source does not know one): priority
  // goes by it, not by the reveal block, which the committer chooses (issue 21)
  `
  ALTER TABLE submissions ADD COLUMN commit_block INTEGER;
  `,
];

export function migrate(db: Database): number {
  const current = Number(db.prepare("PRAGMA user_version").get<{ user_version: number }>()?.user_version ?? 0);
  if (current > migrations.length) {
    throw new Error(`database ${db.path} is at schema version ${current}, newer than this build knows (${migrations.length}); upgrade Crusades`);
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.exec(`PRAGMA user_version = ${v + 1}`);
    });
  }
  return migrations.length;
}
