import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { failedResult, type EvaluationResult } from "../contracts.ts";
import type { SinkPayload } from "../plugin.ts";
import { migrations } from "./migrations.ts";
import { openDatabase } from "./sqlite.ts";
import { Store } from "./store.ts";

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "crusades-store-"));
  store = await Store.open(join(dir, "v.db"));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const sub = (id: string, revealBlock = 10, hotkey = `hk-${id}`) => ({ id, hotkey, uid: 5, url: `https://example.com/${id}.py`, revealBlock, source: "test" });
const bytes = (s: string) => new TextEncoder().encode(s);
const ok = (taskId: string, runIndex: number, tps: number): EvaluationResult => ({
  ...failedResult({ task_id: taskId, submission_id: "a", run_index: runIndex }, "crash", ""),
  success: true,
  error: null,
  tps,
});
const payload = (): SinkPayload => ({ kind: "weights", decisionId: 0, block: null, uids: [], weights: [], reason: "", leaderSubmissionId: null });

describe("Store", () => {
  test("migrations set user_version, enable WAL and foreign keys, and re-open cleanly", async () => {
    const db = await openDatabase(join(dir, "v.db"));
    expect(db.prepare("PRAGMA user_version").get<{ user_version: number }>()!.user_version).toBe(migrations.length);
    expect(db.prepare("PRAGMA journal_mode").get<{ journal_mode: string }>()!.journal_mode).toBe("wal");
    expect(() => db.prepare("INSERT INTO runs(submission_id, run_index, state) VALUES ('nope', 0, 'pending')").run()).toThrow(/FOREIGN KEY/);
    db.close();
    const again = await Store.open(join(dir, "v.db"));
    again.close();
  });

  test("a database from a newer build is refused with a clear message", async () => {
    store.db.exec("PRAGMA user_version = 999");
    expect(Store.open(join(dir, "v.db"))).rejects.toThrow(/schema version 999/);
  });

  test("submissions are inserted once", () => {
    expect(store.addSubmission(sub("a"))).toBe(true);
    expect(store.addSubmission(sub("a"))).toBe(false);
    expect(store.hasSubmission("a")).toBe(true);
    expect(store.submission("a")!.state).toBe("received");
  });

  test("pinAndQueue stores exact bytes, queues N runs and refuses a second pin", () => {
    store.addSubmission(sub("a"));
    store.pinAndQueue("a", bytes("code\u00e9"), "f".repeat(64), 3);
    expect(new TextDecoder().decode(store.code("f".repeat(64))!)).toBe("code\u00e9");
    expect(store.runs("a").map((r) => r.state)).toEqual(["pending", "pending", "pending"]);
    expect(store.submission("a")!.state).toBe("evaluating");
    expect(() => store.pinAndQueue("a", bytes("x"), "e".repeat(64), 3)).toThrow(/cannot move to fetched/);
    expect(store.runs("a")).toHaveLength(3);
  });

  test("runs are claimed oldest submission first, and only the claiming attempt can finish one", () => {
    store.addSubmission(sub("a"));
    store.addSubmission(sub("b"));
    store.pinAndQueue("b", bytes("b"), "b".repeat(64), 1);
    store.pinAndQueue("a", bytes("a"), "a".repeat(64), 1);
    const first = store.claimRun("t1", "s1")!;
    expect(first.submission_id).toBe("a");
    expect(first.attempts).toBe(1);
    expect(store.finishRun("a", 0, "someone-else", ok("t1", 0, 5))).toBe(false);
    expect(store.finishRun("a", 0, "t1", ok("t1", 0, 5))).toBe(true);
    expect(store.finishRun("a", 0, "t1", ok("t1", 0, 5))).toBe(false);
    expect(store.claimRun("t2", "s2")!.submission_id).toBe("b");
    expect(store.claimRun("t3", "s3")).toBeUndefined();
  });

  test("runs of the oldest submissions interleave, so no single submission absorbs a load spike", () => {
    for (const id of ["a", "b", "c", "d", "e"]) {
      store.addSubmission(sub(id));
      store.pinAndQueue(id, bytes(id), id.repeat(64), 2);
    }
    const order: string[] = [];
    for (let i = 0; ; i++) {
      const r = store.claimRun(`t${i}`, "s");
      if (!r) break;
      order.push(`${r.submission_id}${r.run_index}`);
    }
    // a leaves the window once its last run is claimed, and e takes its place.
    expect(order).toEqual(["a0", "b0", "c0", "d0", "a1", "e0", "b1", "c1", "d1", "e1"]);
  });

  test("interrupted runs are re-queued and claimed again with a new nonce", () => {
    store.addSubmission(sub("a"));
    store.pinAndQueue("a", bytes("a"), "a".repeat(64), 1);
    store.claimRun("t1", "s1");
    expect(store.requeueInterrupted()).toBe(1);
    const again = store.claimRun("t2", "s2")!;
    expect(again).toMatchObject({ attempts: 2, task_id: "t2", seed: "s2" });
    expect(store.finishRun("a", 0, "t1", ok("t1", 0, 5))).toBe(false);
  });

  test("settle scores, records the leader change and queues one event per sink; delivery publishes", () => {
    store.addSubmission(sub("a"));
    store.pinAndQueue("a", bytes("a"), "a".repeat(64), 1);
    store.claimRun("t1", "s1");
    store.finishRun("a", 0, "t1", ok("t1", 0, 5));
    expect(store.readyToScore().map((s) => s.id)).toEqual(["a"]);
    store.settle("a", { ok: true, score: 5, successfulRuns: 1 }, 0.01, ["rest", "chain"], payload);
    expect(store.submission("a")).toMatchObject({ state: "scored", score: 5 });
    expect(store.leader(0.01)?.id).toBe("a");
    expect(store.db.prepare("SELECT COUNT(*) AS n FROM leader_history").get<{ n: number }>()!.n).toBe(1);
    expect(store.pendingDeliveries().map((d) => d.sink).sort()).toEqual(["chain", "rest"]);
    store.markDelivered("score:a", "rest");
    expect(store.submission("a")!.state).toBe("scored");
    store.markDelivered("score:a", "chain");
    expect(store.submission("a")!.state).toBe("published");
    expect(store.pendingDeliveries()).toEqual([]);
  });

  test("a failed submission never becomes leader and a failed delivery waits for its retry time", () => {
    store.addSubmission(sub("a"));
    store.settle("a", { ok: false, code: "fetch_timeout", message: "slow", successfulRuns: 0 }, 0.01, ["rest"], payload);
    expect(store.submission("a")).toMatchObject({ state: "failed", error_code: "fetch_timeout" });
    expect(store.leader(0.01)).toBeNull();
    store.markDeliveryFailed("score:a", "rest", "down", Date.now() + 60_000);
    expect(store.pendingDeliveries()).toEqual([]);
  });

  test("with no sinks a settled submission is published at once", () => {
    store.addSubmission(sub("a"));
    store.settle("a", { ok: false, code: "x", message: "y", successfulRuns: 0 }, 0.01, [], payload);
    expect(store.submission("a")!.state).toBe("published");
  });

  test("a transition from the wrong state throws and rolls back the whole transaction", () => {
    store.addSubmission(sub("a"));
    expect(() => store.settle("a", { ok: true, score: 1, successfulRuns: 1 }, 0.01, ["rest"], payload)).toThrow(/cannot move to scored/);
    expect(store.pendingDeliveries()).toEqual([]);
    expect(store.submission("a")!.state).toBe("received");
  });

  test("plugin state is namespaced and survives reopening", async () => {
    store.pluginState("source:x").set("cursor", { block: 42 });
    store.pluginState("source:y").set("cursor", 1);
    store.close();
    store = await Store.open(join(dir, "v.db"));
    expect(store.pluginState("source:x").get("cursor")).toEqual({ block: 42 });
    expect(store.pluginState("source:y").get<number>("cursor")).toBe(1);
  });
});
