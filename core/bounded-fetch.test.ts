// fetchBounded against a loopback server that answers as a broken API would: a body that stalls after the
// headers, a declared length past the cap, a chunked body past it, and a caller that gives up first.
import { afterAll, expect, test } from "bun:test";
import { AnswerTooLarge, fetchBounded, NoAnswer } from "./bounded-fetch.ts";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/ok") return new Response('{"a":1}', { headers: { "content-type": "application/json", etag: '"x"' } });
    if (path === "/not-modified") return new Response(null, { status: 304, headers: { etag: '"x"' } });
    if (path === "/declared") return new Response("x".repeat(2_000));
    if (path === "/stall") {
      // Headers and a first chunk, then nothing: the deadline must cover the body too.
      return new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode("{")) }));
    }
    if (path === "/endless") {
      return new Response(new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(64 * 1024)) }));
    }
    return new Response("no", { status: 404 });
  },
});
afterAll(() => server.stop(true));

const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
const bounds = { timeoutMs: 300, maxBytes: 1_000 };

test("a whole answer within the bounds comes back as a Response with its status and headers", async () => {
  const res = await fetchBounded(url("/ok"), {}, bounds);
  expect([res.status, res.headers.get("etag"), await res.json()]).toEqual([200, '"x"', { a: 1 }]);
  expect((await fetchBounded(url("/not-modified"), {}, bounds)).status).toBe(304);
});

test("a body that stalls after the headers ends at the deadline as NoAnswer", async () => {
  const err = await fetchBounded(url("/stall"), {}, bounds).catch((e) => e);
  expect(err).toBeInstanceOf(NoAnswer);
  expect(err.message).toBe("no answer within 300 ms");
});

test("a body past maxBytes is refused: by its declared length, or as it streams", async () => {
  const declared = await fetchBounded(url("/declared"), {}, bounds).catch((e) => e);
  expect(declared).toBeInstanceOf(AnswerTooLarge);
  expect(declared.message).toContain("2000 bytes, more than 1000 bytes");
  const endless = await fetchBounded(url("/endless"), {}, bounds).catch((e) => e);
  expect(endless).toBeInstanceOf(AnswerTooLarge);
});

test("the caller's own abort is passed on as it is, not reported as the API's silence", async () => {
  const stop = new AbortController();
  const pending = fetchBounded(url("/stall"), { signal: stop.signal }, { ...bounds, timeoutMs: 60_000 }).catch((e) => e);
  stop.abort();
  const err = await pending;
  expect(err).not.toBeInstanceOf(NoAnswer);
  expect(err.name).toBe("AbortError");
});
