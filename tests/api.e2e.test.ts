// The API as a real process on loopback over a 10,000-submission store, under Bun and under Deno.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { Store } from "../core/storage/store.ts";
import { ApiError, HistoryPage, LeaderboardPage, Overview, QueuePage, SubmissionDetail, SubmissionPage, ValidatorStatus } from "../api/schemas.ts";
import { startApi, type RunningApi } from "./fixtures/api-server.ts";
import { QUEUED_TAIL, seedBulk, THRESHOLD, type Bulk } from "./fixtures/seed-db.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-api-e2e-"));
const dbPath = join(dir, "bulk.db");
let bulk: Bulk;
let api: RunningApi;
let store: Store;

beforeAll(async () => {
  bulk = await seedBulk(dbPath, 10_000, Date.now());
  store = await Store.open(dbPath);
  api = await startApi(dbPath);
}, 120_000);

afterAll(async () => {
  await api?.stop();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(path: string, init?: RequestInit) {
  const res = await fetch(api.url + path, init);
  return { status: res.status, headers: res.headers, body: (await res.json()) as unknown };
}

describe("10,000 submissions over HTTP", () => {
  test("overview agrees with the store", async () => {
    const o = Overview.parse((await get("/api/stats/overview")).body);
    const c = store.counts();
    expect(o.total_submissions).toBe(10_000);
    expect(o.total_submissions).toBe(Object.values(c).reduce((a, b) => a + b, 0));
    expect(o.leader?.submission_id).toBe(bulk.leaderId);
    expect(o.top_tps).toBe(store.leader(THRESHOLD)!.score);
    const dayAgo = bulk.now - 86_400_000;
    const expected24h = store.db.prepare("SELECT COUNT(*) AS n FROM submissions WHERE created_at > ?").get<{ n: number }>(dayAgo)!.n;
    expect(o.submissions_24h).toBe(expected24h);
    expect(o.submissions_24h).toBeGreaterThan(300);
    expect(o.improvement_24h_pct).not.toBeNull();
  }, 30_000);

  test("paging through the whole leaderboard gives the store's threshold order", async () => {
    const expected = store.leaderboard(THRESHOLD).map((e) => e.id);
    const seen: string[] = [];
    for (let offset = 0; ; offset += 500) {
      const page = LeaderboardPage.parse((await get(`/leaderboard?limit=500&offset=${offset}`)).body);
      expect(page.total).toBe(expected.length);
      seen.push(...page.items.map((r) => r.submission_id));
      if (page.items.length < 500) break;
    }
    expect(seen).toEqual(expected);
  }, 60_000);

  test("submissions: totals, the last page, filters", async () => {
    const last = SubmissionPage.parse((await get("/api/submissions?limit=500&offset=9800")).body);
    expect(last.total).toBe(10_000);
    expect(last.items).toHaveLength(200);
    const failed = SubmissionPage.parse((await get("/api/submissions?outcome=failed&limit=1")).body);
    expect(failed.total).toBe(store.db.prepare("SELECT COUNT(*) AS n FROM submissions WHERE error_code IS NOT NULL").get<{ n: number }>()!.n);
    const mine = SubmissionPage.parse((await get(`/api/submissions?hotkey=${bulk.hotkeys[0]}&limit=500`)).body);
    expect(mine.items.every((s) => s.hotkey === bulk.hotkeys[0])).toBe(true);
    expect(mine.total).toBeGreaterThan(0);
  }, 30_000);

  test("history ends at the leader; queue and status read the same store", async () => {
    const h = HistoryPage.parse((await get("/api/stats/history?limit=1000")).body);
    expect(h.total).toBe(store.db.prepare("SELECT COUNT(*) AS n FROM leader_history").get<{ n: number }>()!.n);
    expect(h.items.at(-1)!.submission_id).toBe(bulk.leaderId);
    for (let i = 1; i < h.items.length; i++) expect(h.items[i]!.tps).toBeGreaterThan(h.items[i - 1]!.tps * (1 + THRESHOLD));
    const q = QueuePage.parse((await get("/api/queue")).body);
    expect(q.total).toBe(QUEUED_TAIL);
    const v = ValidatorStatus.parse((await get("/api/validator/status")).body);
    expect(v.queue.evaluating + v.queue.received).toBe(QUEUED_TAIL);
    expect(v.queue.pending_runs).toBe(5 * (QUEUED_TAIL - 1));
    const d = SubmissionDetail.parse((await get(`/api/submissions/${encodeURIComponent(bulk.leaderId)}`)).body);
    expect(d.rank).toBe(1);
  }, 30_000);

  test("gzip on the wire", async () => {
    const res = await fetch(`${api.url}/leaderboard?limit=500`, { headers: { "accept-encoding": "gzip" } });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(LeaderboardPage.parse(await res.json()).items).toHaveLength(500);
  }, 30_000);
});

describe("command line", () => {
  test("an API key from the flag protects data routes, not /health", async () => {
    const keyed = await startApi(dbPath, ["--api-key", "k-123"]);
    try {
      expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
      const denied = await fetch(`${keyed.url}/leaderboard`);
      expect(denied.status).toBe(401);
      ApiError.parse(await denied.json());
      expect((await fetch(`${keyed.url}/leaderboard`, { headers: { "x-api-key": "k-123" } })).status).toBe(200);
    } finally {
      await keyed.stop();
    }
  }, 60_000);

  test("bad flags and a missing database exit 2 with one clear line", () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ["scripts/api.ts", ...args], { encoding: "utf8" });
    const missing = run("--db", join(dir, "nope.db"));
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim()).toMatch(/^error: no database at .*nope\.db/);
    const port = run("--db", dbPath, "--port", "http");
    expect(port.status).toBe(2);
    expect(port.stderr).toContain("--port must be an integer");
    expect(run().stderr).toContain("--db is required");
  }, 30_000);
});

describe("under Deno", () => {
  test("Deno.serve(app.fetch) serves the same documents", async () => {
    const deno = await startApi(dbPath, [], "deno", 90_000);
    try {
      for (const path of ["/leaderboard?limit=3", "/api/stats/history?limit=5", `/api/submissions/${encodeURIComponent(bulk.leaderId)}/code`]) {
        const [a, b] = await Promise.all([get(path), fetch(deno.url + path).then((r) => r.json())]);
        expect(b).toEqual(a.body);
      }
      const bad = await fetch(`${deno.url}/api/submissions?limit=0`);
      expect(bad.status).toBe(400);
      expect(ApiError.parse(await bad.json()).message).toContain("query.limit");
      for (const asset of ["/", "/assets/app.js", "/openapi/assets/swagger-ui.css", "/openapi/json"]) {
        const r = await fetch(deno.url + asset);
        expect({ asset, status: r.status }).toEqual({ asset, status: 200 });
        await r.arrayBuffer();
      }
      const gz = await fetch(`${deno.url}/leaderboard?limit=200`, { headers: { "accept-encoding": "gzip" } });
      expect(gz.headers.get("content-encoding")).toBe("gzip");
      await gz.arrayBuffer();
    } finally {
      await deno.stop();
    }
  }, 120_000);
});
