// When the pipeline's stages run in a long-lived validator. Three independent loops, so a long
// evaluation never holds up intake or weights, and delivery beside them, so a sink that hangs neither:
//   - intake (cron, every poll interval): poll sources, fetch and pin new code, start delivering sink events;
//   - evaluation: claims queued runs back to back, sleeping until intake queues more;
//   - weights (cron, every poll interval): decides weights once `set_weights_interval_blocks` have passed
//     since this hotkey's last weights, reading that block from the chain first (a restart does not
//     re-send), and hands the decision to the sinks;
//   - delivery: started by the others, never awaited by them; one pass at a time over the outbox.
// `runOnce` drives the same stages to completion instead, for `--once`, tests and the demo.
import { CronJob } from "cron";
import { UserError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { Pipeline, ValidatorStatus } from "./pipeline.ts";
import { StoreFailure } from "./storage/sqlite.ts";
import type { Store } from "./storage/store.ts";

export interface WeightsClock {
  intervalBlocks: number;
  /** The chain's genesis hash: the store's decisions count only on the chain they were made on. */
  genesisHash?: string;
  currentBlock(): Promise<number>;
  /** Block at which this validator's hotkey last set (or committed) weights on chain; 0 when never. */
  lastUpdate(): Promise<number>;
  /** The live uid of a hotkey (null once it deregistered), so a departed leader's share goes to burn. */
  uidOf(hotkey: string): Promise<number | null>;
}

export interface SchedulerOptions {
  pipeline: Pipeline;
  store: Store;
  log: Logger;
  pollIntervalSeconds: number;
  /** Null when there is no chain (a gists-only tournament): no weights are decided. */
  weights: WeightsClock | null;
  signal: AbortSignal;
  /**
   * The store cannot be used any more (deleted, or a result that could not be stored): the validator must
   * stop, non-zero, so that a supervisor restarts it (it may hear of one failure more than once). The
   * evaluation loop stops claiming runs.
   */
  fatal?: (e: StoreFailure) => void;
}

/** A cron expression firing every `seconds` seconds; only intervals that divide a minute or an hour evenly. */
export function cronEvery(seconds: number): string {
  if (Number.isInteger(seconds) && seconds >= 1 && seconds < 60 && 60 % seconds === 0) return `*/${seconds} * * * * *`;
  const minutes = seconds / 60;
  if (Number.isInteger(minutes) && minutes >= 1 && minutes < 60 && 60 % minutes === 0) return `0 */${minutes} * * * *`;
  throw new UserError(`pollIntervalSeconds: ${seconds} does not divide a minute or an hour evenly (use e.g. 1, 5, 6, 10, 12, 15, 30, 60, 120, 300)`, "bad_config");
}

/** True when `p` settled (either way) within `ms`: a stop waits so long for what it stops, no longer. */
export const settlesWithin = (ms: number, p: Promise<unknown>): Promise<boolean> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => clearTimeout(timer));
};

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

export function createScheduler(o: SchedulerOptions) {
  const { pipeline, store, log, signal } = o;

  // Two loops may want to deliver at once; the outbox must not hand the same event to a sink twice.
  let delivering: Promise<number> | null = null;
  let deliverAgain = false;
  function deliver(stop?: AbortSignal): Promise<number> {
    if (delivering) {
      deliverAgain = true;
      return delivering;
    }
    delivering = (async () => {
      let n = 0;
      try {
        do {
          deliverAgain = false;
          n += await pipeline.deliver(stop);
        } while (deliverAgain && !signal.aborted && !stop?.aborted);
      } finally {
        delivering = null;
      }
      return n;
    })();
    return delivering;
  }

  let warnedBehind = false;

  const settleStatus = () => {
    const current = store.getState<ValidatorStatus>("validator:status")?.current ?? [];
    pipeline.setStatus({ state: current.length ? "evaluating" : "idle" });
  };

  /** Decides weights when the interval has passed since the chain's and the store's last; null otherwise. */
  async function maybeSetWeights(logSkip: (msg: string) => void = log.debug) {
    const w = o.weights;
    if (!w) return null;
    const [block, onChain] = await Promise.all([w.currentBlock(), w.lastUpdate()]);
    // The newest decision is read from the store it was written to, so it survives a kill. One above the
    // head means the chain was reset under the same genesis (or the node is still syncing): it would
    // hold weights back until the chain passes it, so only decisions up to the head count then.
    const genesis = w.genesisHash ?? null;
    const newest = store.lastDecisionBlock(genesis);
    if (newest > block && !warnedBehind) {
      log.warn(
        `the chain's head (block ${block}) is behind this store's last weights decision (block ${newest}): the chain was reset or the node is still syncing; decisions above the head are ignored (after a reset, give the validator a new database file)`,
      );
      warnedBehind = true;
    }
    const last = Math.max(onChain, newest > block ? store.lastDecisionBlock(genesis, block) : newest);
    if (last > 0 && block - last <= w.intervalBlocks) {
      logSkip(`weights: last set at block ${last}; not due until after block ${last + w.intervalBlocks} (now ${block})`);
      return null;
    }
    pipeline.setStatus({ state: "setting_weights" });
    try {
      const decision = await pipeline.decideWeights(block, (hotkey) => w.uidOf(hotkey), w.genesisHash ?? null);
      pipeline.setStatus({ lastWeightsBlock: block });
      return decision;
    } finally {
      settleStatus();
    }
  }

  /**
   * Until idle: every revealed submission scored, weights decided once (when due), then the outbox
   * drained for at most `deliveryTimeoutMs` in all (a delivery still under way then is stopped); what is
   * left stays pending for the next start.
   */
  async function runOnce(opts: { deliveryTimeoutMs?: number } = {}): Promise<{ undelivered: number }> {
    await pipeline.runUntilIdle();
    if (signal.aborted) return { undelivered: pendingCount().n };
    await maybeSetWeights(log.info);
    const timeoutMs = opts.deliveryTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    const stop = AbortSignal.timeout(timeoutMs);
    for (;;) {
      await deliver(stop);
      const { n, next } = pendingCount();
      if (n === 0 || signal.aborted || Date.now() >= deadline) return { undelivered: n };
      await sleep(Math.min(Math.max(50, (next ?? 0) - Date.now()), 1000, Math.max(0, deadline - Date.now())), signal);
    }
  }

  function pendingCount(): { n: number; next: number | null } {
    return store.db.prepare("SELECT COUNT(*) AS n, MIN(next_at) AS next FROM deliveries WHERE state = 'pending'").get<{ n: number; next: number | null }>()!;
  }

  const fatal = (e: StoreFailure) => (o.fatal ? o.fatal(e) : log.error(e.message));

  /** Starts a delivery pass unless one is under way (then it runs again after it); never waits for it. */
  const startDelivery = () =>
    void deliver().catch((e: Error) => (e instanceof StoreFailure ? fatal(e) : log.warn(`delivering events: ${e.message}; will retry`)));

  let wake: (() => void) | null = null;
  async function evaluationLoop() {
    while (!signal.aborted) {
      let ran = 0;
      try {
        ran = await pipeline.evaluateQueued();
        // Also what a stop left between a run's result and its score: it is scored here, not only after
        // the next evaluation.
        await pipeline.scoreReady();
      } catch (e) {
        if (e instanceof StoreFailure) return fatal(e);
        log.error(`evaluation loop: ${(e as Error).message}`);
      }
      if (ran > 0) startDelivery();
      if (ran === 0 && !signal.aborted) {
        await Promise.race([new Promise<void>((r) => (wake = r)), sleep(o.pollIntervalSeconds * 1000, signal)]);
        wake = null;
      }
    }
  }

  const guarded = (name: string, fn: () => Promise<unknown>) => async () => {
    if (signal.aborted) return;
    try {
      await fn();
    } catch (e) {
      if (e instanceof StoreFailure) return fatal(e);
      // A lost chain connection is reported once by the connection itself, not on every tick.
      ((e as { code?: unknown }).code === "disconnected" ? log.debug : log.warn)(`${name}: ${(e as Error).message}; will retry`);
    }
  };

  /**
   * Starts the loops; once `signal` aborts, waits up to `stopGraceMs` for each to stop and resolves with
   * what did not in time (a frozen node or a hanging sink holds a request until its own timeout): the
   * caller exits without it.
   */
  async function run(stopGraceMs = 5000): Promise<{ abandoned: string[] }> {
    pipeline.recover();
    const cronTime = cronEvery(o.pollIntervalSeconds);
    // Fetches run on between intake ticks, so a host that never answers does not hold the next poll
    // back; the pipeline bounds them and never fetches a submission twice.
    const fetches = new Set<Promise<void>>();
    const intake = guarded("intake", async () => {
      // SQLite keeps writing a deleted file, and everything written after would vanish at exit.
      const lost = store.db.lost();
      if (lost) throw new StoreFailure(`the store is gone: ${lost}`);
      await pipeline.poll();
      const f = pipeline.fetchPending().then(
        (pinned) => void (pinned > 0 && wake?.()),
        (e: Error) => (e instanceof StoreFailure ? fatal(e) : log.warn(`fetching code: ${e.message}; will retry`)),
      );
      fetches.add(f);
      void f.finally(() => fetches.delete(f));
      startDelivery();
    });
    const weights = guarded("weights", async () => {
      if (await maybeSetWeights()) startDelivery();
    });
    const jobs = [
      CronJob.from({ cronTime, onTick: intake, start: true, runOnInit: true, waitForCompletion: true, name: "intake" }),
      ...(o.weights ? [CronJob.from({ cronTime, onTick: weights, start: true, runOnInit: true, waitForCompletion: true, name: "weights" })] : []),
    ];
    const evaluations = evaluationLoop();
    await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
    wake?.();
    const loops: [string, unknown][] = [
      ["intake (polling sources)", jobs[0]!.stop()],
      ...(jobs[1] ? [["weights (reading the chain)", jobs[1].stop()] as [string, unknown]] : []),
      ["evaluation", evaluations],
      ["event delivery", delivering],
      ["code fetches", Promise.all(fetches)],
    ];
    const stopped = new Set<string>();
    const done = (name: string) => () => void stopped.add(name);
    await settlesWithin(stopGraceMs, Promise.all(loops.map(([name, p]) => Promise.resolve(p).then(done(name), done(name)))));
    return { abandoned: loops.map(([name]) => name).filter((name) => !stopped.has(name)) };
  }

  return { run, runOnce, maybeSetWeights, deliver };
}

export type Scheduler = ReturnType<typeof createScheduler>;
