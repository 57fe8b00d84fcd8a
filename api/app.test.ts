import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { z } from "zod";
import { Store } from "../core/storage/store.ts";
import { damageInnerPages, result, seedEmpty, seedScenario, THRESHOLD, type Scenario } from "../tests/fixtures/seed-db.ts";
import type { Database } from "../core/storage/sqlite.ts";
import { memoryLogger } from "../core/log.ts";
import { migrations } from "../core/storage/migrations.ts";
import { createApp, openStoreForApi, type App } from "./app.ts";
import {
  ApiError,
  Code,
  Health,
  HistoryPage,
  LeaderboardPage,
  Overview,
  QueuePage,
  RejectionPage,
  RunPage,
  SubmissionDetail,
  SubmissionPage,
  ValidatorStatus,
  WeightPage,
} from "./schemas.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-api-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function call(app: App, path: string, init: RequestInit = {}) {
  const res = await app.handle(new Request(`http://localhost${path}`, init));
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

/** GET, expect `status`, and check the body against the schema the route promises for it. */
async function expectDoc<S extends z.ZodType>(app: App, path: string, schema: S, status = 200, init: RequestInit = {}): Promise<z.infer<S>> {
  const r = await call(app, path, init);
  expect({ path, status: r.status }).toEqual({ path, status });
  const parsed = schema.safeParse(r.body);
  if (!parsed.success) throw new Error(`${path}: ${JSON.stringify(parsed.error.issues)}\n${JSON.stringify(r.body).slice(0, 500)}`);
  return parsed.data;
}

const enc = encodeURIComponent;

describe("seeded scenario", () => {
  let app: App;
  let sc: Scenario;
  let store: Store;
  let db: Database;

  beforeAll(async () => {
    const path = join(dir, "scenario.db");
    sc = await seedScenario(path);
    db = await openStoreForApi(path);
    app = await createApp({ db, hparams: { leader_threshold: THRESHOLD }, now: () => sc.now });
    store = await Store.open(path);
  });
  afterAll(() => {
    store.close();
    db.close();
  });

  test("health", async () => {
    const h = await expectDoc(app, "/health", Health);
    expect(h.schema_version).toBe(migrations.length);
  });

  test("overview: 24 h window, threshold leader and its improvement over the leader a day ago", async () => {
    const o = await expectDoc(app, "/api/stats/overview", Overview);
    expect(o).toMatchObject({
      total_submissions: 9,
      submissions_24h: 5, // unfetched, leader, runner-up, evaluating, queued
      active_miners_24h: 5,
      total_miners: 6,
      scored_total: 5,
      failed_total: 2,
      top_tps: 1495,
      leader_24h_ago_tps: 1200,
      improvement_24h_pct: 24.58,
      leader_threshold: THRESHOLD,
    });
    expect(o.leader?.submission_id).toBe(sc.ids.leader);
    expect(o.leader?.since).toBe(new Date(sc.now - 10 * 3_600_000 + 26 * 60_000).toISOString());
  });

  test("leaderboard: the leader first although the runner-up is faster by less than the threshold", async () => {
    const lb = await expectDoc(app, "/leaderboard", LeaderboardPage);
    expect(lb.items.map((r) => r.submission_id)).toEqual([sc.ids.leader, sc.ids.runnerUp, sc.ids.second, sc.ids.copy, sc.ids.first]);
    expect(lb.items[1]!.tps).toBeGreaterThan(lb.items[0]!.tps);
    expect(lb.items.map((r) => r.rank)).toEqual([1, 2, 3, 4, 5]);
    expect(lb.items.filter((r) => r.is_leader).map((r) => r.submission_id)).toEqual([sc.ids.leader]);
    // the store's own ranking, computed by a different query, agrees
    expect(lb.items.map((r) => r.submission_id)).toEqual(store.leaderboard(THRESHOLD).map((e) => e.id));
    const alias = await expectDoc(app, "/api/leaderboard?limit=2&offset=1", LeaderboardPage);
    expect(alias.items.map((r) => [r.rank, r.submission_id, r.is_leader])).toEqual([
      [2, sc.ids.runnerUp, false],
      [3, sc.ids.second, false],
    ]);
    expect(alias.total).toBe(5);
  });

  test("submissions: newest first, pages cover everything once, filters", async () => {
    const all = await expectDoc(app, "/api/submissions?limit=500", SubmissionPage);
    expect(all.total).toBe(9);
    expect(all.items[0]!.id).toBe(sc.ids.queued);
    const seen: string[] = [];
    for (let offset = 0; offset < 9; offset += 4) {
      const p = await expectDoc(app, `/api/submissions?limit=4&offset=${offset}`, SubmissionPage);
      expect(p.total).toBe(9);
      expect(p.limit).toBe(4);
      expect(p.offset).toBe(offset);
      seen.push(...p.items.map((s) => s.id));
    }
    expect(seen).toEqual(all.items.map((s) => s.id));
    const past = await expectDoc(app, "/api/submissions?offset=50", SubmissionPage);
    expect(past).toMatchObject({ items: [], total: 9 });

    const failed = await expectDoc(app, "/api/submissions?outcome=failed", SubmissionPage);
    expect(failed.items.map((s) => s.id).sort()).toEqual([sc.ids.crashed, sc.ids.unfetched].sort());
    expect(failed.items.find((s) => s.id === sc.ids.crashed)?.error_code).toBe("no_successful_runs");
    const scored = await expectDoc(app, "/api/submissions?outcome=scored", SubmissionPage);
    expect(scored.total).toBe(5);
    expect((await expectDoc(app, "/api/submissions?state=scored", SubmissionPage)).items.map((s) => s.id)).toEqual([sc.ids.runnerUp]);
    const evaluating = await expectDoc(app, "/api/submissions?state=evaluating", SubmissionPage);
    expect(evaluating.items).toHaveLength(1);
    expect(evaluating.items[0]).toMatchObject({ id: sc.ids.evaluating, outcome: "evaluating", runs_done: 2, runs_planned: 5, code_available: false });
    const mine = await expectDoc(app, `/api/submissions?hotkey=${sc.hotkeys[2]}`, SubmissionPage);
    expect(mine.items.map((s) => s.id)).toEqual([sc.ids.leader, sc.ids.second]);
    expect((await expectDoc(app, "/api/submissions?hotkey=nobody", SubmissionPage)).total).toBe(0);
  });

  test("submission detail: rank, and the URL hidden until evaluation finished", async () => {
    const d = await expectDoc(app, `/api/submissions/${enc(sc.ids.leader)}`, SubmissionDetail);
    expect(d).toMatchObject({ id: sc.ids.leader, rank: 1, is_leader: true, outcome: "scored", score: 1495, successful_runs: 4, code_available: true });
    expect(d.url).toContain("/leader/");
    expect(d.code_size).toBeGreaterThan(100);
    const e = await expectDoc(app, `/api/submissions/${enc(sc.ids.evaluating)}`, SubmissionDetail);
    expect(e).toMatchObject({ url: null, rank: null, is_leader: false, code_available: false });
    const f = await expectDoc(app, `/api/submissions/${enc(sc.ids.crashed)}`, SubmissionDetail);
    expect(f).toMatchObject({ outcome: "failed", rank: null, code_available: true });
    const nf = await expectDoc(app, `/api/submissions/${enc("chain:1:nobody")}`, ApiError, 404);
    expect(nf.message).toContain("chain:1:nobody");
  });

  test("runs: results, failures and in-flight runs; 404 for an unknown submission", async () => {
    const runs = await expectDoc(app, `/api/submissions/${enc(sc.ids.leader)}/runs`, RunPage);
    expect(runs.total).toBe(5);
    expect(runs.items.map((r) => r.success)).toEqual([true, true, false, true, true]);
    expect(runs.items[2]).toMatchObject({ error_code: "timeout", tps: 0 });
    expect(runs.items[0]).toMatchObject({ tps: 1500, total_tokens: 20480, device: "NVIDIA H100 80GB HBM3", data_sha256: "5".repeat(64) });
    expect(runs.items[0]!.checks.map((c) => c.name)).toEqual(["token_count", "loss"]);
    const page = await expectDoc(app, `/api/submissions/${enc(sc.ids.leader)}/runs?limit=2&offset=3`, RunPage);
    expect(page.items.map((r) => r.run_index)).toEqual([3, 4]);
    const live = await expectDoc(app, `/api/submissions/${enc(sc.ids.evaluating)}/runs`, RunPage);
    expect(live.items.map((r) => r.state)).toEqual(["done", "done", "running", "pending", "pending"]);
    await expectDoc(app, `/api/submissions/nope/runs`, ApiError, 404);
  });

  test("code: the exact bytes once evaluated; 403 while queued or evaluating; 404 when unknown or never fetched", async () => {
    const c = await expectDoc(app, `/api/submissions/${enc(sc.ids.leader)}/code`, Code);
    expect(c.code).toContain("</script><script>window.__xss = 1</script>");
    expect(c.code).toContain("def inner_steps(");
    expect(c.size).toBe(new TextEncoder().encode(c.code).byteLength);
    expect(new Bun.CryptoHasher("sha256").update(c.code).digest("hex")).toBe(c.code_sha256);
    expect((await expectDoc(app, `/api/submissions/${enc(sc.ids.crashed)}/code`, Code)).code).toContain("# crashed");
    for (const id of [sc.ids.evaluating, sc.ids.queued]) {
      const denied = await expectDoc(app, `/api/submissions/${enc(id)}/code`, ApiError, 403);
      expect(denied.error).toBe("not_evaluated");
      expect(denied.message).toMatch(/once its evaluation has finished/);
    }
    expect((await expectDoc(app, `/api/submissions/${enc(sc.ids.unfetched)}/code`, ApiError, 404)).error).toBe("no_code");
    expect((await expectDoc(app, `/api/submissions/nope/code`, ApiError, 404)).error).toBe("not_found");
  });

  test("history: each change of leader, chronological; pages count back from the newest", async () => {
    const h = await expectDoc(app, "/api/stats/history", HistoryPage);
    expect(h.items.map((p) => [p.submission_id, p.tps])).toEqual([
      [sc.ids.first, 1000],
      [sc.ids.second, 1200],
      [sc.ids.leader, 1495],
    ]);
    expect(h.items[2]!.previous_submission_id).toBe(sc.ids.second);
    const last2 = await expectDoc(app, "/api/stats/history?limit=2", HistoryPage);
    expect(last2.items.map((p) => p.submission_id)).toEqual([sc.ids.second, sc.ids.leader]);
    const older = await expectDoc(app, "/api/stats/history?limit=2&offset=2", HistoryPage);
    expect(older.items.map((p) => p.submission_id)).toEqual([sc.ids.first]);
    expect(older.total).toBe(3);
  });

  test("queue: claim order, run progress, counts", async () => {
    const q = await expectDoc(app, "/api/queue", QueuePage);
    expect(q.items.map((i) => [i.position, i.submission_id, i.state, i.runs_done, i.runs_running])).toEqual([
      [1, sc.ids.evaluating, "evaluating", 2, 1],
      [2, sc.ids.queued, "received", 0, 0],
    ]);
    expect(q.counts).toEqual({ received: 1, fetched: 0, evaluating: 1, pending_runs: 2, running_runs: 1 });
    expect(q.oldest_waiting_seconds).toBe(2 * 3600);
    expect((await expectDoc(app, "/api/queue?offset=1", QueuePage)).items[0]?.position).toBe(2);
  });

  test("validator status: what the validator reported plus what the store shows", async () => {
    const v = await expectDoc(app, "/api/validator/status", ValidatorStatus);
    expect(v).toMatchObject({
      state: "evaluating",
      reported: true,
      heartbeat_age_seconds: 60,
      pid: 4242,
      network: "local",
      netuid: 3,
      uptime_seconds: 6 * 3600,
      current: { submission_id: sc.ids.evaluating, run_index: 2 },
      last_weights_block: 5100,
      runs_last_hour: 2,
      failed_runs_last_hour: 0,
      queue: { received: 1, evaluating: 1, pending_runs: 2, running_runs: 1 },
    });
    expect(v.success_rate).toBeCloseTo(5 / 7, 10);
  });

  test("weights and rejections: newest first, filters, totals", async () => {
    const w = await expectDoc(app, "/api/weights", WeightPage);
    expect(w.items.map((d) => d.block)).toEqual([5100, 5000]);
    expect(w.items[0]).toMatchObject({ uids: [1, 4], weights: [0.95, 0.05], leader_submission_id: sc.ids.leader });
    const r = await expectDoc(app, "/api/rejections", RejectionPage);
    expect(r.total).toBe(2);
    const gists = await expectDoc(app, "/api/rejections?source=gists", RejectionPage);
    expect(gists.items.map((x) => x.reason)).toEqual(["bad_url"]);
    expect((await expectDoc(app, `/api/rejections?hotkey=${sc.hotkeys[3]}`, RejectionPage)).items[0]?.reason).toBe("rate_limited");
  });

  test.each([
    ["/api/submissions?limit=0", "query.limit"],
    ["/api/submissions?limit=501", "query.limit"],
    ["/api/submissions?limit=ten", "query.limit"],
    ["/api/submissions?offset=-1", "query.offset"],
    ["/api/submissions?limit=1.5", "query.limit"],
    ["/api/submissions?state=done", "query.state"],
    ["/api/submissions?outcome=won", "query.outcome"],
    ["/leaderboard?page=2", 'Unrecognized key: "page"'],
    ["/api/stats/history?limit=1001", "query.limit"],
    ["/api/rejections?source=", "query.source"],
  ])("400 with a message naming the problem: %s", async (path, needle) => {
    const e = await expectDoc(app, path, ApiError, 400);
    expect(e.error).toBe("bad_request");
    expect(e.message).toContain(needle);
  });

  test("unknown routes are JSON 404s; other methods on known routes are 405s; HEAD works", async () => {
    const e = await expectDoc(app, "/api/nothing-here", ApiError, 404);
    expect(e.message).toContain("/api/nothing-here");
    for (const [method, path] of [["POST", "/leaderboard"], ["DELETE", `/api/submissions/${enc(sc.ids.leader)}`], ["PUT", "/health"]] as const) {
      const r = await call(app, path, { method });
      expect({ method, path, status: r.status, allow: r.headers.get("allow") }).toEqual({ method, path, status: 405, allow: "GET, HEAD, OPTIONS" });
      expect(ApiError.parse(r.body).error).toBe("method_not_allowed");
    }
    const head = await app.handle(new Request("http://localhost/api/stats/overview", { method: "HEAD" }));
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  test("gzip when the client takes it, identical content either way", async () => {
    const plain = await app.handle(new Request("http://localhost/api/submissions?limit=50"));
    expect(plain.headers.get("content-encoding")).toBeNull();
    const text = await plain.text();
    const gz = await app.handle(new Request("http://localhost/api/submissions?limit=50", { headers: { "accept-encoding": "gzip, deflate, br" } }));
    expect(gz.headers.get("content-encoding")).toBe("gzip");
    expect(gz.headers.get("vary")).toContain("Accept-Encoding");
    const bytes = new Uint8Array(await gz.arrayBuffer());
    expect(bytes.byteLength).toBeLessThan(text.length / 2);
    expect(gunzipSync(bytes).toString("utf8")).toBe(text);
    const refused = await app.handle(new Request("http://localhost/api/submissions?limit=50", { headers: { "accept-encoding": "gzip;q=0" } }));
    expect(refused.headers.get("content-encoding")).toBeNull();
  });

  test("CORS: any origin by default, and preflight allows the key header", async () => {
    const r = await call(app, "/leaderboard", { headers: { origin: "https://dash.example" } });
    expect(r.headers.get("access-control-allow-origin")).toBe("*");
    const pre = await app.handle(new Request("http://localhost/api/stats/overview", { method: "OPTIONS", headers: { origin: "https://dash.example", "access-control-request-method": "GET" } }));
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toContain("X-API-Key");
    expect(pre.headers.get("access-control-allow-methods")).toContain("GET");
  });

  test("the dashboard page and its assets are served", async () => {
    const page = await call(app, "/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(String(page.body)).toContain("/assets/app.js");
    for (const asset of ["/assets/app.js", "/assets/app.css", "/assets/favicon.svg", "/openapi/assets/swagger-ui-bundle.js"]) {
      expect((await call(app, asset)).status).toBe(200);
    }
    const ui = await call(app, "/openapi");
    expect(String(ui.body)).toContain("/openapi/assets/swagger-ui-bundle.js");
    expect(String(ui.body)).not.toContain("unpkg.com");
  });
});

describe("API key", () => {
  let app: App;
  let db: Database;
  beforeAll(async () => {
    const path = join(dir, "keyed.db");
    await seedScenario(path);
    db = await openStoreForApi(path);
    app = await createApp({ db, hparams: { leader_threshold: THRESHOLD }, apiKey: "s3cret-key", corsOrigins: ["https://dash.example"] });
  });
  afterAll(() => db.close());

  test.each(["/leaderboard", "/api/stats/overview", "/api/submissions", "/api/validator/status", "/api/queue", "/api/weights"])("%s needs the key", async (path) => {
    const none = await expectDoc(app, path, ApiError, 401);
    expect(none.message).toContain("X-API-Key");
    await expectDoc(app, path, ApiError, 401, { headers: { "x-api-key": "s3cret-kez" } });
    await expectDoc(app, path, ApiError, 401, { headers: { "x-api-key": "" } });
    expect((await call(app, path, { headers: { "x-api-key": "s3cret-key" } })).status).toBe(200);
  });

  test("health, the page and the API description stay open", async () => {
    for (const path of ["/health", "/", "/assets/app.js", "/openapi/json"]) expect((await call(app, path)).status).toBe(200);
  });

  test("the OpenAPI document declares the key", async () => {
    const doc = (await call(app, "/openapi/json")).body as { components: { securitySchemes: Record<string, unknown> }; paths: Record<string, { get: { security?: unknown[] } }> };
    expect(doc.components.securitySchemes.apiKey).toEqual({ type: "apiKey", in: "header", name: "X-API-Key" });
    expect(doc.paths["/leaderboard"]!.get.security).toEqual([{ apiKey: [] }]);
    expect(doc.paths["/health"]!.get.security ?? []).toEqual([]);
  });

  test("CORS allowlist: listed origins are echoed, others get no grant", async () => {
    const ok = await call(app, "/health", { headers: { origin: "https://dash.example" } });
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://dash.example");
    const other = await call(app, "/health", { headers: { origin: "https://evil.example" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("empty store", () => {
  let app: App;
  let db: Database;
  beforeAll(async () => {
    const path = join(dir, "empty.db");
    await seedEmpty(path);
    db = await openStoreForApi(path);
    app = await createApp({ db, hparams: { leader_threshold: THRESHOLD } });
  });
  afterAll(() => db.close());

  test("every route answers with zeros, nulls and empty pages", async () => {
    const o = await expectDoc(app, "/api/stats/overview", Overview);
    expect(o).toMatchObject({ total_submissions: 0, submissions_24h: 0, active_miners_24h: 0, top_tps: null, leader: null, improvement_24h_pct: null });
    const v = await expectDoc(app, "/api/validator/status", ValidatorStatus);
    expect(v).toMatchObject({ state: "unknown", reported: false, uptime_seconds: null, current: null, success_rate: null, runs_last_hour: 0 });
    for (const [path, schema] of [
      ["/leaderboard", LeaderboardPage],
      ["/api/leaderboard", LeaderboardPage],
      ["/api/submissions", SubmissionPage],
      ["/api/stats/history", HistoryPage],
      ["/api/queue", QueuePage],
      ["/api/weights", WeightPage],
      ["/api/rejections", RejectionPage],
    ] as const) {
      const p = await expectDoc(app, path, schema as z.ZodType<{ items: unknown[]; total: number }>);
      expect({ path, items: p.items, total: p.total }).toEqual({ path, items: [], total: 0 });
    }
    for (const sub of ["", "/runs", "/code"]) await expectDoc(app, `/api/submissions/x${sub}`, ApiError, 404);
  });
});

describe("opening the store", () => {
  test("a missing file is refused with a clear message and not created", async () => {
    const path = join(dir, "missing.db");
    await expect(createApp({ dbPath: path, hparams: { leader_threshold: THRESHOLD } })).rejects.toThrow(/no database at .*missing\.db/);
    expect(await Bun.file(path).exists()).toBe(false);
  });

  test("a store at another schema version is refused", async () => {
    const path = join(dir, "old.db");
    const s = await Store.open(path);
    s.db.exec("PRAGMA user_version = 0");
    s.close();
    await expect(createApp({ dbPath: path, hparams: { leader_threshold: THRESHOLD } })).rejects.toThrow(/schema version 0.*run the validator/);
  });

  test("/health looks at the file itself: damage under a running app turns it into a 503", async () => {
    const path = join(dir, "damaged-later.db");
    await seedScenario(path);
    const db = await openStoreForApi(path);
    const log = memoryLogger();
    const app = await createApp({ db, hparams: { leader_threshold: THRESHOLD }, integrityCheckMs: 0, log });
    await expectDoc(app, "/health", Health);
    damageInnerPages(path);
    const e = await expectDoc(app, "/health", ApiError, 503);
    expect(e.error).toBe("store_unavailable");
    expect(e.message).toContain("damaged");
    expect(e.message).not.toContain(path);
    expect(log.lines.join("\n")).toContain(path);
    db.close();
  });

  test("a blank API key is refused rather than serving without one", async () => {
    for (const apiKey of ["", "  "]) await expect(createApp({ dbPath: join(dir, "damaged-later.db"), hparams: { leader_threshold: THRESHOLD }, apiKey })).rejects.toThrow(/API key is empty/);
  });

  test("a garbled validator status degrades to unknown instead of failing", async () => {
    const path = join(dir, "garbled.db");
    const s = await Store.open(path);
    s.db.prepare("INSERT INTO validator_state(key, value, updated_at) VALUES ('validator:status', ?, 0)").run('{"state":"dancing","pid":"x","current":{"oops":1}}');
    const app = await createApp({ store: s, hparams: { leader_threshold: THRESHOLD } });
    const v = await expectDoc(app, "/api/validator/status", ValidatorStatus);
    expect(v).toMatchObject({ state: "unknown", reported: true, pid: null, current: null });
    s.db.prepare("UPDATE validator_state SET value = 'not json' WHERE key = 'validator:status'").run();
    expect((await expectDoc(app, "/api/validator/status", ValidatorStatus)).state).toBe("unknown");
    s.close();
  });

  test("the status shows the device pool (what each slot runs, which is out and why) and every run names its slot", async () => {
    const path = join(dir, "slots.db");
    const s = await Store.open(path);
    const now = Date.now();
    const sub = { id: "chain:3:10:5Fslots", hotkey: "5Fslots", uid: 7, url: "https://code.example/a.py", revealBlock: 10, source: "chain-reveals" };
    s.addSubmission(sub);
    s.pinAndQueue(sub.id, new TextEncoder().encode("def inner_steps(): pass\n"), "a".repeat(64), 2);
    const run = s.claimRun("b".repeat(32), "c".repeat(64))!;
    const done = result(sub.id, run.run_index, "b".repeat(32), 1000, null);
    s.finishRun(sub.id, run.run_index, "b".repeat(32), { ...done, diagnostics: { ...done.diagnostics, slot: "gpu:1" } });
    s.claimRun("d".repeat(32), "e".repeat(64));
    s.setState("validator:status", {
      state: "evaluating",
      startedAt: now - 1000,
      // The validator writes every run in flight.
      current: [{ submissionId: sub.id, runIndex: 1, startedAt: now - 500, slot: "gpu:0" }],
      slots: [
        { id: "gpu:0", host: null, devices: "GPU 0: NVIDIA H100 80GB HBM3", state: "busy", run: { submissionId: sub.id, runIndex: 1, startedAt: now - 500 }, failures: 0, reason: null, runs: 3 },
        { id: "gpu:1", host: null, devices: "GPU 1: NVIDIA H100 80GB HBM3", state: "idle", run: null, failures: 1, reason: null, runs: 4 },
        { id: "gpu:2", host: null, devices: "GPU 2: NVIDIA H100 80GB HBM3", state: "out", run: null, failures: 3, reason: "3 runs in a row failed on the validator's side", runs: 3 },
        { garbage: true },
      ],
      updatedAt: now,
    });
    const app = await createApp({ store: s, hparams: { leader_threshold: THRESHOLD } });
    const v = await expectDoc(app, "/api/validator/status", ValidatorStatus);
    expect(v.current).toMatchObject({ submission_id: sub.id, run_index: 1 });
    expect(v.slots.map((x) => [x.id, x.state])).toEqual([["gpu:0", "busy"], ["gpu:1", "idle"], ["gpu:2", "out"]]);
    expect(v.slots[0]!.run).toMatchObject({ submission_id: sub.id, run_index: 1 });
    expect(v.slots[2]!.reason).toContain("in a row");
    const runs = await expectDoc(app, `/api/submissions/${encodeURIComponent(sub.id)}/runs`, RunPage);
    expect(runs.items.map((r) => r.slot)).toEqual(["gpu:1", null]);
    s.close();
  });

  test("the 24 h comparison follows the clock across cached snapshots", async () => {
    const path = join(dir, "clock.db");
    const sc = await seedScenario(path);
    const db = await openStoreForApi(path);
    let now = sc.now;
    const app = await createApp({ db, hparams: { leader_threshold: THRESHOLD }, now: () => now });
    const at = async (t: number) => {
      now = t;
      return expectDoc(app, "/api/stats/overview", Overview);
    };
    expect((await at(sc.now)).leader_24h_ago_tps).toBe(1200);
    // 15 h later the current leader was already leading a day before: no improvement
    expect(await at(sc.now + 15 * 3_600_000)).toMatchObject({ leader_24h_ago_tps: 1495, improvement_24h_pct: 0 });
    // 2.5 days earlier only the first submission had been scored a day before
    expect((await at(sc.now - 36 * 3_600_000)).leader_24h_ago_tps).toBe(1000);
    expect((await at(sc.now - 80 * 3_600_000)).leader_24h_ago_tps).toBeNull();
    expect((await at(sc.now)).leader_24h_ago_tps).toBe(1200);
    db.close();
  });

  test("a shared store handle sees the validator's own writes at once (cache invalidation)", async () => {
    const path = join(dir, "live.db");
    const sc = await seedScenario(path);
    let now = sc.now;
    const s = await Store.open(path, () => now);
    const app = await createApp({ store: s, hparams: { leader_threshold: THRESHOLD }, now: () => now });
    expect((await expectDoc(app, "/leaderboard", LeaderboardPage)).items[0]!.submission_id).toBe(sc.ids.leader);
    // the evaluating submission's remaining runs finish, far ahead of everyone
    s.requeueInterrupted();
    for (let i = 2; i < 5; i++) {
      const run = s.claimRun(`${i}`.padStart(32, "0"), "0".repeat(64))!;
      s.finishRun(run.submission_id, run.run_index, run.task_id!, result(run.submission_id, run.run_index, run.task_id!, 3000, null));
    }
    s.settle(sc.ids.evaluating, { ok: true, score: 3000, successfulRuns: 5 }, THRESHOLD, [], () => ({ kind: "weights", decisionId: 0, block: null, uids: [], weights: [], reason: "", leaderSubmissionId: null }));
    const lb = await expectDoc(app, "/leaderboard", LeaderboardPage);
    expect(lb.items[0]!.submission_id).toBe(sc.ids.evaluating);
    expect((await expectDoc(app, `/api/submissions/${enc(sc.ids.evaluating)}/code`, Code)).code).toContain("# evaluating");
    s.close();
  });
});
