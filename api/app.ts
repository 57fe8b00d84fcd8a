// The public API: an Elysia app over the validator's SQLite store, with its OpenAPI document and UI
// (/openapi, /openapi/json) and the web dashboard (/). Runs under Bun (app.listen) and Deno
// (Deno.serve(app.fetch)); scripts/api.ts is the command line.
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { Elysia } from "elysia";
import { openapi } from "@elysiajs/openapi";
import type { HParams } from "../core/hparams.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { migrations } from "../core/storage/migrations.ts";
import { openDatabase, sqliteErrorCode, StoreFailure, type Database } from "../core/storage/sqlite.ts";
import type { Store } from "../core/storage/store.ts";
import { UserError } from "../core/errors.ts";
import { corsHeaders, gzipBody, keyMatches, preflight, withVary, type CorsPolicy } from "./http.ts";
import { ApiQueries } from "./queries.ts";
import {
  ApiError,
  Code,
  Health,
  HistoryPage,
  HistoryQuery,
  IdParams,
  LeaderboardPage,
  Overview,
  PageQuery,
  QueuePage,
  RejectionPage,
  RejectionsQuery,
  RunPage,
  SubmissionDetail,
  SubmissionPage,
  SubmissionsQuery,
  ValidatorStatus,
  WeightPage,
} from "./schemas.ts";
import { serveAsset, webAssets } from "./web.ts";

export interface AppOptions {
  /** Path of the validator's SQLite file (opened here, closed when the app stops). */
  dbPath?: string;
  /** An already open store, e.g. when the validator serves the API from its own process. */
  store?: Store;
  db?: Database;
  hparams: Pick<HParams, "leader_threshold">;
  /** When set, every /api route and /leaderboard requires it in `X-API-Key`. Empty or blank is refused. */
  apiKey?: string;
  /** Allowed CORS origins; default any (`*`): the data is public. */
  corsOrigins?: string[];
  log?: Logger;
  now?: () => number;
  /** /health re-runs the store's integrity check when the last one is older than this (default 30 s). */
  integrityCheckMs?: number;
}

const SQLITE_READONLY = 8;
const SQLITE_CORRUPT = 11;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;
/** Result codes that describe the store file's state (busy, locked, I/O, damaged, gone), not a bug here. */
const STORE_STATE_CODES = new Set([5, 6, 10, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB]);

/** What is wrong with the store for a person, from a SQLite error; the path is left to the caller. */
function storeErrorText(e: unknown, path: string): string {
  const detail = (e as Error).message;
  switch (sqliteErrorCode(e)) {
    case SQLITE_NOTADB:
      return `it is not a SQLite database (${detail})`;
    case SQLITE_CORRUPT:
      return `it is damaged (${detail})`;
    case SQLITE_READONLY:
      // A read-only reader of a WAL store needs its -shm file; only the validator (or anyone who may write
      // the directory) can create it, and the validator removes it when it stops cleanly.
      return `it is in WAL mode and ${path}-shm is missing, which this user may not create in ${dirname(path)}: start the validator first, or serve as a user that may write that directory (${detail})`;
    default:
      return detail;
  }
}

/** SQLite's quick_check on `db`: null when it passes, otherwise what it found (or the error it raised). */
function integrityProblem(db: Database): string | null {
  try {
    const found = db.prepare("PRAGMA quick_check(3)").all<{ quick_check: string }>().map((r) => r.quick_check);
    if (found.length === 1 && found[0] === "ok") return null;
    return `it is damaged (quick_check: ${found.join("; ").replaceAll("\n", "; ").slice(0, 400)})`;
  } catch (e) {
    if (sqliteErrorCode(e) === null) throw e;
    return storeErrorText(e, db.path);
  }
}

/** The integrity check on a connection of its own: another's page cache could hide damage in the file. */
async function probeStore(path: string): Promise<string | null> {
  let db: Database | undefined;
  try {
    db = await openDatabase(path, { readonly: true });
    return integrityProblem(db);
  } catch (e) {
    if (sqliteErrorCode(e) === null) throw e;
    return storeErrorText(e, path);
  } finally {
    db?.close();
  }
}

/**
 * Opens the validator's store read-only (the file, its directory and its WAL are never written), refusing
 * files that are missing, not databases, damaged or at another schema version, each with one line.
 */
export async function openStoreForApi(path: string): Promise<Database> {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new UserError(`no database at ${path}: start the validator first, or pass --db with the path of its store`);
    throw new UserError(`cannot serve database ${path}: ${code === "EACCES" ? "this user may not reach it (permission denied on a directory above it)" : (e as Error).message}`);
  }
  if (isDirectory) throw new UserError(`${path} is a directory: pass --db the validator's database file`);
  const problem = await probeStore(path);
  if (problem) throw new UserError(`cannot serve database ${path}: ${problem}`);
  const db = await openDatabase(path, { readonly: true });
  const version = Number(db.prepare("PRAGMA user_version").get<{ user_version: number }>()?.user_version ?? 0);
  if (version !== migrations.length) {
    db.close();
    throw new UserError(
      version < migrations.length
        ? `database ${path} is at schema version ${version}, this API reads version ${migrations.length}: run the validator once to migrate it`
        : `database ${path} is at schema version ${version}, newer than this build knows (${migrations.length}): upgrade Crusades`,
    );
  }
  return db;
}

/** Thrown by the key check, answered by onError as a 401. */
class MissingKey extends Error {}

/** The request's path, also for a request whose URL does not parse (no or a bad Host). */
function pathOf(request: Request): string {
  try {
    return new URL(request.url).pathname;
  } catch {
    return request.url.slice(0, 200);
  }
}

const err = (error: string, message: string): ApiError => ({ error, message });
const BadRequest = ApiError.describe("a query or path parameter is invalid; the message names it");
const Unauthorized = ApiError.describe("the server has an API key and X-API-Key is missing or wrong");
const NotEvaluated = ApiError.describe("the code is shown once the submission's evaluation has finished");
const NotFound = ApiError.describe("no submission with this id (or, for /code, no stored code)");
const StoreUnavailable = ApiError.describe("the validator's store cannot be read now (damaged, locked or gone); the message says which");

/** `/api/submissions/:id` → a RegExp matching concrete paths of that route, with or without the trailing slash the router also takes. */
function routeRegExp(path: string): RegExp {
  const escaped = path.replace(/[.*+?^$()|[\]\\{}]/g, "\\$&");
  return new RegExp(`^${escaped.replace(/:[^/]+/g, "[^/]+")}/?$`);
}

const PATH_DOCS = {
  tags: [
    { name: "status", description: "liveness, overview and the validator's state" },
    { name: "competition", description: "leaderboard, leader history, weights" },
    { name: "submissions", description: "submissions, their runs and (once evaluated) their code" },
  ],
};

export async function createApp(opts: AppOptions) {
  if (opts.apiKey !== undefined && !opts.apiKey.trim()) throw new UserError("the API key is empty: pass a non-blank key, or none to serve without one");
  const ownsDb = !opts.store && !opts.db;
  const db = opts.store?.db ?? opts.db ?? (opts.dbPath ? await openStoreForApi(opts.dbPath) : null);
  if (!db) throw new UserError("createApp needs dbPath, store or db");
  const log = opts.log ?? createLogger().child({ component: "api" });
  const q = new ApiQueries(db, opts.hparams.leader_threshold, opts.now);
  const cors: CorsPolicy = { origins: opts.corsOrigins?.length ? opts.corsOrigins : ["*"] };
  const web = webAssets();
  const notFound = (id: string) => err("not_found", `no submission with id ${JSON.stringify(id)}`);
  let patterns: RegExp[] | null = null;
  const routePatterns = () => (patterns ??= app.routes.map((r) => routeRegExp(r.path)));
  const checkEvery = opts.integrityCheckMs ?? 30_000;
  const integrity = { checkedAt: Number.NEGATIVE_INFINITY, problem: null as string | null };

  const app = new Elysia({ name: "crusades-api" })
    .use(
      openapi({
        path: "/openapi",
        specPath: "/openapi/json",
        provider: "swagger-ui",
        swagger: { cdn: "/openapi/assets/swagger-ui-bundle.js", theme: "/openapi/assets/swagger-ui.css", autoDarkMode: true },
        exclude: { paths: ["/", "/openapi.json", /^\/assets\//, /^\/openapi\/assets\//] },
        documentation: {
          info: {
            title: "Crusades API",
            version: "1.0.0",
            description:
              "Read-only view of a Crusades validator: the leaderboard (threshold order), submissions, runs, code once evaluated, leader history, weights and the validator's status. " +
              "Lists take `limit`/`offset` and return `total`. When the server has an API key, send it as `X-API-Key` (not needed for /health).",
          },
          tags: PATH_DOCS.tags,
          components: { securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "X-API-Key" } } },
        },
      }),
    )
    .onRequest(({ request, set }) => {
      const origin = request.headers.get("origin");
      Object.assign(set.headers, corsHeaders(cors, origin));
      // Without a valid Host the request has no URL to route; answer before anything reads one.
      if (!URL.canParse(request.url)) return Response.json(err("bad_request", "the request has no valid Host header"), { status: 400, headers: set.headers as Record<string, string> });
      if (request.method === "OPTIONS") return preflight(cors, origin);
    })
    .onError(({ code, error, set, request }) => {
      if (error instanceof MissingKey) {
        set.status = 401;
        return err("unauthorized", "missing or wrong API key: send it in the X-API-Key header");
      }
      if (code === "VALIDATION") {
        if (error.type === "response") {
          log.error("response broke its schema", { path: pathOf(request), detail: error.message.slice(0, 500) });
          set.status = 500;
          return err("internal", "the server produced an invalid response; this is a bug, please report it");
        }
        set.status = 400;
        const issues = error.all.map((i) => {
          const p = "path" in i && i.path && i.path !== "root" ? String(i.path).replace(/^\//, "").replaceAll("/", ".") : "";
          return `${error.type}${p ? "." + p : ""}: ${i.message}`;
        });
        return err("bad_request", issues.join("; ") || `invalid ${error.type}`);
      }
      if (code === "NOT_FOUND") {
        const path = pathOf(request);
        // A known path asked with another method is "method not allowed", not "not found".
        if (request.method !== "GET" && request.method !== "HEAD" && routePatterns().some((re) => re.test(path))) {
          set.status = 405;
          set.headers.allow = "GET, HEAD, OPTIONS";
          return err("method_not_allowed", `${path} only answers GET`);
        }
        set.status = 404;
        return err("not_found", `no route ${request.method} ${path}`);
      }
      if (code === "PARSE") {
        set.status = 400;
        return err("bad_request", "the request could not be parsed");
      }
      const path = pathOf(request);
      if (error instanceof StoreFailure) {
        set.status = 503;
        return err("store_unavailable", `the validator's store cannot be read: ${error.message.replaceAll(db.path, "the store")}`);
      }
      if (STORE_STATE_CODES.has(sqliteErrorCode(error) ?? -1)) {
        // The next /health looks at the file again instead of repeating an old "ok".
        integrity.checkedAt = Number.NEGATIVE_INFINITY;
        log.error("the store could not be read", { db: db.path, path, error: String(error) });
        set.status = 503;
        return err("store_unavailable", `the validator's store cannot be read: ${storeErrorText(error, "the store")}`);
      }
      log.error("request failed", { path, error: String(error) });
      set.status = 500;
      return err("internal", "internal error");
    })
    .mapResponse(({ request, responseValue, set }) => {
      if (responseValue instanceof Response || responseValue === undefined) return;
      const text = typeof responseValue === "string" ? responseValue : JSON.stringify(responseValue);
      const type = typeof responseValue === "string" ? "text/plain; charset=utf-8" : "application/json";
      const gz = gzipBody(request, text);
      const headers = { ...withVary(set.headers as Record<string, string>, "Accept-Encoding"), "content-type": type };
      if (gz) return new Response(gz, { status: Number(set.status) || 200, headers: { ...headers, "content-encoding": "gzip" } });
      return new Response(text, { status: Number(set.status) || 200, headers });
    })
    .onStop(() => {
      if (ownsDb) db.close();
    })
    .get(
      "/health",
      async ({ status }) => {
        const lost = db.lost();
        if (lost) return status(503, err("store_unavailable", `the validator's store cannot be read: ${lost.replaceAll(db.path, "the store")}; restart the API on the validator's store`));
        const now = Date.now();
        if (now - integrity.checkedAt >= checkEvery) {
          integrity.problem = await probeStore(db.path);
          integrity.checkedAt = now;
          if (integrity.problem) log.error("the store failed its integrity check", { db: db.path, problem: integrity.problem });
        }
        if (integrity.problem) return status(503, err("store_unavailable", `the validator's store cannot be read: ${integrity.problem.replaceAll(db.path, "the store")}`));
        return { status: "ok" as const, schema_version: q.schemaVersion(), time: new Date((opts.now ?? Date.now)()).toISOString() };
      },
      {
        response: { 200: Health, 503: StoreUnavailable },
        detail: { tags: ["status"], summary: "Liveness and the store's integrity (never needs the API key)" },
      },
    )
    .guard(
      {
        detail: { security: opts.apiKey ? [{ apiKey: [] }] : [] },
        response: { 400: BadRequest, 401: Unauthorized, 503: StoreUnavailable },
        // Decided by the route the router matched (whatever spelling of the path or method reached it), and
        // before the query is validated, so a caller without the key learns nothing from a 400.
        transform({ request }) {
          if (opts.apiKey && !keyMatches(opts.apiKey, request.headers.get("x-api-key"))) {
            throw new MissingKey();
          }
          // SQLite goes on reading a deleted or replaced file: what it shows would be stale for good.
          const lost = db.lost();
          if (lost) throw new StoreFailure(`${lost}; restart the API on the validator's store`);
        },
      },
      (g) =>
      g
        .get("/api/stats/overview", () => q.overview(), {
          response: { 200: Overview },
          detail: { tags: ["status"], summary: "Totals, 24 h activity and the current leader" },
        })
        .get("/api/validator/status", () => q.validatorStatus(), {
          response: { 200: ValidatorStatus },
          detail: { tags: ["status"], summary: "The validator's state, current run, queue and success rate" },
        })
        .get("/api/queue", ({ query }) => q.queue(query), {
          query: PageQuery,
          response: { 200: QueuePage },
          detail: { tags: ["status"], summary: "Submissions waiting or under evaluation, in the order they are worked on" },
        })
        .get("/leaderboard", ({ query }) => q.leaderboard(query), {
          query: PageQuery,
          response: { 200: LeaderboardPage },
          detail: { tags: ["competition"], summary: "Leaderboard in threshold order: the leader first, then by TPS" },
        })
        .get("/api/leaderboard", ({ query }) => q.leaderboard(query), {
          query: PageQuery,
          response: { 200: LeaderboardPage },
          detail: { tags: ["competition"], summary: "Same as /leaderboard" },
        })
        .get("/api/stats/history", ({ query }) => q.history(query), {
          query: HistoryQuery,
          response: { 200: HistoryPage },
          detail: { tags: ["competition"], summary: "Each time the lead changed hands, with the new leader's TPS" },
        })
        .get("/api/weights", ({ query }) => q.weights(query), {
          query: PageQuery,
          response: { 200: WeightPage },
          detail: { tags: ["competition"], summary: "Weight decisions, newest first" },
        })
        .get("/api/rejections", ({ query }) => q.rejections(query), {
          query: RejectionsQuery,
          response: { 200: RejectionPage },
          detail: { tags: ["submissions"], summary: "Commitments or submissions refused at intake, newest first" },
        })
        .get("/api/submissions", ({ query }) => q.submissions(query), {
          query: SubmissionsQuery,
          response: { 200: SubmissionPage },
          detail: { tags: ["submissions"], summary: "Submissions, newest first" },
        })
        .get(
          "/api/submissions/:id",
          ({ params, status }) => {
            const s = q.submission(params.id);
            return s ?? status(404, notFound(params.id));
          },
          { params: IdParams, response: { 200: SubmissionDetail, 404: NotFound }, detail: { tags: ["submissions"], summary: "One submission" } },
        )
        .get(
          "/api/submissions/:id/runs",
          ({ params, query, status }) => (q.submission(params.id) ? q.runs(params.id, query) : status(404, notFound(params.id))),
          { params: IdParams, query: PageQuery, response: { 200: RunPage, 404: NotFound }, detail: { tags: ["submissions"], summary: "A submission's evaluation runs" } },
        )
        .get(
          "/api/submissions/:id/code",
          ({ params, status }) => {
            const c = q.code(params.id);
            if (c.ok) return c.code;
            if (c.reason === "unknown") return status(404, notFound(params.id));
            if (c.reason === "no_code") return status(404, err("no_code", `submission ${params.id} has no stored code (it failed before its code was fetched)`));
            return status(403, err("not_evaluated", `the code of submission ${params.id} is shown once its evaluation has finished (it is ${c.state} now)`));
          },
          {
            params: IdParams,
            response: { 200: Code, 403: NotEvaluated, 404: NotFound },
            detail: { tags: ["submissions"], summary: "The exact code that was evaluated, once evaluation finished" },
          },
        ),
    )
    .get("/openapi.json", ({ redirect }) => redirect("/openapi/json", 308), { detail: { hide: true } });

  for (const [path, asset] of web) {
    app.get(path, ({ request, set }) => serveAsset(asset, request, set.headers as Record<string, string>), { detail: { hide: true } });
  }
  return app;
}

export type App = Awaited<ReturnType<typeof createApp>>;
