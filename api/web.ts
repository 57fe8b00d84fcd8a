// Static files the API serves: the dashboard (api/web/) and the OpenAPI UI's assets from the
// swagger-ui-dist package, so neither needs a CDN or a build step. Read once at start, gzipped once.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { acceptsGzip, withVary } from "./http.ts";

export interface Asset {
  type: string;
  cache: string;
  body: string;
  gzipped: Uint8Array<ArrayBuffer>;
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

function asset(file: string | URL, cache: string): Asset {
  const body = readFileSync(file, "utf8");
  const name = String(file);
  const ext = name.slice(name.lastIndexOf(".") + 1);
  return { type: TYPES[ext] ?? "application/octet-stream", cache, body, gzipped: new Uint8Array(gzipSync(body)) };
}

function swaggerDir(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  } catch {
    return null;
  }
}

/** URL path → asset. The page is re-validated on each load; the versioned swagger files are cached. */
export function webAssets(): Map<string, Asset> {
  const here = (f: string) => new URL(`./web/${f}`, import.meta.url);
  const out = new Map<string, Asset>([
    ["/", asset(here("index.html"), "no-cache")],
    ["/assets/app.js", asset(here("app.js"), "no-cache")],
    ["/assets/app.css", asset(here("app.css"), "no-cache")],
    ["/assets/favicon.svg", asset(here("favicon.svg"), "max-age=86400")],
  ]);
  const swagger = swaggerDir();
  if (swagger) {
    for (const f of ["swagger-ui-bundle.js", "swagger-ui.css"]) out.set(`/openapi/assets/${f}`, asset(join(swagger, f), "max-age=86400"));
  }
  return out;
}

export function serveAsset(a: Asset, request: Request, headers: Record<string, string>): Response {
  const h = { ...withVary(headers, "Accept-Encoding"), "content-type": a.type, "cache-control": a.cache };
  if (acceptsGzip(request)) return new Response(a.gzipped, { headers: { ...h, "content-encoding": "gzip" } });
  return new Response(a.body, { headers: h });
}
