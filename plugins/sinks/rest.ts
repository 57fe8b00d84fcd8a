// Sink: POSTs every score and weights event as JSON to the configured URLs, signed so a receiver can
// tell it came from this validator:
//   X-Crusades-Timestamp: unix seconds
//   X-Crusades-Signature: sha256=<hex HMAC-SHA256(secret, `${timestamp}.${body}`)>
//   Idempotency-Key:      the event id (stable across retries and restarts)
// A non-2xx answer, a timeout or a refused connection throws, and the core's outbox retries the event
// later with backoff, in order, without holding up other sinks. A URL that already took an event is not
// sent it again by this process; after a restart it may be, which is what the idempotency key is for.
import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { defineSink, type SinkEvent } from "../../core/plugin.ts";

export const SIGNATURE_HEADER = "x-crusades-signature";
export const TIMESTAMP_HEADER = "x-crusades-timestamp";

export const RestSinkOptions = z
  .object({
    urls: z.array(z.string().url().regex(/^https?:\/\//, "an http(s) URL")).min(1, "at least one URL").describe("Receivers; each gets every event."),
    secret: z.string().min(16, "at least 16 characters").optional().describe("HMAC-SHA256 signing secret; prefer `secretEnv` so it stays out of the config file."),
    secretEnv: z.string().min(1).optional().describe("Name of the environment variable holding the signing secret."),
    timeoutMs: z.number().int().positive().default(10_000).describe("Per request, connect to last byte."),
    kinds: z.array(z.enum(["score", "weights"])).min(1).default(["score", "weights"]).describe("Event kinds to send; others are skipped."),
  })
  .strict()
  .refine((o) => (o.secret === undefined) !== (o.secretEnv === undefined), { message: "give exactly one of secret or secretEnv", path: ["secret"] });

export function sign(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/**
 * For receivers: true when `signature` is this body's signature under `secret` and the timestamp is
 * within `toleranceSeconds` of now (a captured request cannot be replayed later).
 */
export function verifySignature(secret: string, timestamp: string, body: string, signature: string, toleranceSeconds = 300, now = Date.now()): boolean {
  const t = Number(timestamp);
  if (!/^\d+$/.test(timestamp) || Math.abs(now / 1000 - t) > toleranceSeconds) return false;
  const want = Buffer.from(sign(secret, timestamp, body));
  const got = Buffer.from(signature);
  return want.length === got.length && timingSafeEqual(want, got);
}

export const restSink = defineSink("rest", RestSinkOptions, (opts) => {
  const sentTo = new Map<string, Set<string>>();

  function secret(): string {
    if (opts.secret) return opts.secret;
    const v = process.env[opts.secretEnv!];
    if (!v) throw new Error(`sink rest: environment variable ${opts.secretEnv} (the signing secret) is not set`);
    return v;
  }

  async function post(url: string, event: SinkEvent, body: string, key: string, signal: AbortSignal) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: sign(key, timestamp, body),
          "idempotency-key": event.id,
          "user-agent": "crusades-validator",
        },
        body,
        redirect: "manual",
        signal: AbortSignal.any([signal, AbortSignal.timeout(opts.timeoutMs)]),
      });
    } catch (e) {
      const err = e as Error;
      const why = err.name === "TimeoutError" ? `no answer within ${opts.timeoutMs} ms` : err.message;
      throw new Error(`POST ${url}: ${why}`);
    }
    // Drain so the connection can be reused; the receiver's body is only for the error message.
    const text = await res.text().catch(() => "");
    if (res.status < 200 || res.status > 299) throw new Error(`POST ${url}: HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`);
  }

  return {
    async deliver(event, ctx) {
      if (!opts.kinds.includes(event.payload.kind)) return;
      const key = secret();
      const body = JSON.stringify({ id: event.id, createdAt: event.createdAt, ...event.payload });
      const done = sentTo.get(event.id) ?? new Set<string>();
      sentTo.set(event.id, done);
      const failures: string[] = [];
      for (const url of opts.urls) {
        if (done.has(url)) continue;
        try {
          await post(url, event, body, key, ctx.signal);
          done.add(url);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
      if (failures.length) throw new Error(failures.join("; "));
      sentTo.delete(event.id);
    },
  };
});
