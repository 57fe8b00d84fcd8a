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
// Requests are conditional (ETag), so an unchanged gist costs no rate limit. When GitHub says the limit
// is spent (x-ratelimit-remaining: 0 with x-ratelimit-reset, or retry-after on a 403/429), the source
// stops asking until then, across restarts too.
import { Octokit } from "@octokit/rest";
import { z } from "zod";
import type { Submission } from "../../core/contracts.ts";
import { codeHash } from "../../core/commitment.ts";
import { loadHParams } from "../../core/hparams.ts";
import { defineSource, type SourceContext } from "../../core/plugin.ts";

export const GistsSourceOptions = z
  .object({
    gists: z.array(z.string().regex(/^[0-9a-f]{20,32}$|^\d+$/i, "a gist id")).default([]).describe("Gist ids to watch."),
    users: z.array(z.string().regex(/^[a-z\d](?:[a-z\d-]{0,38})$/i, "a GitHub login")).default([]).describe("GitHub logins whose public gists are all watched."),
    filename: z.string().min(1).default("train.py").describe("File evaluated in each gist; without it, a gist's only .py file."),
    hotkeys: z.record(z.string(), z.string().min(1)).optional().describe("GitHub login → hotkey; when given, other owners are rejected. Without it the login is the hotkey."),
    token: z.string().min(1).optional().describe("GitHub token (60 → 5000 requests an hour); prefer `tokenEnv`."),
    tokenEnv: z.string().min(1).optional().describe("Name of the environment variable holding the GitHub token."),
    baseUrl: z.string().url().default("https://api.github.com").describe("GitHub API root (tests point it at a local server)."),
    rawBaseUrl: z.string().url().default("https://gist.githubusercontent.com").describe("Root of the revision raw URLs submissions are fetched from."),
    maxBytes: z.number().int().positive().optional().describe("Largest file accepted; defaults to hparams `max_code_bytes`."),
    defaultBackoffSeconds: z.number().positive().default(60).describe("Pause after a rate-limit answer that names no time (GitHub: at least a minute)."),
  })
  .strict()
  .refine((o) => o.gists.length + o.users.length > 0, { message: "give at least one gist id or user", path: ["gists"] });

type Options = z.infer<typeof GistsSourceOptions>;

interface GistFile {
  filename?: string;
  size?: number;
  truncated?: boolean;
  content?: string;
}

interface Gist {
  id: string;
  updated_at: string;
  owner?: { login: string } | null;
  files: Record<string, GistFile | null>;
  history?: { version: string; committed_at: string }[];
}

interface GistState {
  /** Per gist: the ETag of the last full read and the revision it had. */
  gists: Record<string, { etag?: string; version?: string }>;
  users: Record<string, { updatedAt: Record<string, string> }>;
  rejected: Record<string, true>;
  pausedUntil: number;
}

interface HttpError {
  status?: number;
  response?: { headers?: Record<string, string | number | undefined> };
}

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
  const octokit = () => {
    if (client) return client;
    const auth = opts.token ?? (opts.tokenEnv ? process.env[opts.tokenEnv] : undefined);
    if (opts.tokenEnv && !auth) throw new Error(`source gists: environment variable ${opts.tokenEnv} (the GitHub token) is not set`);
    client = new Octokit({ baseUrl: opts.baseUrl, userAgent: "crusades-validator", ...(auth ? { auth } : {}), log: { debug() {}, info() {}, warn() {}, error() {} } });
    return client;
  };
  let maxBytes = opts.maxBytes;
  const backoffMs = opts.defaultBackoffSeconds * 1000;

  /** One GET, with the rate-limit headers honoured; null for 304 Not Modified. */
  async function get<T>(st: GistState, route: string, params: Record<string, unknown>, etag: string | undefined, signal: AbortSignal) {
    try {
      const res = await octokit().request(route, { ...params, headers: etag ? { "if-none-match": etag } : {}, request: { signal } });
      const until = rateLimitedUntil(res.status, res.headers as Record<string, string>, Date.now(), backoffMs);
      if (until !== null) st.pausedUntil = until;
      return { data: res.data as T, etag: res.headers.etag as string | undefined };
    } catch (e) {
      const err = e as HttpError;
      if (err.status === 304) return null;
      const until = err.status ? rateLimitedUntil(err.status, err.response?.headers ?? {}, Date.now(), backoffMs) : null;
      if (until !== null) {
        st.pausedUntil = until;
        throw new RateLimited(until);
      }
      throw e;
    }
  }

  /**
   * Whether the last revision read of this gist was taken by the store or rejected. Until it is, the
   * gist is read in full again: a validator killed after this poll but before the store took the
   * submission must not be told "not modified" next time.
   */
  const settled = (ctx: SourceContext, st: GistState, id: string) => {
    const v = st.gists[id]?.version;
    return v !== undefined && (ctx.known(`gist:${id}:${v}`) || st.rejected[`gist:${id}:${v}`] === true);
  };

  async function readGist(ctx: SourceContext, st: GistState, id: string, out: Submission[]) {
    const etag = settled(ctx, st, id) ? st.gists[id]?.etag : undefined;
    const res = await get<Gist>(st, "GET /gists/{gist_id}", { gist_id: id }, etag, ctx.signal);
    if (!res) return;
    const gist = res.data;
    const rev = gist.history?.[0];
    st.gists[id] = { etag: res.etag, version: rev?.version };
    if (!rev) return;
    const subId = `gist:${gist.id}:${rev.version}`;
    if (ctx.known(subId) || st.rejected[subId]) return;
    const login = gist.owner?.login ?? null;
    const block = Math.floor(Date.parse(rev.committed_at) / 1000);
    const reject = (reason: string, detail: string) => {
      st.rejected[subId] = true;
      ctx.reject({ hotkey: login, reason, detail: `gist ${gist.id} revision ${rev.version}: ${detail}`, raw: JSON.stringify({ id: gist.id, version: rev.version, owner: login }), block: Number.isFinite(block) ? block : null });
    };
    if (!login) return reject("no_owner", "an anonymous gist has no owner to credit");
    const hotkey = opts.hotkeys ? opts.hotkeys[login] : login;
    if (!hotkey) return reject("unknown_owner", `${login} is not in the configured hotkeys`);
    const file = pickFile(gist, opts.filename);
    if (typeof file === "string") return reject("no_code", file);
    maxBytes ??= loadHParams().max_code_bytes;
    if (file.truncated || (file.size ?? 0) > maxBytes || file.content === undefined) {
      return reject("oversize", `${file.filename} is ${file.size ?? "?"} bytes, over the ${maxBytes}-byte limit`);
    }
    if (!Number.isFinite(block)) return reject("malformed", `revision has no valid commit time (${JSON.stringify(rev.committed_at)})`);
    const url = `${opts.rawBaseUrl.replace(/\/+$/, "")}/${encodeURIComponent(login)}/${gist.id}/raw/${rev.version}/${encodeURIComponent(file.filename!)}`;
    out.push({ id: subId, hotkey, uid: null, url, committedHash: codeHash(file.content), revealBlock: block, source: "gists" });
  }

  async function readUser(ctx: SourceContext, st: GistState, user: string, out: Submission[]) {
    const seen = (st.users[user] ??= { updatedAt: {} });
    const list = await get<Gist[]>(st, "GET /users/{username}/gists", { username: user, per_page: 100 }, undefined, ctx.signal);
    for (const g of list?.data ?? []) {
      if (seen.updatedAt[g.id] === g.updated_at && settled(ctx, st, g.id)) continue;
      await readGist(ctx, st, g.id, out);
      seen.updatedAt[g.id] = g.updated_at;
    }
  }

  return {
    async poll(ctx) {
      const st: GistState = { gists: {}, users: {}, rejected: {}, pausedUntil: 0, ...ctx.state.get<GistState>("state") };
      if (Date.now() < st.pausedUntil) {
        ctx.log.debug(`GitHub rate limit: waiting until ${new Date(st.pausedUntil).toISOString()}`);
        return [];
      }
      const out: Submission[] = [];
      try {
        for (const id of opts.gists) await readGist(ctx, st, id, out);
        for (const user of opts.users) await readUser(ctx, st, user, out);
      } catch (e) {
        if (!(e instanceof RateLimited)) throw e;
        ctx.log.warn(`GitHub rate limit reached: pausing until ${new Date(e.until).toISOString()}`);
      } finally {
        ctx.state.set("state", st);
      }
      return out;
    },
  };
});
