// The pipeline: sources → fetch & pin → queue → executor × N runs → score → sinks.
// Each stage reads its work from the store and writes its outcome back in one transaction, so the
// stages can be driven in any order, by a scheduler or a test, and a killed process resumes anywhere.
import { randomBytes } from "node:crypto";
import { failedResult, parseResult, Submission, type EvaluationRequest, type EvaluationResult, type Profile } from "./contracts.ts";
import { formatZodError } from "./errors.ts";
import { fetchCode as defaultFetchCode, type FetchOptions, type FetchResult } from "./fetch.ts";
import { benchmarkSettings, verificationSettings, type HParams } from "./hparams.ts";
import type { Logger } from "./log.ts";
import type { Executor, ScoreEvent, Sink, SinkEvent, SinkPayload, SlotStatus, Source } from "./plugin.ts";
import { planWeights, scoreRuns } from "./scoring.ts";
import { persist } from "./storage/persist.ts";
import { sqliteErrorCode } from "./storage/sqlite.ts";
import type { RunRow, Store, SubmissionRow } from "./storage/store.ts";

const TRANSIENT_FETCH = new Set(["timeout", "network_error", "dns_failed"]);
const FETCH_ATTEMPTS = 3;
const FETCH_CONCURRENCY = 8;

export interface PipelineOptions {
  store: Store;
  hparams: HParams;
  profile: Profile;
  sources: Source[];
  executor: Executor;
  sinks: Sink[];
  log: Logger;
  concurrency?: number;
  /** Test and demo only: code hosted on 127.0.0.1. */
  allowLoopbackCode?: boolean;
  fetchCode?: (url: string, opts: FetchOptions) => Promise<FetchResult>;
  /** First retry delay for a failed sink delivery; doubles per attempt, capped at 10 minutes. */
  retryBaseMs?: number;
  /** How long storing a finished run's result or a score may keep failing before the validator stops (default 5 minutes). */
  storeRetryMs?: number;
  signal?: AbortSignal;
}

export interface ValidatorStatus {
  state: "idle" | "evaluating" | "setting_weights" | "stopped";
  current: { submissionId: string; runIndex: number; startedAt: number; slot?: string }[];
  /** The executor's device pool: what each slot runs, which are out. */
  slots?: SlotStatus[];
  updatedAt: number;
  [k: string]: unknown;
}

const hex = (bytes: number) => randomBytes(bytes).toString("hex");

export function createPipeline(o: PipelineOptions) {
  const { store, hparams, log, executor } = o;
  const fetchCode = o.fetchCode ?? defaultFetchCode;
  const signal = o.signal ?? new AbortController().signal;
  const sinkNames = o.sinks.map((s) => s.name);
  const settings = benchmarkSettings(hparams, o.profile);
  const inFlight = new Map<string, { submissionId: string; runIndex: number; startedAt: number; slot?: string }>();

  const setStatus = (patch: Partial<ValidatorStatus>) => {
    try {
      const prev = store.getState<ValidatorStatus>("validator:status");
      const slots = executor.slots?.();
      store.setState("validator:status", { ...prev, current: [...inFlight.values()], ...(slots ? { slots } : {}), ...patch, updatedAt: Date.now() });
    } catch (e) {
      // The status is for the API; a run must not be dropped or stranded because it could not be shown.
      if (sqliteErrorCode(e) === null) throw e;
      log.warn(`could not record the validator's status: ${(e as Error).message}`);
    }
  };
  /** Stores what a finished run produced, retrying a failing store; throws StoreFailure when it cannot. */
  const durably = <T>(what: string, write: () => T) => persist(store.db, what, write, { log, signal, giveUpMs: o.storeRetryMs });

  /** Evaluations that may run at once: the pool's slots still in it, and no more than `concurrency` says. */
  const capacity = () => {
    const slots = executor.slots?.();
    const live = slots ? slots.filter((s) => s.state !== "out").length : (o.concurrency ?? 1);
    return Math.min(live, o.concurrency ?? live);
  };

  /** Polls every source once; returns how many new submissions were stored. */
  async function poll(): Promise<number> {
    let added = 0;
    for (const source of o.sources) {
      const slog = log.child({ source: source.name });
      /** Validates and stores one submission from the source. */
      const take = (raw: unknown) => {
        const parsed = Submission.safeParse(raw);
        if (!parsed.success) {
          const r = raw as Partial<Submission> | null;
          store.addRejection(source.name, { hotkey: r?.hotkey ?? null, reason: "invalid_submission", detail: formatZodError(parsed.error), raw: JSON.stringify(raw) ?? "", block: r?.revealBlock ?? null });
          slog.warn(`source yielded an invalid submission: ${formatZodError(parsed.error)}`);
          return;
        }
        if (store.addSubmission(parsed.data)) {
          added++;
          slog.info(`received ${parsed.data.id}`, { hotkey: parsed.data.hotkey, url: parsed.data.url });
        }
      };
      let found: unknown[];
      try {
        found = await source.poll({
          state: store.pluginState(`source:${source.name}`),
          log: slog,
          signal,
          reject: (r) => {
            store.addRejection(source.name, r);
            slog.warn(`rejected ${r.hotkey ?? "?"}: ${r.reason} — ${r.detail}`);
          },
          known: (id) => store.hasSubmission(id),
          submit: take,
        });
      } catch (e) {
        // A lost chain connection is reported once by the connection itself, not on every poll.
        ((e as { code?: unknown }).code === "disconnected" ? slog.debug : slog.warn)(`poll failed, will retry: ${(e as Error).message}`);
        continue;
      }
      for (const raw of found) take(raw);
    }
    return added;
  }

  // Submissions whose fetch is under way, across overlapping calls: none is fetched twice, and no more
  // than FETCH_CONCURRENCY fetches run at once.
  const fetching = new Set<string>();

  /**
   * Fetches and pins the code of every received submission, queueing its runs. Fetches run side by side,
   * so a host that never answers holds only its own submission, for its own deadline; the others are
   * pinned as they arrive, and a call made meanwhile takes up what is new. On shutdown the fetches in
   * flight are stopped and their submissions stay as they were.
   */
  async function fetchPending(): Promise<number> {
    const todo = store.submissionsIn("received").filter((s) => !fetching.has(s.id));
    let done = 0;
    const worker = async () => {
      for (let s = todo.shift(); s && !signal.aborted; s = todo.shift()) {
        if (fetching.has(s.id) || store.submission(s.id)?.state !== "received") continue;
        fetching.add(s.id);
        try {
          if (await fetchOne(s)) done++;
        } finally {
          fetching.delete(s.id);
        }
      }
    };
    const slots = Math.max(0, Math.min(FETCH_CONCURRENCY - fetching.size, todo.length));
    await Promise.all(Array.from({ length: slots }, worker));
    return done;
  }

  /** True when the submission left `received` (pinned or failed). */
  async function fetchOne(s: SubmissionRow): Promise<boolean> {
    const r = await fetchCode(s.url, {
      committedHash: s.committed_hash ?? undefined,
      maxBytes: hparams.max_code_bytes,
      timeoutMs: hparams.code_fetch_timeout * 1000,
      allowLoopback: o.allowLoopbackCode,
      signal,
    });
    if (signal.aborted) return false;
    if (!r.ok) {
      const key = `fetch_attempts:${s.id}`;
      const attempts = (store.getState<number>(key) ?? 0) + 1;
      if (TRANSIENT_FETCH.has(r.code) && attempts < FETCH_ATTEMPTS) {
        store.setState(key, attempts);
        log.warn(`fetch of ${s.id} failed (${r.code}), attempt ${attempts}/${FETCH_ATTEMPTS}: ${r.message}`);
        return false;
      }
      fail(s, `fetch_${r.code}`, r.message);
      return true;
    }
    // Only an earlier committer makes this one a duplicate: fetches finish in any order, and an original
    // whose host was slower than its copy's is still the original (both are evaluated; ties go to it).
    // Earlier by commit block where the source knows it: the reveal block is the committer's choice.
    const original = store.db
      .prepare(
        `SELECT id FROM submissions WHERE code_sha256 = ? AND id != ? AND (COALESCE(commit_block, reveal_block), created_at) < (?, ?)
         ORDER BY COALESCE(commit_block, reveal_block), created_at LIMIT 1`,
      )
      .get<{ id: string }>(r.sha256, s.id, s.commit_block ?? s.reveal_block, s.created_at);
    if (original) {
      fail(s, "duplicate_code", `the same code (sha256 ${r.sha256.slice(0, 16)}…) was already submitted as ${original.id}; first committer wins`);
    } else {
      store.pinAndQueue(s.id, r.bytes, r.sha256, hparams.evaluation_runs);
      log.info(`pinned ${s.id}: ${r.bytes.byteLength} bytes, sha256 ${r.sha256.slice(0, 16)}…; ${hparams.evaluation_runs} runs queued`);
    }
    return true;
  }

  function fail(s: SubmissionRow, code: string, message: string) {
    store.settle(s.id, { ok: false, code, message, successfulRuns: 0 }, hparams.leader_threshold, sinkNames, scorePayload);
    log.warn(`failed ${s.id}: ${code}: ${message}`);
  }

  const scorePayload = (row: SubmissionRow, leaderId: string | null): SinkPayload => scoreEvent(row, store.runs(row.id), leaderId);

  /** Claims and runs one queued evaluation; false when the queue is empty. */
  async function evaluateOne(): Promise<boolean> {
    if (signal.aborted) return false;
    const run = store.claimRun(hex(16), hex(32));
    if (!run) return false;
    const sub = store.submission(run.submission_id)!;
    const code = new TextDecoder().decode(store.code(run.code_sha256)!);
    const request: EvaluationRequest = {
      schema_version: 1,
      task_id: run.task_id!,
      submission_id: sub.id,
      run_index: run.run_index,
      seed: run.seed!,
      code,
      code_sha256: run.code_sha256,
      benchmark: settings,
      optimizer: hparams.optimizer,
      verification: verificationSettings(hparams, o.profile),
    };
    const of = `${run.run_index + 1}/${sub.runs_planned}`;
    const rlog = log.child({ submission: sub.id, run: of });
    inFlight.set(request.task_id, { submissionId: sub.id, runIndex: run.run_index, startedAt: Date.now() });
    setStatus({ state: "evaluating" });
    const harnessKey = `harness_error:${sub.id}:${run.run_index}`;
    const rerun = run.attempts > 1 && store.getState<{ attempt: number }>(harnessKey)?.attempt === run.attempts - 1;
    rlog.info(`run ${of} of ${sub.id} started${run.attempts > 1 ? ` (attempt ${run.attempts}, the previous one ${rerun ? "ended in a harness_error" : "was interrupted"})` : ""}`);
    let result: EvaluationResult;
    try {
      const onSlot = (slot: string) => {
        inFlight.set(request.task_id, { ...inFlight.get(request.task_id)!, slot });
        setStatus({ state: "evaluating" });
      };
      result = parseResult(request, await executor.evaluate(request, { log: rlog, signal, onSlot }));
    } catch (e) {
      result = failedResult(request, "executor_error", `executor ${executor.name} threw: ${(e as Error).message}`);
    } finally {
      inFlight.delete(request.task_id);
    }
    if (signal.aborted) {
      // Abandoned, not failed: the run goes back to the queue and runs again after restart.
      store.releaseRun(sub.id, run.run_index, request.task_id);
      rlog.info(`run ${of} of ${sub.id} abandoned for shutdown; it will run again`);
      setStatus({ state: inFlight.size ? "evaluating" : "idle" });
      return false;
    }
    if (result.error?.code === "harness_error" && store.getState(harnessKey) === undefined) {
      // Ours, not the miner's: said loudly, and the run runs once more. Only once: a worker that found a new
      // way to cause it must not re-roll its slow runs; a second one counts as an unsuccessful run.
      rlog.error(`run ${of} of ${sub.id}: the evaluation harness failed (harness_error: ${result.error.message}); this is the validator's fault, not the submission's: check the executor and its image; running it once more`);
      await durably(`the harness_error of run ${of} of ${sub.id}`, () =>
        store.db.transaction(() => {
          store.setState(harnessKey, { attempt: run.attempts, taskId: request.task_id, message: result.error!.message, at: Date.now() });
          store.releaseRun(sub.id, run.run_index, request.task_id);
        }),
      );
      setStatus({ state: inFlight.size ? "evaluating" : "idle" });
      return true;
    }
    await durably(`the result of run ${of} of ${sub.id}`, () => store.finishRun(sub.id, run.run_index, request.task_id, result));
    setStatus({ state: inFlight.size ? "evaluating" : "idle" });
    if (result.success) rlog.info(`run ${of} of ${sub.id}: ${result.tps.toFixed(1)} tok/s${result.mfu != null ? `, MFU ${(result.mfu * 100).toFixed(1)}%` : ""}`);
    else rlog.warn(`run ${of} of ${sub.id} rejected: ${result.error?.code}: ${result.error?.message}`);
    return true;
  }

  /**
   * Runs queued evaluations, one per slot of the executor's pool at a time, until the queue is empty.
   * A slot taken out ends one worker: the others keep going.
   */
  async function evaluateQueued(): Promise<number> {
    let count = 0;
    const worker = async (i: number) => {
      while (i < capacity() && (await evaluateOne())) {
        count++;
        await scoreReady();
      }
    };
    await Promise.all(Array.from({ length: capacity() }, (_, i) => worker(i)));
    return count;
  }

  // Submissions whose score is being stored (a retry may sleep): none is settled twice.
  const settling = new Set<string>();

  /** Scores every submission whose runs are all done. */
  async function scoreReady(): Promise<number> {
    const ready = store.readyToScore();
    let scored = 0;
    for (const s of ready) {
      if (settling.has(s.id) || store.submission(s.id)?.state !== "evaluating") continue;
      scored++;
      const outcome = scoreRuns(
        store.runs(s.id).map((r) => ({ success: r.success === 1, tps: r.tps ?? 0, errorCode: r.error_code, errorMessage: r.error_message, runIndex: r.run_index })),
        hparams.min_success_rate,
      );
      settling.add(s.id);
      try {
        await durably(`the score of ${s.id}`, () => store.settle(s.id, outcome, hparams.leader_threshold, sinkNames, scorePayload));
      } finally {
        settling.delete(s.id);
      }
      const leader = store.leader(hparams.leader_threshold);
      if (outcome.ok) {
        log.info(`scored ${s.id}: median ${outcome.score.toFixed(1)} tok/s over ${outcome.successfulRuns}/${outcome.totalRuns} runs; leader ${leader?.id ?? "none"}`);
      } else {
        log.warn(`failed ${s.id}: ${outcome.code}: ${outcome.message}`);
      }
    }
    return scored;
  }

  /** Records a weight decision for the current leader and queues it for the sinks. */
  async function decideWeights(block: number | null, uidOf: (hotkey: string) => Promise<number | null> | number | null, genesisHash: string | null = null) {
    const leader = store.leader(hparams.leader_threshold);
    let uid: number | null = null;
    let why = "";
    if (leader) {
      uid = await uidOf(leader.hotkey);
      if (uid === null) why = `leader ${leader.id} (${leader.hotkey}) is no longer registered: all weight to burn`;
    }
    const plan = planWeights(uid, hparams.burn_uid, hparams.burn_rate, why);
    const decision = { block, ...plan, leaderSubmissionId: leader?.id ?? null };
    const id = store.recordWeights(decision, sinkNames, genesisHash);
    log.info(`weights decision #${id}: ${plan.reason}`, { uids: plan.uids, weights: plan.weights });
    return { id, ...decision };
  }

  /**
   * Delivers pending events to their sinks; a failing sink is retried later with backoff and never blocks
   * others. `stop` ends it early too (`--once`'s bounded wait): what is left stays pending.
   */
  async function deliver(stop?: AbortSignal): Promise<number> {
    let delivered = 0;
    const down = new Set<string>();
    const until = stop ? AbortSignal.any([signal, stop]) : signal;
    for (const d of store.pendingDeliveries()) {
      const sink = o.sinks.find((s) => s.name === d.sink);
      if (!sink || down.has(sink.name) || until.aborted) continue;
      const event: SinkEvent = { id: d.event_id, createdAt: d.created_at, payload: JSON.parse(d.payload) };
      try {
        await sink.deliver(event, { log: log.child({ sink: sink.name }), signal: until });
        store.markDelivered(d.event_id, d.sink);
        delivered++;
      } catch (e) {
        // Keep per-sink order: once an event fails, later events for that sink wait for the retry.
        down.add(sink.name);
        const delay = Math.min((o.retryBaseMs ?? 1000) * 2 ** d.attempts, 600_000);
        store.markDeliveryFailed(d.event_id, d.sink, (e as Error).message, Date.now() + delay);
        log.warn(`sink ${sink.name} could not take ${d.event_id} (attempt ${d.attempts + 1}), retry in ${Math.round(delay / 1000)}s: ${(e as Error).message}`);
      }
    }
    return delivered;
  }

  /** At start: runs a killed process left `running` never finished, so they go back to the queue. */
  function recover(): number {
    const n = store.requeueInterrupted();
    if (n) log.info(`${n} interrupted run(s) re-queued`);
    return n;
  }

  /** Drives every stage until nothing is left to do (tests, `--once`); returns when idle. */
  async function runUntilIdle(): Promise<void> {
    recover();
    for (;;) {
      if (signal.aborted) return;
      const progressed = (await poll()) + (await fetchPending()) + (await evaluateQueued()) + (await scoreReady()) + (await deliver());
      if (progressed === 0) return;
    }
  }

  return { recover, poll, fetchPending, evaluateOne, evaluateQueued, scoreReady, decideWeights, deliver, runUntilIdle, setStatus };
}

export type Pipeline = ReturnType<typeof createPipeline>;

/** The event sinks receive when a submission settles (scored or failed). */
export function scoreEvent(row: SubmissionRow, runs: RunRow[], leaderId: string | null): ScoreEvent {
  return {
    kind: "score",
    submissionId: row.id,
    hotkey: row.hotkey,
    uid: row.uid,
    state: row.error_code ? "failed" : "scored",
    score: row.score,
    successfulRuns: row.successful_runs ?? 0,
    totalRuns: runs.length,
    runs: runs.map((r) => ({ runIndex: r.run_index, success: r.success === 1, tps: r.tps ?? 0, errorCode: r.error_code })),
    errorCode: row.error_code,
    errorMessage: row.error_message,
    leaderSubmissionId: leaderId,
  };
}
