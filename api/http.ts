// Cross-cutting HTTP policy for the API: CORS, the optional API key, gzip. Plain functions over web
// Request/Response so they behave the same under Bun and Deno.
import { createHash, timingSafeEqual } from "node:crypto";
import { gzipSync } from "node:zlib";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Constant-time key check (hashing first makes the lengths equal). */
export function keyMatches(expected: string, given: string | null): boolean {
  return given !== null && timingSafeEqual(digest(expected), digest(given));
}

export interface CorsPolicy {
  /** `["*"]` allows any origin; otherwise exact origins such as `https://dash.example.org`. */
  origins: string[];
}

export function corsHeaders(policy: CorsPolicy, origin: string | null): Record<string, string> {
  if (policy.origins.includes("*")) return { "access-control-allow-origin": "*" };
  // With an allowlist the grant depends on Origin, so a shared cache must key on it, whether or not this
  // origin got one.
  if (origin && policy.origins.includes(origin)) return { "access-control-allow-origin": origin, vary: "Origin" };
  return { vary: "Origin" };
}

/** `headers` with `token` added to its Vary list (never replacing what CORS put there). */
export function withVary(headers: Record<string, string>, token: string): Record<string, string> {
  const have = (headers.vary ?? "").split(",").map((t) => t.trim()).filter(Boolean);
  if (!have.some((t) => t.toLowerCase() === token.toLowerCase())) have.push(token);
  return { ...headers, vary: have.join(", ") };
}

export function preflight(policy: CorsPolicy, origin: string | null): Response {
  return new Response(null, {
    status: 204,
    headers: {
      ...corsHeaders(policy, origin),
      "access-control-allow-methods": "GET, HEAD, OPTIONS",
      "access-control-allow-headers": "X-API-Key, Content-Type",
      "access-control-max-age": "86400",
    },
  });
}

// Below this, gzip's header costs more than it saves.
const MIN_GZIP_BYTES = 1024;

export function acceptsGzip(request: Request): boolean {
  const accept = request.headers.get("accept-encoding") ?? "";
  return accept.split(",").some((part) => {
    const [name, ...params] = part.trim().split(";");
    if (name?.trim().toLowerCase() !== "gzip") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** The body compressed when the client takes gzip and it is worth it; otherwise null. */
export function gzipBody(request: Request, body: string): Uint8Array<ArrayBuffer> | null {
  if (body.length < MIN_GZIP_BYTES || !acceptsGzip(request)) return null;
  return new Uint8Array(gzipSync(body));
}
