// Every frame from the node is hostile input. @polkadot's WsProvider handles each one inside the socket's
// message handler with a bare JSON.parse (and reads fields of whatever that returns), so one malformed
// frame throws where nothing catches it and the runtime ends the process. The provider keeps its socket
// private, so its handler is wrapped as the provider installs it: connect() creates the socket and sets
// `onmessage` synchronously, and for exactly that call the WebSocket prototype's own setter wraps what it
// is given. A frame the handler cannot take closes that socket; the connection redials with backoff.
import type { WsProvider } from "@polkadot/api";

type Handler = (this: WebSocket, ev: MessageEvent) => unknown;

/**
 * `provider.connect()`, with every message handler it installs guarded: a frame that makes the provider
 * throw calls `onMalformed` with a description that quotes none of the node's bytes, then closes the socket.
 */
export function connectGuarded(provider: WsProvider, onMalformed: (why: string) => void): Promise<void> {
  const proto = (globalThis as { WebSocket?: { prototype: object } }).WebSocket?.prototype;
  const native = proto && Object.getOwnPropertyDescriptor(proto, "onmessage");
  const set = native?.set;
  if (!proto || !native || !set || !native.configurable) throw new Error("this runtime's WebSocket has no onmessage accessor to guard");
  Object.defineProperty(proto, "onmessage", {
    ...native,
    set(this: WebSocket, fn: unknown) {
      set.call(this, typeof fn === "function" ? guard(this, fn as Handler, onMalformed) : fn);
    },
  });
  try {
    return provider.connect();
  } finally {
    Object.defineProperty(proto, "onmessage", native);
  }
}

function guard(socket: WebSocket, handle: Handler, onMalformed: (why: string) => void): Handler {
  return function (ev) {
    try {
      return handle.call(this, ev);
    } catch (e) {
      const kind = e instanceof Error ? e.name : typeof e;
      onMalformed(`it sent a frame that is not valid JSON-RPC (${typeof ev.data === "string" ? `${ev.data.length} characters` : "binary"}, ${kind})`);
      try {
        socket.close(4000, "malformed frame");
      } catch {
        // already closing
      }
    }
  };
}
