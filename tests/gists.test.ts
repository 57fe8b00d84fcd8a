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
  gh.intercept(null);
});

/** A context like the pipeline's: what is submitted is stored at once, unless the store `loses` it. */
function context({ loses = false } = {}) {
  const state = new Map<string, unknown>();
  const stored = new Set<string>();
  const rejections: Rejection[] = [];
  const handed: Submission[] = [];
  const log = memoryLogger();
  const ctx: SourceContext = {
    state: { get: <T>(k: string) => structuredClone(state.get(k)) as T | undefined, set: (k, v) => state.set(k, structuredClone(v)) },
    log,
    signal: new AbortController().signal,
    reject: (r) => rejections.push(r),
    known: (id) => stored.has(id),
    submit: (s) => {
      handed.push(s);
      if (!loses) stored.add(s.id);
    },
  };
  /** One poll: what the source handed over while it ran, then what it returned. */
  const poll = async (src: ReturnType<typeof gistsSource>) => {
    const from = handed.length;
    const returned = await src.poll(ctx);
    return [...handed.slice(from), ...returned];
  };
  return { ctx, log, rejections, handed, poll };
}

const source = (options: Parameters<typeof gistsSource>[0]) => gistsSource({ baseUrl: gh.baseUrl, rawBaseUrl: gh.baseUrl, ...options });

describe("gists source", () => {
  test("a watched gist becomes a submission pinned to its revision; a revision becomes a new submission", async () => {
    const v1 = gh.commit(GIST_A, "alice", { "train.py": train(1), "notes.md": "hello" });
    const src = source({ gists: [GIST_A] });
    const { poll } = context();

    const first = await poll(src);
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

    // Unchanged: a conditional request, answered 304, yields nothing.
    expect(await poll(src)).toEqual([]);
    const last = gh.requests.at(-1)!;
    expect(last.status).toBe(304);
    expect(last.headers["if-none-match"]).toBeTruthy();

    const v2 = gh.commit(GIST_A, "alice", { "train.py": train(2) });
    const second = await poll(src);
    expect(second.map((s) => [s.id, s.committedHash])).toEqual([[`gist:${GIST_A}:${v2}`, codeHash(train(2))]]);
    expect(second[0]!.revealBlock).toBeGreaterThan(first[0]!.revealBlock);
    // The first revision's raw URL still serves the first code: the pin holds after the edit.
    expect(await (await fetch(first[0]!.url)).text()).toBe(train(1));
  });

  test("a submission the store did not take is read again despite the ETag", async () => {
    const v = gh.commit(GIST_B, "bob", { "train.py": train(1) });
    const src = source({ gists: [GIST_B] });
    const { poll } = context({ loses: true });
    expect((await poll(src)).map((s) => s.id)).toEqual([`gist:${GIST_B}:${v}`]);
    expect((await poll(src)).map((s) => s.id)).toEqual([`gist:${GIST_B}:${v}`]);
    expect(gh.requests.every((r) => r.headers["if-none-match"] === undefined)).toBe(true);
  });

  test("a user's gists are all watched; with a hotkey map, unmapped owners are rejected", async () => {
    const c = gh.commit(GIST_C, "carol", { "solution.py": train(3) });
    const { poll, rejections } = context();
    const subs = await poll(source({ users: ["carol"], filename: "train.py" }));
    expect(subs.map((s) => [s.id, s.hotkey, s.url.endsWith("/solution.py")])).toEqual([[`gist:${GIST_C}:${c}`, "carol", true]]);

    const mapped = context();
    expect(await mapped.poll(source({ users: ["carol"], gists: [GIST_A], hotkeys: { alice: "5Alice" } }))).toMatchObject([{ hotkey: "5Alice" }]);
    expect(mapped.rejections.map((r) => [r.hotkey, r.reason])).toEqual([["carol", "unknown_owner"]]);
    expect(rejections).toEqual([]);
  });

  test("a gist without a single usable .py file, or with a truncated file, is rejected with its reason", async () => {
    gh.commit("dd5a315d61ae9438b18d", "dave", { "a.py": train(1), "b.py": train(2) });
    gh.commit("ee5a315d61ae9438b18d", "erin", { "train.py": train(1) + "#".repeat(2000) }, { truncate: true });
    const { poll, rejections } = context();
    expect(await poll(source({ gists: ["dd5a315d61ae9438b18d", "ee5a315d61ae9438b18d"] }))).toEqual([]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual([
      ["dave", "no_code"],
      ["erin", "oversize"],
    ]);
    expect(rejections[0]!.detail).toContain("more than one .py file");
    // Rejected once, not on every poll.
    await poll(source({ gists: ["dd5a315d61ae9438b18d"] }));
    expect(rejections).toHaveLength(2);
  });

  test("a spent rate limit pauses requests until the reset, then polling resumes", async () => {
    const { poll } = context();
    const src = source({ gists: [GIST_A] });
    const reset = (Math.floor(Date.now() / 1000) + 2) * 1000; // x-ratelimit-reset has whole seconds
    gh.refuse({ status: 403, until: reset });
    expect(await poll(src)).toEqual([]);
    expect(gh.requests.map((r) => r.status)).toEqual([403]);
    expect(await poll(src)).toEqual([]);
    expect(gh.requests).toHaveLength(1); // paused: no request at all
    await Bun.sleep(reset - Date.now() + 100);
    expect((await poll(src)).map((s) => s.id.split(":")[1])).toEqual([GIST_A]);
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

// GitHub's answers are input like any other: they may hang, be huge, or carry ids no GitHub would send.
describe("gists source against a broken or hostile API", () => {
  const HANG = "ab5a315d61ae9438b18d";
  const BAD = "ba5a315d61ae9438b18d";
  const revision = (version: string) => [{ version, committed_at: "2024-01-01T00:00:00Z" }];
  /** Answers GET /gists/{id} with this body instead of the gist. */
  const answerGist = (id: string, body: unknown) =>
    gh.intercept((_req, res, path) => {
      if (path !== `/gists/${id}`) return false;
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
      return true;
    });

  test("a request the API never answers ends at the timeout with one line naming the route; the poll ends", async () => {
    gh.intercept((_req, _res, path) => path === `/gists/${HANG}`); // never answers
    const { poll, log } = context();
    expect(await poll(source({ gists: [HANG, GIST_A], timeoutMs: 300 }))).toEqual([]);
    const lines = log.lines.filter((l) => l.includes(`GET /gists/${HANG}`));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("no answer within 300 ms");
  });

  test("an answer past maxResponseBytes is abandoned as it streams, not read and parsed; the next gist is read", async () => {
    const total = 60_000_000;
    let sent = 0;
    gh.intercept((_req, res, path) => {
      if (path !== `/gists/${HANG}`) return false;
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" }); // chunked: no length to refuse up front
      res.write('{"description":"');
      const chunk = Buffer.alloc(1 << 16, 0x78);
      const pump = () => {
        while (sent < total && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        if (!res.destroyed) res.end('"}');
      };
      pump();
      return true;
    });
    const v = gh.commit(GIST_A, "alice", { "train.py": train(7) });
    const { poll, log } = context();
    const subs = await poll(source({ gists: [HANG, GIST_A], maxResponseBytes: 1_000_000 }));
    expect(subs.map((s) => s.id)).toEqual([`gist:${GIST_A}:${v}`]);
    expect(sent).toBeLessThan(total / 2);
    expect(log.lines.filter((l) => l.includes(`GET /gists/${HANG}`) && l.includes("more than 1000000 bytes"))).toHaveLength(1);
  });

  test("gist ids and revision versions from the API must be GitHub's before they build an id or a URL", async () => {
    const files = { "train.py": { filename: "train.py", size: 10, truncated: false, content: train(1) } };
    const owner = { login: "octo" };
    const cases: [string, unknown][] = [
      ["a different id", { id: "../../../../x", owner, files, history: revision("a".repeat(40)) }],
      ["a traversing version", { id: BAD, owner, files, history: revision("../../../../x") }],
      ["a short version", { id: BAD, owner, files, history: revision("abc") }],
    ];
    for (const [what, body] of cases) {
      answerGist(BAD, body);
      const { poll, log, rejections } = context();
      expect(await poll(source({ gists: [BAD] })), what).toEqual([]);
      expect(rejections, what).toEqual([]);
      expect(log.lines.filter((l) => l.includes(`GET /gists/${BAD}`)), what).toHaveLength(1);
    }
    // A user's listing naming a bad id: no request is built from it.
    gh.intercept((_req, res, path) => {
      if (path !== "/users/octo/gists") return false;
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify([{ id: "../../../../x", updated_at: "2024-01-01T00:00:00Z" }]));
      return true;
    });
    const { poll, log } = context();
    expect(await poll(source({ users: ["octo"] }))).toEqual([]);
    expect(gh.requests.filter((r) => r.path.includes(".."))).toEqual([]);
    expect(log.lines.some((l) => l.includes("GET /users/octo/gists") && l.includes("not a gist id"))).toBe(true);
  });

  test("owner logins that are not GitHub logins are rejected, never stored as hotkeys", async () => {
    const logins = ["<b>lead</b>", "\u001b[31mred", "a".repeat(100_000), "a--b", "-a", "a-"];
    const ids = logins.map((_, i) => `${i}f5a315d61ae9438b18d`);
    logins.forEach((login, i) => gh.commit(ids[i]!, login, { "train.py": train(i) }));
    const ok = gh.commit("fe5a315d61ae9438b18d", "a-b", { "train.py": train(9) });
    const { poll, rejections } = context();
    const subs = await poll(source({ gists: [...ids, "fe5a315d61ae9438b18d"] }));
    expect(subs.map((s) => [s.id, s.hotkey])).toEqual([[`gist:fe5a315d61ae9438b18d:${ok}`, "a-b"]]);
    expect(rejections.map((r) => [r.hotkey, r.reason])).toEqual(logins.map(() => [null, "malformed"]));
    expect(Math.max(...rejections.map((r) => r.detail.length + r.raw.length))).toBeLessThan(400);
    expect(rejections.some((r) => r.detail.includes("\u001b"))).toBe(false);
  });

  test("a user's gists are read a bounded number of pages per poll, each handed over as soon as it is read", async () => {
    const ids = Array.from({ length: 250 }, (_, i) => `${(0x10000 + i).toString(16)}5a315d61ae9438b`);
    for (const id of ids) gh.commit(id, "paula", { "train.py": train(1) });
    const { poll, handed } = context();
    const handedBefore: number[] = []; // submissions handed over when each gist read began
    gh.intercept((_req, _res, path) => (path.startsWith("/gists/") && handedBefore.push(handed.length), false));
    const src = source({ users: ["paula"], maxPagesPerPoll: 1 });
    const seen: string[] = [];
    for (const page of [1, 2, 3]) {
      handedBefore.length = 0;
      const subs = await poll(src);
      seen.push(...subs.map((s) => s.id.split(":")[1]!));
      const reads = page === 3 ? 50 : 100;
      expect(handedBefore).toEqual(Array.from({ length: reads }, (_, i) => handed.length - reads + i));
    }
    expect(seen.sort()).toEqual([...ids].sort());
    // The walk starts over; its pages are unchanged, so each is a 304 and no gist is read again.
    gh.requests.length = 0;
    expect(await poll(src)).toEqual([]);
    expect(gh.requests.map((r) => [r.path, r.status])).toEqual([["/users/paula/gists", 304]]);
  });

  test("the pipeline stores each submission while the poll is still running", async () => {
    const store = await Store.open(join(dir, "progress.db"));
    try {
      const v = gh.commit(GIST_C, "carol", { "train.py": train(5) });
      let storedBeforeNext: boolean | undefined;
      gh.intercept((_req, _res, path) => {
        if (path === `/gists/${HANG}`) storedBeforeNext = store.hasSubmission(`gist:${GIST_C}:${v}`);
        return path === `/gists/${HANG}`;
      });
      const log = memoryLogger();
      const pipeline = createPipeline({ store, hparams: loadHParams(), profile: "tiny", sources: [source({ gists: [GIST_C, HANG], timeoutMs: 300 })], executor: processExecutor({ unsafe: true }), sinks: [], log });
      expect(await pipeline.poll()).toBe(1);
      expect(storedBeforeNext).toBe(true);
    } finally {
      store.close();
    }
  });
});
