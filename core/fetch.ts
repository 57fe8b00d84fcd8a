// Fetches a miner's train.py from the URL it committed. The URL is attacker-chosen, so every hop is
// resolved here, every address is checked, and the socket is pinned to the checked address (no second
// DNS lookup, so no rebinding window). Redirects are followed by hand, the body is capped while it
// streams, and one deadline covers DNS, connect, headers and body.
import { createHash } from "node:crypto";
import { lookup as dnsLookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { refuseAddress } from "./net-guard.ts";
import { normalizeCodeUrl } from "./urls.ts";

export type FetchErrorCode =
  | "bad_url"
  | "scheme_not_allowed"
  | "blocked_address"
  | "dns_failed"
  | "http_status"
  | "too_large"
  | "timeout"
  | "not_utf8"
  | "html_page"
  | "json_listing"
  | "missing_inner_steps"
  | "hash_mismatch"
  | "network_error"
  | "too_many_redirects"
  | "aborted";

export type FetchResult =
  | { ok: true; url: string; bytes: Uint8Array; sha256: string }
  | { ok: false; code: FetchErrorCode; message: string };

export interface FetchOptions {
  /** First 32 hex characters of sha256(code), as committed on chain. */
  committedHash?: string;
  maxBytes?: number;
  /** One deadline for the whole fetch, every hop included. */
  timeoutMs?: number;
  maxRedirects?: number;
  /** TEST ONLY: permits 127.0.0.0/8 and ::1, nothing else. */
  allowLoopback?: boolean;
  userAgent?: string;
  /** Stops the fetch (validator shutdown): the result is `aborted`, which says nothing about the code. */
  signal?: AbortSignal;
}

class Refusal extends Error {
  constructor(
    readonly code: FetchErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// A real module-level definition at column 0; a mention in a comment or a string does not count.
const INNER_STEPS = /^(?:async[ \t]+)?def[ \t]+inner_steps[ \t]*\(/m;

type Settings = Required<Omit<FetchOptions, "committedHash" | "signal">> & { committedHash?: string };

export async function fetchCode(url: string, opts: FetchOptions = {}): Promise<FetchResult> {
  const o: Settings = {
    maxBytes: opts.maxBytes ?? 500_000,
    timeoutMs: opts.timeoutMs ?? 30_000,
    maxRedirects: opts.maxRedirects ?? 5,
    allowLoopback: opts.allowLoopback ?? false,
    userAgent: opts.userAgent ?? "crusades-validator",
    committedHash: opts.committedHash,
  };
  const deadline = new AbortController();
  const phase = { now: "starting" };
  const timer = setTimeout(() => deadline.abort(), o.timeoutMs);
  const stop = () => deadline.abort();
  opts.signal?.addEventListener("abort", stop, { once: true });
  if (opts.signal?.aborted) stop();
  try {
    const { finalUrl, bytes } = await download(normalizeCodeUrl(url), o, deadline.signal, phase);
    checkCode(bytes, finalUrl, o.committedHash);
    return { ok: true, url: finalUrl, bytes, sha256: sha256Hex(bytes) };
  } catch (e) {
    if (opts.signal?.aborted) return { ok: false, code: "aborted", message: `fetching ${url} was stopped while ${phase.now}` };
    if (e instanceof Refusal) return { ok: false, code: e.code, message: e.message };
    if (deadline.signal.aborted) return timeoutResult(o, phase.now);
    return { ok: false, code: "network_error", message: `fetching ${url} failed: ${(e as Error)?.message ?? String(e)}` };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", stop);
  }
}

function timeoutResult(o: Settings, phase: string): FetchResult {
  return {
    ok: false,
    code: "timeout",
    message: `the code was not fully downloaded within ${o.timeoutMs} ms (stalled while ${phase}); host it somewhere that serves the file promptly`,
  };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Rejects when the deadline passes, so a hung DNS lookup or socket cannot outlive it. */
function beforeDeadline<T>(work: Promise<T>, signal: AbortSignal, phase: string): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error(`deadline passed while ${phase}`));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`deadline passed while ${phase}`));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}

function parseHop(raw: string, from: URL | null): URL {
  let u: URL;
  try {
    u = from ? new URL(raw, from) : new URL(raw.trim());
  } catch {
    throw new Refusal("bad_url", from ? `the server at ${from.href} redirected to an invalid URL: ${raw}` : `not a valid URL: ${raw}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Refusal("scheme_not_allowed", `only http:// and https:// URLs are fetched, not ${u.protocol}${from ? ` (redirect from ${from.href})` : ""}`);
  }
  if (from?.protocol === "https:" && u.protocol === "http:") {
    throw new Refusal("scheme_not_allowed", `${from.href} redirected from https to plain http (${u.href}); serve the file over https throughout`);
  }
  if (u.username || u.password) throw new Refusal("bad_url", `URLs with a user name or password are not fetched: ${u.origin}`);
  return u;
}

/** Resolves the hop's host and returns the one address the socket may connect to. */
async function pinAddress(u: URL, o: Settings, signal: AbortSignal, hop: string): Promise<{ address: string; family: 4 | 6 }> {
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  let addresses: { address: string; family: number }[];
  if (isIP(host)) {
    addresses = [{ address: host, family: isIP(host) }];
  } else {
    try {
      addresses = await beforeDeadline(dnsLookup(host, { all: true }), signal, `resolving ${host}`);
    } catch (e) {
      if (signal.aborted) throw e;
      throw new Refusal("dns_failed", `${hop}: could not resolve host "${host}" (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (!addresses.length) throw new Refusal("dns_failed", `${hop}: host "${host}" has no addresses`);
  }
  // Every address must pass: a name that also points inside the network is refused outright.
  for (const a of addresses) {
    const why = refuseAddress(a.address, o.allowLoopback);
    if (why) {
      const subject = isIP(host) ? why : `host "${host}" resolves to ${why.replace(" is ", ", which is ")}`;
      throw new Refusal("blocked_address", `refusing ${hop}: ${subject}; code must be served from a public internet address`);
    }
  }
  const first = addresses[0]!;
  return { address: first.address, family: first.family === 6 ? 6 : 4 };
}

const sameAddress = (a: string | undefined, b: string) => a !== undefined && a.replace(/^::ffff:(?=\d+\.)/i, "") === b;

/** One GET to the pinned address; resolves with the response head. */
function request(u: URL, pin: { address: string; family: 4 | 6 }, o: Settings, signal: AbortSignal, phase: { now: string }) {
  return new Promise<{ res: http.IncomingMessage; req: http.ClientRequest }>((resolve, reject) => {
    const mod = u.protocol === "https:" ? https : http;
    phase.now = `connecting to ${u.host}`;
    const req = mod.request({
      protocol: u.protocol,
      hostname: u.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: u.port || undefined,
      path: u.pathname + u.search,
      method: "GET",
      agent: false,
      headers: { "user-agent": o.userAgent, accept: "text/plain, text/x-python, */*;q=0.5", "accept-encoding": "identity" },
      // Hands the socket the address that was checked instead of letting it resolve the name again.
      lookup: (_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) =>
        options?.all ? cb(null, [{ address: pin.address, family: pin.family }]) : cb(null, pin.address, pin.family),
    } as https.RequestOptions);
    const onAbort = () => req.destroy(new Error("deadline passed"));
    signal.addEventListener("abort", onAbort, { once: true });
    req.once("close", () => signal.removeEventListener("abort", onAbort));
    req.once("socket", (socket) => {
      const verify = () => {
        // Belt and braces: should a runtime ignore `lookup`, the request dies before a byte is sent.
        if (!sameAddress(socket.remoteAddress, pin.address)) {
          req.destroy(new Refusal("blocked_address", `connected to ${socket.remoteAddress ?? "an unknown address"} instead of the checked ${pin.address}`));
        } else {
          phase.now = `waiting for the response from ${u.host}`;
        }
      };
      if (socket.remoteAddress) verify();
      else socket.once("connect", verify);
    });
    req.once("response", (res) => resolve({ res, req }));
    req.on("error", reject);
    req.end();
  });
}

/** Reads the body, stopping the moment it grows past maxBytes. */
function readBody(res: http.IncomingMessage, req: http.ClientRequest, u: URL, o: Settings): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: Error | null, value?: Uint8Array) => {
      if (settled) return;
      settled = true;
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(value!);
    };
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > o.maxBytes) {
        settle(new Refusal("too_large", `${u.href} serves more than ${o.maxBytes} bytes; train.py must be at most ${o.maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.once("end", () => {
      const declared = Number(res.headers["content-length"]);
      if (res.headers["content-length"] !== undefined && declared !== size) {
        settle(new Error(`connection closed after ${size} of ${declared} bytes`));
      } else settle(null, new Uint8Array(Buffer.concat(chunks)));
    });
    res.on("error", (e) => settle(e));
    res.once("close", () => settle(new Error(`connection closed after ${size} bytes, before the body was complete`)));
    req.on("error", (e) => settle(e));
  });
}

async function download(start: string, o: Settings, signal: AbortSignal, phase: { now: string }) {
  let u = parseHop(start, null);
  for (let redirects = 0; ; redirects++) {
    const hop = redirects === 0 ? u.href : `redirect ${redirects} to ${u.href}`;
    phase.now = `resolving ${u.hostname}`;
    const pin = await pinAddress(u, o, signal, hop);
    const { res, req } = await request(u, pin, o, signal, phase);
    const status = res.statusCode ?? 0;
    if (REDIRECTS.has(status) && res.headers.location) {
      req.destroy();
      if (redirects >= o.maxRedirects) {
        throw new Refusal("too_many_redirects", `${start} redirected more than ${o.maxRedirects} times; commit the final raw URL instead`);
      }
      u = parseHop(res.headers.location, u);
      continue;
    }
    if (status < 200 || status > 299) {
      req.destroy();
      throw new Refusal("http_status", `${u.href} answered HTTP ${status}${statusHint(status)}`);
    }
    const declared = Number(res.headers["content-length"]);
    if (declared > o.maxBytes) {
      req.destroy();
      throw new Refusal("too_large", `${u.href} serves ${declared} bytes; train.py must be at most ${o.maxBytes} bytes`);
    }
    const type = String(res.headers["content-type"] ?? "").toLowerCase();
    if (/^(text\/html|application\/xhtml)/.test(type)) {
      req.destroy();
      throw htmlRefusal(u.href, `content type ${type}`);
    }
    if (/^application\/(.+\+)?json/.test(type)) {
      req.destroy();
      throw jsonRefusal(u.href);
    }
    phase.now = `reading the body from ${u.host}`;
    const bytes = await readBody(res, req, u, o);
    return { finalUrl: u.href, bytes };
  }
}

function statusHint(status: number): string {
  if (status === 404 || status === 410) return ": the file does not exist there (deleted, private, or a typo in the URL)";
  if (status === 401 || status === 403) return ": the file is not public; host it where anyone can read it";
  if (status === 429 || status >= 500) return ": the host is failing or rate limiting; the fetch may be retried";
  return "";
}

const htmlRefusal = (url: string, why: string) =>
  new Refusal("html_page", `${url} is an HTML page (${why}), not a Python file; commit the raw file URL (e.g. gist.githubusercontent.com/…/raw)`);
const jsonRefusal = (url: string) =>
  new Refusal("json_listing", `${url} serves a JSON document (such as the gist API's file listing), not Python source; commit the raw file URL`);

/** Content rules: UTF-8 Python with a module-level inner_steps, matching the committed hash. */
function checkCode(bytes: Uint8Array, url: string, committedHash?: string) {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Refusal("not_utf8", `${url} is not valid UTF-8 text; save train.py as UTF-8`);
  }
  const head = text.trimStart().slice(0, 1024).toLowerCase();
  if (head.startsWith("<") && /<!doctype html|<html[\s>]|<head[\s>]|<body[\s>]/.test(head)) {
    throw htmlRefusal(url, "it starts with HTML markup");
  }
  if (head.startsWith("{") || head.startsWith("[")) {
    let json = head.startsWith("{") && head.includes('"files"');
    try {
      JSON.parse(text);
      json = true;
    } catch {}
    if (json) throw jsonRefusal(url);
  }
  if (!INNER_STEPS.test(text)) {
    throw new Refusal(
      "missing_inner_steps",
      `${url} has no module-level "def inner_steps(model, data_iterator, optimizer, num_steps, device)"; the file must define it at column 0`,
    );
  }
  if (committedHash !== undefined) {
    const want = committedHash.toLowerCase();
    if (!/^[0-9a-f]{32,64}$/.test(want)) {
      throw new Refusal("hash_mismatch", `the committed hash "${committedHash}" is not 32–64 hex characters`);
    }
    const got = sha256Hex(bytes);
    if (!got.startsWith(want)) {
      throw new Refusal(
        "hash_mismatch",
        `the code at ${url} has sha256 ${got.slice(0, want.length)}…, but the commitment says ${want}; the file changed after it was committed`,
      );
    }
  }
}
