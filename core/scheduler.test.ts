import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult, type Submission } from "./contracts.ts";
import { loadHParams } from "./hparams.ts";
import { memoryLogger } from "./log.ts";
import { createPipeline } from "./pipeline.ts";
import { defineExecutor, defineSink, defineSource, type SinkEvent } from "./plugin.ts";
import { createScheduler, cronEvery, type WeightsClock } from "./scheduler.ts";
import { Store } from "./storage/store.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-scheduler-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let dbs = 0;

const code = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n";
const sub = (n: number): Submission => ({ id: `s${n}`, hotkey: `hk${n}`, uid: 10 + n, url: `https://code.example/${n}.py`, revealBlock: n, source: "list" });

interface Harness {
  submissions: Submission[];
  /** Resolves a run when called; runs wait for it when `gate` is set. */
  gate: Promise<void> | null;
  delivered: SinkEvent[];
  sinkDown: boolean;
}

async function setup(weights: Partial<WeightsClock> | null, h: Harness, path = join(dir, `s${dbs++}.db`)) {
  const store = await Store.open(path);
  const controller = new AbortController();
  const log = memoryLogger();
  const pipeline = createPipeline({
    store,
    hparams: { ...loadHParams(), evaluation_runs: 1, burn_uid: 1, burn_rate: 0.5 },
    profile: "tiny",
    sources: [defineSource("list", z.object({}), () => ({ poll: async (c) => h.submissions.filter((s) => !c.known(s.id)) }))()],
    executor: defineExecutor("gated", z.object({}), () => ({
      evaluate: async (req, ctx) => {
        if (h.gate) await Promise.race([h.gate, new Promise((r) => ctx.signal.addEventListener("abort", r))]);
        return { ...failedResult(req, "crash", ""), success: true, error: null, tps: 100 * Number(req.submission_id.slice(1)) };
      },
    }))(),
    sinks: [
      defineSink("memory", z.object({}), () => ({
        deliver: async (e) => {
          if (h.sinkDown) throw new Error("down");
          h.delivered.push(e);
        },
      }))(),
    ],
    log,
    retryBaseMs: 10,
    signal: controller.signal,
    fetchCode: async (url) => ({ ok: true, url, bytes: new TextEncoder().encode(`${code}# ${url}\n`), sha256: createHash("sha256").update(url).digest("hex") }),
  });
  const clock: WeightsClock | null = weights && {
    intervalBlocks: 100,
    currentBlock: async () => 1000,
    lastUpdate: async () => 0,
    uidOf: async (hotkey) => Number(hotkey.slice(2)) + 10,
    ...weights,
  };
  const scheduler = createScheduler({ pipeline, store, log, pollIntervalSeconds: 1, weights: clock, signal: controller.signal });
  return { store, scheduler, controller, log, path };
}

const decisions = (store: Store) => store.db.prepare("SELECT block, uids_json FROM weight_decisions ORDER BY id").all<{ block: number; uids_json: string }>();

describe("scheduler", () => {
  test("cron expressions for intervals that divide a minute or an hour; others are refused with advice", () => {
    expect(cronEvery(12)).toBe("*/12 * * * * *");
    expect(cronEvery(1)).toBe("*/1 * * * * *");
    expect(cronEvery(300)).toBe("0 */5 * * * *");
    expect(() => cronEvery(7)).toThrow(/does not divide a minute or an hour evenly/);
    expect(() => cronEvery(0.5)).toThrow(/pollIntervalSeconds/);
  });

  test("weights are decided only when the interval has passed since the chain's and the store's last, across restarts", async () => {
    const h: Harness = { submissions: [sub(1)], gate: null, delivered: [], sinkDown: false };
    let block = 1000;
    let lastOnChain = 950;
    const clock = { currentBlock: async () => block, lastUpdate: async () => lastOnChain };
    const a = await setup(clock, h);
    await a.scheduler.runOnce();
    expect(decisions(a.store)).toEqual([]); // 1000 - 950 <= 100: the chain says it is too early

    lastOnChain = 0;
    expect(await a.scheduler.maybeSetWeights()).not.toBeNull();
    block = 1050;
    expect(await a.scheduler.maybeSetWeights()).toBeNull(); // the store's decision at 1000 counts
    // A restarted validator reads the same store: still too early.
    a.store.close();
    const b = await setup(clock, h, a.path);
    expect(await b.scheduler.maybeSetWeights()).toBeNull();
    block = 1101;
    const d = await b.scheduler.maybeSetWeights();
    expect(d?.block).toBe(1101);
    expect(decisions(b.store).map((x) => x.block)).toEqual([1000, 1101]);
    b.store.close();
  });

  test("a head behind the store's last decision (a chain reset under the same genesis) does not hold weights back", async () => {
    const h: Harness = { submissions: [], gate: null, delivered: [], sinkDown: false };
    let block = 5000;
    const a = await setup({ currentBlock: async () => block, genesisHash: "0xaa" }, h);
    expect((await a.scheduler.maybeSetWeights())?.block).toBe(5000);
    block = 40; // the same genesis, restarted from scratch
    expect((await a.scheduler.maybeSetWeights())?.block).toBe(40);
    expect(a.log.lines.filter((l) => l.includes("behind this store's last weights decision (block 5000)"))).toHaveLength(1);
    block = 90; // the decision at 40 counts again: not due until after 140
    expect(await a.scheduler.maybeSetWeights()).toBeNull();
    // Another chain's decisions never count here.
    const other = await setup({ currentBlock: async () => 100, genesisHash: "0xbb" }, h, a.path);
    expect((await other.scheduler.maybeSetWeights())?.block).toBe(100);
    expect(a.store.db.prepare("SELECT genesis_hash AS g, block FROM weight_decisions ORDER BY id").all()).toEqual([
      { g: "0xaa", block: 5000 },
      { g: "0xaa", block: 40 },
      { g: "0xbb", block: 100 },
    ]);
    a.store.close();
    other.store.close();
  });

  test("runOnce scores everything, decides weights once for the leader and delivers every event", async () => {
    const h: Harness = { submissions: [sub(1), sub(2)], gate: null, delivered: [], sinkDown: false };
    const { store, scheduler } = await setup({}, h);
    expect(await scheduler.runOnce()).toEqual({ undelivered: 0 });
    expect(store.counts().published).toBe(2);
    expect(h.delivered.map((e) => e.id)).toEqual(["score:s1", "score:s2", "weights:1"]);
    const w = h.delivered[2]!.payload;
    expect(w).toMatchObject({ kind: "weights", block: 1000, uids: [1, 12], weights: [0.5, 0.5], leaderSubmissionId: "s2" });
    store.close();
  });

  test("runOnce reports what a sink that stays down could not take", async () => {
    const h: Harness = { submissions: [sub(1)], gate: null, delivered: [], sinkDown: true };
    const { store, scheduler } = await setup(null, h);
    expect(await scheduler.runOnce({ deliveryTimeoutMs: 200 })).toEqual({ undelivered: 1 });
    store.close();
  });

  test("a long evaluation does not hold up weights; stopping releases the run for the next start", async () => {
    let release!: () => void;
    const h: Harness = { submissions: [sub(1)], gate: new Promise<void>((r) => (release = r)), delivered: [], sinkDown: false };
    let block = 1000;
    // Every weights tick finds the interval passed, so decisions keep coming while the run is stuck.
    const { store, scheduler, controller } = await setup({ currentBlock: async () => (block += 200) }, h);
    const running = scheduler.run();
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 100 && !cond(); i++) await Bun.sleep(50);
      return cond();
    };
    const run = () => store.db.prepare("SELECT state FROM runs WHERE submission_id = 's1'").get<{ state: string }>()?.state;
    const weightEvents = () => h.delivered.filter((e) => e.payload.kind === "weights").length;
    expect(await until(() => run() === "running")).toBe(true);
    const before = weightEvents();
    expect(await until(() => weightEvents() > before)).toBe(true);
    expect(run()).toBe("running");
    expect(h.delivered.at(-1)!.payload).toMatchObject({ kind: "weights", uids: [1], weights: [1] }); // no leader yet: burn
    controller.abort();
    await running;
    expect(run()).toBe("pending");
    expect(store.getState<{ state: string }>("validator:status")?.state).toBe("idle");
    release();
    store.close();
  }, 20_000);
});
