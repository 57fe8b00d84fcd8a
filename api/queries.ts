// Read-only queries behind the API, shaped as the documents in schemas.ts. The validator owns every
// write (core/storage/store.ts); this file only reads the same SQLite file.
import { findLeader, rankLeaderboard, type Contender } from "../core/scoring.ts";
import type { Database, SqlValue } from "../core/storage/sqlite.ts";
import type { RunRow, SubmissionRow } from "../core/storage/store.ts";
import {
  StoredValidatorStatus,
  VALIDATOR_STATUS_KEY,
  ValidatorState,
  type LeaderboardRow,
  type Outcome,
  type Overview,
  type PageQuery,
  type RejectionsQuery,
  type Run,
  type SubmissionDetail,
  type SubmissionSummary,
  type SubmissionsQuery,
  type ValidatorStatus,
} from "./schemas.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null | undefined) => (ms == null ? null : iso(ms));

/** Times the validator writes may be epoch milliseconds or ISO strings; anything else is unknown. */
function toMs(t: number | string | null | undefined): number | null {
  if (typeof t === "number") return Number.isFinite(t) ? t : null;
  if (typeof t === "string") {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

function outcomeOf(row: Pick<SubmissionRow, "state" | "score" | "error_code">): Outcome {
  if (row.error_code !== null || row.state === "failed") return "failed";
  if (row.score !== null) return "scored";
  return row.state === "evaluating" ? "evaluating" : "queued";
}

const OUTCOME_SQL: Record<Outcome, string> = {
  queued: "s.state IN ('received','fetched')",
  evaluating: "s.state = 'evaluating'",
  scored: "s.score IS NOT NULL AND s.error_code IS NULL",
  failed: "(s.error_code IS NOT NULL OR s.state = 'failed')",
};

const codeAvailable = (row: Pick<SubmissionRow, "state" | "code_sha256">) =>
  row.code_sha256 !== null && (row.state === "scored" || row.state === "failed" || row.state === "published");

type SummaryRow = SubmissionRow & { runs_done: number };

// Filtering runs by submission alone keeps SQLite on the primary key; adding `state = ?` to the WHERE
// lets it pick the runs_state index and scan every finished run once per submission.
const runsWith = (state: string) => `COALESCE((SELECT SUM(r.state = '${state}') FROM runs r WHERE r.submission_id = s.id), 0)`;
const SUMMARY_COLUMNS = `s.*, ${runsWith("done")} AS runs_done`;

function summary(row: SummaryRow): SubmissionSummary {
  return {
    id: row.id,
    hotkey: row.hotkey,
    uid: row.uid,
    source: row.source,
    state: row.state,
    outcome: outcomeOf(row),
    score: row.score,
    runs_planned: row.runs_planned,
    runs_done: row.runs_done,
    successful_runs: row.successful_runs,
    error_code: row.error_code,
    error_message: row.error_message,
    reveal_block: row.reveal_block,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    scored_at: isoOrNull(row.scored_at),
    code_available: codeAvailable(row),
  };
}

interface RankedContender extends Contender {
  hotkey: string;
  uid: number | null;
  successful_runs: number | null;
  runs_planned: number | null;
  scoredAt: number | null;
}

/** Everything derived from the store alone (not from the clock), kept until the store changes. */
interface Snapshot {
  key: string;
  /** Contenders in leaderboard (threshold) order. */
  rows: RankedContender[];
  rankById: Map<string, number>;
  /** Contenders by the time they were scored, and those times, for "the leader as of T". */
  byScoredAt: RankedContender[];
  scoredTimes: number[];
  leaderAsOf: Map<number, RankedContender | null>;
  leaderSince: number | null;
  totalMiners: number;
  states: { total: number; settled: number };
}

/** Index of the first element of a sorted array that is greater than x. */
function upperBound(sorted: number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function parseJson(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function parseNumberArray(text: string): number[] {
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? v.filter((x): x is number => typeof x === "number") : [];
  } catch {
    return [];
  }
}

export class ApiQueries {
  private snap: Snapshot | null = null;

  constructor(
    private readonly db: Database,
    private readonly threshold: number,
    private readonly now: () => number = Date.now,
  ) {}

  schemaVersion(): number {
    return Number(this.db.prepare("PRAGMA user_version").get<{ user_version: number }>()!.user_version);
  }

  /**
   * Changes whenever anything commits: data_version moves on another connection's commit (the validator
   * process), total_changes on this connection's own (when the API shares the validator's handle).
   */
  private version(): string {
    const dv = this.db.prepare("PRAGMA data_version").get<{ data_version: number }>()!.data_version;
    const tc = this.db.prepare("SELECT total_changes() AS n").get<{ n: number }>()!.n;
    return `${dv}:${tc}`;
  }

  /** The leaderboard and the store-wide counts, recomputed only when the store changed since the last call. */
  private ranked(): Snapshot {
    const key = this.version();
    if (this.snap?.key === key) return this.snap;
    const contenders = this.db
      .prepare(
        `SELECT id, hotkey, uid, score, reveal_block AS revealBlock, commit_block AS commitBlock, created_at AS createdAt, successful_runs, runs_planned,
                scored_at AS scoredAt
         FROM submissions WHERE score IS NOT NULL AND error_code IS NULL AND state IN ('scored','published')`,
      )
      .all<RankedContender>();
    const rows = rankLeaderboard(contenders, this.threshold);
    const byScoredAt = contenders.filter((c) => c.scoredAt !== null).sort((a, b) => a.scoredAt! - b.scoredAt!);
    const leader = rows[0];
    this.snap = {
      key,
      rows,
      rankById: new Map(rows.map((r, i) => [r.id, i + 1])),
      byScoredAt,
      scoredTimes: byScoredAt.map((c) => c.scoredAt!),
      leaderAsOf: new Map(),
      leaderSince: leader
        ? (this.db.prepare("SELECT MAX(at) AS at FROM leader_history WHERE submission_id = ?").get<{ at: number | null }>(leader.id)?.at ?? null)
        : null,
      totalMiners: this.db.prepare("SELECT COUNT(DISTINCT hotkey) AS n FROM submissions").get<{ n: number }>()!.n,
      states: this.stateCounts(),
    };
    return this.snap;
  }

  /**
   * The leader as it stood at time t: the same threshold walk over what had been scored by then. What
   * had been scored is a prefix of byScoredAt, so the answer is cached per prefix length.
   */
  private leaderAsOf(s: Snapshot, t: number): RankedContender | null {
    const k = upperBound(s.scoredTimes, t);
    let l = s.leaderAsOf.get(k);
    if (l === undefined) {
      l = findLeader(s.byScoredAt.slice(0, k), this.threshold);
      s.leaderAsOf.set(k, l);
    }
    return l;
  }

  overview(): Overview {
    const now = this.now();
    const since = now - DAY;
    const day = this.db
      .prepare("SELECT COUNT(*) AS n, COUNT(DISTINCT hotkey) AS miners FROM submissions WHERE created_at > ?")
      .get<{ n: number; miners: number }>(since)!;
    const snap = this.ranked();
    const { rows, states } = snap;
    const leader = rows[0] ?? null;
    const before = this.leaderAsOf(snap, since);
    return {
      total_submissions: states.total,
      submissions_24h: day.n,
      active_miners_24h: day.miners,
      total_miners: snap.totalMiners,
      scored_total: rows.length,
      failed_total: states.settled - rows.length,
      top_tps: leader?.score ?? null,
      leader: leader && { submission_id: leader.id, hotkey: leader.hotkey, uid: leader.uid, tps: leader.score, since: isoOrNull(snap.leaderSince) },
      leader_24h_ago_tps: before?.score ?? null,
      improvement_24h_pct: leader && before && before.score > 0 ? Math.round((leader.score / before.score - 1) * 10_000) / 100 : null,
      leader_threshold: this.threshold,
      generated_at: iso(now),
    };
  }

  /**
   * Submissions per stored state (a covering index). Settled = scored + failed + published; since a
   * settled submission either scored (it is a contender) or failed, failed = settled − contenders.
   */
  private stateCounts() {
    let total = 0;
    let settled = 0;
    for (const r of this.db.prepare("SELECT state, COUNT(*) AS n FROM submissions GROUP BY state").all<{ state: string; n: number }>()) {
      total += r.n;
      if (r.state === "scored" || r.state === "failed" || r.state === "published") settled += r.n;
    }
    return { total, settled };
  }

  private queueCounts() {
    const s = this.db
      .prepare(
        `SELECT COALESCE(SUM(state = 'received'), 0) AS received, COALESCE(SUM(state = 'fetched'), 0) AS fetched,
                COALESCE(SUM(state = 'evaluating'), 0) AS evaluating
         FROM submissions WHERE state IN ('received','fetched','evaluating')`,
      )
      .get<{ received: number; fetched: number; evaluating: number }>()!;
    const r = this.db
      .prepare(
        `SELECT COALESCE(SUM(r.state = 'pending'), 0) AS pending, COALESCE(SUM(r.state = 'running'), 0) AS running
         FROM runs r JOIN submissions s ON s.id = r.submission_id WHERE s.state = 'evaluating' AND r.state != 'done'`,
      )
      .get<{ pending: number; running: number }>()!;
    return { ...s, pending_runs: r.pending, running_runs: r.running };
  }

  validatorStatus(): ValidatorStatus {
    const now = this.now();
    const row = this.db.prepare("SELECT value, updated_at FROM validator_state WHERE key = ?").get<{ value: string; updated_at: number }>(VALIDATOR_STATUS_KEY);
    const parsed = row ? StoredValidatorStatus.safeParse(parseJson(row.value) ?? {}) : null;
    const st = parsed?.success ? parsed.data : null;
    const state = ValidatorState.safeParse(st?.state);
    const startedAt = toMs(st?.startedAt);
    const updatedAt = toMs(st?.updatedAt) ?? row?.updated_at ?? null;
    const running = state.success && state.data !== "stopped" && state.data !== "unknown";
    const runs = this.db
      .prepare("SELECT COUNT(*) AS n, COALESCE(SUM(success = 0), 0) AS failed FROM runs WHERE finished_at > ?")
      .get<{ n: number; failed: number }>(now - HOUR)!;
    const { states, rows } = this.ranked();
    const settled = states.settled;
    const scored = rows.length;
    return {
      state: st && state.success ? state.data : "unknown",
      reported: st !== null,
      heartbeat_age_seconds: updatedAt === null ? null : Math.max(0, (now - updatedAt) / 1000),
      hotkey: st?.hotkey ?? null,
      uid: st?.uid ?? null,
      network: st?.network ?? null,
      netuid: st?.netuid ?? null,
      pid: st?.pid ?? null,
      started_at: isoOrNull(startedAt),
      uptime_seconds: running && startedAt !== null ? Math.max(0, (now - startedAt) / 1000) : null,
      current: st?.current ? { submission_id: st.current.submissionId, run_index: st.current.runIndex, started_at: isoOrNull(toMs(st.current.startedAt)) } : null,
      slots: (running ? (st?.slots ?? []) : []).map((s) => ({
        id: s.id,
        host: s.host,
        devices: s.devices,
        state: s.state,
        run: s.run && { submission_id: s.run.submissionId, run_index: s.run.runIndex, started_at: isoOrNull(toMs(s.run.startedAt)) },
        failures: s.failures,
        reason: s.reason,
        runs: s.runs,
      })),
      last_weights_block: st?.lastWeightsBlock ?? null,
      runs_last_hour: runs.n,
      failed_runs_last_hour: runs.failed,
      queue: this.queueCounts(),
      success_rate: settled > 0 ? scored / settled : null,
      generated_at: iso(now),
    };
  }

  submissions(q: SubmissionsQuery) {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (q.state) {
      where.push("s.state = ?");
      params.push(q.state);
    }
    if (q.outcome) where.push(OUTCOME_SQL[q.outcome]);
    if (q.hotkey) {
      where.push("s.hotkey = ?");
      params.push(q.hotkey);
    }
    const w = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const total = this.db.prepare(`SELECT COUNT(*) AS n FROM submissions s ${w}`).get<{ n: number }>(...params)!.n;
    const items = this.db
      .prepare(
        `SELECT ${SUMMARY_COLUMNS} FROM (SELECT * FROM submissions s ${w} ORDER BY s.created_at DESC, s.id DESC LIMIT ? OFFSET ?) s
         ORDER BY s.created_at DESC, s.id DESC`,
      )
      .all<SummaryRow>(...params, q.limit, q.offset)
      .map(summary);
    return { items, total, limit: q.limit, offset: q.offset };
  }

  submission(id: string): SubmissionDetail | null {
    const row = this.db
      .prepare(`SELECT ${SUMMARY_COLUMNS}, b.size AS code_size FROM submissions s LEFT JOIN code_blobs b ON b.sha256 = s.code_sha256 WHERE s.id = ?`)
      .get<SummaryRow & { code_size: number | null }>(id);
    if (!row) return null;
    const open = codeAvailable(row);
    const rank = this.ranked().rankById.get(id) ?? null;
    return {
      ...summary(row),
      url: open ? row.url : null,
      committed_hash: row.committed_hash,
      code_sha256: row.code_sha256,
      code_size: row.code_size,
      rank,
      is_leader: rank === 1,
    };
  }

  runs(id: string, q: PageQuery) {
    const total = this.db.prepare("SELECT COUNT(*) AS n FROM runs WHERE submission_id = ?").get<{ n: number }>(id)!.n;
    const items = this.db
      .prepare("SELECT * FROM runs WHERE submission_id = ? ORDER BY run_index LIMIT ? OFFSET ?")
      .all<RunRow>(id, q.limit, q.offset)
      .map((r): Run => {
        const result = parseJson(r.result_json);
        const checks = Array.isArray(result?.checks) ? (result.checks as Run["checks"]) : [];
        const device = result?.device as { name?: unknown } | undefined;
        const diagnostics = result?.diagnostics as { slot?: unknown } | undefined;
        return {
          run_index: r.run_index,
          state: r.state,
          attempts: r.attempts,
          success: r.success === null ? null : r.success === 1,
          tps: r.tps,
          mfu: r.mfu,
          total_tokens: typeof result?.total_tokens === "number" ? result.total_tokens : null,
          wall_time_seconds: r.wall_time_seconds,
          total_time_seconds: r.total_time_seconds,
          error_code: r.error_code,
          error_message: r.error_message,
          checks,
          device: typeof device?.name === "string" ? device.name : null,
          slot: typeof diagnostics?.slot === "string" ? diagnostics.slot : null,
          data_sha256: typeof result?.data_sha256 === "string" ? result.data_sha256 : null,
          started_at: isoOrNull(r.started_at),
          finished_at: isoOrNull(r.finished_at),
        };
      });
    return { items, total, limit: q.limit, offset: q.offset };
  }

  /** The code once evaluation finished; otherwise why not, so the route can say it plainly. */
  code(id: string):
    | { ok: true; code: { submission_id: string; code_sha256: string; size: number; code: string } }
    | { ok: false; reason: "unknown" | "not_evaluated" | "no_code"; state?: string } {
    const row = this.db.prepare("SELECT state, code_sha256, error_code FROM submissions WHERE id = ?").get<Pick<SubmissionRow, "state" | "code_sha256" | "error_code">>(id);
    if (!row) return { ok: false, reason: "unknown" };
    if (row.code_sha256 === null) return { ok: false, reason: row.state === "received" ? "not_evaluated" : "no_code", state: row.state };
    if (!codeAvailable(row)) return { ok: false, reason: "not_evaluated", state: row.state };
    const blob = this.db.prepare("SELECT bytes, size FROM code_blobs WHERE sha256 = ?").get<{ bytes: Uint8Array; size: number }>(row.code_sha256);
    if (!blob) return { ok: false, reason: "no_code", state: row.state };
    return { ok: true, code: { submission_id: id, code_sha256: row.code_sha256, size: blob.size, code: new TextDecoder().decode(blob.bytes) } };
  }

  leaderboard(q: PageQuery) {
    const { rows } = this.ranked();
    const items = rows.slice(q.offset, q.offset + q.limit).map(
      (r, i): LeaderboardRow => ({
        rank: q.offset + i + 1,
        submission_id: r.id,
        hotkey: r.hotkey,
        uid: r.uid,
        tps: r.score,
        successful_runs: r.successful_runs,
        runs_planned: r.runs_planned,
        reveal_block: r.revealBlock,
        created_at: iso(r.createdAt),
        is_leader: q.offset + i === 0,
      }),
    );
    return { items, total: rows.length, limit: q.limit, offset: q.offset, leader_threshold: this.threshold };
  }

  history(q: PageQuery) {
    const total = this.db.prepare("SELECT COUNT(*) AS n FROM leader_history").get<{ n: number }>()!.n;
    const items = this.db
      .prepare("SELECT submission_id, hotkey, score, previous_submission_id, at FROM leader_history ORDER BY at DESC, id DESC LIMIT ? OFFSET ?")
      .all<{ submission_id: string; hotkey: string; score: number; previous_submission_id: string | null; at: number }>(q.limit, q.offset)
      .reverse()
      .map((h) => ({ submission_id: h.submission_id, hotkey: h.hotkey, tps: h.score, previous_submission_id: h.previous_submission_id, at: iso(h.at) }));
    return { items, total, limit: q.limit, offset: q.offset };
  }

  queue(q: PageQuery) {
    const now = this.now();
    const counts = this.queueCounts();
    const agg = this.db
      .prepare("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM submissions WHERE state IN ('received','fetched','evaluating')")
      .get<{ n: number; oldest: number | null }>()!;
    // The order the validator claims work in (Store.claimRun): oldest submission first.
    const items = this.db
      .prepare(
        `SELECT s.id, s.hotkey, s.uid, s.state, s.runs_planned, s.created_at,
                ${runsWith("done")} AS runs_done, ${runsWith("running")} AS runs_running
         FROM submissions s WHERE s.state IN ('received','fetched','evaluating') ORDER BY s.created_at, s.id LIMIT ? OFFSET ?`,
      )
      .all<{ id: string; hotkey: string; uid: number | null; state: "received" | "fetched" | "evaluating"; runs_planned: number | null; created_at: number; runs_done: number; runs_running: number }>(q.limit, q.offset)
      .map((s, i) => ({
        position: q.offset + i + 1,
        submission_id: s.id,
        hotkey: s.hotkey,
        uid: s.uid,
        state: s.state,
        runs_planned: s.runs_planned,
        runs_done: s.runs_done,
        runs_running: s.runs_running,
        created_at: iso(s.created_at),
        waiting_seconds: Math.max(0, (now - s.created_at) / 1000),
      }));
    return {
      items,
      total: agg.n,
      limit: q.limit,
      offset: q.offset,
      counts,
      oldest_waiting_seconds: agg.oldest === null ? null : Math.max(0, (now - agg.oldest) / 1000),
    };
  }

  weights(q: PageQuery) {
    const total = this.db.prepare("SELECT COUNT(*) AS n FROM weight_decisions").get<{ n: number }>()!.n;
    const items = this.db
      .prepare("SELECT * FROM weight_decisions ORDER BY at DESC, id DESC LIMIT ? OFFSET ?")
      .all<{ id: number; block: number | null; uids_json: string; weights_json: string; reason: string; leader_submission_id: string | null; at: number }>(q.limit, q.offset)
      .map((w) => ({
        id: w.id,
        block: w.block,
        uids: parseNumberArray(w.uids_json),
        weights: parseNumberArray(w.weights_json),
        reason: w.reason,
        leader_submission_id: w.leader_submission_id,
        at: iso(w.at),
      }));
    return { items, total, limit: q.limit, offset: q.offset };
  }

  rejections(q: RejectionsQuery) {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (q.source) {
      where.push("source = ?");
      params.push(q.source);
    }
    if (q.hotkey) {
      where.push("hotkey = ?");
      params.push(q.hotkey);
    }
    const w = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const total = this.db.prepare(`SELECT COUNT(*) AS n FROM rejections ${w}`).get<{ n: number }>(...params)!.n;
    const items = this.db
      .prepare(`SELECT id, source, hotkey, reason, detail, raw, block, at FROM rejections ${w} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?`)
      .all<{ id: number; source: string; hotkey: string | null; reason: string; detail: string; raw: string; block: number | null; at: number }>(...params, q.limit, q.offset)
      .map((r) => ({ ...r, at: iso(r.at) }));
    return { items, total, limit: q.limit, offset: q.offset };
  }
}
