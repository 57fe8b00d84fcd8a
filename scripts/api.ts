// The public API server over a validator's SQLite store.
//   bun scripts/api.ts --db PATH [--port 8080] [--host 127.0.0.1] [--api-key KEY] [--cors ORIGINS] [--hparams PATH]
//   deno run -A scripts/api.ts --db PATH ...      (same flags; served with Deno.serve)
// The key may also come from CRUSADES_API_KEY; a flag given on the command line always wins. A blank key
// (flag or variable) is a usage error rather than an open server, and a port already in use is refused
// rather than shared.
import { parseArgs } from "node:util";
import { createApp } from "../api/app.ts";
import { UserError } from "../core/errors.ts";
import { loadHParams } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";

const USAGE = "usage: scripts/api.ts --db PATH [--port 8080] [--host 127.0.0.1] [--api-key KEY] [--cors ORIGIN,...] [--hparams PATH]";

interface Deno {
  serve(
    opts: { port: number; hostname: string; onListen?: (a: { hostname: string; port: number }) => void; onError?: (e: unknown) => Response; signal?: AbortSignal },
    handler: (r: Request) => Response | Promise<Response>,
  ): { finished: Promise<void> };
}
const deno = (globalThis as { Deno?: Deno }).Deno;

function parse() {
  const { values } = parseArgs({
    options: {
      db: { type: "string" },
      port: { type: "string", default: "8080" },
      host: { type: "string", default: "127.0.0.1" },
      "api-key": { type: "string" },
      cors: { type: "string" },
      hparams: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!values.db) throw new UserError(`--db is required\n${USAGE}`);
  const [apiKey, keyFrom] = values["api-key"] !== undefined ? [values["api-key"], "--api-key"] : [process.env.CRUSADES_API_KEY, "CRUSADES_API_KEY"];
  if (apiKey !== undefined && !apiKey.trim()) throw new UserError(`${keyFrom} is empty: give a key, or leave it unset to serve without one`);
  if (apiKey !== undefined && apiKey !== apiKey.trim()) throw new UserError(`${keyFrom} starts or ends with whitespace, which HTTP strips from the X-API-Key header: no client could send it`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port must be an integer 0–65535, got ${JSON.stringify(values.port)}`);
  return {
    db: values.db,
    port,
    host: values.host,
    apiKey,
    cors: values.cors?.split(",").map((s) => s.trim()).filter(Boolean),
    hparams: values.hparams,
  };
}

async function main() {
  const log = createLogger().child({ component: "api" });
  const args = parse();
  const app = await createApp({ dbPath: args.db, hparams: loadHParams(args.hparams), apiKey: args.apiKey, corsOrigins: args.cors, log });
  const ready = (host: string, port: number) => {
    // One stable line on stdout: tests and scripts read the bound port from it (--port 0 picks one).
    console.log(`crusades api listening on http://${host}:${port}`);
    log.info("serving", { db: args.db, auth: args.apiKey ? "api key" : "open", docs: `http://${host}:${port}/openapi` });
  };
  const inUse = (e: unknown) => (e as { code?: string }).code === "EADDRINUSE" || (e as { name?: string }).name === "AddrInUse";
  const portTaken = () => new UserError(`port ${args.port} on ${args.host} is already in use (another API on another store?): stop that server or pass another --port`);
  // Whatever escapes the app's own error handling: a JSON 500 without the runtime's error page, which
  // would show paths and source lines.
  const lastResort = (e: unknown) => {
    log.error("request failed outside the app", { error: String(e) });
    return Response.json({ error: "internal", message: "internal error" }, { status: 500 });
  };
  const stop = new AbortController();
  const shutdown = () => stop.abort();
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  if (deno) {
    let server: { finished: Promise<void> };
    try {
      server = deno.serve({ port: args.port, hostname: args.host, signal: stop.signal, onError: lastResort, onListen: ({ hostname, port }) => ready(hostname, port) }, app.fetch);
    } catch (e) {
      throw inUse(e) ? portTaken() : e;
    }
    await server.finished;
    await app.stop();
    return;
  }
  try {
    // Elysia asks Bun for SO_REUSEPORT, which would let a second server bind this port and take half of
    // its requests; development mode would answer an uncaught error with a page of source.
    app.listen({ port: args.port, hostname: args.host, reusePort: false, development: false, error: lastResort });
  } catch (e) {
    throw inUse(e) ? portTaken() : e;
  }
  ready(args.host, app.server!.port!);
  await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
  await app.stop();
}

main().catch((e) => {
  if (e instanceof UserError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    console.error(`error: ${(e as Error).message}`);
    process.exit(2);
  }
  console.error(e);
  process.exit(1);
});
