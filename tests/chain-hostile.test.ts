// Every byte from the node is hostile (issue 21, finding 6): a node that answers garbage at start, and one
// malformed frame in the middle of a running validator's connection. Real websocket servers on loopback (a
// garbage node, and a relay in front of a localnet that can slip a frame in), real validator processes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server, ServerWebSocket } from "bun";
import { createLogger } from "../core/log.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { spawnValidator, writeValidatorConfig } from "./fixtures/validator-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-chain-hostile-"));
const quiet = createLogger({ level: "error" });
const children: ChildProcess[] = [];
const servers: Server<unknown>[] = [];
let net: Localnet;
beforeAll(async () => {
  net = await startLocalnet({ port: 0, blockMs: 200, netuid: 3, miners: 1, log: quiet });
}, 30_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const s of servers) s.stop(true);
  await net?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function validator(name: string, network: string) {
  const v = spawnValidator(["--config", writeValidatorConfig(dir, name, network)], { CRUSADES_HOTKEY_URI: "//Charlie", CRUSADES_LOG_LEVEL: "info" }, children);
  return { child: v.child, done: v.done, output: () => v.stdout() + v.stderr() };
}

const until = async (what: string, ok: () => boolean, ms = 30_000) => {
  for (const end = Date.now() + ms; !ok(); await Bun.sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
};

test("a node that answers every request with garbage: a line per redial, then one line and exit 1; no crash, no stack", async () => {
  const garbage = ["garbage", "\u001b[2J{not json", "null", '{"jsonrpc":"2.0","method":7}', '{"jsonrpc":"2.0","method":"chain_newHead"}', "[1,2"];
  let n = 0;
  const node = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("ws only", { status: 400 })),
    websocket: { message: (ws) => void ws.send(garbage[n++ % garbage.length]!) },
  });
  servers.push(node);
  const v = validator("garbage", `ws://127.0.0.1:${node.port}`);
  expect(await v.done).toBe(1);
  const lines = v.output().trim().split("\n");
  expect(v.output()).not.toMatch(/^\s+at /m);
  expect(v.output()).not.toContain("\u001b");
  expect(lines.length).toBeLessThanOrEqual(16);
  expect(lines.filter((l) => l.includes("sent a frame that is not valid JSON-RPC")).length).toBeGreaterThan(0);
  expect(lines.at(-1)).toMatch(/^validator: cannot reach a subtensor node at ws:\/\/127\.0\.0\.1:\d+: it sent a frame that is not valid JSON-RPC .*\(gave up after 30 s\)$/);
}, 90_000);

test("one malformed frame in a running validator's connection: one line, a redial, and it keeps running", async () => {
  // A relay in front of the localnet that passes every frame both ways and can slip one in.
  const clients = new Set<ServerWebSocket<{ up: WebSocket; queue: string[] }>>();
  const relay = Bun.serve<{ up: WebSocket; queue: string[] }>({
    port: 0,
    hostname: "127.0.0.1",
    fetch(req, server) {
      const up = new WebSocket(net.url);
      return server.upgrade(req, { data: { up, queue: [] } }) ? undefined : new Response("ws only", { status: 400 });
    },
    websocket: {
      open(ws) {
        clients.add(ws);
        const { up, queue } = ws.data;
        up.onopen = () => queue.splice(0).forEach((m) => up.send(m));
        up.onmessage = (e) => ws.send(String(e.data));
        up.onclose = () => ws.close();
      },
      message(ws, m) {
        const { up, queue } = ws.data;
        if (up.readyState === WebSocket.OPEN) up.send(String(m));
        else queue.push(String(m));
      },
      close(ws) {
        clients.delete(ws);
        ws.data.up.close();
      },
    },
  });
  servers.push(relay);
  const v = validator("midrun", `ws://127.0.0.1:${relay.port}`);
  await until("the validator to run", () => v.output().includes("running; polling"));
  for (const ws of clients) ws.send("}{ not a frame");
  await until("the redial", () => v.output().includes(`reconnected to ws://127.0.0.1:${relay.port}`));
  await Bun.sleep(1_500);
  expect(v.child.exitCode).toBeNull();
  const said = v.output().split("\n").filter((l) => l.includes("lost (it sent"));
  expect(said).toHaveLength(1);
  expect(said[0]).toContain(`connection to ws://127.0.0.1:${relay.port} lost (it sent a frame that is not valid JSON-RPC (14 characters, SyntaxError)); redialling with backoff`);
  expect(v.output()).not.toMatch(/^\s+at /m);
  v.child.kill("SIGTERM");
  expect(await v.done).toBe(0);
}, 90_000);
