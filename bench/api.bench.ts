// API throughput and latency on a 10,000-submission store, over loopback, against a static baseline
// route measured in the same run:   bun bench/api.bench.ts [--requests 3000] [--concurrency 16]
// The server runs as its own process (scripts/api.ts) so the load generator does not share its thread.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startApi } from "../tests/fixtures/api-server.ts";
import { seedBulk } from "../tests/fixtures/seed-db.ts";

const { values } = parseArgs({ options: { requests: { type: "string", default: "3000" }, concurrency: { type: "string", default: "16" }, submissions: { type: "string", default: "10000" } } });
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const SUBMISSIONS = Number(values.submissions);

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  bytes: number;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** A closed-loop load generator: CONCURRENCY workers, each sending its next request when the last one finishes. */
async function load(url: string, headers: Record<string, string>, requests: number): Promise<{ rps: number; p50: number; p99: number; bytes: number }> {
  const latencies: number[] = [];
  let next = 0;
  let bytes = 0;
  const worker = async () => {
    while (next < requests) {
      next++;
      const t = performance.now();
      const res = await fetch(url, { headers });
      const body = await res.arrayBuffer();
      latencies.push(performance.now() - t);
      if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
      bytes = Number(res.headers.get("content-length") ?? body.byteLength);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { rps: requests / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), bytes };
}

const dir = mkdtempSync(join(tmpdir(), "crusades-api-bench-"));
const db = join(dir, "bulk.db");
try {
  const t = performance.now();
  await seedBulk(db, SUBMISSIONS, Date.now());
  console.log(`seeded ${SUBMISSIONS} submissions in ${((performance.now() - t) / 1000).toFixed(1)} s; ${REQUESTS} requests per route, concurrency ${CONCURRENCY}`);
  const api = await startApi(db);
  try {
    const routes: [string, string, Record<string, string>][] = [
      ["/health (baseline)", "/health", { "accept-encoding": "identity" }],
      ["/leaderboard", "/leaderboard", { "accept-encoding": "identity" }],
      ["/leaderboard gzip", "/leaderboard", { "accept-encoding": "gzip" }],
      ["/api/stats/overview", "/api/stats/overview", { "accept-encoding": "identity" }],
    ];
    const results: Result[] = [];
    for (const [name, path, headers] of routes) {
      await load(api.url + path, headers, Math.min(200, REQUESTS)); // warm-up: JIT, page cache, ranking cache
      results.push({ name, ...(await load(api.url + path, headers, REQUESTS)) });
    }
    const base = results[0]!;
    console.log(`\n${"route".padEnd(22)}${"req/s".padStart(10)}${"p50 ms".padStart(10)}${"p99 ms".padStart(10)}${"bytes".padStart(9)}${"req/s vs baseline".padStart(20)}`);
    for (const r of results) {
      console.log(
        `${r.name.padEnd(22)}${r.rps.toFixed(0).padStart(10)}${r.p50.toFixed(2).padStart(10)}${r.p99.toFixed(2).padStart(10)}${String(r.bytes).padStart(9)}${(r.rps / base.rps).toFixed(2).padStart(19)}x`,
      );
    }
  } finally {
    await api.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
