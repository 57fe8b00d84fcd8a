// The dashboard's only data source: the public API over HTTP, every response checked against the API's
// own schemas. Failures are sorted into what a person can act on: the API is down, the key is wrong,
// the thing is gone, or the server answered something this build does not understand.
import type { z } from "zod";
import { formatZodError, UserError } from "../../core/errors.ts";
import {
  ApiError,
  Code,
  HistoryPage,
  LeaderboardPage,
  Overview,
  RunPage,
  SubmissionDetail,
  SubmissionPage,
  ValidatorStatus,
} from "../../api/schemas.ts";

export type FailureKind = "unreachable" | "unauthorized" | "not_found" | "forbidden" | "http" | "bad_response";

export class ApiFailure extends Error {
  constructor(readonly kind: FailureKind, message: string, readonly status?: number) {
    super(message);
    this.name = "ApiFailure";
  }
}

export interface DashboardData {
  overview: z.infer<typeof Overview>;
  status: z.infer<typeof ValidatorStatus>;
  leaderboard: z.infer<typeof LeaderboardPage>;
  recent: z.infer<typeof SubmissionPage>;
  history: z.infer<typeof HistoryPage>;
}

export interface DetailData {
  submission: z.infer<typeof SubmissionDetail>;
  runs: z.infer<typeof RunPage>;
  code: z.infer<typeof Code> | null;
  codeNote: string | null; // why there is no code (not evaluated yet, never fetched)
}

export interface ClientOptions {
  url: string;
  apiKey?: string;
  timeoutMs?: number;
  rows?: number; // list rows fetched per panel
}

/** Accepts "host:port" too (the anchor's README form) by assuming http://. */
export function normalizeBaseUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new UserError(`--url ${JSON.stringify(raw)} is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UserError(`--url must be http:// or https://, got ${u.protocol}`);
  return u.href.replace(/\/+$/, "");
}

/** A short human reason for a failed fetch, from the runtime's error (Bun, Deno and Node differ). */
export function networkReason(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return `no answer within ${timeoutMs / 1000}s`;
  const code = err?.cause?.code ?? err?.code ?? "";
  const known: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ConnectionRefused: "connection refused",
    ECONNRESET: "connection reset",
    ConnectionClosed: "connection closed",
    ENOTFOUND: "host not found",
    EAI_AGAIN: "host not found",
    EHOSTUNREACH: "host unreachable",
    ENETUNREACH: "network unreachable",
    ETIMEDOUT: "connection timed out",
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS certificate not trusted",
    DEPTH_ZERO_SELF_SIGNED_CERT: "TLS certificate is self-signed",
  };
  if (known[code]) return known[code]!;
  if (/refused/i.test(err?.message ?? "") || /refused/i.test(err?.cause?.message ?? "")) return "connection refused";
  return err?.cause?.message || err?.message || String(e);
}

export function createClient(opts: ClientOptions) {
  const base = normalizeBaseUrl(opts.url);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const rows = opts.rows ?? 50;
  const headers: Record<string, string> = { accept: "application/json" };
  if (opts.apiKey) headers["x-api-key"] = opts.apiKey;

  async function get<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S>> {
    let res: Response;
    try {
      res = await fetch(base + path, { headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      throw new ApiFailure("unreachable", `API unreachable at ${base}: ${networkReason(e, timeoutMs)}`);
    }
    let body: unknown;
    const text = await res.text().catch(() => "");
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const said = ApiError.safeParse(body);
      const detail = said.success ? said.data.message : `HTTP ${res.status}`;
      if (res.status === 401)
        throw new ApiFailure(
          "unauthorized",
          opts.apiKey
            ? `API key rejected by ${base} (401): check --api-key or CRUSADES_API_KEY`
            : `${base} requires an API key (401): pass --api-key KEY or set CRUSADES_API_KEY`,
          401,
        );
      if (res.status === 404) throw new ApiFailure("not_found", detail, 404);
      if (res.status === 403) throw new ApiFailure("forbidden", detail, 403);
      throw new ApiFailure("http", `${path} failed with HTTP ${res.status}: ${detail}`, res.status);
    }
    if (body === undefined) throw new ApiFailure("bad_response", `${path} did not return JSON: is ${base} a Crusades API?`, res.status);
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new ApiFailure("bad_response", `${path} returned an unexpected document (${formatZodError(parsed.error).slice(0, 200)}): is the API a different version?`, res.status);
    return parsed.data;
  }

  const id = (s: string) => encodeURIComponent(s);

  return {
    base,
    /** Everything the dashboard shows, fetched together so one frame never mixes two moments. */
    async dashboard(): Promise<DashboardData> {
      const [overview, status, leaderboard, recent, history] = await Promise.all([
        get("/api/stats/overview", Overview),
        get("/api/validator/status", ValidatorStatus),
        get(`/leaderboard?limit=${rows}`, LeaderboardPage),
        get(`/api/submissions?limit=${rows}`, SubmissionPage),
        get("/api/stats/history?limit=500", HistoryPage),
      ]);
      return { overview, status, leaderboard, recent, history };
    },
    /** One submission, its runs and (once evaluated) its code; `knownCode` skips refetching pinned bytes. */
    async detail(submissionId: string, knownCode: z.infer<typeof Code> | null = null): Promise<DetailData> {
      const [submission, runs] = await Promise.all([
        get(`/api/submissions/${id(submissionId)}`, SubmissionDetail),
        get(`/api/submissions/${id(submissionId)}/runs?limit=100`, RunPage),
      ]);
      if (knownCode && knownCode.code_sha256 === submission.code_sha256) return { submission, runs, code: knownCode, codeNote: null };
      if (!submission.code_available) {
        const note = submission.code_sha256 ? `code is shown once evaluation has finished (now ${submission.state})` : "no stored code: it failed before its code was fetched";
        return { submission, runs, code: null, codeNote: note };
      }
      try {
        return { submission, runs, code: await get(`/api/submissions/${id(submissionId)}/code`, Code), codeNote: null };
      } catch (e) {
        if (e instanceof ApiFailure && (e.kind === "forbidden" || e.kind === "not_found")) return { submission, runs, code: null, codeNote: e.message };
        throw e;
      }
    },
  };
}
