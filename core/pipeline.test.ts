import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult, type Submission } from "./contracts.ts";
import type { FetchOptions, FetchResult } from "./fetch.ts";
import { loadHParams } from "./hparams.ts";
import { memoryLogger } from "./log.ts";
import { createPipeline } from "./pipeline.ts";
import { defineExecutor, defineSink, defineSource, type SinkEvent } from "./plugin.ts";
import { Store } from "./storage/store.ts";

const hparams = { ...loadHParams(), evaluation_runs: 3, min_success_rate: 0.5 };
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const program = (name: string, speed: number) => `# ${name}\nSPEED = ${speed}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "crusades-pipeline-"));
  store = await Store.open(join(dir, "v.db"));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A source that hands out whatever the test pushes into `queue`. */
const scripted = (queue: unknown[]) => defineSource("scripted", z.object({}), () => ({ poll: async () => queue.splice(0) as Submission[] }))();

/** Code hosting stand-in: the real fetcher has its own tests against a loopback server. */
const hosting = (files: Record<string, string>) => async (url: string): Promise<FetchResult> => {
  const body = files[url];
  if (body === undefined) return { ok: false, code: "http_status", message: `HTTP 404 for ${url}` };
  const bytes = new TextEncoder().encode(body);
  return { ok: true, url, bytes, sha256: sha(body) };
};

/** Fast executor: TPS from the code's SPEED line; `CHEAT` code is rejected; `FLAKY` fails its first run. */
const fakeExecutor = defineExecutor("fake", z.object({}), () => ({
  evaluate: async (req) => {
    if (req.code.includes("CHEAT")) return failedResult(req, "weights_mismatch", "update differs from the reference");
    if (req.code.includes("FLAKY") && req.run_index === 0) return failedResult(req, "timeout", "too slow");
    const speed = Number(/SPEED = (\d+)/.exec(req.code)?.[1] ?? 0);
    return { ...failedResult(req, "crash", ""), success: true, error: null, tps: speed + req.run_index, total_tokens: 100 };
  },
}));

const collector = (events: SinkEvent[], failFirst = 0) => {
  let failures = failFirst;
  return defineSink("collector", z.object({}), () => ({
    deliver: async (e) => {
      if (failures-- > 0) throw new Error("receiver down");
      events.push(e);
    },
  }))();
};

const sub = (id: string, revealBlock: number, url = `https://code.example/${id}.py`): Submission => ({ id, hotkey: `hk-${id}`, uid: revealBlock, url, revealBlock, source: "scripted" });

describe("pipeline", () => {
  test("end to end: received → pinned → N runs → scored → published, with the threshold leader", async () => {
    const files = {
      "https://code.example/a.py": program("a", 1000),
      "https://code.example/b.py": program("b", 1005), // within 1% of a: a stays leader
      "https://code.example/c.py": program("c CHEAT", 9000),
      "https://code.example/d.py": program("d", 2000),
    };
    const queue: unknown[] = [sub("a", 1), sub("b", 2), sub("c", 3), sub("d", 4)];
    const events: SinkEvent[] = [];
    const log = memoryLogger();
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted(queue)], executor: fakeExecutor(), sinks: [collector(events)], log, fetchCode: hosting(files) });
    await p.runUntilIdle();

    expect(store.submission("a")).toMatchObject({ state: "published", score: 1001 });
    expect(store.submission("c")).toMatchObject({ state: "published", error_code: "disqualified", score: null });
    expect(store.leaderboard(hparams.leader_threshold).map((e) => e.id)).toEqual(["d", "b", "a"]);
    expect(store.runs("a").map((r) => [r.state, r.attempts])).toEqual([["done", 1], ["done", 1], ["done", 1]]);
    const scoreEvents = events.filter((e) => e.payload.kind === "score").map((e) => e.id);
    expect(scoreEvents.sort()).toEqual(["score:a", "score:b", "score:c", "score:d"]);
    expect(log.lines.some((l) => l.includes("run 3/3 of d: 2002.0 tok/s"))).toBe(true);
    expect(log.lines.some((l) => l.includes("run 1/3 of c rejected: weights_mismatch"))).toBe(true);

    // Same seed never reused: every run got its own nonce and seed.
    const seeds = store.db.prepare("SELECT seed FROM runs").all<{ seed: string }>().map((r) => r.seed);
    expect(new Set(seeds).size).toBe(seeds.length);
  });

  test("a slightly faster copy does not dethrone; a 2x faster one does, and the history records it", async () => {
    const files = { "https://code.example/a.py": program("a", 1000), "https://code.example/b.py": program("b", 1009) };
    const queue: unknown[] = [sub("a", 1), sub("b", 2)];
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted(queue)], executor: fakeExecutor(), sinks: [], log: memoryLogger(), fetchCode: hosting(files) });
    await p.runUntilIdle();
    expect(store.leader(hparams.leader_threshold)?.id).toBe("a");
    queue.push(sub("c", 3));
    (files as Record<string, string>)["https://code.example/c.py"] = program("c", 2000);
    await p.runUntilIdle();
    const history = store.db.prepare("SELECT submission_id, previous_submission_id FROM leader_history ORDER BY id").all();
    expect(history).toEqual([
      { submission_id: "a", previous_submission_id: null },
      { submission_id: "c", previous_submission_id: "a" },
    ]);
  });

  test("fetch failures, duplicate code and invalid submissions are recorded with reasons, never crash", async () => {
    const files = { "https://code.example/a.py": program("a", 1000), "https://code.example/copy.py": program("a", 1000) };
    const queue: unknown[] = [sub("a", 1), sub("copy", 2), sub("gone", 3), { id: "bad", hotkey: "hk", url: "not a url" }];
    const log = memoryLogger();
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted(queue)], executor: fakeExecutor(), sinks: [], log, fetchCode: hosting(files) });
    await p.runUntilIdle();
    expect(store.submission("copy")).toMatchObject({ state: "published", error_code: "duplicate_code" });
    expect(store.submission("copy")!.error_message).toContain("already submitted as a");
    expect(store.submission("gone")).toMatchObject({ error_code: "fetch_http_status" });
    const rej = store.db.prepare("SELECT reason, detail FROM rejections").all<{ reason: string; detail: string }>();
    expect(rej).toHaveLength(1);
    expect(rej[0]!.reason).toBe("invalid_submission");
    expect(rej[0]!.detail).toContain("url");
  });

  test("the same code twice: the earlier commit block is the original, though its copy revealed first (issue 21)", async () => {
    const files = { "https://code.example/orig.py": program("a", 1000), "https://code.example/copy.py": program("a", 1000) };
    // Legacy commitments carry no hash: only the fetched bytes show the copy. Committed at block 2 and
    // revealed at 32; the copy committed at 5 and revealed at 25.
    const queue: unknown[] = [{ ...sub("orig", 32), commitBlock: 2 }, { ...sub("copy", 25), commitBlock: 5 }];
    // The original's host is the slower one: its copy is pinned first.
    const host = hosting(files);
    const fetchCode = async (url: string, _opts: FetchOptions) => (url.endsWith("orig.py") ? Bun.sleep(50) : Promise.resolve()).then(() => host(url));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted(queue)], executor: fakeExecutor(), sinks: [], log: memoryLogger(), fetchCode });
    await p.runUntilIdle();
    expect(store.submission("orig")).toMatchObject({ error_code: null, commit_block: 2 });
    expect(store.submission("copy")).toMatchObject({ error_code: null, commit_block: 5 });
    // Both were evaluated; the tie goes to the earlier commit.
    expect(store.leader(hparams.leader_threshold)?.id).toBe("orig");
  });

  test("transient fetch errors are retried before failing", async () => {
    let calls = 0;
    const flaky = async (url: string): Promise<FetchResult> => (++calls < 3 ? { ok: false, code: "timeout", message: "slow host" } : hosting({ [url]: program("a", 10) })(url));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: fakeExecutor(), sinks: [], log: memoryLogger(), fetchCode: flaky });
    await p.poll();
    await p.fetchPending();
    await p.fetchPending();
    expect(store.submission("a")!.state).toBe("received");
    await p.fetchPending();
    expect(store.submission("a")!.state).toBe("evaluating");
  });

  test("a failed run counts against the success rate but one flaky run is tolerated", async () => {
    const files = { "https://code.example/f.py": program("f FLAKY", 500) };
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("f", 1)])], executor: fakeExecutor(), sinks: [], log: memoryLogger(), fetchCode: hosting(files) });
    await p.runUntilIdle();
    expect(store.submission("f")).toMatchObject({ successful_runs: 2, score: (501 + 502) / 2 });
  });

  test("one run that fails verification disqualifies a submission whose other runs verified", async () => {
    const sly = defineExecutor("sly", z.object({}), () => ({
      evaluate: async (req) =>
        req.run_index === 1
          ? failedResult(req, "optimizer_mismatch", "exp_avg_rel_global 0.12 > bound 0.05")
          : { ...failedResult(req, "crash", ""), success: true, error: null, tps: 1000 },
    }));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: sly(), sinks: [], log: memoryLogger(), fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }) });
    await p.runUntilIdle();
    expect(store.submission("a")).toMatchObject({ state: "published", error_code: "disqualified", score: null, successful_runs: 2 });
    expect(store.submission("a")!.error_message).toStartWith("run 2 of 3 failed verification (optimizer_mismatch): exp_avg_rel_global 0.12 > bound 0.05.");
    expect(store.leader(hparams.leader_threshold)).toBeNull();
  });

  test("harness_error is ours: said loudly and run once more; a second one counts as an unsuccessful run", async () => {
    const calls: number[] = [];
    const shaky = defineExecutor("shaky", z.object({}), () => ({
      evaluate: async (req) => {
        calls.push(req.run_index);
        // Run 0 fails in the harness once, run 1 every time; run 2 is fine.
        const failsNow = (req.run_index === 0 && calls.filter((i) => i === 0).length === 1) || req.run_index === 1;
        return failsNow ? failedResult(req, "harness_error", "reference run died") : { ...failedResult(req, "crash", ""), success: true, error: null, tps: 100 + req.run_index };
      },
    }));
    const log = memoryLogger();
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: shaky(), sinks: [], log, fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }) });
    await p.runUntilIdle();
    expect(calls.sort()).toEqual([0, 0, 1, 1, 2]);
    expect(store.runs("a").map((r) => [r.success, r.error_code, r.attempts])).toEqual([[1, null, 2], [0, "harness_error", 2], [1, null, 1]]);
    expect(store.submission("a")).toMatchObject({ error_code: null, score: 101, successful_runs: 2 });
    const loud = log.lines.filter((l) => / error /.test(l) && l.includes("the evaluation harness failed (harness_error: reference run died)"));
    expect(loud).toHaveLength(2);
    expect(log.lines.some((l) => l.includes("run 1/3 of a started (attempt 2, the previous one ended in a harness_error)"))).toBe(true);
  });

  test("an executor that throws or returns garbage gives a failed run, not a crash", async () => {
    const broken = defineExecutor("broken", z.object({}), () => ({
      evaluate: async (req) => {
        if (req.run_index === 0) throw new Error("docker socket gone");
        return { forged: true } as never;
      },
    }));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: broken(), sinks: [], log: memoryLogger(), fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }) });
    await p.runUntilIdle();
    expect(store.runs("a").map((r) => r.error_code)).toEqual(["executor_error", "invalid_result", "invalid_result"]);
    expect(store.submission("a")).toMatchObject({ error_code: "no_successful_runs" });
  });

  test("a sink that is down gets the missed events later, in order, without blocking scoring", async () => {
    const events: SinkEvent[] = [];
    const files = { "https://code.example/a.py": program("a", 1), "https://code.example/b.py": program("b", 5) };
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1), sub("b", 2)])], executor: fakeExecutor(), sinks: [collector(events, 2)], log: memoryLogger(), fetchCode: hosting(files), retryBaseMs: 0 });
    await p.runUntilIdle();
    expect(store.submission("b")!.score).not.toBeNull();
    while (store.pendingDeliveries().length) await p.deliver();
    expect(events.map((e) => e.id)).toEqual(["score:a", "score:b"]);
    expect(store.db.prepare("SELECT attempts FROM deliveries WHERE event_id = 'score:a'").get()).toEqual({ attempts: 3 });
  });

  test("weights: the leader's current uid with the burn share; an unregistered leader falls back to burn", async () => {
    const events: SinkEvent[] = [];
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 7)])], executor: fakeExecutor(), sinks: [collector(events)], log: memoryLogger(), fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }) });
    await p.runUntilIdle();
    const d1 = await p.decideWeights(100, (hk) => (hk === "hk-a" ? 9 : null));
    expect(d1).toMatchObject({ uids: [hparams.burn_uid, 9], weights: [hparams.burn_rate, 1 - hparams.burn_rate], leaderSubmissionId: "a" });
    const d2 = await p.decideWeights(200, () => null);
    expect(d2).toMatchObject({ uids: [hparams.burn_uid], weights: [1] });
    expect(d2.reason).toContain("no longer registered");
    await p.deliver();
    expect(events.filter((e) => e.payload.kind === "weights").map((e) => e.id)).toEqual([`weights:${d1.id}`, `weights:${d2.id}`]);
  });

  test("shutdown mid-run releases the run back to the queue instead of losing or failing it", async () => {
    const ac = new AbortController();
    const slow = defineExecutor("slow", z.object({}), () => ({
      evaluate: (req, ctx) =>
        new Promise((resolve) => {
          ctx.signal.addEventListener("abort", () => resolve(failedResult(req, "cancelled", "stopped")));
          setTimeout(() => ac.abort(), 10);
        }),
    }));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: slow(), sinks: [], log: memoryLogger(), fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }), signal: ac.signal });
    await p.runUntilIdle();
    expect(store.runs("a").map((r) => r.state)).toEqual(["pending", "pending", "pending"]);
    expect(store.runs("a")[0]!.attempts).toBe(1);
  });

  test("concurrency runs several evaluations at once", async () => {
    let running = 0;
    let peak = 0;
    const parallel = defineExecutor("parallel", z.object({}), () => ({
      evaluate: async (req) => {
        peak = Math.max(peak, ++running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return { ...failedResult(req, "crash", ""), success: true, error: null, tps: 10 };
      },
    }));
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [scripted([sub("a", 1)])], executor: parallel(), sinks: [], log: memoryLogger(), fetchCode: hosting({ "https://code.example/a.py": program("a", 1) }), concurrency: 3 });
    await p.runUntilIdle();
    expect(peak).toBe(3);
    expect(store.submission("a")!.score).toBe(10);
  });
});
