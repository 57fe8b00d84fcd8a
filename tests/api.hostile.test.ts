// The API against a hostile or careless caller and operator (issue #12): real servers on loopback, real
// SQLite files, raw TCP where fetch would tidy the request up, and other users where the kernel decides.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database as BunDatabase } from "bun:sqlite";
import { ApiError, LeaderboardPage, SubmissionPage } from "../api/schemas.ts";
import { Store } from "../core/storage/store.ts";
import { startApi, type RunningApi, type StartOptions } from "./fixtures/api-server.ts";
import { damageInnerPages, seedBulk, seedScenario, type Scenario } from "./fixtures/seed-db.ts";

const KEY = "hostile-key";
const ORIGIN = "https://dash.example";
const root = join(import.meta.dir, "..");
const deno = join(root, "node_modules/.bin/deno");
const dir = mkdtempSync(join(tmpdir(), "crusades-api-hostile-"));
const scenarioDb = join(dir, "scenario.db");
const bulkDb = join(dir, "bulk.db");
// As under the README's systemd unit: no NODE_ENV, so nothing may depend on "production" being set.
const AS_DEPLOYED: StartOptions = { env: { NODE_ENV: undefined } };
let sc: Scenario;
let open: RunningApi;
let keyed: RunningApi;

beforeAll(async () => {
  sc = await seedScenario(scenarioDb, Date.now());
  await seedBulk(bulkDb, 1500, Date.now());
  [open, keyed] = await Promise.all([
    startApi(scenarioDb, ["--cors", ORIGIN], "bun", 30_000, AS_DEPLOYED),
    startApi(scenarioDb, ["--api-key", KEY, "--cors", ORIGIN], "bun", 30_000, AS_DEPLOYED),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([open?.stop(), keyed?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request written byte for byte over TCP (fetch would repair its Host); the reply as it came. */
function raw(port: number, request: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let got = "";
    socket.setEncoding("latin1");
    socket.on("data", (d) => (got += d));
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no complete reply to ${JSON.stringify(request)}: ${JSON.stringify(got.slice(0, 200))}`)));
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", ...rest] = got.split("\r\n\r\n");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
      resolve({ status: Number(statusLine.split(" ")[1] ?? 0), headers, body: rest.join("\r\n\r\n") });
    });
  });
}

/** scripts/api.ts run to its end (or killed after `timeoutMs`, which a server that starts would be). */
function runCli(args: string[], env: Record<string, string | undefined> = {}, runtime: "bun" | "deno" = "bun", prefix: string[] = [], timeoutMs = 15_000) {
  const cmd = [...prefix, ...(runtime === "bun" ? [process.execPath, "scripts/api.ts"] : [deno, "run", "-A", "scripts/api.ts"])];
  const merged = Object.fromEntries(Object.entries({ ...process.env, CRUSADES_LOG_LEVEL: "warn", ...env }).filter(([, v]) => v !== undefined)) as Record<string, string>;
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), "--host", "127.0.0.1", ...args], { cwd: root, encoding: "utf8", env: merged, timeout: timeoutMs, killSignal: "SIGKILL" });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

/** A refusal the way an operator should see it: exit 2 and exactly one line on stderr. */
function expectOneLineRefusal(r: { status: number | null; stderr: string }, pattern: RegExp) {
  const lines = r.stderr.trim().split("\n");
  expect({ status: r.status, lines: lines.length, line: lines[0] }).toEqual({ status: 2, lines: 1, line: expect.stringMatching(pattern) });
}

const varyOf = (h: Headers | Record<string, string>) =>
  String(h instanceof Headers ? h.get("vary") : h.vary ?? "")
    .split(",")
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);

const enc = encodeURIComponent;
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

describe("the API key is decided by the matched route", () => {
  const dataPaths = async () => {
    const doc = (await (await fetch(`${keyed.url}/openapi/json`)).json()) as { paths: Record<string, unknown> };
    return Object.keys(doc.paths)
      .filter((p) => p !== "/health")
      .map((p) => p.replace("{id}", enc(sc.ids.leader)));
  };
  // The first four reach the route; the others reach none, which must not open anything either.
  const spellings = (p: string) => [p, `${p}/`, `${p}?limit=2`, `${p}/?limit=2`, `/${p}`, `${p}//`, p.toUpperCase()];

  test("no spelling of any data route, in any method, answers without the key", async () => {
    const paths = await dataPaths();
    expect(paths).toHaveLength(12);
    const leaks: string[] = [];
    for (const p of paths) {
      for (const s of spellings(p)) {
        for (const method of METHODS) {
          const r = await fetch(keyed.url + s, { method });
          const body = await r.text();
          if (r.status < 400 || body.includes(sc.ids.leader)) leaks.push(`${method} ${s} → ${r.status}`);
          // A route that matched, in a method it serves, must say why it refused.
          if ((method === "GET" || method === "HEAD") && spellings(p).slice(0, 4).includes(s) && r.status !== 401) leaks.push(`${method} ${s} → ${r.status}, not 401`);
        }
      }
    }
    expect(leaks).toEqual([]);
  }, 60_000);

  test("with the key, the slash form of every data route answers what the plain form does", async () => {
    for (const p of await dataPaths()) {
      const plain = await fetch(keyed.url + p, { headers: { "x-api-key": KEY } });
      const slash = await fetch(`${keyed.url}${p}/`, { headers: { "x-api-key": KEY } });
      const head = await fetch(`${keyed.url}${p}/`, { method: "HEAD", headers: { "x-api-key": KEY } });
      expect({ p, plain: plain.status, slash: slash.status, head: head.status }).toEqual({ p, plain: 200, slash: 200, head: 200 });
      const [a, b] = (await Promise.all([plain.json(), slash.json()])) as Record<string, unknown>[];
      expect(Object.keys(b!).sort()).toEqual(Object.keys(a!).sort());
      const page = (d: Record<string, unknown>) => ("items" in d ? { total: d.total, items: (d.items as unknown[]).length } : null);
      expect(page(b!)).toEqual(page(a!));
      await head.arrayBuffer();
    }
  }, 30_000);

  test("liveness, the page and the docs stay open in either spelling", async () => {
    for (const p of ["/health", "/health/", "/", "/openapi/json", "/assets/app.js"]) {
      const r = await fetch(keyed.url + p);
      expect({ p, status: r.status }).toEqual({ p, status: 200 });
      await r.arrayBuffer();
    }
  });
});

const BAD_HOSTS = [
  "GET /health HTTP/1.0\r\nHost:\r\n\r\n",
  "GET /health HTTP/1.0\r\n\r\n",
  "GET /health HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
  "GET /health HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
  "GET /health HTTP/1.1\r\nHost: x:99999\r\nConnection: close\r\n\r\n",
  `GET /leaderboard?limit=2 HTTP/1.1\r\nHost: x:99999\r\nX-API-Key: ${KEY}\r\nConnection: close\r\n\r\n`,
];

/** A JSON 400 that shows nothing of the server: no page, no path, no source. */
function expectPlain400(r: RawReply, request: string) {
  expect({ request, status: r.status, type: r.headers["content-type"] }).toEqual({ request, status: 400, type: expect.stringContaining("application/json") });
  expect(ApiError.parse(JSON.parse(r.body)).error).toBe("bad_request");
  expect(r.body.length).toBeLessThan(300);
  expect(r.body).not.toContain(root);
}

describe("requests the server cannot parse", () => {
  test("a missing or bad Host is a JSON 400 on either server, and nothing reaches the log", async () => {
    for (const server of [open, keyed]) {
      for (const request of BAD_HOSTS) expectPlain400(await raw(server.port, request), request);
      // The server still serves afterwards.
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      expect(server.stderr()).not.toMatch(/Invalid URL|\n\s+at |\^/);
    }
  }, 30_000);
});

describe("the port", () => {
  test("a second server on a port in use is refused with one line, and the first keeps every request", async () => {
    const second = runCli(["--db", bulkDb, "--port", String(open.port)]);
    expectOneLineRefusal(second, new RegExp(`^error: port ${open.port} on 127\\.0\\.0\\.1 is already in use`));
    // Had the second bound, the kernel would have sent some of these to the bulk store.
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${open.url}/api/submissions?limit=1`);
      expect(SubmissionPage.parse(await r.json()).total).toBe(9);
    }
  }, 30_000);
});

describe("the key on the command line", () => {
  test.each([
    [["--api-key", ""], {}, /--api-key is empty/],
    [["--api-key", " \t "], {}, /--api-key is empty/],
    [["--api-key", ""], { CRUSADES_API_KEY: KEY }, /--api-key is empty/],
    [[], { CRUSADES_API_KEY: "" }, /CRUSADES_API_KEY is empty/],
    [[], { CRUSADES_API_KEY: "  " }, /CRUSADES_API_KEY is empty/],
    [["--api-key", ` ${KEY}`], {}, /--api-key starts or ends with whitespace/],
  ] as [string[], Record<string, string>, RegExp][])("%j with %j is a usage error", (args, env, pattern) => {
    expectOneLineRefusal(runCli(["--db", scenarioDb, "--port", "0", ...args], env), new RegExp(`^error: ${pattern.source}`));
  }, 30_000);

  test("a key from CRUSADES_API_KEY protects the data routes", async () => {
    const api = await startApi(scenarioDb, [], "bun", 30_000, { env: { CRUSADES_API_KEY: KEY } });
    try {
      expect((await fetch(`${api.url}/leaderboard/`)).status).toBe(401);
      expect((await fetch(`${api.url}/leaderboard/`, { headers: { "x-api-key": KEY } })).status).toBe(200);
    } finally {
      await api.stop();
    }
  }, 30_000);
});

describe("CORS with an allowlist", () => {
  test("every kind of response says it varies by Origin", async () => {
    const cases: [string, Promise<Response>][] = [
      ["200", fetch(`${open.url}/leaderboard`)],
      ["200, listed origin", fetch(`${open.url}/leaderboard`, { headers: { origin: ORIGIN } })],
      ["200, other origin", fetch(`${open.url}/leaderboard`, { headers: { origin: "https://evil.example" } })],
      ["200 gzipped", fetch(`${open.url}/api/submissions?limit=50`, { headers: { "accept-encoding": "gzip", origin: ORIGIN } })],
      ["page", fetch(`${open.url}/`, { headers: { origin: ORIGIN } })],
      ["404", fetch(`${open.url}/api/nothing`, { headers: { origin: ORIGIN } })],
      ["401", fetch(`${keyed.url}/leaderboard`, { headers: { origin: ORIGIN } })],
      ["preflight", fetch(`${keyed.url}/leaderboard`, { method: "OPTIONS", headers: { origin: ORIGIN, "access-control-request-method": "GET" } })],
    ];
    for (const [name, pending] of cases) {
      const r = await pending;
      await r.arrayBuffer();
      expect({ name, vary: varyOf(r.headers) }).toEqual({ name, vary: expect.arrayContaining(["origin"]) });
      if (r.headers.get("content-encoding") === "gzip") expect(varyOf(r.headers)).toContain("accept-encoding");
    }
    const listed = await fetch(`${open.url}/leaderboard`, { headers: { origin: ORIGIN } });
    expect(listed.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    await listed.arrayBuffer();
  });
});

describe("query integers", () => {
  test.each(["", "0x10", "1e2", " 5", "+5", "5.0", "-1", "٣"])("limit=%j is a 400 that says what a limit is", async (v) => {
    const r = await fetch(`${open.url}/api/submissions?limit=${enc(v)}`);
    expect(r.status).toBe(400);
    const e = ApiError.parse(await r.json());
    expect(e.message).toContain("query.limit: expected a whole number in decimal digits");
  });

  test("plain digits still work, and the bounds still apply", async () => {
    expect(LeaderboardPage.parse(await (await fetch(`${open.url}/leaderboard?limit=007&offset=1`)).json())).toMatchObject({ limit: 7, offset: 1 });
    const r = await fetch(`${open.url}/leaderboard?limit=0`);
    expect(r.status).toBe(400);
    expect(ApiError.parse(await r.json()).message).toContain("query.limit");
  });
});

/** `db` copied into a directory of its own, in rollback-journal mode, so serving it needs no -wal or -shm. */
function journalModeCopy(name: string): { dir: string; file: string } {
  const d = join(dir, name);
  mkdirSync(d);
  const file = join(d, "store.db");
  copyFileSync(scenarioDb, file);
  const db = new BunDatabase(file);
  db.exec("PRAGMA journal_mode = DELETE");
  db.close();
  return { dir: d, file };
}

async function serveAndRead(file: string, runtime: "bun" | "deno", opts: StartOptions = {}) {
  const api = await startApi(file, [], runtime, 60_000, opts);
  try {
    for (const p of ["/health", "/leaderboard", "/api/stats/overview", "/api/submissions", `/api/submissions/${enc(sc.ids.leader)}/code`]) {
      const r = await fetch(api.url + p);
      expect({ p, status: r.status }).toEqual({ p, status: 200 });
      await r.arrayBuffer();
    }
  } finally {
    await api.stop();
  }
}

describe("the store is opened read-only", () => {
  test("serving leaves the file and its directory byte for byte as they were", async () => {
    const { dir: d, file } = journalModeCopy("journal");
    const before = readFileSync(file);
    await serveAndRead(file, "bun", AS_DEPLOYED);
    expect(readdirSync(d)).toEqual(["store.db"]);
    expect(readFileSync(file).equals(before)).toBe(true);
  }, 60_000);

  test("an empty file is refused, and stays empty", () => {
    const d = join(dir, "empty");
    mkdirSync(d);
    const file = join(d, "store.db");
    writeFileSync(file, "");
    expectOneLineRefusal(runCli(["--db", file, "--port", "0"]), /schema version 0/);
    expect(statSync(file).size).toBe(0);
    expect(readdirSync(d)).toEqual(["store.db"]);
  }, 30_000);

  const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
  const canSwitchUser = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

  test.skipIf(!canSwitchUser)("as a user who may write neither the store nor its directory: serves the validator's live store, and says why when it cannot", async () => {
    chmodSync(dir, 0o755);
    const d = join(dir, "readonly");
    mkdirSync(d);
    const file = join(d, "store.db");
    copyFileSync(scenarioDb, file);
    // The validator (root here) holds the store open, so its -wal and -shm exist, as in production.
    const validator = await Store.open(file);
    chmodSync(d, 0o555);
    for (const f of readdirSync(d)) chmodSync(join(d, f), 0o444);
    const opts: StartOptions = { prefix: asNobody, env: { HOME: d, NODE_ENV: undefined } };
    const api = await startApi(file, [], "bun", 30_000, opts);
    try {
      const total = async () => SubmissionPage.parse(await (await fetch(`${api.url}/api/submissions?limit=1`)).json()).total;
      expect(await total()).toBe(9);
      validator.addSubmission({ id: "late:1", hotkey: "5Late", uid: 9, url: "https://example.org/train.py", revealBlock: 99, source: "chain-reveals" });
      expect(await total()).toBe(10);
      expect((await fetch(`${api.url}/health`)).status).toBe(200);
    } finally {
      await api.stop();
      validator.close();
    }
    // A stopped validator's store has no -shm, and a reader that may not create one cannot open it.
    const stopped = join(dir, "readonly-stopped");
    mkdirSync(stopped);
    const stoppedFile = join(stopped, "store.db");
    copyFileSync(scenarioDb, stoppedFile);
    chmodSync(stoppedFile, 0o444);
    chmodSync(stopped, 0o555);
    const refused = runCli(["--db", stoppedFile, "--port", "0"], opts.env, "bun", asNobody);
    expectOneLineRefusal(refused, new RegExp(`^error: cannot serve database ${stoppedFile}: it is in WAL mode and ${stoppedFile}-shm is missing.*start the validator first`));
    expect(readdirSync(stopped)).toEqual(["store.db"]);
  }, 60_000);
});

describe("a damaged store", () => {
  const copy = (name: string) => {
    const file = join(dir, name);
    copyFileSync(bulkDb, file);
    return file;
  };

  test("junk is refused at start with one line naming the file", () => {
    const file = join(dir, "junk.db");
    writeFileSync(file, Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919) % 251)));
    expectOneLineRefusal(runCli(["--db", file, "--port", "0"]), new RegExp(`^error: cannot serve database ${file}: it is not a SQLite database`));
  }, 30_000);

  test("a truncated store is refused at start with one line naming the file", () => {
    const file = copy("truncated.db");
    truncateSync(file, Math.floor(statSync(file).size / 2));
    expectOneLineRefusal(runCli(["--db", file, "--port", "0"]), new RegExp(`^error: cannot serve database ${file}: it is damaged`));
  }, 30_000);

  test("damage in inner pages is refused at start with one line naming the file", () => {
    const file = copy("inner.db");
    damageInnerPages(file);
    expectOneLineRefusal(runCli(["--db", file, "--port", "0"]), new RegExp(`^error: cannot serve database ${file}: it is damaged`));
  }, 30_000);

  test("damage while serving: data routes are 503s with a message, and /health says so too", async () => {
    const file = copy("live-damage.db");
    const api = await startApi(file, [], "bun", 30_000, AS_DEPLOYED);
    try {
      expect((await fetch(`${api.url}/health`)).status).toBe(200);
      damageInnerPages(file);
      for (const p of ["/leaderboard", "/api/submissions?limit=500&offset=700", "/health"]) {
        const r = await fetch(api.url + p);
        const e = ApiError.parse(await r.json());
        expect({ p, status: r.status, error: e.error }).toEqual({ p, status: 503, error: "store_unavailable" });
        expect(e.message).toContain("damaged");
        expect(e.message).not.toContain(file);
      }
      expect(api.stderr()).toContain(file);
      expect(api.stderr()).not.toMatch(/\n\s+at |\^/);
    } finally {
      await api.stop();
    }
  }, 60_000);
});

describe("under Deno", () => {
  let api: RunningApi;
  let journal: { dir: string; file: string };
  let before: Buffer;
  beforeAll(async () => {
    journal = journalModeCopy("deno-journal");
    before = readFileSync(journal.file);
    api = await startApi(journal.file, ["--api-key", KEY], "deno", 90_000, AS_DEPLOYED);
  }, 120_000);
  afterAll(async () => {
    await api?.stop();
  });

  test("a bad Host is a JSON 400 (Deno fills in a missing one); an unknown method a 405", async () => {
    for (const request of BAD_HOSTS.slice(2)) expectPlain400(await raw(api.port, request), request);
    for (const request of BAD_HOSTS.slice(0, 2)) {
      const r = await raw(api.port, request);
      expect({ request, status: r.status, type: r.headers["content-type"] }).toEqual({ request, status: 200, type: expect.stringContaining("application/json") });
    }
    const foo = await raw(api.port, "FOO /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect({ status: foo.status, allow: foo.headers.allow }).toEqual({ status: 405, allow: "GET, HEAD, OPTIONS" });
    expect(ApiError.parse(JSON.parse(foo.body)).error).toBe("method_not_allowed");
  }, 30_000);

  test("the trailing slash needs the key too", async () => {
    for (const method of ["GET", "HEAD"]) expect((await fetch(`${api.url}/leaderboard/?limit=2`, { method })).status).toBe(401);
  });

  test("a port in use is refused with one line", () => {
    expectOneLineRefusal(runCli(["--db", scenarioDb, "--port", String(open.port)], {}, "deno", [], 60_000), /^error: port \d+ on 127\.0\.0\.1 is already in use/);
  }, 90_000);

  test("node:sqlite opens the store read-only too: nothing in its directory changes", async () => {
    await serveAndRead(journal.file, "deno");
    await api.stop();
    expect(readdirSync(journal.dir)).toEqual(["store.db"]);
    expect(readFileSync(journal.file).equals(before)).toBe(true);
  }, 120_000);
});
