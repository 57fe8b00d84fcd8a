import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App } from "../../api/app.ts";
import { seedScenario, THRESHOLD, type Scenario } from "../../tests/fixtures/seed-db.ts";
import { ApiFailure, createClient, networkReason, normalizeBaseUrl } from "./client.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-tui-client-"));
let sc: Scenario;
let app: App;
let url: string;

beforeAll(async () => {
  const db = join(dir, "s.db");
  sc = await seedScenario(db);
  app = (await createApp({ dbPath: db, hparams: { leader_threshold: THRESHOLD }, apiKey: "sesame", now: () => sc.now })).listen({ port: 0, hostname: "127.0.0.1" });
  url = `http://127.0.0.1:${app.server!.port}`;
});
afterAll(async () => {
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A loopback port nothing listens on: bound, read, and closed again. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const failure = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiFailure) return e;
    throw e;
  }
  throw new Error("expected an ApiFailure");
};

describe("normalizeBaseUrl", () => {
  test("adds http:// to host:port and drops trailing slashes", () => {
    expect(normalizeBaseUrl("127.0.0.1:8080")).toBe("http://127.0.0.1:8080");
    expect(normalizeBaseUrl("https://api.example.org/crusades/")).toBe("https://api.example.org/crusades");
  });
  test("refuses what is not an http(s) URL", () => {
    expect(() => normalizeBaseUrl("ftp://x")).toThrow("http:// or https://");
    expect(() => normalizeBaseUrl("http://exa mple")).toThrow("is not a URL");
  });
});

describe("against the real API", () => {
  test("the dashboard documents parse, with the seeded leader", async () => {
    const d = await createClient({ url, apiKey: "sesame" }).dashboard();
    expect(d.overview.leader?.submission_id).toBe(sc.ids.leader);
    expect(d.leaderboard.items[0]!.submission_id).toBe(sc.ids.leader);
    expect(d.recent.items.map((s) => s.id)).toContain(sc.ids.queued);
    expect(d.history.items.at(-1)!.submission_id).toBe(sc.ids.leader);
    expect(d.status.state).toBe("evaluating");
  });

  test("detail: runs and code once evaluated; a reason instead of code before", async () => {
    const c = createClient({ url, apiKey: "sesame" });
    const done = await c.detail(sc.ids.runnerUp);
    expect(done.runs.items).toHaveLength(5);
    expect(done.code?.code).toContain("def inner_steps");
    const pending = await c.detail(sc.ids.evaluating);
    expect(pending.code).toBeNull();
    expect(pending.codeNote).toContain("once evaluation has finished");
    const unfetched = await c.detail(sc.ids.unfetched);
    expect(unfetched.codeNote).toContain("before its code was fetched");
  });

  test("detail reuses code it already holds for the same hash", async () => {
    const c = createClient({ url, apiKey: "sesame" });
    const first = await c.detail(sc.ids.leader);
    const again = await c.detail(sc.ids.leader, first.code);
    expect(again.code).toBe(first.code!); // same object: not fetched again
  });

  test("an unknown id is not_found", async () => {
    const e = await failure(createClient({ url, apiKey: "sesame" }).detail("chain:1:nobody"));
    expect(e.kind).toBe("not_found");
  });

  test("401 says whether the key is missing or wrong", async () => {
    const missing = await failure(createClient({ url }).dashboard());
    expect(missing.kind).toBe("unauthorized");
    expect(missing.message).toContain("requires an API key");
    const wrong = await failure(createClient({ url, apiKey: "nope" }).dashboard());
    expect(wrong.message).toContain("API key rejected");
  });

});

describe("a server that is not the Crusades API", () => {
  const serve = async (type: string, body: string) => {
    const srv = createHttpServer((_, res) => res.writeHead(200, { "content-type": type }).end(body));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    return { srv, url: `http://127.0.0.1:${(srv.address() as { port: number }).port}` };
  };

  test("HTML is a bad response that says so", async () => {
    const { srv, url } = await serve("text/html", "<h1>hello</h1>");
    try {
      const e = await failure(createClient({ url }).dashboard());
      expect(e.kind).toBe("bad_response");
      expect(e.message).toContain("did not return JSON");
    } finally {
      srv.close();
    }
  });

  test("JSON of another shape names the field that broke", async () => {
    const { srv, url } = await serve("application/json", JSON.stringify({ total_submissions: "many" }));
    try {
      const e = await failure(createClient({ url }).dashboard());
      expect(e.kind).toBe("bad_response");
      expect(e.message).toContain("total_submissions");
      expect(e.message).toContain("different version");
    } finally {
      srv.close();
    }
  });
});

describe("unreachable", () => {
  test("a closed port reads as connection refused, naming the URL", async () => {
    const port = await deadPort();
    const e = await failure(createClient({ url: `http://127.0.0.1:${port}` }).dashboard());
    expect(e.kind).toBe("unreachable");
    expect(e.message).toBe(`API unreachable at http://127.0.0.1:${port}: connection refused`);
  });

  test("a server that never answers times out", async () => {
    const srv = createServer(() => {}); // accepts, never replies
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      const e = await failure(createClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 300 }).dashboard());
      expect(e.kind).toBe("unreachable");
      expect(e.message).toContain("no answer within 0.3s");
    } finally {
      srv.close();
      (srv as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    }
  });

  test("runtime error shapes map to short reasons", () => {
    expect(networkReason({ cause: { code: "ECONNREFUSED" } }, 1000)).toBe("connection refused");
    expect(networkReason({ code: "ConnectionRefused", message: "Unable to connect" }, 1000)).toBe("connection refused");
    expect(networkReason({ cause: { code: "ENOTFOUND" } }, 1000)).toBe("host not found");
    expect(networkReason(new Error("something odd"), 1000)).toBe("something odd");
  });
});
