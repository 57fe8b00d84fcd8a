import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import { createPipeline } from "../../core/pipeline.ts";
import { defineExecutor, defineSource, type SinkEvent } from "../../core/plugin.ts";
import { Store } from "../../core/storage/store.ts";
import { restSink, sign, verifySignature } from "./rest.ts";

const SECRET = "a-test-secret-of-enough-length";
const dir = mkdtempSync(join(tmpdir(), "crusades-rest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number | null;
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A receiver on 127.0.0.1:0 answering with `status()`, or never answering when it returns null. */
async function receiver(status: () => number | null = () => 200) {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const s = status();
      got.push({ headers: req.headers, body, status: s });
      if (s !== null) res.writeHead(s).end(s >= 300 ? "receiver says no" : "ok");
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got };
}

const event: SinkEvent = {
  id: "score:s1",
  createdAt: 1700000000000,
  payload: { kind: "score", submissionId: "s1", hotkey: "hk", uid: 4, state: "scored", score: 123.5, successfulRuns: 2, totalRuns: 2, runs: [], errorCode: null, errorMessage: null, leaderSubmissionId: "s1" },
};
const ctx = () => ({ log: memoryLogger(), signal: new AbortController().signal });

describe("rest sink", () => {
  test("POSTs the event as JSON with a verifiable signature, a timestamp and the event id as idempotency key", async () => {
    const r = await receiver();
    await restSink({ urls: [r.url], secret: SECRET }).deliver(event, ctx());
    expect(r.got).toHaveLength(1);
    const { headers, body } = r.got[0]!;
    expect(JSON.parse(body)).toEqual({ id: "score:s1", createdAt: 1700000000000, ...event.payload });
    expect(headers["content-type"]).toBe("application/json");
    expect(headers["idempotency-key"]).toBe("score:s1");
    const ts = headers["x-crusades-timestamp"] as string;
    expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(5);
    expect(headers["x-crusades-signature"]).toBe(sign(SECRET, ts, body));
    expect(verifySignature(SECRET, ts, body, headers["x-crusades-signature"] as string)).toBe(true);
  });

  test("a signature fails for another body, another secret or a stale timestamp", () => {
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = sign(SECRET, ts, "{}");
    expect(verifySignature(SECRET, ts, '{"a":1}', sig)).toBe(false);
    expect(verifySignature("another-secret-entirely", ts, "{}", sig)).toBe(false);
    const old = String(Math.floor(Date.now() / 1000) - 3600);
    expect(verifySignature(SECRET, old, "{}", sign(SECRET, old, "{}"))).toBe(false);
    expect(verifySignature(SECRET, ts, "{}", sig)).toBe(true);
  });

  test("a non-2xx answer or a receiver that never answers is an error (so the outbox retries)", async () => {
    const bad = await receiver(() => 503);
    await expect(restSink({ urls: [bad.url], secret: SECRET }).deliver(event, ctx())).rejects.toThrow(/HTTP 503: receiver says no/);
    const silent = await receiver(() => null);
    await expect(restSink({ urls: [silent.url], secret: SECRET, timeoutMs: 200 }).deliver(event, ctx())).rejects.toThrow(/no answer within 200 ms/);
    await expect(restSink({ urls: ["http://127.0.0.1:9/none"], secret: SECRET }).deliver(event, ctx())).rejects.toThrow(/POST http:\/\/127\.0\.0\.1:9\/none/);
  });

  test("with several URLs, a retry goes only to the ones that missed the event", async () => {
    const ok = await receiver();
    let down = true;
    const flaky = await receiver(() => (down ? 500 : 200));
    const sink = restSink({ urls: [ok.url, flaky.url], secret: SECRET });
    await expect(sink.deliver(event, ctx())).rejects.toThrow(/HTTP 500/);
    down = false;
    await sink.deliver(event, ctx());
    expect(ok.got).toHaveLength(1);
    expect(flaky.got).toHaveLength(2);
  });

  test("the secret can come from the environment, and its absence is named", async () => {
    const r = await receiver();
    process.env.CRUSADES_TEST_HOOK_SECRET = SECRET;
    await restSink({ urls: [r.url], secretEnv: "CRUSADES_TEST_HOOK_SECRET" }).deliver(event, ctx());
    const { headers, body } = r.got[0]!;
    expect(verifySignature(SECRET, headers["x-crusades-timestamp"] as string, body, headers["x-crusades-signature"] as string)).toBe(true);
    delete process.env.CRUSADES_TEST_HOOK_SECRET;
    await expect(restSink({ urls: [r.url], secretEnv: "CRUSADES_TEST_HOOK_SECRET" }).deliver(event, ctx())).rejects.toThrow(/CRUSADES_TEST_HOOK_SECRET .* is not set/);
  });

  test("bad options name the field", () => {
    expect(() => restSink({ urls: [], secret: SECRET })).toThrow(/sink "rest": options.urls/);
    expect(() => restSink({ urls: ["ftp://x.example/"], secret: SECRET })).toThrow(/options.urls.0/);
    expect(() => restSink({ urls: ["https://x.example/"] })).toThrow(/exactly one of secret or secretEnv/);
    expect(() => restSink({ urls: ["https://x.example/"], secret: "short" })).toThrow(/options.secret/);
  });

  test("through the pipeline: a receiver that is down gets the missed events later, each once, in order", async () => {
    let up = false;
    const r = await receiver(() => (up ? 200 : 502));
    const store = await Store.open(join(dir, "outbox.db"));
    try {
      const submissions = ["a", "b"].map((n, i) => ({ id: `s-${n}`, hotkey: `hk-${n}`, uid: 4 + i, url: `https://code.example/${n}.py`, revealBlock: 10 + i, source: "list" }));
      const code = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n";
      const pipeline = createPipeline({
        store,
        hparams: { ...loadHParams(), evaluation_runs: 1 },
        profile: "tiny",
        sources: [defineSource("list", z.object({}), () => ({ poll: async (c) => submissions.filter((s) => !c.known(s.id)) }))()],
        executor: defineExecutor("fixed", z.object({}), () => ({
          evaluate: async (req) => ({ ...failedResult(req, "crash", ""), success: true, error: null, tps: req.submission_id === "s-a" ? 100 : 200 }),
        }))(),
        sinks: [restSink({ urls: [r.url], secret: SECRET })],
        log: memoryLogger(),
        retryBaseMs: 20,
        fetchCode: async (url) => ({ ok: true, url, bytes: new TextEncoder().encode(`${code}# ${url}\n`), sha256: createHash("sha256").update(url).digest("hex") }),
      });
      await pipeline.runUntilIdle();
      expect(store.counts().published).toBe(0);
      up = true;
      await Bun.sleep(50);
      for (let i = 0; i < 20 && store.counts().published < 2; i++) {
        await pipeline.deliver();
        await Bun.sleep(20);
      }
      expect(store.counts().published).toBe(2);
      expect(r.got.filter((g) => g.status === 502).length).toBeGreaterThan(0);
      expect(r.got.filter((g) => g.status === 200).map((g) => g.headers["idempotency-key"])).toEqual(["score:s-a", "score:s-b"]);
    } finally {
      store.close();
    }
  });
});
