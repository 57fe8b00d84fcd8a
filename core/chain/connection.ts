// One websocket to a node, kept alive: when it drops we redial with exponential backoff (the provider's
// own retry uses a fixed delay and would hammer a node that is restarting), and @polkadot/api reloads
// metadata from the node each time it reconnects.
import { ApiPromise, WsProvider } from "@polkadot/api";
import { createLogger, type Logger } from "../log.ts";
import { ChainError } from "./errors.ts";
import { connectGuarded } from "./frames.ts";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "./extensions.ts";

export interface ConnectionOptions {
  log?: Logger;
  /** How long the first connection may take, and how long a call waits for a lost socket to return. */
  timeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /**
   * A node that refuses the first connection (or a host name that does not resolve): redial it with
   * backoff until `timeoutMs` (a validator started before its node), or fail at once (a CLI the user is
   * watching).
   */
  retryRefused?: boolean;
}

/** What went wrong with a socket, in words: Bun, Deno and ws shape their error events differently. */
export function describeSocketError(e: unknown): string {
  const inner = (e as { error?: unknown } | null)?.error ?? e;
  const code = (inner as { code?: unknown } | null)?.code;
  const message = String((inner as { message?: unknown } | null)?.message ?? (e as { message?: unknown } | null)?.message ?? "");
  if (code === "ECONNREFUSED" || /refused/i.test(message)) return "connection refused";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || /ENOTFOUND|getaddrinfo|resolve host/i.test(message)) return "host not found";
  if (code === "ECONNRESET" || /reset/i.test(message)) return "connection reset";
  if (code === "ETIMEDOUT" || /timed? ?out/i.test(message)) return "timed out";
  return message.replace(/^WebSocket connection to '[^']*' failed: /, "") || "the socket closed";
}

export interface Connection {
  api: ApiPromise;
  /** The raw JSON-RPC transport, for calls whose errors we report ourselves (rpc-core logs its own). */
  provider: WsProvider;
  url: string;
  isConnected(): boolean;
  /** Resolves when the socket is up and the API is usable; rejects after `timeoutMs`. */
  whenConnected(timeoutMs?: number): Promise<void>;
  /** Calls `fn` each time the socket drops; returns the unsubscribe function. */
  onDisconnect(fn: () => void): () => void;
  /** How many times the socket came back after dropping. */
  reconnects(): number;
  close(): Promise<void>;
}

// @polkadot's logger writes straight to the console, and during an outage every failed request of every
// caller is a line (`RPC-CORE: queryStorageAt(…)`, `Failed WS Request …`), a couple a second. A
// connection reports drops and redials itself, so those lines go to the first connection's log at debug.
let polkadotLog: Logger | null = null;
const POLKADOT_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;
function quietPolkadotLogs(log: Logger) {
  if (polkadotLog) return;
  polkadotLog = log;
  for (const method of ["error", "warn", "log"] as const) {
    const original = console[method].bind(console);
    console[method] = (...args: unknown[]) => {
      if (typeof args[0] === "string" && POLKADOT_LINE.test(args[0]) && typeof args[1] === "string" && /^\s*[A-Z][\w/-]*:$/.test(args[1])) {
        polkadotLog!.debug(args.slice(1).map((a) => (a instanceof Error ? a.message : String(a))).join(" ").replace(/\s+/g, " "));
        return;
      }
      original(...args);
    };
  }
}

export async function openConnection(url: string, opts: ConnectionOptions = {}): Promise<Connection> {
  const log = opts.log ?? createLogger();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const initialMs = opts.backoffInitialMs ?? 250;
  const maxMs = opts.backoffMaxMs ?? 15_000;
  quietPolkadotLogs(log);

  const provider = new WsProvider(url, false, {}, timeoutMs);
  let closed = false;
  let everConnected = false;
  let attempt = 0;
  let reconnectCount = 0;
  // Why the last dial failed: set by the provider's "error" event, which precedes its close.
  let lastError: string | null = null;
  // Ends the first connect early, for a definite answer the caller does not want redialled.
  let failStart: ((e: Error) => void) | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const dropListeners = new Set<() => void>();
  // Callers waiting for the socket: `check` resolves them once usable, `fail` rejects them on close.
  const waiters = new Set<{ check: () => void; fail: (e: Error) => void }>();

  // A malformed frame closes the socket (frames.ts); the close that follows redials and says why.
  const dial = () => connectGuarded(provider, (why) => (lastError = why)).catch(() => schedule());
  function schedule() {
    if (closed || timer) return;
    // Full jitter keeps a fleet of validators from redialling a restarted node in lockstep.
    const delay = Math.min(maxMs, initialMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    const why = lastError ?? "the socket closed";
    if (!everConnected && failStart && (why === "connection refused" || why === "host not found") && !opts.retryRefused) {
      failStart(new ChainError(`cannot reach a subtensor node at ${url}: ${why}`, "connect"));
      return;
    }
    // One line per attempt with its delay, not the provider's own per-request errors.
    log.warn(`${everConnected ? "redialling" : "cannot reach a subtensor node at"} ${url}: ${why}; attempt ${attempt} in ${(delay / 1000).toFixed(1)} s`);
    timer = setTimeout(() => {
      timer = undefined;
      dial();
    }, delay);
  }

  provider.on("connected", () => {
    lastError = null;
  });
  // Lost since the node last answered sensibly.
  let dropped = false;
  // An open socket is not yet a working node: the backoff starts over only once the node has answered (the
  // API ready, or a round trip after a redial), so one that accepts and then sends garbage is redialled ever
  // more slowly.
  function markUsable() {
    usable = true;
    if (everConnected && dropped) {
      reconnectCount++;
      log.info(`reconnected to ${url} after ${attempt} attempt(s)`);
    }
    everConnected = true;
    dropped = false;
    attempt = 0;
    for (const w of waiters) w.check();
  }
  provider.on("disconnected", () => {
    if (closed) return;
    if (everConnected && !dropped) log.warn(`connection to ${url} lost${lastError ? ` (${lastError})` : ""}; redialling with backoff`);
    dropped = true;
    for (const fn of dropListeners) fn();
    schedule();
  });
  // The provider also reports socket errors as events; the close that follows drives the retry and
  // reports the reason.
  provider.on("error", (e: unknown) => {
    lastError = describeSocketError(e);
  });

  const api = new ApiPromise({ provider, signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true });
  api.on("error", () => {});
  // Rejects with the first socket error; nothing else awaits it, and an unhandled rejection ends the process.
  api.isReadyOrError.catch(() => {});
  // Ready again after each reconnect once metadata is reloaded; waiters poll the flag this sets.
  let usable = false;
  api.on("ready", markUsable);
  api.on("connected", () => {
    // On reconnect to the same chain the API does not emit "ready" again; a round trip proves it works.
    api.rpc.chain
      .getHeader()
      .then(markUsable)
      .catch(() => {});
  });
  api.on("disconnected", () => {
    usable = false;
  });

  let deadline: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    api.isReady.then(() => null),
    new Promise<Error>((resolve) => {
      failStart = resolve;
      deadline = setTimeout(() => {
        const why = attempt > 0 ? (lastError ?? "the node closed the connection") : "no answer";
        resolve(new ChainError(`cannot reach a subtensor node at ${url}: ${why} (gave up after ${Math.round(timeoutMs / 1000)} s)`, "connect"));
      }, timeoutMs);
      dial();
    }),
  ]);
  failStart = null;
  clearTimeout(deadline);
  if (outcome) {
    closed = true;
    clearTimeout(timer);
    await api.disconnect().catch(() => {});
    throw outcome;
  }
  markUsable();

  return {
    api,
    provider,
    url,
    isConnected: () => provider.isConnected && usable,
    whenConnected(waitMs = timeoutMs) {
      if (closed) return Promise.reject(new ChainError(`the connection to ${url} is closed`, "disconnected"));
      if (provider.isConnected && usable) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          check: () => {
            if (!(provider.isConnected && usable)) return;
            clearTimeout(t);
            waiters.delete(waiter);
            resolve();
          },
          fail: (e: Error) => {
            clearTimeout(t);
            waiters.delete(waiter);
            reject(e);
          },
        };
        const t = setTimeout(
          () => waiter.fail(new ChainError(`the connection to ${url} did not come back within ${Math.round(waitMs / 1000)} s`, "disconnected")),
          waitMs,
        );
        waiters.add(waiter);
      });
    },
    onDisconnect(fn) {
      dropListeners.add(fn);
      return () => dropListeners.delete(fn);
    },
    reconnects: () => reconnectCount,
    async close() {
      closed = true;
      clearTimeout(timer);
      for (const w of waiters) w.fail(new ChainError(`the connection to ${url} was closed`, "disconnected"));
      await api.disconnect().catch(() => {});
    },
  };
}
