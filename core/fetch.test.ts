// The fetcher against a real HTTP server on loopback (port 0). Tests that must reach the server pass
// allowLoopback; the refusal tests show a refused hop never reaches it (the hit counter stays put).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fetchCode, type FetchResult } from "./fetch.ts";

const CODE = `import torch\n\n\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    return None\n`;
const SHA = createHash("sha256").update(CODE).digest("hex");

let server: http.Server;
let base = "";
let port = 0;
let hits = 0;
let streaming = 0;
const open = new Set<http.ServerResponse>();

function route(req: http.IncomingMessage, res: http.ServerResponse) {
  hits++;
  open.add(res);
  res.on("close", () => open.delete(res));
  const u = new URL(req.url!, base);
  const text = (body: string | Uint8Array, type = "text/plain; charset=utf-8", status = 200) => {
    res.writeHead(status, { "content-type": type });
    res.end(body);
  };
  switch (u.pathname) {
    case "/ok":
      return text(CODE);
    case "/redirect":
      res.writeHead(Number(u.searchParams.get("status") ?? 302), { location: u.searchParams.get("to")! });
      return res.end();
    case "/chain": {
      const n = Number(u.searchParams.get("n"));
      if (n === 0) return text(CODE);
      res.writeHead(301, { location: `/chain?n=${n - 1}` });
      return res.end();
    }
    case "/forever": {
      res.writeHead(200, { "content-type": "text/plain" });
      streaming++;
      res.once("close", () => streaming--);
      const chunk = Buffer.alloc(16 * 1024, "#");
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      return pump();
    }
    case "/declared-huge":
      res.writeHead(200, { "content-type": "text/plain", "content-length": String(50_000_000) });
      return res.write("x"); // then stalls: the fetcher must refuse on the header alone
    case "/slow-body":
      res.writeHead(200, { "content-type": "text/plain" });
      return res.write(CODE.slice(0, 20)); // never ends
    case "/slow-headers":
      return; // never answers
    case "/truncated":
      res.writeHead(200, { "content-type": "text/plain", "content-length": "1000" });
      res.write(CODE.slice(0, 10));
      return setTimeout(() => res.socket?.destroy(), 20);
    case "/html":
      return text(`\n<!DOCTYPE html>\n<html><body><pre>${CODE}</pre></body></html>`);
    case "/html-type":
      return text(CODE, "text/html; charset=utf-8");
    case "/gist-api":
      return text(JSON.stringify({ id: "abc", files: { "train.py": { content: CODE } } }, null, 2));
    case "/json-type":
      return text(CODE, "application/json");
    case "/latin1":
      return text(Buffer.concat([Buffer.from(CODE), Buffer.from([0x23, 0x20, 0xe9, 0x74, 0xe9, 0x0a])]));
    case "/no-inner-steps":
      return text(`# def inner_steps(model, ...) goes here\nDOC = "def inner_steps(model)"\nclass T:\n    def inner_steps(self):\n        pass\n`);
    case "/async-def":
      return text(`async def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`);
    case "/private":
      return text(CODE, "text/plain", 403);
    default:
      return text("not found", "text/plain", 404);
  }
}

beforeAll(async () => {
  server = http.createServer(route);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const res of open) res.destroy();
  await new Promise((r) => server.close(r));
});

const local = { allowLoopback: true, timeoutMs: 5_000 };
const redirectTo = (to: string) => `${base}/redirect?to=${encodeURIComponent(to)}`;

function refused(r: FetchResult, code: string): string {
  if (r.ok) throw new Error(`expected ${code}, got success from ${r.url}`);
  expect(r.code).toBe(code as never);
  expect(r.message.length).toBeGreaterThan(10);
  return r.message;
}

describe("fetchCode success", () => {
  test("returns the exact bytes, their sha256 and the final URL", async () => {
    const r = await fetchCode(`${base}/ok`, local);
    if (!r.ok) throw new Error(r.message);
    expect(new TextDecoder().decode(r.bytes)).toBe(CODE);
    expect(r.sha256).toBe(SHA);
    expect(r.url).toBe(`${base}/ok`);
  });

  test("follows up to maxRedirects redirects and reports where it ended", async () => {
    const r = await fetchCode(`${base}/chain?n=5`, local);
    if (!r.ok) throw new Error(r.message);
    expect(r.url).toBe(`${base}/chain?n=0`);
    expect(r.sha256).toBe(SHA);
  });

  test("accepts a matching committed hash prefix, in either case", async () => {
    for (const committedHash of [SHA.slice(0, 32), SHA.slice(0, 32).toUpperCase(), SHA]) {
      const r = await fetchCode(`${base}/ok`, { ...local, committedHash });
      expect(r.ok).toBe(true);
    }
  });

  test("an async def inner_steps counts", async () => {
    expect((await fetchCode(`${base}/async-def`, local)).ok).toBe(true);
  });
});

describe("fetchCode address refusals", () => {
  test("loopback is refused before connecting when allowLoopback is off", async () => {
    const before = hits;
    const msg = refused(await fetchCode(`${base}/ok`, { timeoutMs: 5_000 }), "blocked_address");
    expect(msg).toContain("127.0.0.1 is a loopback address");
    expect(hits).toBe(before);
  });

  test("a hostname that resolves to loopback is refused (localhost)", async () => {
    const before = hits;
    const msg = refused(await fetchCode(`http://localhost:${port}/ok`, { timeoutMs: 5_000 }), "blocked_address");
    expect(msg).toContain('host "localhost" resolves to');
    expect(hits).toBe(before);
  });

  test("redirect to 10.0.0.1 is refused", async () => {
    const msg = refused(await fetchCode(redirectTo("http://10.0.0.1/train.py"), local), "blocked_address");
    expect(msg).toContain("redirect 1 to http://10.0.0.1/train.py");
    expect(msg).toContain("private address (10.0.0.0/8)");
  });

  test("redirect to [::ffff:127.0.0.1] (loopback in IPv4-mapped form) is refused even with allowLoopback", async () => {
    const before = hits;
    const msg = refused(await fetchCode(redirectTo(`http://[::ffff:127.0.0.1]:${port}/ok`), local), "blocked_address");
    expect(msg).toContain("IPv4-mapped");
    expect(hits).toBe(before + 1); // the redirect itself, never the target
  });

  test("redirect to http://0.0.0.0 (which would reach this host) is refused", async () => {
    const before = hits;
    refused(await fetchCode(redirectTo(`http://0.0.0.0:${port}/ok`), local), "blocked_address");
    expect(hits).toBe(before + 1);
  });

  test("redirect to cloud metadata (169.254.169.254) and to a NAT64-wrapped private address are refused", async () => {
    refused(await fetchCode(redirectTo("http://169.254.169.254/latest/meta-data/"), local), "blocked_address");
    refused(await fetchCode(redirectTo("http://[64:ff9b::a00:1]/"), local), "blocked_address");
  });

  test("integer and hex IPv4 spellings are normalised before the check", async () => {
    // 2130706433 and 0x7f.1 are 127.0.0.1; 167772161 is 10.0.0.1
    refused(await fetchCode(`http://2130706433:${port}/ok`, { timeoutMs: 5_000 }), "blocked_address");
    refused(await fetchCode(`http://0x7f.1:${port}/ok`, { timeoutMs: 5_000 }), "blocked_address");
    refused(await fetchCode(redirectTo("http://167772161/"), local), "blocked_address");
  });
});

describe("fetchCode transport refusals", () => {
  test("non-http schemes are refused, directly and as a redirect target", async () => {
    for (const url of ["file:///etc/passwd", "ftp://example.com/train.py", "data:text/plain,def inner_steps(", "gopher://x/"]) {
      refused(await fetchCode(url, local), "scheme_not_allowed");
    }
    refused(await fetchCode(redirectTo("file:///etc/passwd"), local), "scheme_not_allowed");
  });

  test("malformed URLs and URLs with credentials are bad_url", async () => {
    refused(await fetchCode("", local), "bad_url");
    refused(await fetchCode("not a url", local), "bad_url");
    refused(await fetchCode(`http://user:pw@127.0.0.1:${port}/ok`, local), "bad_url");
  });

  test("more than maxRedirects redirects is refused", async () => {
    const msg = refused(await fetchCode(`${base}/chain?n=6`, local), "too_many_redirects");
    expect(msg).toContain("more than 5");
    expect((await fetchCode(`${base}/chain?n=2`, { ...local, maxRedirects: 1 })).ok).toBe(false);
  });

  test("404 and 403 are http_status with a hint", async () => {
    expect(refused(await fetchCode(`${base}/missing`, local), "http_status")).toContain("HTTP 404");
    expect(refused(await fetchCode(`${base}/private`, local), "http_status")).toContain("not public");
  });

  test("a body streamed forever is cut off at maxBytes", async () => {
    const msg = refused(await fetchCode(`${base}/forever`, { ...local, maxBytes: 100_000 }), "too_large");
    expect(msg).toContain("more than 100000 bytes");
    // The connection is torn down, not left draining the stream in the background.
    for (let i = 0; i < 100 && streaming > 0; i++) await Bun.sleep(20);
    expect(streaming).toBe(0);
  });

  test("a declared Content-Length over the cap is refused without reading the body", async () => {
    expect(refused(await fetchCode(`${base}/declared-huge`, local), "too_large")).toContain("50000000 bytes");
  });

  test("a body that stalls past the deadline times out", async () => {
    const start = Date.now();
    const msg = refused(await fetchCode(`${base}/slow-body`, { ...local, timeoutMs: 400 }), "timeout");
    expect(msg).toContain("reading the body");
    expect(Date.now() - start).toBeLessThan(4_000);
  });

  test("a server that never answers times out while waiting for the response", async () => {
    expect(refused(await fetchCode(`${base}/slow-headers`, { ...local, timeoutMs: 400 }), "timeout")).toContain("waiting for the response");
  });

  test("a body shorter than its Content-Length is a network error, not code", async () => {
    refused(await fetchCode(`${base}/truncated`, local), "network_error");
  });

  test("a closed port is a network error", async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const closed = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    refused(await fetchCode(`http://127.0.0.1:${closed}/ok`, local), "network_error");
  });

  test("an unresolvable host is dns_failed", async () => {
    expect(refused(await fetchCode("http://no-such-host.invalid/train.py", local), "dns_failed")).toContain("no-such-host.invalid");
  });
});

describe("fetchCode content refusals", () => {
  test("an HTML page is refused, by its markup or its content type", async () => {
    refused(await fetchCode(`${base}/html`, local), "html_page");
    expect(refused(await fetchCode(`${base}/html-type`, local), "html_page")).toContain("text/html");
  });

  test("a JSON listing is refused, by its body or its content type", async () => {
    refused(await fetchCode(`${base}/gist-api`, local), "json_listing");
    refused(await fetchCode(`${base}/json-type`, local), "json_listing");
  });

  test("invalid UTF-8 is refused", async () => {
    refused(await fetchCode(`${base}/latin1`, local), "not_utf8");
  });

  test("inner_steps only in a comment, a string or a method does not count", async () => {
    refused(await fetchCode(`${base}/no-inner-steps`, local), "missing_inner_steps");
  });

  test("a wrong committed hash is refused and the message shows both hashes", async () => {
    const wrong = "0".repeat(32);
    const msg = refused(await fetchCode(`${base}/ok`, { ...local, committedHash: wrong }), "hash_mismatch");
    expect(msg).toContain(SHA.slice(0, 32));
    expect(msg).toContain(wrong);
    refused(await fetchCode(`${base}/ok`, { ...local, committedHash: "xyz" }), "hash_mismatch");
  });
});

describe("fetchCode over https", () => {
  // A certificate for localhost and 127.0.0.1. Untrusted in this process, so the fetch must reach the
  // TLS handshake through the pinned address and then refuse the certificate. A child process that
  // trusts it (NODE_EXTRA_CA_CERTS) must succeed by hostname, proving SNI and the name check survive
  // the pinned lookup.
  let dir = "";
  let tls: https.Server;
  let tlsBase = "";

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fetch-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
      { stdio: "ignore" });
    tls = https.createServer({ key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) }, route);
    await new Promise<void>((r) => tls.listen(0, "127.0.0.1", () => r()));
    tlsBase = `https://localhost:${(tls.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    tls.closeAllConnections();
    await new Promise((r) => tls.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test("refuses an untrusted certificate", async () => {
    expect(refused(await fetchCode(`${tlsBase}/ok`, local), "network_error").toLowerCase()).toMatch(/cert|self.signed|verify/);
  });

  test("with the certificate trusted, fetches by hostname and refuses a downgrade to http", async () => {
    const urls = [`${tlsBase}/ok`, `${tlsBase}/redirect?to=${encodeURIComponent(`${base}/ok`)}`];
    const script = `import { fetchCode } from ${JSON.stringify(join(import.meta.dir, "fetch.ts"))};
      const out = [];
      for (const u of ${JSON.stringify(urls)}) { const r = await fetchCode(u, { allowLoopback: true, timeoutMs: 5000 }); out.push({ ok: r.ok, code: r.code, sha256: r.sha256 }); }
      console.log(JSON.stringify(out));`;
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, "cert.pem") },
    });
    const [direct, downgrade] = JSON.parse(stdout.trim());
    expect(direct).toEqual({ ok: true, sha256: SHA });
    expect(downgrade).toEqual({ ok: false, code: "scheme_not_allowed" });
  }, 20_000);
});
