// The public API server over a validator's SQLite store.
//   bun scripts/api.ts --db PATH [--port 8080] [--host 127.0.0.1] [--api-key KEY] [--cors ORIGINS] [--hparams PATH]
//   deno run -A scripts/api.ts --db PATH ...      (same flags; served with Deno.serve)
// The key may also come from CRUSADES_API_KEY; a flag given on the command line always wins.
import { parseArgs } from "node:util";
import { createApp } from "../api/app.ts";
import { UserError } from "../core/errors.ts";
import { loadHParams } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";

const USAGE = "usage: scripts/api.ts --db PATH [--port 8080] [--host 127.0.0.1] [--api-key KEY] [--cors ORIGIN,...] [--hparams PATH]";

interface Deno {
  serve(opts: { port: number; hostname: string; onListen?: (a: { hostname: string; port: number }) => void; signal?: AbortSignal }, handler: (r: Request) => Response | Promise<Response>): { finished: Promise<void> };
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
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port must be an integer 0–65535, got ${JSON.stringify(values.port)}`);
  return {
    db: values.db,
    port,
    host: values.host,
    apiKey: values["api-key"] ?? (process.env.CRUSADES_API_KEY || undefined),
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
  const stop = new AbortController();
  const shutdown = () => stop.abort();
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  if (deno) {
    const server = deno.serve({ port: args.port, hostname: args.host, signal: stop.signal, onListen: ({ hostname, port }) => ready(hostname, port) }, app.fetch);
    await server.finished;
    await app.stop();
    return;
  }
  app.listen({ port: args.port, hostname: args.host });
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
