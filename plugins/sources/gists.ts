// Source: GitHub gists, for practice rounds and private tournaments without a chain. Watches a list of
// gist ids and/or every gist of some GitHub users. Each submission is pinned to one revision of a gist:
// its id is `gist:<gist id>:<revision sha>`, its URL the raw URL of that revision, and its committed hash
// the hash of the content the API returned, so the code the pipeline fetches must be exactly what the
// API showed. Editing a gist makes a new revision, hence a new submission.
//
// Who is the miner: the `hotkeys` option maps GitHub logins to hotkeys (and then only mapped owners are
// accepted); without it the owner's login is used as the hotkey. There is no chain uid (uid is null), and
// `revealBlock` carries the revision's commit time in unix seconds, which orders submissions the same way.
//
// Requests are conditional (ETag), so an unchanged gist or listing page costs no rate limit. When GitHub
// says the limit is spent (x-ratelimit-remaining: 0 with x-ratelimit-reset, or retry-after on a 403/429),
// the source stops asking until then, across restarts too.
//
// GitHub's answers are input like any other. Each request has a deadline and a size cap (bounded-fetch.ts):
// an API that stops answering ends the poll with one line naming the request, and an answer past the cap
// is dropped as it streams. Gist ids, revision shas and owner logins must have GitHub's formats before
// they build an id, a URL or a hotkey. A user's gist list is read a few pages per poll, and every
// submission is handed to the core as soon as it is read, so a long walk keeps what it found.
import { Octokit } from "@octokit/rest";
import { z } from "zod";
import { AnswerTooLarge, fetchBounded, NoAnswer } from "../../core/bounded-fetch.ts";
import { codeHash } from "../../core/commitment.ts";
import { formatZodError } from "../../core/errors.ts";
import { loadHParams } from "../../core/hparams.ts";
import { defineSource, type SourceContext } from "../../core/plugin.ts";

// GitHub's own formats: gist ids are hex (old ones decimal), revisions are git commit shas, and logins
// are letters, digits and single inner hyphens, at most 39 characters.
const GIST_ID = /^[0-9a-f]{20,32}$|^\d{1,12}$/i;
const REVISION = /^[0-9a-f]{40}$/;
const LOGIN = /^[a-z\d](?:[a-z\d]|-(?=[a-z\d])){0,38}$/i;

export const GistsSourceOptions = z
  .object({
    gists: z.array(z.string().regex(GIST_ID, "a gist id")).default([]).describe("Gist ids to watch."),
    users: z.array(z.string().regex(LOGIN, "a GitHub login")).default([]).describe("GitHub logins whose public gists are all watched."),
    filename: z.string().min(1).default("train.py").describe("File evaluated in each gist; without it, a gist's only .py file."),
    hotkeys: z.record(z.string(), z.string().min(1)).optional().describe("GitHub login → hotkey; when given, other owners are rejected. Without it the login is the hotkey."),
    token: z.string().min(1).optional().describe("GitHub token (60 → 5000 requests an hour); prefer `tokenEnv`."),
    tokenEnv: z.string().min(1).optional().describe("Name of the environment variable holding the GitHub token."),
    baseUrl: z.string().url().default("https://api.github.com").describe("GitHub API root (tests point it at a local server)."),
    rawBaseUrl: z.string().url().default("https://gist.githubusercontent.com").describe("Root of the revision raw URLs submissions are fetched from."),
    maxBytes: z.number().int().positive().optional().describe("Largest file accepted; defaults to hparams `max_code_bytes`."),
    defaultBackoffSeconds: z.number().positive().default(60).describe("Pause after a rate-limit answer that names no time (GitHub: at least a minute)."),
    timeoutMs: z.number().int().positive().default(15_000).describe("Per API request, connect to last byte; past it the poll stops with a line naming the request."),
    maxResponseBytes: z.number().int().positive().default(10_000_000).describe("Largest API answer read (GitHub cuts each file's content at 1 MB); a larger one is abandoned as it streams."),
    maxPagesPerPoll: z.number().int().positive().default(2).describe("Pages (100 gists each) of a user's gist list read per poll; the next poll goes on where this one stopped."),
  })
  .strict()
  .refine((o) => o.gists.length + o.users.length > 0, { message: "give at least one gist id or user", path: ["gists"] });

type Options = z.infer<typeof GistsSourceOptions>;

// What is read from an answer; anything else GitHub sends is ignored.
const GistFile = z.object({ filename: z.string().min(1).max(255), size: z.number().optional(), truncated: z.boolean().optional(), content: z.string().optional() });
const Gist = z.object({
  id: z.string().regex(GIST_ID, "not a gist id"),
  owner: z.object({ login: z.string() }).nullish(),
  files: z.record(z.string(), GistFile.nullable()),
  history: z.array(z.object({ version: z.string().regex(REVISION, "not a revision sha"), committed_at: z.string().max(64) })).optional(),
});
const GistList = z.array(z.object({ id: z.string().regex(GIST_ID, "not a gist id"), updated_at: z.string().max(64) }));
type Gist = z.infer<typeof Gist>;
type GistFile = z.infer<typeof GistFile>;

interface GistState {
  /** Per gist: the ETag of the last full read and the revision it had. */
  gists: Record<string, { etag?: string; version?: string }>;
  /**
   * Per user: each gist's last seen update time, the listing page the next poll reads, and per page the
   * ETag of a read whose every gist was settled and whether a next page followed it.
   */
  users: Record<string, { updatedAt: Record<string, string>; page?: number; pages?: Record<string, { etag: string; next: boolean }> }>;
  rejected: Record<string, true>;
  pausedUntil: number;
}

interface HttpError {
  status?: number;
  response?: { headers?: Record<string, string | number | undefined> };
  cause?: unknown;
}

/** This answer cannot be used (an error status, oversize, malformed): skip what it was for, go on with the rest. */
class Unusable extends Error {}

/** GitHub did not answer (deadline, connection): asking again in this poll would only wait again. */
class Unreachable extends Error {}

class RateLimited extends Error {
  constructor(readonly until: number) {
    super(`rate limited until ${new Date(until).toISOString()}`);
  }
}

/** When a rate-limited answer says we may ask again (ms since epoch); null when it is not a rate-limit answer. */
export function rateLimitedUntil(status: number, headers: Record<string, string | number | undefined>, now: number, defaultBackoffMs: number): number | null {
  const retryAfter = Number(headers["retry-after"]);
  const remaining = headers["x-ratelimit-remaining"];
  const reset = Number(headers["x-ratelimit-reset"]);
  if (status === 403 || status === 429) {
    if (Number.isFinite(retryAfter) && retryAfter >= 0) return now + retryAfter * 1000;
    if (String(remaining) === "0" && Number.isFinite(reset)) return Math.max(now, reset * 1000);
    return status === 429 ? now + defaultBackoffMs : null;
  }
  if (String(remaining) === "0" && Number.isFinite(reset)) return Math.max(now, reset * 1000);
  return null;
}

/** A value from an answer, quoted, cut short and with control characters escaped, for a log line or a record. */
const shown = (v: string) => JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);

function parsed<T>(schema: z.ZodType<T>, data: unknown, what: string): T {
  const r = schema.safeParse(data);
  if (!r.success) throw new Unusable(`GitHub ${what}: the answer is not what GitHub sends (${formatZodError(r.error).slice(0, 200)}); skipped`);
  return r.data;
}

function pickFile(gist: Gist, filename: string): GistFile | string {
  const files = Object.values(gist.files).filter((f): f is GistFile => !!f);
  const named = files.find((f) => f.filename === filename);
  if (named) return named;
  const py = files.filter((f) => f.filename?.endsWith(".py"));
  if (py.length === 1) return py[0]!;
  return `no ${filename} and ${py.length === 0 ? "no" : "more than one"} .py file in the gist`;
}

export const gistsSource = defineSource("gists", GistsSourceOptions, (opts: Options) => {
  let client: Octokit | null = null;
  const bounds = { timeoutMs: opts.timeoutMs, maxBytes: opts.maxResponseBytes };
  const octokit = () => {
    if (client) return client;
    const auth = opts.token ?? (opts.tokenEnv ? process.env[opts.tokenEnv] : undefined);
    if (opts.tokenEnv && !auth) throw new Error(`source gists: environment variable ${opts.tokenEnv} (the GitHub token) is not set`);
    client = new Octokit({
      baseUrl: opts.baseUrl,
      userAgent: "crusades-validator",
      ...(auth ? { auth } : {}),
      log: { debug() {}, info() {}, warn() {}, error() {} },
      request: { fetch: (url: string, init: RequestInit) => fetchBounded(url, init, bounds) },
    });
    return client;
  };
  let maxBytes = opts.maxBytes;
  const backoffMs = opts.defaultBackoffSeconds * 1000;

  /**
   * One GET (`what` names it in log lines), with the rate-limit headers honoured; null for 304 Not
   * Modified. Throws RateLimited, Unreachable, or Unusable for an answer that is not a 2xx.
   */
  async function get(st: GistState, what: string, route: string, params: Record<string, unknown>, etag: string | undefined, signal: AbortSignal) {
    try {
      const res = await octokit().request(route, { ...params, headers: etag ? { "if-none-match": etag } : {}, request: { signal } });
      const until = rateLimitedUntil(res.status, res.headers as Record<string, string>, Date.now(), backoffMs);
      if (until !== null) st.pausedUntil = until;
      return { data: res.data as unknown, etag: res.headers.etag as string | undefined, next: /rel="next"/.test(String(res.headers.link ?? "")) };
    } catch (e) {
      const err = e as HttpError;
      if (err.status === 304) return null;
      if (signal.aborted) throw e;
      const until = err.status ? rateLimitedUntil(err.status, err.response?.headers ?? {}, Date.now(), backoffMs) : null;
      if (until !== null) {
        st.pausedUntil = until;
        throw new RateLimited(until);
      }
      if (err.cause instanceof AnswerTooLarge) throw new Unusable(`GitHub ${what}: ${err.cause.message} (maxResponseBytes); skipped`);
      if (err.cause instanceof NoAnswer) throw new Unreachable(`GitHub ${what}: ${err.cause.message} (timeoutMs); this poll stops here, the next one asks again`);
      if (err.response) throw new Unusable(`GitHub ${what}: HTTP ${err.status} (${String((e as Error).message).slice(0, 200)}); skipped`);
      throw new Unreachable(`GitHub ${what}: ${String((e as Error).message).slice(0, 200)}; this poll stops here, the next one asks again`);
    }
  }

  /**
   * Whether the last revision read of this gist was taken by the store or rejected. Until it is, the
   * gist is read in full again: a submission the store did not take must not be told "not modified".
   */
  const settled = (ctx: SourceContext, st: GistState, id: string) => {
    const v = st.gists[id]?.version;
    return v !== undefined && (ctx.known(`gist:${id}:${v}`) || st.rejected[`gist:${id}:${v}`] === true);
  };

  /** Reads one gist and hands its newest revision to the core; false when the answer was unusable (logged). */
  async function readGist(ctx: SourceContext, st: GistState, id: string): Promise<boolean> {
    const what = `GET /gists/${id}`;
    try {
      const etag = settled(ctx, st, id) ? st.gists[id]?.etag : undefined;
      const res = await get(st, what, "GET /gists/{gist_id}", { gist_id: id }, etag, ctx.signal);
      if (!res) return true;
      const gist = parsed(Gist, res.data, what);
      if (gist.id !== id) throw new Unusable(`GitHub ${what}: the answer is about another gist (${shown(gist.id)}); skipped`);
      take(ctx, st, gist, res.etag);
      return true;
    } catch (e) {
      if (!(e instanceof Unusable)) throw e;
      ctx.log.warn(e.message);
      return false;
    }
  }

  /** Turns a gist's newest revision into a submission or a rejection; its id and revision are GitHub's (checked). */
  function take(ctx: SourceContext, st: GistState, gist: Gist, etag: string | undefined) {
    const rev = gist.history?.[0];
    st.gists[gist.id] = { etag, version: rev?.version };
    if (!rev) return;
    const subId = `gist:${gist.id}:${rev.version}`;
    if (ctx.known(subId) || st.rejected[subId]) return;
    const login = gist.owner?.login ?? null;
    const owner = login !== null && LOGIN.test(login) ? login : null;
    const block = Math.floor(Date.parse(rev.committed_at) / 1000);
    const reject = (reason: string, detail: string) => {
      st.rejected[subId] = true;
      ctx.reject({ hotkey: owner, reason, detail: `gist ${gist.id} revision ${rev.version}: ${detail}`, raw: JSON.stringify({ id: gist.id, version: rev.version, owner: login === null ? null : shown(login) }), block: Number.isFinite(block) ? block : null });
    };
    if (login === null) return reject("no_owner", "an anonymous gist has no owner to credit");
    if (owner === null) return reject("malformed", `the owner ${shown(login)} is not a GitHub login`);
    const hotkey = opts.hotkeys ? opts.hotkeys[owner] : owner;
    if (!hotkey) return reject("unknown_owner", `${owner} is not in the configured hotkeys`);
    const file = pickFile(gist, opts.filename);
    if (typeof file === "string") return reject("no_code", file);
    maxBytes ??= loadHParams().max_code_bytes;
    if (file.truncated || (file.size ?? 0) > maxBytes || file.content === undefined) {
      return reject("oversize", `${file.filename} is ${file.size ?? "?"} bytes, over the ${maxBytes}-byte limit`);
    }
    if (!Number.isFinite(block)) return reject("malformed", `revision has no valid commit time (${shown(rev.committed_at)})`);
    const url = `${opts.rawBaseUrl.replace(/\/+$/, "")}/${owner}/${gist.id}/raw/${rev.version}/${encodeURIComponent(file.filename)}`;
    ctx.submit({ id: subId, hotkey, uid: null, url, committedHash: codeHash(file.content), revealBlock: block, source: "gists" });
  }

  /**
   * Reads up to maxPagesPerPoll pages of a user's gist list, from where the last poll stopped, and each
   * gist on them that changed. A page whose gists all settled keeps its ETag, so the next walk over it
   * costs one 304; the walk starts over after the last page.
   */
  async function readUser(ctx: SourceContext, st: GistState, user: string) {
    const u = (st.users[user] ??= { updatedAt: {} });
    const pages = (u.pages ??= {});
    for (let n = 0; n < opts.maxPagesPerPoll; n++) {
      const page = u.page ?? 1;
      const what = `GET /users/${user}/gists?page=${page}`;
      let next: boolean;
      try {
        const res = await get(st, what, "GET /users/{username}/gists", { username: user, per_page: 100, page }, pages[page]?.etag, ctx.signal);
        if (res) {
          let clean = true;
          for (const g of parsed(GistList, res.data, what)) {
            if (u.updatedAt[g.id] === g.updated_at && settled(ctx, st, g.id)) continue;
            if (!(await readGist(ctx, st, g.id))) clean = false;
            else u.updatedAt[g.id] = g.updated_at;
            if (!settled(ctx, st, g.id)) clean = false;
          }
          next = res.next;
          if (clean && res.etag) pages[page] = { etag: res.etag, next };
          else delete pages[page];
        } else next = pages[page]?.next ?? false;
      } catch (e) {
        if (!(e instanceof Unusable)) throw e;
        ctx.log.warn(e.message);
        return; // this page again next poll
      }
      u.page = next ? page + 1 : 1;
      ctx.state.set("state", st);
      if (!next) return;
    }
  }

  return {
    async poll(ctx) {
      const st: GistState = { gists: {}, users: {}, rejected: {}, pausedUntil: 0, ...ctx.state.get<GistState>("state") };
      if (Date.now() < st.pausedUntil) {
        ctx.log.debug(`GitHub rate limit: waiting until ${new Date(st.pausedUntil).toISOString()}`);
        return [];
      }
      try {
        for (const id of opts.gists) await readGist(ctx, st, id);
        for (const user of opts.users) await readUser(ctx, st, user);
      } catch (e) {
        if (e instanceof RateLimited) ctx.log.warn(`GitHub rate limit reached: pausing until ${new Date(e.until).toISOString()}`);
        else if (e instanceof Unreachable) ctx.log.warn(e.message);
        else throw e;
      } finally {
        ctx.state.set("state", st);
      }
      return [];
    },
  };
});
