// The transport: JSON-RPC over WebSocket (and single requests over HTTP POST) on loopback. The only
// runtime-specific code of the localnet; Bun.serve on Bun, Deno.serve + upgradeWebSocket on Deno.
import type { Connection, RpcHandler } from "./rpc.ts";

export interface Listening {
  port: number;
  /** Closes every open socket, as a network drop would (clients should reconnect). */
  dropConnections(): void;
  stop(): Promise<void>;
}

interface Socket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

async function httpRequest(rpc: RpcHandler, req: Request): Promise<Response> {
  if (req.method !== "POST") {
    return new Response("crusades localnet: JSON-RPC over WebSocket, or POST a JSON-RPC request\n", { status: 426 });
  }
  // HTTP has no subscriptions; a connection that only answers is enough.
  const conn = rpc.open(() => {});
  try {
    const reply = await rpc.handleText(await req.text(), conn);
    return new Response(reply ?? "", { headers: { "content-type": "application/json" } });
  } finally {
    rpc.close(conn);
  }
}

export async function listen(rpc: RpcHandler, port: number, hostname: string): Promise<Listening> {
  const sockets = new Map<Socket, Connection>();
  const closeAll = () => {
    for (const [socket, conn] of sockets) {
      rpc.close(conn);
      try {
        socket.close(1012, "localnet dropped the connection");
      } catch {
        // already closing
      }
    }
    sockets.clear();
  };

  if (isBun) {
    type Ws = import("bun").ServerWebSocket<{ conn?: Connection }>;
    const server = Bun.serve<{ conn?: Connection }>({
      port,
      hostname,
      fetch(req, srv) {
        if (req.headers.get("upgrade")?.toLowerCase() === "websocket" && srv.upgrade(req, { data: {} })) return undefined;
        return httpRequest(rpc, req);
      },
      websocket: {
        maxPayloadLength: 16 * 1024 * 1024,
        open(ws: Ws) {
          ws.data.conn = rpc.open((text) => ws.send(text));
          sockets.set(ws, ws.data.conn);
        },
        message(ws: Ws, message) {
          const conn = ws.data.conn;
          if (conn) void rpc.message(conn, typeof message === "string" ? message : new TextDecoder().decode(message));
        },
        close(ws: Ws) {
          if (ws.data.conn) rpc.close(ws.data.conn);
          sockets.delete(ws);
        },
      },
    });
    return {
      port: server.port!,
      dropConnections: closeAll,
      async stop() {
        closeAll();
        await server.stop(true);
      },
    };
  }

  const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
  let resolvePort: (p: number) => void;
  const portReady = new Promise<number>((r) => (resolvePort = r));
  const server = Deno.serve({ port, hostname, onListen: ({ port }) => resolvePort(port) }, (req) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") return httpRequest(rpc, req);
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onopen = () => sockets.set(socket, rpc.open((text) => socket.send(text)));
    socket.onmessage = (e) => {
      const conn = sockets.get(socket);
      if (conn) void rpc.message(conn, typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data as ArrayBuffer));
    };
    socket.onclose = () => {
      const conn = sockets.get(socket);
      if (conn) rpc.close(conn);
      sockets.delete(socket);
    };
    return response;
  });
  return {
    port: await portReady,
    dropConnections: closeAll,
    async stop() {
      closeAll();
      await server.shutdown();
    },
  };
}

interface DenoLike {
  serve(
    opts: { port: number; hostname: string; onListen(addr: { port: number }): void },
    handler: (req: Request) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> };
  upgradeWebSocket(req: Request): { socket: WebSocket; response: Response };
}
