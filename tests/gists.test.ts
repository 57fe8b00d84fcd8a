// The gists source against a loopback server speaking the GitHub REST routes it uses (Octokit pointed at
// it with baseUrl): revision pinning, conditional requests, users' gists, owner mapping, bad gists,
// rate-limit backoff, and the pipeline fetching the pinned revision.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { codeHash } from "../core/commitment.ts";
import type { Submission } from "../core/contracts.ts";
import { loadHParams } from "../core/hparams.ts";
import { memoryLogger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import type { Rejection, SourceContext } from "../core/plugin.ts";
import { Store } from "../core/storage/store.ts";
import { processExecutor } from "../plugins/executors/process.ts";
import { gistsSource, rateLimitedUntil } from "../plugins/sources/gists.ts";
import { startFakeGithub } from "./fixtures/github/server.ts";

const GIST_A = "aa5a315d61ae9438b18d";
const GIST_B = "bb5a315d61ae9438b18d";
const GIST_C = "cc5a315d61ae9438b18d";
const train = (n: number) => `# revision ${n}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;

const gh = await startFakeGithub();
const dir = mkdtempSync(join(tmpdir(), "crusades-gists-"));
afterAll(async () => {
  await gh.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  gh.requests.length = 0;
  gh.refuse(null);
});

function context() {
  const state = new Map<string, unknown>();
  const stored = new Set<string>();
  const rejections: Rejection[] = [];
  const ctx: SourceContext = {
    state: { get: <T>(k: string) => structuredClone(state.get(k)) as T | undefined, set: (k, v) => state.set(k, structuredClone(v)) },
    log: memoryLogger(),
    signal: new AbortController().signal,
    reject: (r) => rejections.push(r),
    known: (id) => stored.has(id),
  };
  return { ctx, rejections, take: (subs: Submission[]) => subs.forEach((s) => stored.add(s.id)) };
}

const source = (options: Parameters<typeof gistsSource>[0]) => gistsSource({ baseUrl: gh.baseUrl, rawBaseUrl: gh.baseUrl, ...options });

describe("gists source", () => {
  test("a watched gist becomes a submission pinned to its revision; a revision becomes a new submission", async () => {
    const v1 = gh.commit(GIST_A, "alice", { "train.py": train(1), "notes.md": "hello" });
    const src = source({ gists: [GIST_A] });
    const { ctx, take } = context();

    const first = await src.poll(ctx);
    expect(first).toEqual([
      {
        id: `gist:${GIST_A}:${v1}`,
        hotkey: "alice",
        uid: null,
        url: `${gh.baseUrl}/alice/${GIST_A}/raw/${v1}/train.py`,
        committedHash: codeHash(train(1)),
        revealBlock: expect.any(Number),
        source: "gists",
      },
    ]);
    take(first);

    // Unchanged: a conditional request, answered 304, yields nothing.
    expect(await src.poll(ctx)).toEqual([]);
    const last = gh.requests.at(-1)!;
    expect(last.status).toBe(304);
    expect(last.headers["if-none-match"]).toBeTruthy();

    const v2 = gh.commit(GIST_A, "alice", { "train.py": train(2) });
    const second = await src.poll(ctx);
    expect(second.map((s) => [s.id, s.committedHash])).toEqual([[`gist:${GIST_A}:${v2}`, codeHash(train(2))]]);
    expect(second[0]!.revealBlock).toBeGreaterThan(first[0]!.revealBlock);
    // The first revision's raw URL still serves the first code: the pin holds after the edit.
    expect(await (await fetch(first[0]!.url)).text()).toBe(train(1));
  });

  test("a submission the store did not take (killed before saving) is read again despite the ETag", async () => {
    const v = gh.commit(GIST_B, "bob", { "train.py": train(1) });
    const src = source({ gists: [GIST_B] });
    const { ctx } = context();
    expect((await src.poll(ctx)).map((s) => s.id)).toEqual([`gist:${GIST_B}:${v}`]);
    expect((await src.poll(ctx)).map((s) => s.id)).toEqual([`gist:${GIST_B}:${v}`]);
    expect(gh.requests.every((r) => r.headers["if-none-match"] === undefined)).toBe(true);
  });

  test("a user's gists are all watched; with a hotkey map, unmapped owners are rejected", async () => {
    const c = gh.commit(GIST_C, "carol", { "solution.py": train(3) });
    const { ctx, rejections } = context();
    const subs = await source({ users: ["carol"], filename: "train.py" }).poll(ctx);
    expect(subs.map((s) => [s.id, s.hotkey, s.url.endsWith("/solution.py")])).toEqual([[`gist:${GIST_C}:${c}`, "carol", true]]);

    const mapped = context();
    expect(await source({ users: ["carol"], gists: [GIST_A], hotkeys: { alice: "5Alice" } }).poll(mapped.ctx)).toMatchObject([{ hotkey: "5Alice" }]);
    expect(mapped.rejections.map((r) => [r.hotkey, r.reason])).toEqual([["carol", "unknown_owner"]]);
    expect(rejections).toEqual([]);
  });

  test("a gist without a single usable .py file, or with a truncated file, is rejected with its reason", async () => {
    gh.commit("dd5a315d61ae9438b18d", "dave", { "a.py": train(1), "b.py": train(2) });
    gh.commit("ee5a315d61ae9438b18d", "erin", { "train.py": train(1) + "#".repeat(2000) }, { truncate: true });
    const { ctx, rejections } = context();
    expect(await source({ gists: ["dd5a315d61ae9438b18d", "ee5a315d61ae9438b18d"] }).poll(ctx)).toEqual([]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([
      ["dave", "no_code"],
      ["erin", "oversize"],
    ]);
    expect(rejections[0]!.detail).toContain("more than one .py file");
    // Rejected once, not on every poll.
    await source({ gists: ["dd5a315d61ae9438b18d"] }).poll(ctx);
    expect(rejections).toHaveLength(2);
  });

  test("a spent rate limit pauses requests until the reset, then polling resumes", async () => {
    const { ctx } = context();
    const src = source({ gists: [GIST_A] });
    const reset = (Math.floor(Date.now() / 1000) + 2) * 1000; // x-ratelimit-reset has whole seconds
    gh.refuse({ status: 403, until: reset });
    expect(await src.poll(ctx)).toEqual([]);
    expect(gh.requests.map((r) => r.status)).toEqual([403]);
    expect(await src.poll(ctx)).toEqual([]);
    expect(gh.requests).toHaveLength(1); // paused: no request at all
    await Bun.sleep(reset - Date.now() + 100);
    expect((await src.poll(ctx)).map((s) => s.id.split(":")[1])).toEqual([GIST_A]);
    expect(gh.requests.at(-1)!.status).toBe(200);
  }, 10_000);

  test("retry-after is honoured over the reset time", () => {
    const now = 1_000_000;
    expect(rateLimitedUntil(429, { "retry-after": "30" }, now, 60_000)).toBe(now + 30_000);
    expect(rateLimitedUntil(403, { "retry-after": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2000" }, now, 60_000)).toBe(now + 5_000);
    expect(rateLimitedUntil(403, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2000" }, now, 60_000)).toBe(2_000_000);
    expect(rateLimitedUntil(429, {}, now, 60_000)).toBe(now + 60_000);
    expect(rateLimitedUntil(403, { "x-ratelimit-remaining": "10" }, now, 60_000)).toBeNull(); // a plain 403 is not a rate limit
    expect(rateLimitedUntil(200, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2000" }, now, 60_000)).toBe(2_000_000);
  });

  test("the pipeline fetches and pins exactly the revision the API showed", async () => {
    const store = await Store.open(join(dir, "gists.db"));
    try {
      const pipeline = createPipeline({
        store,
        hparams: loadHParams(),
        profile: "tiny",
        sources: [source({ gists: [GIST_A] })],
        executor: processExecutor({ unsafe: true }),
        sinks: [],
        log: memoryLogger(),
        allowLoopbackCode: true,
      });
      expect(await pipeline.poll()).toBe(1);
      expect(await pipeline.fetchPending()).toBe(1);
      const [s] = store.submissionsIn("evaluating");
      expect(s!.id.startsWith(`gist:${GIST_A}:`)).toBe(true);
      expect(new TextDecoder().decode(store.code(s!.code_sha256!))).toBe(train(2));
    } finally {
      store.close();
    }
  });

  test("bad options name the field", () => {
    expect(() => gistsSource({})).toThrow(/source "gists": options.gists: give at least one gist id or user/);
    expect(() => gistsSource({ gists: ["not a gist"] })).toThrow(/options.gists.0/);
  });
});
