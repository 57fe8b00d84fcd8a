// The public API's contract: every query and response document, defined once. The OpenAPI document is
// generated from these, the routes validate against them, and clients (scripts/tui.ts, the web page,
// third parties) can import the inferred types. Field names are snake_case like the evaluation documents;
// times are ISO 8601 in UTC; TPS is tokens per second.
import { z } from "zod";

const Timestamp = z.iso.datetime().describe("ISO 8601 time in UTC");
const Count = z.number().int().nonnegative();
const Rate = z.number().min(0).max(1);

export const SUBMISSION_STATES = ["received", "fetched", "evaluating", "scored", "failed", "published"] as const;
export const SubmissionState = z.enum(SUBMISSION_STATES);

/**
 * What happened to a submission, independent of delivery: `published` only says the sinks were told,
 * so it is folded back into `scored` or `failed` here.
 */
export const Outcome = z.enum(["queued", "evaluating", "scored", "failed"]);
export type Outcome = z.infer<typeof Outcome>;

// ---- queries -----------------------------------------------------------------------------------

// Query integers are plain decimal digits. Number() would also take "", "0x10", "1e2" and " 5", so a typo
// would become a different page instead of a 400.
const digits = (v: unknown) => (typeof v === "string" && /^[0-9]{1,15}$/.test(v) ? Number(v) : v);
const queryInt = (min: number, max: number, fallback: number) =>
  z.preprocess(digits, z.number({ error: "expected a whole number in decimal digits" }).int().min(min).max(max).default(fallback));

const page = (defaultLimit: number, maxLimit: number) => ({
  limit: queryInt(1, maxLimit, defaultLimit).describe(`items per page, 1–${maxLimit}`),
  offset: queryInt(0, 1_000_000_000, 0).describe("items to skip"),
});

export const PageQuery = z.strictObject(page(50, 500));
export type PageQuery = z.infer<typeof PageQuery>;

export const SubmissionsQuery = z.strictObject({
  ...page(20, 500),
  state: SubmissionState.optional().describe("only submissions in this stored state"),
  outcome: Outcome.optional().describe("only submissions with this outcome (published counts as scored or failed)"),
  hotkey: z.string().min(1).max(128).optional().describe("only this miner's submissions"),
});
export type SubmissionsQuery = z.infer<typeof SubmissionsQuery>;

export const HistoryQuery = z.strictObject(page(100, 1000));

export const RejectionsQuery = z.strictObject({
  ...page(50, 500),
  source: z.string().min(1).max(64).optional().describe("only rejections from this source plugin"),
  hotkey: z.string().min(1).max(128).optional(),
});
export type RejectionsQuery = z.infer<typeof RejectionsQuery>;

export const IdParams = z.object({ id: z.string().min(1).max(200).describe("submission id (URL-encode it: ids contain ':')") });

// ---- responses ---------------------------------------------------------------------------------

export const ApiError = z.object({
  error: z.string().describe("stable machine-readable code"),
  message: z.string().describe("what went wrong, for a person"),
});
export type ApiError = z.infer<typeof ApiError>;

const pageOf = <T extends z.ZodType>(item: T) =>
  z
    .object({ items: z.array(item), total: Count.describe("items matching, across all pages"), limit: Count, offset: Count })
    .describe("one page of a list");

export const Health = z
  .object({
    status: z.literal("ok"),
    schema_version: Count.describe("the store's migration version"),
    time: Timestamp,
  })
  .describe("the API is up and its store passed the last integrity check");

export const LeaderSummary = z.object({
  submission_id: z.string(),
  hotkey: z.string(),
  uid: Count.nullable(),
  tps: z.number(),
  since: Timestamp.nullable().describe("when it took the lead (null when the history does not record it)"),
});

export const Overview = z.object({
  total_submissions: Count,
  submissions_24h: Count,
  active_miners_24h: Count.describe("distinct hotkeys that submitted in the last 24 h"),
  total_miners: Count,
  scored_total: Count.describe("submissions with a score"),
  failed_total: Count,
  top_tps: z.number().nullable().describe("the leader's TPS under the leader threshold; null when nobody has scored"),
  leader: LeaderSummary.nullable(),
  leader_24h_ago_tps: z.number().nullable().describe("the leader's TPS 24 h ago; null when there was no leader then"),
  improvement_24h_pct: z.number().nullable().describe("(top_tps / leader_24h_ago_tps − 1) × 100; null without both"),
  leader_threshold: z.number().describe("a challenger must beat the leader by this fraction (0.01 = 1%)"),
  generated_at: Timestamp,
});
export type Overview = z.infer<typeof Overview>;

export const QueueCounts = z.object({
  received: Count,
  fetched: Count,
  evaluating: Count,
  pending_runs: Count,
  running_runs: Count,
});

export const ValidatorState = z.enum(["idle", "evaluating", "setting_weights", "stopped", "unknown"]);

export const SlotView = z.object({
  id: z.string().describe("e.g. gpu:0, gpu:0,1, cpu:0-3, or host/gpu:1 for a slot on another machine"),
  host: z.string().nullable().describe("the machine the slot is on; null for the validator's own"),
  devices: z.string().describe("the slot's devices in words"),
  state: z.enum(["idle", "busy", "out"]).describe("out: taken out of the pool, see reason"),
  run: z.object({ submission_id: z.string(), run_index: Count, started_at: Timestamp.nullable() }).nullable().describe("the run the slot holds now"),
  failures: Count.describe("runs in a row that failed on the validator's side (harness_error, executor_error)"),
  reason: z.string().nullable().describe("why the slot left the pool"),
  runs: Count.describe("runs finished on this slot since the validator started"),
});
export type SlotView = z.infer<typeof SlotView>;

export const ValidatorStatus = z.object({
  state: ValidatorState.describe("as last reported by the validator; unknown when it never reported"),
  reported: z.boolean().describe("whether the validator has written its status to this store"),
  heartbeat_age_seconds: z.number().nonnegative().nullable().describe("seconds since the validator last updated its status"),
  hotkey: z.string().nullable(),
  uid: Count.nullable(),
  network: z.string().nullable(),
  netuid: Count.nullable(),
  pid: Count.nullable(),
  started_at: Timestamp.nullable(),
  uptime_seconds: z.number().nonnegative().nullable().describe("of the validator process; null when stopped or unknown"),
  current: z
    .object({ submission_id: z.string(), run_index: Count, started_at: Timestamp.nullable() })
    .nullable()
    .describe("the run being evaluated now (the first, when several are)"),
  slots: z.array(SlotView).describe("the executor's device pool: one evaluation per slot at a time; empty when the validator reported none"),
  last_weights_block: Count.nullable(),
  runs_last_hour: Count.describe("runs that finished in the last hour"),
  failed_runs_last_hour: Count,
  queue: QueueCounts,
  success_rate: Rate.nullable().describe("share of settled submissions that scored; null when none settled"),
  generated_at: Timestamp,
});
export type ValidatorStatus = z.infer<typeof ValidatorStatus>;

export const SubmissionSummary = z.object({
  id: z.string(),
  hotkey: z.string(),
  uid: Count.nullable(),
  source: z.string(),
  state: SubmissionState,
  outcome: Outcome,
  score: z.number().nullable().describe("median TPS of the successful runs"),
  runs_planned: Count.nullable(),
  runs_done: Count,
  successful_runs: Count.nullable(),
  error_code: z.string().nullable(),
  error_message: z.string().nullable(),
  reveal_block: Count.describe("chain block the code was revealed at; the gists source stores the revision's commit time in unix seconds"),
  created_at: Timestamp,
  updated_at: Timestamp,
  scored_at: Timestamp.nullable(),
  code_available: z.boolean().describe("whether /code serves the code (only once evaluation finished)"),
});
export type SubmissionSummary = z.infer<typeof SubmissionSummary>;
export const SubmissionPage = pageOf(SubmissionSummary);

export const SubmissionDetail = SubmissionSummary.extend({
  url: z.string().nullable().describe("where the code was fetched from; hidden until evaluation finished"),
  committed_hash: z.string().nullable(),
  code_sha256: z.string().nullable().describe("sha256 of the pinned code bytes"),
  code_size: Count.nullable(),
  rank: Count.nullable().describe("position on the leaderboard (1 = leader); null when not on it"),
  is_leader: z.boolean(),
});
export type SubmissionDetail = z.infer<typeof SubmissionDetail>;

export const Run = z.object({
  run_index: Count,
  state: z.enum(["pending", "running", "done"]),
  attempts: Count,
  success: z.boolean().nullable(),
  tps: z.number().nullable(),
  mfu: z.number().nullable(),
  total_tokens: Count.nullable(),
  wall_time_seconds: z.number().nullable(),
  total_time_seconds: z.number().nullable(),
  error_code: z.string().nullable(),
  error_message: z.string().nullable(),
  checks: z.array(z.object({ name: z.string(), passed: z.boolean(), value: z.number().nullable(), bound: z.string().nullable(), detail: z.string().optional() })),
  device: z.string().nullable().describe("device name the run used"),
  slot: z.string().nullable().describe("the slot of the executor's device pool the run held (see the validator status)"),
  data_sha256: z.string().nullable().describe("sha256 of the token shard the run's batches were cut from; null for synthetic tokens"),
  started_at: Timestamp.nullable(),
  finished_at: Timestamp.nullable(),
});
export type Run = z.infer<typeof Run>;
export const RunPage = pageOf(Run);

export const Code = z.object({
  submission_id: z.string(),
  code_sha256: z.string(),
  size: Count,
  code: z.string(),
});

export const LeaderboardRow = z.object({
  rank: z.number().int().positive(),
  submission_id: z.string(),
  hotkey: z.string(),
  uid: Count.nullable(),
  tps: z.number(),
  successful_runs: Count.nullable(),
  runs_planned: Count.nullable(),
  reveal_block: Count,
  created_at: Timestamp,
  is_leader: z.boolean(),
});
export type LeaderboardRow = z.infer<typeof LeaderboardRow>;
export const LeaderboardPage = pageOf(LeaderboardRow).extend({ leader_threshold: z.number() });

export const HistoryPoint = z.object({
  submission_id: z.string(),
  hotkey: z.string(),
  tps: z.number(),
  previous_submission_id: z.string().nullable(),
  at: Timestamp,
});
export const HistoryPage = pageOf(HistoryPoint).describe(
  "leader changes in chronological order; pages count back from the newest (offset 0 = the latest `limit` changes)",
);

export const QueueItem = z.object({
  position: z.number().int().positive(),
  submission_id: z.string(),
  hotkey: z.string(),
  uid: Count.nullable(),
  state: z.enum(["received", "fetched", "evaluating"]),
  runs_planned: Count.nullable(),
  runs_done: Count,
  runs_running: Count,
  created_at: Timestamp,
  waiting_seconds: z.number().nonnegative(),
});
export const QueuePage = pageOf(QueueItem).extend({ counts: QueueCounts, oldest_waiting_seconds: z.number().nonnegative().nullable() });

export const WeightDecision = z.object({
  id: Count,
  block: Count.nullable(),
  uids: z.array(Count),
  weights: z.array(z.number()),
  reason: z.string(),
  leader_submission_id: z.string().nullable(),
  at: Timestamp,
});
export const WeightPage = pageOf(WeightDecision);

export const RejectionRow = z.object({
  id: Count,
  source: z.string(),
  hotkey: z.string().nullable(),
  reason: z.string(),
  detail: z.string(),
  raw: z.string(),
  block: Count.nullable(),
  at: Timestamp,
});
export const RejectionPage = pageOf(RejectionRow);

/**
 * What the validator writes under validator_state key `validator:status`. Read leniently: a field this
 * build does not understand becomes null rather than failing the status route.
 */
export const VALIDATOR_STATUS_KEY = "validator:status";
const time = z.union([z.number(), z.string()]).nullable().optional().catch(null);
const StoredRun = z.object({ submissionId: z.string(), runIndex: z.number().int().nonnegative(), startedAt: time });
const StoredSlot = z.object({
  id: z.string(),
  host: z.string().nullable().catch(null),
  devices: z.string().catch(""),
  state: z.enum(["idle", "busy", "out"]).catch("idle"),
  run: StoredRun.nullable().catch(null),
  failures: z.number().int().nonnegative().catch(0),
  reason: z.string().nullable().catch(null),
  runs: z.number().int().nonnegative().catch(0),
});
export const StoredValidatorStatus = z.object({
  state: z.string().catch("unknown"),
  startedAt: time,
  pid: z.number().int().nonnegative().nullable().optional().catch(null),
  hotkey: z.string().nullable().optional().catch(null),
  uid: z.number().int().nonnegative().nullable().optional().catch(null),
  network: z.string().nullable().optional().catch(null),
  netuid: z.number().int().nonnegative().nullable().optional().catch(null),
  // The validator writes every run in flight; older builds wrote one.
  current: z
    .union([StoredRun, z.array(StoredRun).transform((runs) => runs[0] ?? null)])
    .nullable()
    .optional()
    .catch(null),
  // One slot this build cannot read is left out, not the whole pool.
  slots: z
    .array(z.unknown())
    .optional()
    .catch(undefined)
    .transform((items) => items?.flatMap((item) => StoredSlot.safeParse(item).data ?? [])),
  lastWeightsBlock: z.number().int().nonnegative().nullable().optional().catch(null),
  updatedAt: time,
});
export type StoredValidatorStatus = z.infer<typeof StoredValidatorStatus>;
