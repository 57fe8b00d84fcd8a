// The validator's store: every state transition is one transaction, so a validator killed at any
// instant resumes where it was. The API reads the same file (read-only queries live in api/).
import type { EvaluationResult, Submission } from "../contracts.ts";
import type { PluginState, Rejection, SinkPayload } from "../plugin.ts";
import { findLeader, rankLeaderboard, type Contender } from "../scoring.ts";
import { statSync } from "node:fs";
import { UserError } from "../errors.ts";
import { migrate } from "./migrations.ts";
import { openDatabase, type Database } from "./sqlite.ts";

export type SubmissionState = "received" | "fetched" | "evaluating" | "scored" | "failed" | "published";

export interface SubmissionRow {
  id: string;
  hotkey: string;
  uid: number | null;
  url: string;
  committed_hash: string | null;
  reveal_block: number;
  commit_block: number | null;
  source: string;
  state: SubmissionState;
  code_sha256: string | null;
  runs_planned: number | null;
  score: number | null;
  successful_runs: number | null;
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  updated_at: number;
  scored_at: number | null;
}

export interface RunRow {
  submission_id: string;
  run_index: number;
  state: "pending" | "running" | "done";
  attempts: number;
  task_id: string | null;
  seed: string | null;
  success: number | null;
  tps: number | null;
  mfu: number | null;
  wall_time_seconds: number | null;
  total_time_seconds: number | null;
  error_code: string | null;
  error_message: string | null;
  result_json: string | null;
  started_at: number | null;
  finished_at: number | null;
}

export interface LeaderboardEntry extends Contender {
  hotkey: string;
  uid: number | null;
  rank: number;
}

export interface PendingDelivery {
  event_id: string;
  sink: string;
  attempts: number;
  kind: string;
  payload: string;
  created_at: number;
}

export type Clock = () => number;

/** SQLite's "unable to open database file" and "file is not a database", said about this path. */
function openProblem(path: string, e: Error): string {
  const message = e?.message ?? String(e);
  if (message.includes(path)) return message;
  let kind: string | null = null;
  try {
    const st = statSync(path);
    kind = st.isDirectory() ? "a directory" : st.isFile() ? null : "not a regular file";
  } catch {
    // missing: SQLite would have created it, so the directory above is the problem
  }
  if (kind) return `cannot use ${path} as the database: it is ${kind}; point \`database\` at a file`;
  if (/not a database|malformed|corrupt/i.test(message)) return `${path} is not a Crusades database (SQLite says: ${message}); point \`database\` at a new file or at the validator's own store`;
  if (/unable to open|readonly|read-only|permission|access/i.test(message)) return `cannot open the database ${path}: ${message} (check that its directory exists and this user may write there)`;
  return `cannot open the database ${path}: ${message}`;
}

/** How many of the oldest queued submissions share the executor round-robin. */
const INTERLEAVE = 4;

export class Store {
  private constructor(
    readonly db: Database,
    private readonly now: Clock,
  ) {}

  /** Opens (creating when missing) and migrates the store; a path SQLite cannot use is a UserError naming it. */
  static async open(path: string, now: Clock = Date.now): Promise<Store> {
    let db: Database | undefined;
    try {
      db = await openDatabase(path);
      migrate(db);
      return new Store(db, now);
    } catch (e) {
      db?.close();
      throw new UserError(openProblem(path, e as Error), "bad_database");
    }
  }

  close() {
    this.db.close();
  }

  // ---- validator state -------------------------------------------------------------------------

  getState<T>(key: string): T | undefined {
    const row = this.db.prepare("SELECT value FROM validator_state WHERE key = ?").get<{ value: string }>(key);
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  setState(key: string, value: unknown) {
    this.db
      .prepare("INSERT INTO validator_state(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
      .run(key, JSON.stringify(value ?? null), this.now());
  }

  pluginState(namespace: string): PluginState {
    return {
      get: <T>(key: string) => this.getState<T>(`${namespace}:${key}`),
      set: (key, value) => this.setState(`${namespace}:${key}`, value),
    };
  }

  // ---- intake ----------------------------------------------------------------------------------

  /** Inserts a new submission in state `received`; returns false when the id was already known. */
  addSubmission(s: Submission): boolean {
    const t = this.now();
    const r = this.db
      .prepare(
        `INSERT INTO submissions(id, hotkey, uid, url, committed_hash, reveal_block, commit_block, source, state, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?) ON CONFLICT(id) DO NOTHING`,
      )
      .run(s.id, s.hotkey, s.uid, s.url, s.committedHash ?? null, s.revealBlock, s.commitBlock ?? null, s.source, t, t);
    return r.changes === 1;
  }

  hasSubmission(id: string): boolean {
    return this.db.prepare("SELECT 1 AS x FROM submissions WHERE id = ?").get(id) !== undefined;
  }

  addRejection(source: string, r: Rejection) {
    this.db
      .prepare("INSERT INTO rejections(source, hotkey, reason, detail, raw, block, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(source, r.hotkey, r.reason, r.detail, r.raw.slice(0, 2048), r.block, this.now());
  }

  submission(id: string): SubmissionRow | undefined {
    return this.db.prepare("SELECT * FROM submissions WHERE id = ?").get<SubmissionRow>(id);
  }

  submissionsIn(state: SubmissionState, limit = 100): SubmissionRow[] {
    return this.db.prepare("SELECT * FROM submissions WHERE state = ? ORDER BY created_at, id LIMIT ?").all<SubmissionRow>(state, limit);
  }

  code(sha256: string): Uint8Array | undefined {
    return this.db.prepare("SELECT bytes FROM code_blobs WHERE sha256 = ?").get<{ bytes: Uint8Array }>(sha256)?.bytes;
  }

  // ---- transitions -----------------------------------------------------------------------------

  private setSubmissionState(id: string, from: SubmissionState[], to: SubmissionState, extra: Record<string, unknown> = {}) {
    const cols = Object.keys(extra);
    const sets = ["state = ?", "updated_at = ?", ...cols.map((c) => `${c} = ?`)].join(", ");
    const r = this.db
      .prepare(`UPDATE submissions SET ${sets} WHERE id = ? AND state IN (${from.map(() => "?").join(",")})`)
      .run(to, this.now(), ...(Object.values(extra) as never[]), id, ...from);
    if (r.changes !== 1) throw new Error(`submission ${id}: cannot move to ${to} (expected state ${from.join("|")})`);
  }

  /** received → fetched → evaluating in one transaction: pins the exact bytes and queues the runs. */
  pinAndQueue(id: string, bytes: Uint8Array, sha256: string, runs: number) {
    this.db.transaction(() => {
      this.db
        .prepare("INSERT INTO code_blobs(sha256, bytes, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING")
        .run(sha256, bytes, bytes.byteLength, this.now());
      this.setSubmissionState(id, ["received"], "fetched", { code_sha256: sha256 });
      const insert = this.db.prepare("INSERT INTO runs(submission_id, run_index, state) VALUES (?, ?, 'pending')");
      for (let i = 0; i < runs; i++) insert.run(id, i);
      this.setSubmissionState(id, ["fetched"], "evaluating", { runs_planned: runs });
    });
  }

  /** Runs left `running` by a killed process: they never finished, so they run again. */
  requeueInterrupted(): number {
    return this.db.prepare("UPDATE runs SET state = 'pending' WHERE state = 'running'").run().changes;
  }

  /** Claims the next pending run with a fresh nonce and seed for this attempt. */
  claimRun(taskId: string, seed: string): (RunRow & { code_sha256: string }) | undefined {
    return this.db.transaction(() => {
      // Round-robin over the oldest few submissions: their runs interleave in time, so a load spike on the
      // host lands on several submissions' runs instead of deciding one submission's whole median.
      // (`+state` keeps SQLite on the primary key here; the state index would scan every pending run.)
      const next = this.db
        .prepare(
          `SELECT r.submission_id, r.run_index FROM runs r
           JOIN (SELECT s.id, s.created_at FROM submissions s WHERE s.state = 'evaluating'
                 AND EXISTS (SELECT 1 FROM runs p WHERE p.submission_id = s.id AND +p.state = 'pending')
                 ORDER BY s.created_at, s.id LIMIT ?) w ON w.id = r.submission_id
           WHERE +r.state = 'pending' ORDER BY r.run_index, w.created_at, w.id LIMIT 1`,
        )
        .get<{ submission_id: string; run_index: number }>(INTERLEAVE);
      if (!next) return undefined;
      this.db
        .prepare("UPDATE runs SET state = 'running', attempts = attempts + 1, task_id = ?, seed = ?, started_at = ? WHERE submission_id = ? AND run_index = ?")
        .run(taskId, seed, this.now(), next.submission_id, next.run_index);
      return this.db
        .prepare("SELECT r.*, s.code_sha256 FROM runs r JOIN submissions s ON s.id = r.submission_id WHERE r.submission_id = ? AND r.run_index = ?")
        .get<RunRow & { code_sha256: string }>(next.submission_id, next.run_index);
    });
  }

  /** running → done, recording the result. Only the attempt holding `taskId` may finish the run. */
  finishRun(submissionId: string, runIndex: number, taskId: string, r: EvaluationResult): boolean {
    const res = this.db
      .prepare(
        `UPDATE runs SET state = 'done', success = ?, tps = ?, mfu = ?, wall_time_seconds = ?, total_time_seconds = ?,
           error_code = ?, error_message = ?, result_json = ?, finished_at = ?
         WHERE submission_id = ? AND run_index = ? AND task_id = ? AND state = 'running'`,
      )
      .run(
        r.success ? 1 : 0,
        r.tps,
        r.mfu,
        r.wall_time_seconds,
        r.total_time_seconds,
        r.error?.code ?? null,
        r.error?.message ?? null,
        JSON.stringify(r),
        this.now(),
        submissionId,
        runIndex,
        taskId,
      );
    return res.changes === 1;
  }

  /** Puts a claimed run back (validator shutting down mid-run): it never finished, so it is not lost. */
  releaseRun(submissionId: string, runIndex: number, taskId: string) {
    this.db.prepare("UPDATE runs SET state = 'pending' WHERE submission_id = ? AND run_index = ? AND task_id = ? AND state = 'running'").run(submissionId, runIndex, taskId);
  }

  runs(submissionId: string): RunRow[] {
    return this.db.prepare("SELECT * FROM runs WHERE submission_id = ? ORDER BY run_index").all<RunRow>(submissionId);
  }

  /** Submissions in `evaluating` whose runs are all done. */
  readyToScore(): SubmissionRow[] {
    return this.db
      .prepare(
        `SELECT s.* FROM submissions s WHERE s.state = 'evaluating'
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.submission_id = s.id AND r.state != 'done') ORDER BY s.created_at, s.id`,
      )
      .all<SubmissionRow>();
  }

  // ---- scores, leader, outbox ------------------------------------------------------------------

  contenders(): LeaderboardEntry[] {
    return this.db
      .prepare(
        `SELECT id, hotkey, uid, score, reveal_block AS revealBlock, commit_block AS commitBlock, created_at AS createdAt FROM submissions
         WHERE score IS NOT NULL AND error_code IS NULL AND state IN ('scored','published')`,
      )
      .all<LeaderboardEntry>();
  }

  leaderboard(threshold: number): LeaderboardEntry[] {
    return rankLeaderboard(this.contenders(), threshold).map((e, i) => ({ ...e, rank: i + 1 }));
  }

  leader(threshold: number): LeaderboardEntry | null {
    return findLeader(this.contenders(), threshold);
  }

  private addEvent(id: string, payload: SinkPayload, sinks: string[]) {
    const t = this.now();
    this.db.prepare("INSERT INTO events(id, kind, payload, created_at) VALUES (?, ?, ?, ?)").run(id, payload.kind, JSON.stringify(payload), t);
    const d = this.db.prepare("INSERT INTO deliveries(event_id, sink, state, next_at) VALUES (?, ?, 'pending', ?)");
    for (const s of sinks) d.run(id, s, t);
  }

  /**
   * evaluating → scored | failed (a failure before evaluation too: received → failed), the leader
   * re-computed, and a score event queued for every sink — all in one transaction.
   */
  settle(
    id: string,
    outcome: { ok: true; score: number; successfulRuns: number } | { ok: false; code: string; message: string; successfulRuns: number },
    threshold: number,
    sinks: string[],
    makePayload: (row: SubmissionRow, leaderId: string | null) => SinkPayload,
  ) {
    this.db.transaction(() => {
      const before = this.leader(threshold);
      if (outcome.ok) {
        this.setSubmissionState(id, ["evaluating"], "scored", { score: outcome.score, successful_runs: outcome.successfulRuns, scored_at: this.now() });
      } else {
        this.setSubmissionState(id, ["received", "fetched", "evaluating"], "failed", {
          error_code: outcome.code,
          error_message: outcome.message,
          successful_runs: outcome.successfulRuns,
          scored_at: this.now(),
        });
      }
      const after = this.leader(threshold);
      if (after && after.id !== before?.id) {
        this.db
          .prepare("INSERT INTO leader_history(submission_id, hotkey, score, previous_submission_id, at) VALUES (?, ?, ?, ?, ?)")
          .run(after.id, after.hotkey, after.score, before?.id ?? null, this.now());
      }
      const row = this.submission(id)!;
      this.addEvent(`score:${id}`, makePayload(row, after?.id ?? null), sinks);
      if (sinks.length === 0) this.setSubmissionState(id, ["scored", "failed"], "published");
    });
  }

  /** Stores a weight decision and queues it for the sinks; returns its id. */
  recordWeights(
    decision: { block: number | null; uids: number[]; weights: number[]; reason: string; leaderSubmissionId: string | null },
    sinks: string[],
    genesisHash: string | null = null,
  ): number {
    return this.db.transaction(() => {
      const { lastInsertRowid } = this.db
        .prepare("INSERT INTO weight_decisions(block, uids_json, weights_json, reason, leader_submission_id, at, genesis_hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .run(decision.block, JSON.stringify(decision.uids), JSON.stringify(decision.weights), decision.reason, decision.leaderSubmissionId, this.now(), genesisHash);
      this.addEvent(`weights:${lastInsertRowid}`, { kind: "weights", decisionId: lastInsertRowid, ...decision }, sinks);
      return lastInsertRowid;
    });
  }

  /** The newest weights decision's block on the chain with this genesis hash, at or below `upTo`; 0 when none. */
  lastDecisionBlock(genesisHash: string | null, upTo = Number.MAX_SAFE_INTEGER): number {
    return this.db.prepare("SELECT MAX(block) AS b FROM weight_decisions WHERE genesis_hash IS ? AND block <= ?").get<{ b: number | null }>(genesisHash, upTo)?.b ?? 0;
  }

  /**
   * Ties the store to the chain it meets: decisions from before genesis hashes were recorded are
   * adopted by the first chain; returns the chain it was tied to before, when that was another one.
   */
  bindChain(genesisHash: string): { previous: string | null } {
    return this.db.transaction(() => {
      const previous = this.getState<string>("chain:genesis_hash") ?? null;
      if (previous === null) this.db.prepare("UPDATE weight_decisions SET genesis_hash = ? WHERE genesis_hash IS NULL").run(genesisHash);
      this.setState("chain:genesis_hash", genesisHash);
      return { previous: previous === genesisHash ? null : previous };
    });
  }

  pendingDeliveries(limit = 100): PendingDelivery[] {
    return this.db
      .prepare(
        `SELECT d.event_id, d.sink, d.attempts, e.kind, e.payload, e.created_at FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.state = 'pending' AND d.next_at <= ? ORDER BY e.created_at, d.event_id LIMIT ?`,
      )
      .all<PendingDelivery>(this.now(), limit);
  }

  /** Marks one delivery done; when it was the last pending delivery of a score event, the submission is published. */
  markDelivered(eventId: string, sink: string) {
    this.db.transaction(() => {
      this.db.prepare("UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL WHERE event_id = ? AND sink = ?").run(this.now(), eventId, sink);
      if (!eventId.startsWith("score:")) return;
      const open = this.db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ? AND state = 'pending'").get<{ n: number }>(eventId)!.n;
      if (open === 0) {
        const id = eventId.slice("score:".length);
        this.db.prepare("UPDATE submissions SET state = 'published', updated_at = ? WHERE id = ? AND state IN ('scored','failed')").run(this.now(), id);
      }
    });
  }

  markDeliveryFailed(eventId: string, sink: string, error: string, retryAt: number) {
    this.db.prepare("UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE event_id = ? AND sink = ?").run(error.slice(0, 1000), retryAt, eventId, sink);
  }

  counts(): Record<SubmissionState, number> {
    const out = { received: 0, fetched: 0, evaluating: 0, scored: 0, failed: 0, published: 0 } as Record<SubmissionState, number>;
    for (const r of this.db.prepare("SELECT state, COUNT(*) AS n FROM submissions GROUP BY state").all<{ state: SubmissionState; n: number }>()) out[r.state] = r.n;
    return out;
  }
}
